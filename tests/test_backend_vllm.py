"""The ``vllm`` backend through its real worker subprocess, with tests/vllm_fake_engine.py as ``vllm`` (fast).

The worker is started by file path exactly as in use; only its ``PYTHONPATH`` differs: ``tests/fake_vllm`` (a package
named ``vllm`` re-exporting the fake) comes first. What this covers: the JSON-lines protocol, one worker per backend,
one ``chat`` call per turn with a per-request LoRA list, stable LoRA ids, engine settings from typed config keys,
over-long and rejected prompts failing alone, logprob verdicts, crash and missing-vLLM errors, the process group
ending with ``close()``, and ``choice_token_ids`` on real tokenizers. The real engine: tests/test_vllm_real.py.
"""

from __future__ import annotations

import ast
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest
from vllm_fake_engine import FakeLLM, FakeLoRARequest, FakeSamplingParams

from evalsuite.backends import ChatRequest, ChatResult, NullProgress, make_backend
from evalsuite.backends._vllm_worker import Engine, choice_token_ids, run_batch, serve
from evalsuite.backends.vllm import WORKER, VLLMBackend, engine_key
from evalsuite.config import ModelSpec
from evalsuite.errors import InputError

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Put the fake ``vllm`` on the worker's path and return the file its loads and ``chat`` calls are logged to."""
    log = tmp_path / "calls.jsonl"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # worker logs kept after a crash land in tmp_path
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS / "fake_vllm"), str(TESTS)]))
    monkeypatch.setenv("FAKE_VLLM_LOG", str(log))
    monkeypatch.delenv("FAKE_VLLM_CRASH_ON_CALL", raising=False)
    monkeypatch.delenv("FAKE_VLLM_CHILD", raising=False)
    return log


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "sft"
    path.mkdir()
    return path


def _adapter(tmp_path: Path, name: str, rank: int = 8) -> Path:
    path = tmp_path / name
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    return path


def _log(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _calls(log: Path) -> list[dict[str, Any]]:
    return [entry for entry in _log(log) if "n" in entry]


def _loads(log: Path) -> list[dict[str, Any]]:
    return [entry for entry in _log(log) if "loaded" in entry]


def _spec(model: Path, **overrides: Any) -> ModelSpec:
    return ModelSpec(name="sft", backend="vllm", model=str(model), **overrides)


def _turn_one(n: int, **kw: Any) -> list[ChatRequest]:
    return [
        ChatRequest(f"q{i}", ({"role": "user", "content": f"question {i}"},), max_tokens=20, **kw)
        for i in range(n)
    ]


def _two_turns(seen: list[tuple[ChatRequest, ChatResult]]) -> Callable[[ChatRequest, ChatResult], list[ChatRequest]]:
    def on_done(request: ChatRequest, result: ChatResult) -> list[ChatRequest]:
        seen.append((request, result))
        if len(request.messages) > 1:
            return []
        reply = {"role": "assistant", "content": result.text}
        messages = request.messages + (reply, {"role": "user", "content": "and why?"})
        return [ChatRequest(key=request.key + "/2", messages=messages, max_tokens=4, meta=request.meta)]

    return on_done


def test_turn_one_batch_then_turn_two_batch(fake_vllm: Path, checkpoint: Path) -> None:
    seen: list[tuple[ChatRequest, ChatResult]] = []
    backend = make_backend(_spec(checkpoint))
    try:
        backend.run(_turn_one(3), _two_turns(seen), NullProgress())
    finally:
        backend.close()
    calls = _calls(fake_vllm)
    assert [c["n"] for c in calls] == [3, 3]
    assert calls[0]["user_turns"] == [1, 1, 1] and calls[1]["user_turns"] == [2, 2, 2]
    assert calls[1]["max_tokens"] == [4, 4, 4] and calls[0]["loras"] == [None, None, None]
    first = {r.key: res for r, res in seen if len(r.messages) == 1}
    for request, result in seen:
        assert result.error is None and result.prompt_tokens > 0 and 0 < result.completion_tokens
        if len(request.messages) > 1:
            assert request.messages[1]["content"] == first[request.key.removesuffix("/2")].text
            assert result.completion_tokens == 4 and result.text.startswith("[base] reply")


def test_progress_counts_follow_ups(fake_vllm: Path, checkpoint: Path) -> None:
    class Recorder:
        advanced = added = 0

        def advance(self, n: int = 1, *, error: bool = False) -> None:
            self.advanced += n

        def add_total(self, n: int) -> None:
            self.added += n

    progress = Recorder()
    with VLLMBackend.from_spec(_spec(checkpoint)) as backend:
        backend.run(_turn_one(2), _two_turns([]), progress)
    assert (progress.added, progress.advanced) == (2, 4)


def test_one_chat_call_with_a_lora_list_and_stable_ids(fake_vllm: Path, checkpoint: Path, tmp_path: Path) -> None:
    dpo, simpo, default = _adapter(tmp_path, "dpo"), _adapter(tmp_path, "simpo", rank=32), _adapter(tmp_path, "kto")
    requests = [
        ChatRequest(key="a", messages=({"role": "user", "content": "x"},), meta={"adapter": str(dpo)}),
        ChatRequest(key="b", messages=({"role": "user", "content": "y"},), meta={"adapter": str(simpo)}),
        ChatRequest(key="c", messages=({"role": "user", "content": "z"},)),  # falls back to spec.adapter
        ChatRequest(key="d", messages=({"role": "user", "content": "w"},), meta={"adapter": str(dpo)}),
    ]
    results: dict[str, ChatResult] = {}
    backend = make_backend(_spec(checkpoint, adapter=str(default)))
    assert isinstance(backend, VLLMBackend)
    try:
        backend.run(requests, lambda r, res: results.__setitem__(r.key, res), NullProgress())
        backend.run(list(reversed(requests)), lambda r, res: None, NullProgress())  # same ids on a later run
    finally:
        backend.close()
    first_run, second_run = _calls(fake_vllm)
    assert first_run["n"] == 4  # every adapter in ONE chat call
    dpo_lora, simpo_lora, kto_lora = (
        ["dpo-1", 1, str(dpo.resolve())], ["simpo-2", 2, str(simpo.resolve())], ["kto-3", 3, str(default.resolve())]
    )
    assert first_run["loras"] == [dpo_lora, simpo_lora, kto_lora, dpo_lora]
    assert second_run["loras"] == [dpo_lora, kto_lora, simpo_lora, dpo_lora]
    assert results["a"].text.startswith("[dpo-1]") and results["c"].text.startswith("[kto-3]")


def test_engine_settings_reach_vllm_llm(fake_vllm: Path, checkpoint: Path, tmp_path: Path) -> None:
    big = _adapter(tmp_path, "big", rank=24)
    spec = _spec(checkpoint, adapter=str(big), dtype="bf16", engine={"max_model_len": 512, "enforce_eager": True})
    with VLLMBackend.from_spec(spec) as backend:
        backend.run(_turn_one(1), lambda r, res: None, NullProgress())
    (load,) = _loads(fake_vllm)
    assert load["enable_lora"] is True and load["max_lora_rank"] == 32  # 24 rounded up to a rank vLLM takes
    assert load["dtype"] == "bfloat16" and load["max_model_len"] == 512
    assert load["loaded"] == str(checkpoint.resolve())


def test_engine_settings_vllm_rejects_are_input_errors(fake_vllm: Path, checkpoint: Path) -> None:
    with pytest.raises(InputError, match=r"vLLM rejected the engine settings: .*max_modle_len"):
        with VLLMBackend.from_spec(_spec(checkpoint, engine={"max_modle_len": 512})) as backend:
            backend.run(_turn_one(1), lambda r, res: None, NullProgress())
    with pytest.raises(InputError, match="unknown dtype 'bf8'"):
        VLLMBackend.from_spec(_spec(checkpoint, dtype="bf8"))
    with pytest.raises(InputError, match="is not an executable file"):
        VLLMBackend.from_spec(_spec(checkpoint, python=str(checkpoint / "bin" / "python")))


def test_an_over_long_prompt_fails_alone(fake_vllm: Path, checkpoint: Path) -> None:
    requests = _turn_one(3)
    requests.insert(1, ChatRequest("long", ({"role": "user", "content": "word " * 100},), max_tokens=20))
    requests.append(ChatRequest("odd", ({"role": "user", "content": "REJECT-ME please"},), max_tokens=20))
    results: dict[str, ChatResult] = {}
    with VLLMBackend.from_spec(_spec(checkpoint, engine={"max_model_len": 120})) as backend:
        backend.run(requests, lambda r, res: results.__setitem__(r.key, res), NullProgress())
    assert "leaves no room for a reply within max_model_len 120" in (results["long"].error or "")
    # the pre-check cannot see this one; vLLM rejects the call, halves are retried, only it fails
    assert results["odd"].error == "vllm: ValueError: request rejected by the fake engine"
    for key in ("q0", "q1", "q2"):
        assert results[key].error is None and results[key].text.startswith("[base] reply")
        # max_tokens is clamped to the room the prompt leaves
        assert results[key].prompt_tokens + results[key].completion_tokens <= 120


def test_logprob_verdicts_are_distributions(fake_vllm: Path, checkpoint: Path) -> None:
    requests = [
        ChatRequest(key=f"j{i}", messages=({"role": "user", "content": f"judge {i}"},), logprob_choices=("A", "B", "C"))
        for i in range(3)
    ]
    results: dict[str, ChatResult] = {}
    with VLLMBackend.from_spec(_spec(checkpoint)) as backend:
        backend.run(requests, lambda r, res: results.__setitem__(r.key, res), NullProgress())
    (call,) = _calls(fake_vllm)
    assert call["continue_final_message"] is True and call["max_tokens"] == [1, 1, 1]
    for result in results.values():
        assert result.choice_probs is not None and sum(result.choice_probs.values()) == pytest.approx(1.0)
        assert result.text == f"[[{max(result.choice_probs, key=result.choice_probs.__getitem__)}]]"


def test_worker_crash_is_a_clear_error(fake_vllm: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VLLM_CRASH_ON_CALL", "2")  # dies on the turn-2 batch
    backend = make_backend(_spec(checkpoint))
    seen: list[tuple[ChatRequest, ChatResult]] = []
    with pytest.raises(InputError) as info:
        backend.run(_turn_one(2), _two_turns(seen), NullProgress())
    message = str(info.value)
    assert "exited with code 3" in message and "generating a batch of 2" in message and "out of memory" in message
    assert "worker log" in message
    assert len(seen) == 2  # turn 1 results landed before the crash
    assert isinstance(backend, VLLMBackend) and backend._proc is None


def test_missing_vllm_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, checkpoint: Path) -> None:
    try:
        import vllm  # noqa: F401

        pytest.skip("vllm is installed in this interpreter")
    except ImportError:
        pass
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(checkpoint.parent))
    with pytest.raises(InputError, match=r"vLLM is not installed for the interpreter .*make vllm-env"):
        make_backend(_spec(checkpoint)).run(_turn_one(1), lambda r, res: None, NullProgress())


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a killed child may wait as a zombie for init to reap it


def test_close_ends_the_worker_and_its_children(fake_vllm: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VLLM_CHILD", "1")  # like vLLM's engine-core process
    backend = VLLMBackend.from_spec(_spec(checkpoint))
    backend.run(_turn_one(1), lambda r, res: None, NullProgress())
    proc = backend._proc
    assert proc is not None
    backend.run(_turn_one(1), lambda r, res: None, NullProgress())
    assert backend._proc is proc and backend.engines_started == 1  # one worker per backend, kept across runs
    (child,) = [entry["child"] for entry in _log(fake_vllm) if "child" in entry]
    assert _alive(child) and os.getpgid(child) == proc.pid  # the worker leads a process group of its own
    backend.close()
    backend.close()  # idempotent
    assert proc.poll() == 0 and not _alive(child)


def test_missing_checkpoint_and_adapter_are_input_errors(tmp_path: Path, checkpoint: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        make_backend(_spec(tmp_path / "nope"))
    with pytest.raises(InputError, match="not a PEFT adapter"):
        make_backend(_spec(checkpoint, adapter=str(tmp_path / "nope")))


def test_serve_in_process_and_a_failing_call_does_not_stop_the_worker() -> None:
    engine = Engine(FakeLLM(model="m", enable_lora=False), FakeSamplingParams, FakeLoRARequest, 4096)
    ok = {"id": 0, "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0, "max_tokens": 3, "seed": 0,
          "lora": None, "logprob_choices": None, "verdict_prefix": "[["}
    needs_lora = dict(ok, id=1, lora={"lora_name": "dpo-1", "lora_int_id": 1, "lora_path": "/x/dpo"})
    results = {r["id"]: r for r in run_batch(engine, [ok, needs_lora])}
    # the engine refuses LoRA for every request of the call, so the call is split until each fails or passes alone
    assert results[0]["error"] is None and results[0]["completion_tokens"] == 3
    assert "LoRA is not enabled" in results[1]["error"]

    lines = [json.dumps({"type": "batch", "requests": [ok]}), json.dumps({"type": "shutdown"})]
    stdout = io.StringIO()
    serve(engine, io.StringIO("\n".join(lines) + "\n"), stdout)
    reply = json.loads(stdout.getvalue())
    assert reply["type"] == "results" and reply["results"][0]["text"].startswith("[base] reply")


def test_generation_stage_serves_a_base_and_its_adapters_from_one_engine(fake_vllm: Path, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`compare sft dpo-b0.1 dpo-b0.5` on vllm: one worker for the base (named by a relative path, the adapters'
    base by an absolute one), all turn 1s in one chat call, then all turn 2s."""
    from evalsuite.generate import generate_all
    from evalsuite.records import Question
    from evalsuite.store import RunStore

    monkeypatch.chdir(tmp_path)
    a1, a2 = _adapter(tmp_path, "dpo-b0.1"), _adapter(tmp_path, "dpo-b0.5")
    specs = [ModelSpec(name="sft", backend="vllm", model="sft"),
             ModelSpec(name="dpo-b0.1", backend="vllm", model=str(checkpoint), adapter=str(a1)),
             ModelSpec(name="dpo-b0.5", backend="vllm", model=str(checkpoint), adapter=str(a2))]
    assert len({engine_key(s) for s in specs}) == 1
    questions = [Question(f"q{i}", "writing", (f"first {i}", f"second {i}")) for i in range(3)]

    class _Bar(NullProgress):
        def __enter__(self) -> "_Bar":
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    with RunStore(tmp_path / "run") as store:
        summaries = generate_all(specs, questions, store, progress=lambda d, n: _Bar())
        assert [s.requested for s in summaries] == [6, 6, 6] and [s.errors for s in summaries] == [0, 0, 0]
        for spec in specs:
            answers = store.answers(spec.name).values()
            assert len(answers) == 3 and all(len(a.turns) == 2 for a in answers)
            assert {a.backend for a in answers} == {"vllm"}
    assert len(_loads(fake_vllm)) == 1  # one engine
    calls = _calls(fake_vllm)
    assert [(c["n"], set(c["user_turns"])) for c in calls] == [(9, {1}), (9, {2})]
    names = [sorted({Path(x[2]).name if x else "base" for x in c["loras"]}) for c in calls]
    assert names == [["base", "dpo-b0.1", "dpo-b0.5"]] * 2
    ids = {(Path(x[2]).name, x[1]) for c in calls for x in c["loras"] if x}
    assert len(ids) == 2  # the same engine keeps the same LoRA ids across batches


def test_engine_key_separates_settings_and_interpreters(checkpoint: Path) -> None:
    base = _spec(checkpoint)
    assert engine_key(base) == engine_key(_spec(checkpoint, adapter="x", enable_lora=True, max_lora_rank=64))
    assert engine_key(base) == engine_key(_spec(checkpoint, dtype="auto"))
    assert engine_key(_spec(checkpoint, dtype="bf16")) == engine_key(_spec(checkpoint, dtype="bfloat16"))
    for other in (_spec(checkpoint, engine={"max_model_len": 512}), _spec(checkpoint, python="/opt/vllm/bin/python"),
                  _spec(checkpoint, tensor_parallel_size=2), _spec(checkpoint, dtype="float16")):
        assert engine_key(other) != engine_key(base)


def test_worker_file_imports_only_the_standard_library() -> None:
    """The worker runs under a vLLM venv that holds nothing of evalsuite; vLLM itself is imported inside functions."""
    tree = ast.parse(WORKER.read_text(encoding="utf-8"))
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert top - {"__future__"} <= set(sys.stdlib_module_names)
    lazy = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    lazy |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert lazy - set(sys.stdlib_module_names) - {"__future__"} == {"vllm"}


# ---- choice tokens on real tokenizers ---------------------------------------------------------------------------

_VERDICT_CORPUS = ["The verdict is [[A]] because the answer is better.", "I pick [[B]] here.", "A tie [[C]].",
                   "A good answer. B is bad. C is fine."] * 50


def _sentencepiece_style() -> Any:
    """A BPE tokenizer with SentencePiece's word-start marker (Metaspace "▁", prepended), as Llama/Mistral use."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.train_from_iterator(_VERDICT_CORPUS, trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>"],
                                                                       show_progress=False))
    return tokenizer


def _byte_level() -> Any:
    """A byte-level BPE tokenizer, as GPT-2/Qwen use (the project's tiny models too)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(_VERDICT_CORPUS, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return tokenizer


@pytest.mark.parametrize("build", [_sentencepiece_style, _byte_level], ids=["sentencepiece", "byte-level"])
def test_choice_tokens_are_the_tokens_after_the_prefix(build: Callable[[], Any]) -> None:
    tokenizer = build()

    def encode(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False).ids)

    ids = choice_token_ids(encode, "[[", ["A", "B", "C"])
    # the bare letters, as a model writing "[[A" produces them right after "[[" (no word-start marker)
    assert [tokenizer.id_to_token(i) for i in ids] == ["A", "B", "C"]
    assert [encode(f"[[{c}")[-1] for c in "ABC"] == ids


def test_sentencepiece_word_start_is_not_the_verdict_token() -> None:
    """The bug this replaces: ``encode("A")[0]`` is "▁A" under SentencePiece, never the token after "[["."""
    tokenizer = _sentencepiece_style()

    def encode(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False).ids)

    assert tokenizer.id_to_token(encode("A")[0]) == "▁A"
    assert choice_token_ids(encode, "[[", ["A"]) != [encode("A")[0]]


def test_choices_that_merge_or_clash_are_refused() -> None:
    def encode(text: str) -> list[int]:
        return [ord(c) for c in text]

    with pytest.raises(ValueError, match="share their first token"):
        choice_token_ids(encode, "[[", ["A>B", "A>>B"])
    with pytest.raises(ValueError, match="adds no token"):
        choice_token_ids(encode, "[[", ["", "B"])

    def merging(text: str) -> list[int]:
        return [1] if text == "[[A" else [ord(c) for c in text]

    with pytest.raises(ValueError, match="merge into other tokens"):
        choice_token_ids(merging, "[[", ["A", "B"])
