"""``FakeLLM``: a test double for the subset of ``vllm.LLM`` the vLLM worker uses. Tests only.

It is NOT vLLM and generates no real text: replies are deterministic strings derived from the conversation, so the
fast tests can drive the real worker subprocess and protocol in seconds. The real engine is exercised by
tests/test_vllm_real.py. The worker finds this double as ``vllm`` only because tests put ``tests/fake_vllm`` (a
package named ``vllm`` re-exporting these classes) on the worker's ``PYTHONPATH``; nothing in evalsuite refers to it.

It mimics what the worker touches: ``LLM(**kwargs)`` (unknown keywords raise ``TypeError``, as vLLM's EngineArgs
do), ``LLM.chat(conversations, sampling_params=[...], use_tqdm=..., lora_request=[...], add_generation_prompt=...,
continue_final_message=...)`` returning objects with ``.prompt_token_ids``, ``.outputs[0].text``,
``.outputs[0].token_ids`` and ``.outputs[0].logprobs``; ``LLM.get_tokenizer()`` (``encode``,
``apply_chat_template``; one token per character); ``LLM.model_config.max_model_len``; the constructors of
``SamplingParams`` and ``LoRARequest``. Like vLLM 0.32, one over-long prompt makes the whole ``chat`` call raise.

Environment (read in the worker process): ``FAKE_VLLM_LOG`` names a file each ``chat`` call is appended to as a JSON
line; ``FAKE_VLLM_CRASH_ON_CALL=N`` kills the process on the N-th call; ``FAKE_VLLM_CHILD=1`` starts a child
process (as vLLM's engine core is) whose pid is logged, so tests can check it dies with the worker's group.
A conversation containing ``REJECT-ME`` makes the call raise ``ValueError`` without the length pre-check seeing it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass
class FakeSamplingParams:
    """The ``vllm.SamplingParams`` keywords the worker passes."""

    temperature: float = 1.0
    max_tokens: int | None = 16
    seed: int | None = None
    logprobs: int | None = None


@dataclass(frozen=True)
class FakeLoRARequest:
    """``vllm.lora.request.LoRARequest(lora_name, lora_int_id, lora_path)``."""

    lora_name: str
    lora_int_id: int
    lora_path: str = ""


@dataclass(frozen=True)
class FakeLogprob:
    logprob: float


@dataclass
class FakeCompletion:
    text: str
    token_ids: list[int]
    logprobs: list[dict[int, FakeLogprob]] | None = None


@dataclass
class FakeRequestOutput:
    prompt_token_ids: list[int]
    outputs: list[FakeCompletion]


def render(conversation: Sequence[dict[str, str]], add_generation_prompt: bool, continue_final_message: bool) -> str:
    """A ChatML-like rendering; a continued final message is left open."""
    parts = [f"<{m['role']}>{m['content']}</{m['role']}>" for m in conversation]
    if continue_final_message:
        last = conversation[-1]
        parts[-1] = f"<{last['role']}>{last['content']}"
    return "".join(parts) + ("<assistant>" if add_generation_prompt else "")


class FakeTokenizer:
    """One token per character: ``encode("[[A")`` is three tokens, so the verdict token follows the prefix's."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(ch) for ch in text]

    def apply_chat_template(
        self, conversation: Sequence[dict[str, str]], tokenize: bool = False, add_generation_prompt: bool = False,
        continue_final_message: bool = False,
    ) -> str:
        return render(conversation, add_generation_prompt, continue_final_message)


@dataclass
class FakeModelConfig:
    max_model_len: int


@dataclass
class FakeLLM:
    """Deterministic stand-in for ``vllm.LLM``; takes the keywords the worker gives ``vllm.LLM``."""

    model: str
    tensor_parallel_size: int = 1
    enable_lora: bool = False
    max_lora_rank: int = 16
    dtype: str = "auto"
    seed: int = 0
    max_model_len: int = 4096
    gpu_memory_utilization: float = 0.9
    enforce_eager: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.dtype not in ("auto", "half", "float16", "bfloat16", "float", "float32"):
            raise ValueError(f"Unknown dtype: {self.dtype}")  # as vLLM's ModelConfig refuses
        self.model_config = FakeModelConfig(self.max_model_len)
        self._log({"loaded": self.model, "pid": os.getpid(), "enable_lora": self.enable_lora,
                   "max_lora_rank": self.max_lora_rank, "max_model_len": self.max_model_len, "dtype": self.dtype})
        if os.environ.get("FAKE_VLLM_CHILD") == "1":
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            self._log({"child": child.pid})

    def get_tokenizer(self) -> FakeTokenizer:
        return FakeTokenizer()

    def chat(
        self,
        messages: Sequence[Sequence[dict[str, str]]],
        sampling_params: FakeSamplingParams | Sequence[FakeSamplingParams] | None = None,
        use_tqdm: bool = True,
        lora_request: FakeLoRARequest | Sequence[FakeLoRARequest | None] | None = None,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
    ) -> list[FakeRequestOutput]:
        conversations = [list(m) for m in messages]
        params: list[FakeSamplingParams]
        if sampling_params is None or isinstance(sampling_params, FakeSamplingParams):
            params = [sampling_params or FakeSamplingParams()] * len(conversations)
        else:
            params = list(sampling_params)
        loras: list[FakeLoRARequest | None]
        if lora_request is None or isinstance(lora_request, FakeLoRARequest):
            loras = [lora_request] * len(conversations)
        else:
            loras = list(lora_request)
        if len(params) != len(conversations) or len(loras) != len(conversations):
            raise ValueError("per-request lists must match the number of conversations")  # as vLLM checks
        if any(lora is not None for lora in loras) and not self.enable_lora:
            raise ValueError("LoRA is not enabled!")  # vLLM refuses adapters on an engine built without LoRA
        prompts = [render(c, add_generation_prompt, continue_final_message) for c in conversations]
        for prompt in prompts:  # vLLM 0.32 validates every prompt first and fails the whole call
            if len(prompt) > self.max_model_len:
                raise ValueError(f"This model's maximum context length is {self.max_model_len} tokens.")
            if "REJECT-ME" in prompt:
                raise ValueError("request rejected by the fake engine")
        self._record(conversations, params, loras, continue_final_message)
        return [
            self._answer(c, p, lora, continue_final_message, len(prompt))
            for c, p, lora, prompt in zip(conversations, params, loras, prompts)
        ]

    def _log(self, entry: dict[str, Any]) -> None:
        log = os.environ.get("FAKE_VLLM_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")

    def _record(
        self,
        conversations: list[list[dict[str, str]]],
        params: list[FakeSamplingParams],
        loras: list[FakeLoRARequest | None],
        continue_final_message: bool,
    ) -> None:
        call = {
            "n": len(conversations),
            "user_turns": [sum(m["role"] == "user" for m in c) for c in conversations],
            "loras": [None if lora is None else [lora.lora_name, lora.lora_int_id, lora.lora_path] for lora in loras],
            "max_tokens": [p.max_tokens for p in params],
            "temperatures": [p.temperature for p in params],
            "continue_final_message": continue_final_message,
        }
        self.calls.append(call)
        self._log(call)
        crash_on = os.environ.get("FAKE_VLLM_CRASH_ON_CALL")
        if crash_on and len(self.calls) == int(crash_on):
            print("fake vllm: simulated CUDA error: out of memory", file=sys.stderr, flush=True)
            os._exit(3)  # like a hard crash: no cleanup, no reply

    def _answer(
        self,
        conversation: list[dict[str, str]],
        params: FakeSamplingParams,
        lora_request: FakeLoRARequest | None,
        continue_final_message: bool,
        prompt_tokens: int,
    ) -> FakeRequestOutput:
        digest = hashlib.sha256(json.dumps([conversation, params.seed, params.temperature]).encode()).hexdigest()
        if continue_final_message and params.logprobs:
            # A fixed, prompt-dependent distribution over "A".."T" (the top-20 logprobs vLLM would return).
            weights = [int(digest[i : i + 2], 16) + 1 for i in range(0, 40, 2)]
            total = sum(weights)
            top = {ord("A") + i: FakeLogprob(math.log(w / total)) for i, w in enumerate(weights)}
            best = max(top, key=lambda t: top[t].logprob)
            return FakeRequestOutput(list(range(prompt_tokens)), [FakeCompletion(chr(best), [best], [top])])
        adapter = lora_request.lora_name if lora_request else "base"
        last_user = next((m["content"] for m in reversed(conversation) if m["role"] == "user"), "")
        words = f"[{adapter}] reply {digest[:8]} to: {last_user}".split()[: params.max_tokens or None]
        completion = FakeCompletion(" ".join(words), list(range(len(words))))
        return FakeRequestOutput(list(range(prompt_tokens)), [completion])


__all__ = [
    "FakeCompletion", "FakeLLM", "FakeLoRARequest", "FakeLogprob", "FakeRequestOutput", "FakeSamplingParams",
    "FakeTokenizer",
]
