"""The ``hf`` backend on a tiny local random-weight Qwen2: batching, follow-ups, seeds, LoRA, logprob verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from evalsuite.backends import ChatRequest, ChatResult, NullProgress, make_backend  # noqa: E402
from evalsuite.backends.hf import HFBackend  # noqa: E402
from evalsuite.config import ModelSpec  # noqa: E402
from evalsuite.demo.tiny import build_tiny_model  # noqa: E402
from evalsuite.errors import InputError  # noqa: E402

pytestmark = pytest.mark.slow

PROMPTS = [
    "Hi",
    "Write a short poem about the sea.",
    "Solve 3x + 5 = 20 and explain each step carefully, then check the answer.",
    "Compare both answers.",
    "The model explains the proof with an example and says why it holds for every case we care about.",
]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("hf") / "tiny", hidden_size=64, num_layers=2, seed=0)


@pytest.fixture(scope="session")
def adapter_dir(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:  # LoRA B starts at zero (a no-op adapter); perturb it so the adapter matters
                param.normal_(0.0, 0.5)
    out = tmp_path_factory.mktemp("hf") / "adapter"
    model.save_pretrained(out)
    return out


def _spec(model: Path | str, **overrides: object) -> ModelSpec:
    return ModelSpec(name="tiny", backend="hf", model=str(model), device="cpu", **overrides)  # type: ignore[arg-type]


def _requests(temperature: float = 0.0, max_tokens: int = 6, prompts: Iterable[str] = PROMPTS) -> list[ChatRequest]:
    return [
        ChatRequest(
            key=f"q{i}", messages=({"role": "user", "content": text},), temperature=temperature, max_tokens=max_tokens
        )
        for i, text in enumerate(prompts)
    ]


def _run(backend: HFBackend, requests: list[ChatRequest]) -> dict[str, ChatResult]:
    results: dict[str, ChatResult] = {}

    def on_done(request: ChatRequest, result: ChatResult) -> None:
        results[request.key] = result

    backend.run(requests, on_done, NullProgress())
    return results


class RecordingProgress:
    def __init__(self) -> None:
        self.advanced = 0
        self.added = 0

    def advance(self, n: int = 1, *, error: bool = False) -> None:
        self.advanced += n

    def add_total(self, n: int) -> None:
        self.added += n


def test_turn_two_follow_up_sees_turn_one_reply(tiny_dir: Path) -> None:
    backend = make_backend(_spec(tiny_dir, batch_size=4))
    seen: list[tuple[ChatRequest, ChatResult]] = []

    def on_done(request: ChatRequest, result: ChatResult) -> list[ChatRequest]:
        seen.append((request, result))
        if request.meta.get("turn") == 2:
            return []
        reply = {"role": "assistant", "content": result.text}
        follow_up = request.messages + (reply, {"role": "user", "content": "Why?"})
        return [ChatRequest(key=request.key + "/2", messages=follow_up, max_tokens=4, meta={"turn": 2})]

    progress = RecordingProgress()
    backend.run(_requests(), on_done, progress)
    first = {r.key: res for r, res in seen if r.meta.get("turn") != 2}
    second = [(r, res) for r, res in seen if r.meta.get("turn") == 2]
    assert len(first) == len(PROMPTS) and len(second) == len(PROMPTS)
    assert [r.meta.get("turn") for r, _ in seen][: len(PROMPTS)] == [None] * len(PROMPTS)  # all turn 1s, then turn 2s
    for request, result in second:
        assert request.messages[1]["content"] == first[request.key.removesuffix("/2")].text
        assert result.prompt_tokens > first[request.key.removesuffix("/2")].prompt_tokens
        assert 0 < result.completion_tokens <= 4
    assert progress.added == len(PROMPTS) and progress.advanced == 2 * len(PROMPTS)


def test_batched_greedy_equals_one_at_a_time(tiny_dir: Path) -> None:
    batched = _run(make_backend(_spec(tiny_dir, batch_size=8)), _requests(max_tokens=8))
    single = _run(make_backend(_spec(tiny_dir, batch_size=1)), _requests(max_tokens=8))
    assert {k: r.text for k, r in batched.items()} == {k: r.text for k, r in single.items()}
    # Prompt counts exclude padding: the same in a mixed-length batch as alone.
    assert {k: r.prompt_tokens for k, r in batched.items()} == {k: r.prompt_tokens for k, r in single.items()}
    assert len({r.prompt_tokens for r in batched.values()}) == len(PROMPTS)
    assert all(r.completion_tokens == 8 and r.latency > 0 and r.error is None for r in batched.values())


def test_seeded_sampling_reproduces_and_seed_matters(tiny_dir: Path) -> None:
    requests = _requests(temperature=1.0, max_tokens=10)
    first = _run(make_backend(_spec(tiny_dir, seed=7)), requests)
    again = _run(make_backend(_spec(tiny_dir, seed=7)), requests)
    other = _run(make_backend(_spec(tiny_dir, seed=8)), requests)
    greedy = _run(make_backend(_spec(tiny_dir, seed=7)), _requests(max_tokens=10))
    assert {k: r.text for k, r in first.items()} == {k: r.text for k, r in again.items()}
    assert {k: r.text for k, r in first.items()} != {k: r.text for k, r in other.items()}
    assert {k: r.text for k, r in first.items()} != {k: r.text for k, r in greedy.items()}


def test_mixed_temperatures_in_one_run(tiny_dir: Path) -> None:
    requests = _requests(max_tokens=5)[:2] + [
        ChatRequest(key="hot", messages=({"role": "user", "content": "Hi"},), temperature=0.7, max_tokens=3)
    ]
    results = _run(make_backend(_spec(tiny_dir)), requests)
    assert results["hot"].completion_tokens == 3 and results["q0"].completion_tokens == 5


def test_lora_adapter_changes_outputs(tiny_dir: Path, adapter_dir: Path) -> None:
    base = _run(make_backend(_spec(tiny_dir)), _requests(max_tokens=8))
    tuned = _run(make_backend(_spec(tiny_dir, adapter=str(adapter_dir))), _requests(max_tokens=8))
    assert {k: r.text for k, r in base.items()} != {k: r.text for k, r in tuned.items()}


def test_request_for_another_adapter_is_refused(tiny_dir: Path, adapter_dir: Path) -> None:
    request = ChatRequest(key="x", messages=({"role": "user", "content": "Hi"},), meta={"adapter": str(adapter_dir)})
    with pytest.raises(InputError, match="adapter"):
        _run(make_backend(_spec(tiny_dir)), [request])


def test_logprob_verdict_is_a_distribution_over_choices(tiny_dir: Path) -> None:
    judge = [
        ChatRequest(key=f"j{i}", messages=({"role": "user", "content": text},), logprob_choices=("A", "B", "C"))
        for i, text in enumerate(PROMPTS)
    ]
    batched = _run(make_backend(_spec(tiny_dir, batch_size=8)), judge)
    single = _run(make_backend(_spec(tiny_dir, batch_size=1)), judge)
    for key, result in batched.items():
        probs = result.choice_probs
        assert probs is not None and set(probs) == {"A", "B", "C"}
        assert sum(probs.values()) == pytest.approx(1.0)
        assert result.text == f"[[{max(probs, key=lambda c: probs[c])}]]"
        assert result.completion_tokens == 0
        # Left padding with corrected positions: a prompt's verdict does not depend on its batch mates.
        for choice, p in probs.items():
            assert p == pytest.approx(single[key].choice_probs[choice], abs=1e-4)  # type: ignore[index]


def test_logprob_choices_sharing_a_first_token_are_refused(tiny_dir: Path) -> None:
    request = ChatRequest(key="j", messages=({"role": "user", "content": "Hi"},), logprob_choices=("A", "A\u2603"))
    with pytest.raises(InputError, match="first token"):
        _run(make_backend(_spec(tiny_dir)), [request])


def test_stops_at_eos_and_counts_it(tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from evalsuite.demo.tiny import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # all logits equal: greedy picks id 0, which is <|endoftext|>
    model.save_pretrained(tmp_path / "mute")
    load_tokenizer(tiny_dir).save_pretrained(tmp_path / "mute")
    results = _run(make_backend(_spec(tmp_path / "mute")), _requests(max_tokens=8))
    assert all(r.text == "" and r.completion_tokens == 1 for r in results.values())


def test_model_loads_once_across_runs(tiny_dir: Path) -> None:
    backend = make_backend(_spec(tiny_dir))
    _run(backend, _requests(max_tokens=2)[:1])
    model = backend._model
    _run(backend, _requests(max_tokens=2)[1:2])
    assert backend._model is model


def test_missing_model_dir_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist") as info:
        make_backend(_spec(tmp_path / "no-such-checkpoint"))
    assert "tiny" in str(info.value) and "fix:" in str(info.value)


def test_missing_adapter_is_an_input_error(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="adapter"):
        make_backend(_spec(tiny_dir, adapter=str(tmp_path / "nope")))


def test_checkpoint_without_weights_is_an_input_error(tiny_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny_dir / name).exists():
            (broken / name).write_bytes((tiny_dir / name).read_bytes())
    with pytest.raises(InputError, match="cannot load model"):
        _run(make_backend(_spec(broken)), _requests(max_tokens=2)[:1])
