"""The ``vllm`` backend through its real worker subprocess, with ``StandInVLLMEngine`` in place of vLLM.

What this covers: the JSON-lines protocol, one worker per backend, turn-1 batch then turn-2 batch, adapters mapped to
LoRA requests with stable ids, results and token counts flowing back, logprob verdicts, crash and missing-vLLM
errors. What it cannot cover: a real vLLM engine (needs CUDA); see the module docstring of evalsuite.backends.vllm.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from evalsuite.backends import ChatRequest, ChatResult, NullProgress, make_backend
from evalsuite.backends._vllm_worker import Engine, run_batch, serve
from evalsuite.backends.vllm import VLLMBackend
from evalsuite.config import ModelSpec
from evalsuite.errors import InputError
from evalsuite.testing.vllm_stand_in import StandInLoRARequest, StandInSamplingParams, StandInVLLMEngine


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Route the worker to the stand-in and return the file its ``chat`` calls are logged to."""
    log = tmp_path / "calls.jsonl"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # worker logs kept after a crash land in tmp_path
    monkeypatch.setenv("EVALSUITE_VLLM_STAND_IN", "1")
    monkeypatch.setenv("EVALSUITE_VLLM_STAND_IN_LOG", str(log))
    monkeypatch.delenv("EVALSUITE_VLLM_STAND_IN_CRASH_ON_CALL", raising=False)
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


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _spec(model: Path, **overrides: object) -> ModelSpec:
    return ModelSpec(name="sft", backend="vllm", model=str(model), **overrides)  # type: ignore[arg-type]


def _turn_one(n: int, **kw: Any) -> list[ChatRequest]:
    return [
        ChatRequest(f"q{i}", ({"role": "user", "content": f"question {i}"},), max_tokens=20, **kw)
        for i in range(n)
    ]


def _two_turns(seen: list[tuple[ChatRequest, ChatResult]]):
    def on_done(request: ChatRequest, result: ChatResult) -> list[ChatRequest]:
        seen.append((request, result))
        if len(request.messages) > 1:
            return []
        reply = {"role": "assistant", "content": result.text}
        messages = request.messages + (reply, {"role": "user", "content": "and why?"})
        return [ChatRequest(key=request.key + "/2", messages=messages, max_tokens=4, meta=request.meta)]

    return on_done


def test_turn_one_batch_then_turn_two_batch(stand_in: Path, checkpoint: Path) -> None:
    seen: list[tuple[ChatRequest, ChatResult]] = []
    with make_backend(_spec(checkpoint)) as backend:  # type: ignore[attr-defined]
        backend.run(_turn_one(3), _two_turns(seen), NullProgress())
    calls = _calls(stand_in)
    assert [c["n"] for c in calls] == [3, 3]
    assert calls[0]["user_turns"] == [1, 1, 1] and calls[1]["user_turns"] == [2, 2, 2]
    assert calls[1]["max_tokens"] == [4, 4, 4] and calls[0]["lora"] is None
    first = {r.key: res for r, res in seen if len(r.messages) == 1}
    for request, result in seen:
        assert result.error is None and result.prompt_tokens > 0 and 0 < result.completion_tokens
        if len(request.messages) > 1:
            assert request.messages[1]["content"] == first[request.key.removesuffix("/2")].text
            assert result.completion_tokens == 4 and result.text.startswith("[base] reply")


def test_progress_counts_follow_ups(stand_in: Path, checkpoint: Path) -> None:
    class Recorder:
        advanced = added = 0

        def advance(self, n: int = 1, *, error: bool = False) -> None:
            self.advanced += n

        def add_total(self, n: int) -> None:
            self.added += n

    progress = Recorder()
    with make_backend(_spec(checkpoint)) as backend:  # type: ignore[attr-defined]
        backend.run(_turn_one(2), _two_turns([]), progress)
    assert (progress.added, progress.advanced) == (2, 4)


def test_adapters_become_lora_requests_with_stable_ids(stand_in: Path, checkpoint: Path, tmp_path: Path) -> None:
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
    calls = _calls(stand_in)
    first_run, second_run = calls[:3], calls[3:]
    loras = {tuple(c["lora"]) for c in first_run}
    assert loras == {
        ("dpo-1", 1, str(dpo.resolve())), ("simpo-2", 2, str(simpo.resolve())), ("kto-3", 3, str(default.resolve()))
    }
    assert {tuple(c["lora"]) for c in second_run} == loras
    assert sorted(c["n"] for c in first_run) == [1, 1, 2]  # one chat call per adapter, dpo's two requests together
    assert results["a"].text.startswith("[dpo-1]") and results["c"].text.startswith("[kto-3]")


def test_engine_gets_lora_settings_from_the_adapters(stand_in: Path, checkpoint: Path, tmp_path: Path) -> None:
    big = _adapter(tmp_path, "big", rank=24)
    backend = VLLMBackend.from_spec(_spec(checkpoint, adapter=str(big)))
    load: dict = {}
    original = backend._exchange

    def spy(message: dict, *, phase: str) -> dict:
        if message["type"] == "load":
            load.update(message)
        return original(message, phase=phase)

    backend._exchange = spy  # type: ignore[method-assign]
    with backend:
        backend.run(_turn_one(1), lambda r, res: None, NullProgress())
    assert load["enable_lora"] is True and load["max_lora_rank"] == 32 and load["seed"] == 0


def test_logprob_verdicts_are_distributions(stand_in: Path, checkpoint: Path) -> None:
    requests = [
        ChatRequest(key=f"j{i}", messages=({"role": "user", "content": f"judge {i}"},), logprob_choices=("A", "B", "C"))
        for i in range(3)
    ]
    results: dict[str, ChatResult] = {}
    with make_backend(_spec(checkpoint)) as backend:  # type: ignore[attr-defined]
        backend.run(requests, lambda r, res: results.__setitem__(r.key, res), NullProgress())
    calls = _calls(stand_in)
    assert calls[0]["continue_final_message"] is True and calls[0]["max_tokens"] == [1, 1, 1]
    for result in results.values():
        assert result.choice_probs is not None and sum(result.choice_probs.values()) == pytest.approx(1.0)
        assert result.text == f"[[{max(result.choice_probs, key=result.choice_probs.__getitem__)}]]"


def test_worker_crash_is_a_clear_error(stand_in: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSUITE_VLLM_STAND_IN_CRASH_ON_CALL", "2")  # dies on the turn-2 batch
    backend = make_backend(_spec(checkpoint))
    seen: list[tuple[ChatRequest, ChatResult]] = []
    with pytest.raises(InputError) as info:
        backend.run(_turn_one(2), _two_turns(seen), NullProgress())
    message = str(info.value)
    assert "exited with code 3" in message and "generating a batch of 2" in message and "out of memory" in message
    assert "worker log" in message
    assert len(seen) == 2  # turn 1 results landed before the crash
    assert backend._proc is None  # type: ignore[attr-defined]


def test_missing_vllm_says_how_to_install(monkeypatch: pytest.MonkeyPatch, checkpoint: Path) -> None:
    try:
        import vllm  # noqa: F401

        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    monkeypatch.delenv("EVALSUITE_VLLM_STAND_IN", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(checkpoint.parent))
    with pytest.raises(InputError, match=r"pip install 'evalsuite\[vllm\]' \(needs CUDA\)"):
        make_backend(_spec(checkpoint)).run(_turn_one(1), lambda r, res: None, NullProgress())


def test_close_ends_the_worker(stand_in: Path, checkpoint: Path) -> None:
    backend = make_backend(_spec(checkpoint))
    backend.run(_turn_one(1), lambda r, res: None, NullProgress())
    proc = backend._proc  # type: ignore[attr-defined]
    backend.run(_turn_one(1), lambda r, res: None, NullProgress())
    assert backend._proc is proc  # type: ignore[attr-defined]  # one worker per backend, kept across runs
    backend.close()  # type: ignore[attr-defined]
    assert proc.poll() == 0


def test_missing_checkpoint_and_adapter_are_input_errors(tmp_path: Path, checkpoint: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        make_backend(_spec(tmp_path / "nope"))
    with pytest.raises(InputError, match="not a PEFT adapter"):
        make_backend(_spec(checkpoint, adapter=str(tmp_path / "nope")))


def test_serve_in_process_and_a_failing_group_does_not_stop_the_worker() -> None:
    engine = Engine(StandInVLLMEngine(model="m", enable_lora=False), StandInSamplingParams, StandInLoRARequest)
    ok = {"id": 0, "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0, "max_tokens": 3, "seed": 0,
          "adapter": None, "logprob_choices": None, "verdict_prefix": "[["}
    needs_lora = dict(ok, id=1, adapter={"name": "dpo-1", "id": 1, "path": "/x/dpo"})
    results = {r["id"]: r for r in run_batch(engine, [ok, needs_lora])}
    assert results[0]["error"] is None and results[0]["completion_tokens"] == 3
    assert "LoRA is not enabled" in results[1]["error"]

    lines = [json.dumps({"type": "batch", "requests": [ok]}), json.dumps({"type": "shutdown"})]
    stdin = io.StringIO("\n".join(lines) + "\n")
    stdout = io.StringIO()
    serve(engine, stdin, stdout)
    reply = json.loads(stdout.getvalue())
    assert reply["type"] == "results" and reply["results"][0]["text"].startswith("[base] reply")


def test_generation_stage_serves_a_base_and_its_adapters_from_one_engine(stand_in: Path, checkpoint: Path, tmp_path: Path) -> None:
    """`compare sft dpo-b0.1 dpo-b0.5` on vllm: one worker for the base, adapters as LoRA requests, turn 1s then turn 2s."""
    from evalsuite.generate import generate_all
    from evalsuite.records import Question
    from evalsuite.store import RunStore

    a1, a2 = _adapter(tmp_path, "dpo-b0.1"), _adapter(tmp_path, "dpo-b0.5")
    specs = [_spec(checkpoint), ModelSpec(name="dpo-b0.1", backend="vllm", model=str(checkpoint), adapter=str(a1)),
             ModelSpec(name="dpo-b0.5", backend="vllm", model=str(checkpoint), adapter=str(a2))]
    questions = [Question(f"q{i}", "writing", (f"first {i}", f"second {i}")) for i in range(3)]

    class _Bar(NullProgress):
        def __enter__(self) -> "_Bar":
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    with RunStore(tmp_path / "run") as store:
        summaries = generate_all(specs, questions, store, progress=lambda d, n: _Bar())
        assert [s.requested for s in summaries] == [6, 6, 6]
        for spec in specs:
            assert all(len(a.turns) == 2 for a in store.answers(spec.name).values())
    calls = _calls(stand_in)
    # batch 1: all turn-1 prompts, one chat call per adapter group; batch 2: all turn-2 prompts, likewise
    assert [(c["n"], set(c["user_turns"])) for c in calls] == [(3, {1})] * 3 + [(3, {2})] * 3
    loras = [c["lora"] for c in calls]
    assert loras[:3] == loras[3:]  # the same engine keeps the same LoRA ids across batches
    assert sorted(Path(x[2]).name if x else "base" for x in loras[:3]) == ["base", "dpo-b0.1", "dpo-b0.5"]
    assert len({x[1] for x in loras[:3] if x}) == 2  # distinct LoRA ids
