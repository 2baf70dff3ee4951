"""A model's identity in the cache keys: new weights in the same folder mean new answers and new verdicts, unchanged
weights cost zero calls, and an endpoint model's ``revision`` is part of its identity."""

from __future__ import annotations

import doctest
import json
import os
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli, write_config, write_questions

import evalsuite.generate.identity as identity_module
from evalsuite.config import ModelSpec
from evalsuite.generate import model_identity
from evalsuite.generate.identity import (
    MIB,
    WHOLE_FILE_LIMIT,
    fingerprint_files,
    sampled_ranges,
    weights_fingerprint,
)
from evalsuite.testing.fake_server import FakeOpenAIServer


def test_doctests() -> None:
    assert doctest.testmod(identity_module).failed == 0


# ------------------------------------------------------------------------------------------- the fingerprint


def _checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"hidden_size": 64}')
    (folder / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    (folder / "model.safetensors").write_bytes(os.urandom(4096))
    return folder


def test_every_output_file_counts_and_training_leftovers_do_not(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path / "ckpt")
    before = weights_fingerprint(folder)
    assert [e.name for e in fingerprint_files(folder)] == ["config.json", "model.safetensors", "tokenizer_config.json"]

    # what a trainer leaves beside the weights does not change what the model answers
    (folder / "metrics.jsonl").write_text('{"loss": 0.69}\n')
    (folder / "training_args.bin").write_bytes(os.urandom(64))
    (folder / "README.md").write_text("# a model card\n")
    (folder / "checkpoint-2").mkdir()
    (folder / "checkpoint-2" / "model.safetensors").write_bytes(os.urandom(64))
    assert weights_fingerprint(folder) == before

    # the chat template, a generation setting, a new shard: each is a different model
    for name, text in (("tokenizer_config.json", '{"chat_template": "{{ other }}"}'),
                       ("generation_config.json", '{"temperature": 0.1}'),
                       ("model-00002-of-00002.safetensors", "x")):
        (folder / name).write_text(text)
        after = weights_fingerprint(folder)
        assert after != before, name
        before = after


def test_content_not_mtime_and_the_memo_sees_a_rewrite(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path / "ckpt")
    first = weights_fingerprint(folder)
    hits = identity_module._file_digest.cache_info().hits
    assert weights_fingerprint(folder) == first
    assert identity_module._file_digest.cache_info().hits == hits + 3  # unchanged files are only stat'ed

    weights = folder / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000_000))  # touched, same bytes
    assert weights_fingerprint(folder) == first

    weights.write_bytes(os.urandom(4096))  # same size, new bytes: the memo key (size, mtime_ns) changes with it
    assert weights_fingerprint(folder) != first


def test_a_large_file_is_sampled_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    size = 40 * MIB
    path.write_bytes(os.urandom(size))
    ranges = sampled_ranges(size)
    assert sum(n for _, n in ranges) < size // 10
    start = weights_fingerprint(path)

    def flip(offset: int) -> str | None:
        with path.open("r+b") as fh:
            fh.seek(offset)
            byte = fh.read(1)
            fh.seek(offset)
            fh.write(bytes([byte[0] ^ 0xFF]))
        os.utime(path, ns=(0, path.stat().st_mtime_ns + 1))
        return weights_fingerprint(path)

    after_last = flip(size - 1)  # in the last MiB
    assert after_last != start
    unsampled = next(a + n for (a, n), (b, _) in zip(ranges, ranges[1:]) if b > a + n + 1)
    # one byte no probe reads is not seen: the price of not hashing 14 GB (training changes whole tensors)
    assert flip(unsampled) == after_last


def test_safetensors_tensors_are_each_probed(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(0)
    # 24 tensors of 512 KiB: most of them lie wholly between the generic sampled blocks
    tensors = {f"layers.{i}.weight": rng.standard_normal(128 * 1024).astype("float32") for i in range(24)}
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(tensors, str(path))
    assert path.stat().st_size > WHOLE_FILE_LIMIT
    start = weights_fingerprint(path)
    for name in tensors:  # every tensor, changed alone, changes the fingerprint
        changed = dict(tensors)
        changed[name] = tensors[name] + np.float32(0.001)
        safetensors_numpy.save_file(changed, str(path))
        assert weights_fingerprint(path) != start, name
    safetensors_numpy.save_file(tensors, str(path))
    assert weights_fingerprint(path) == start


def test_a_hub_id_has_no_fingerprint_and_a_gguf_file_has_one(tmp_path: Path) -> None:
    assert weights_fingerprint("HuggingFaceTB/SmolLM2-135M-Instruct") is None
    gguf = tmp_path / "model.Q4_1.gguf"
    gguf.write_bytes(b"GGUF" + os.urandom(1000))
    assert [e.name for e in fingerprint_files(gguf)] == ["model.Q4_1.gguf"]
    assert weights_fingerprint(gguf) is not None


# ------------------------------------------------------------------------------------------- model_identity


def test_an_endpoint_model_keeps_its_key_unless_a_revision_is_set() -> None:
    spec = ModelSpec("gpt", model="gpt-4o", base_url="http://host/v1")
    # the identity every stored endpoint call was keyed by: unchanged, so existing stores stay valid
    assert model_identity(spec) == {"backend": "openai", "model": "gpt-4o", "base_url": "http://host/v1", "adapter": None}
    with_revision = ModelSpec("gpt", model="gpt-4o", base_url="http://host/v1", revision="2024-08-06")
    assert model_identity(with_revision) == {**model_identity(spec), "revision": "2024-08-06"}


def test_a_local_model_and_its_adapter_are_fingerprinted(tmp_path: Path) -> None:
    base = _checkpoint(tmp_path / "base")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(os.urandom(512))
    spec = ModelSpec("dpo", backend="hf", model=str(base), adapter=str(adapter))
    first = model_identity(spec)
    assert first["weights"] == weights_fingerprint(base) and first["adapter_weights"] == weights_fingerprint(adapter)
    (adapter / "adapter_model.safetensors").write_bytes(os.urandom(512))
    second = model_identity(spec)
    assert second["weights"] == first["weights"] and second["adapter_weights"] != first["adapter_weights"]
    hub = model_identity(ModelSpec("hub", backend="vllm", model="org/not-local", revision="abc123"))
    assert hub["weights"] is None and hub["revision"] == "abc123"


# ------------------------------------------------------------------------------------------- end to end


def _rows(db: Path, table: str, key: tuple[str, ...]) -> dict[tuple, tuple[str, float]]:
    con = sqlite3.connect(db)
    try:
        return {tuple(r[:-2]): (r[-2], r[-1]) for r in con.execute(f"SELECT {', '.join(key)}, cache_key, created FROM {table}")}
    finally:
        con.close()


def _answers(run: Path) -> dict[tuple, tuple[str, float]]:
    return _rows(run / "evalsuite.sqlite", "answer_turns", ("model", "question_id", "turn"))


def _judgments(run: Path) -> dict[tuple, tuple[str, float]]:
    return _rows(run / "evalsuite.sqlite", "judgments", ("question_id", "turn", "model_a", "model_b"))


def _texts(run: Path) -> dict[tuple, str]:
    con = sqlite3.connect(run / "evalsuite.sqlite")
    try:
        return {(m, q, t): text for m, q, t, text in con.execute("SELECT model, question_id, turn, text FROM answer_turns")}
    finally:
        con.close()


def _redone(before: dict[tuple, tuple[str, float]], after: dict[tuple, tuple[str, float]]) -> set[tuple]:
    """Rows asked again: a new cache key and a new timestamp."""
    assert set(after) == set(before)
    return {k for k in before if after[k][0] != before[k][0] and after[k][1] > before[k][1]}


@pytest.mark.slow
def test_a_checkpoint_retrained_into_its_folder_is_asked_again(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from evalsuite.demo.tiny import build_tiny_model

    models = {name: build_tiny_model(tmp_path / name, seed=seed) for name, seed in (("sft", 0), ("dpo", 1), ("judge", 2))}
    questions = write_questions(tmp_path / "questions.jsonl", n=4)
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text(
        f'[bench]\npath = "{questions}"\n\n'
        + "".join(f'[models.{m}]\nbackend = "hf"\nmodel = "{models[m]}"\nmax_tokens = 4\nbatch_size = 8\n\n' for m in ("sft", "dpo"))
        + f'[judge]\nbackend = "hf"\nmodel = "{models["judge"]}"\nverdict_mode = "logprob"\nbatch_size = 8\n'
    )
    args = ("compare", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "200", "--bt-rounds", "50")
    run = tmp_path / "run"

    def compare() -> None:
        res = run_cli(*args, cwd=tmp_path, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]

    compare()
    answers, judgments = _answers(run), _judgments(run)
    assert len(answers) == 2 * 4 * 2 and len(judgments) == 4 * 2 * 2

    # files touched but not changed: zero calls
    for f in models["dpo"].iterdir():
        os.utime(f)
    compare()
    assert _answers(run) == answers and _judgments(run) == judgments

    # new weights in the same folder (as `evalsuite train` writing checkpoints/dpo-b0.1 again): every dpo answer is
    # generated again and sft's answers stay; a verdict is keyed by the text it judged, so every verdict whose
    # conversation changed is asked again (turn 2 is judged with turn 1 in view)
    texts = _texts(run)
    build_tiny_model(models["dpo"], seed=7)
    compare()
    new_answers, new_judgments = _answers(run), _judgments(run)
    assert _redone(answers, new_answers) == {k for k in answers if k[0] == "dpo"}
    new_texts = _texts(run)
    changed = {(q, t) for (m, q, t) in texts if m == "dpo" and texts[m, q, t] != new_texts[m, q, t]}
    seen_changed = {k for k in judgments if any((k[0], t) in changed for t in range(1, k[1] + 1))}
    assert len(seen_changed) >= len(judgments) // 2  # the new weights answer differently
    assert _redone(judgments, new_judgments) == seen_changed

    # unchanged again: zero calls
    compare()
    assert _answers(run) == new_answers and _judgments(run) == new_judgments

    # a retrained judge re-judges everything and regenerates nothing
    build_tiny_model(models["judge"], seed=8)
    compare()
    assert _answers(run) == new_answers
    assert _redone(new_judgments, _judgments(run)) == set(new_judgments)


@pytest.mark.slow
def test_a_lora_run_trained_again_regenerates_its_answers(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    from evalsuite.demo.tiny import build_tiny_model
    from evalsuite.trainers import TrainOptions, train_variant

    sft = build_tiny_model(tmp_path / "sft", seed=0)
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("".join(json.dumps({"prompt": f"What is {i} plus {i}?", "chosen": f"It is {2 * i}.",
                                         "rejected": f"It is {2 * i + 1}."}) + "\n" for i in range(4)))
    questions = write_questions(tmp_path / "questions.jsonl", n=4)
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text(
        f'[bench]\npath = "{questions}"\n\n[models.sft]\nbackend = "hf"\nmodel = "{sft}"\nmax_tokens = 4\n\n'
        f'[train]\nmanifest = "checkpoints/manifest.json"\nmax_tokens = 4\n\n[judge]\nmodel = "unused"\n'
    )

    def train(seed: int) -> None:
        options = TrainOptions(max_steps=1, batch_size=2, lr=1e-3, seed=seed, lora=True, lora_r=4, lora_alpha=8)
        train_variant("dpo", model=str(sft), data=str(prefs), options=options, out_dir=tmp_path / "checkpoints",
                      progress=False)

    def generate() -> dict[tuple, tuple[str, float]]:
        res = run_cli("generate", "sft", "dpo-b0.1", "--config", str(cfg), "--run-dir", "run", "--quiet",
                      cwd=tmp_path, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        return _answers(tmp_path / "run")

    train(seed=0)
    first = generate()
    assert {k[0] for k in first} == {"sft", "dpo-b0.1"} and len(first) == 16
    assert generate() == first  # unchanged: zero calls
    train(seed=1)  # `evalsuite train dpo` again: the adapter in checkpoints/dpo-b0.1 is replaced
    second = generate()
    assert _redone(first, second) == {k for k in first if k[0] == "dpo-b0.1"}


def test_an_endpoint_model_with_a_new_revision_is_asked_again(tmp_path: Path) -> None:
    questions = write_questions(tmp_path / "questions.jsonl", n=4)
    strengths = {"sft": 0.0, "dpo": 1.0}
    with FakeOpenAIServer(strengths=strengths) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, strengths, questions)
        base = ("compare", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "200")
        assert run_cli(*base, cwd=tmp_path).returncode == 0
        assert srv.stats()["total_requests"] == 2 * 4 * 2 + 4 * 2 * 2

        srv.reset_stats()
        assert run_cli(*base, cwd=tmp_path).returncode == 0
        assert srv.stats()["total_requests"] == 0  # no revision given, none changed: zero calls

        srv.reset_stats()
        res = run_cli(*base, "--set", 'models.dpo.revision="2026-01"', cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        # dpo's answers are asked again; the fake server answers the same text, and a verdict is keyed by the text
        # it judged, so no verdict is asked again (a model that answers differently gets new verdicts)
        assert srv.stats()["by_model"] == {"dpo": 4 * 2}

        srv.reset_stats()
        res = run_cli(*base, "--set", 'models.dpo.revision="2026-01"', "--set", 'judge.revision="v2"', cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert srv.stats()["by_model"] == {"judge": 4 * 2 * 2}  # a new judge revision re-asks only the judge


def test_an_alias_is_fingerprinted_as_the_checkpoint_it_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import evalsuite.generate as generate_module

    folder = _checkpoint(tmp_path / "converted")
    monkeypatch.setattr(generate_module, "resolve_model_path", lambda name: str(folder) if name == "smollm2" else name)
    identity = model_identity(ModelSpec("sft", backend="vllm", model="smollm2"))
    assert identity["model"] == "smollm2" and identity["weights"] == weights_fingerprint(folder)
