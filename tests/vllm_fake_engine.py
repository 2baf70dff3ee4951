"""``StandInVLLMEngine``: a test double for the subset of ``vllm.LLM`` the vLLM worker uses. Tests only.

It is NOT vLLM and generates no real text: replies are deterministic strings derived from the conversation, so tests
can drive the real worker subprocess and protocol on a machine without CUDA. It mimics exactly what the worker
touches: ``LLM.chat(messages, sampling_params=..., use_tqdm=..., lora_request=..., add_generation_prompt=...,
continue_final_message=...)`` returning objects with ``.prompt_token_ids``, ``.outputs[0].text``,
``.outputs[0].token_ids`` and ``.outputs[0].logprobs``; ``LLM.get_tokenizer().encode``; and the constructors of
``SamplingParams`` and ``LoRARequest`` (keyword names as in vLLM).

Every ``chat`` call is recorded in ``calls`` and, when ``EVALSUITE_VLLM_STAND_IN_LOG`` names a file, appended to it
as a JSON line (the worker runs in a subprocess, so that file is how a test sees the calls).
``EVALSUITE_VLLM_STAND_IN_CRASH_ON_CALL=N`` makes the N-th ``chat`` call kill the process, to test crash handling.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass
class StandInSamplingParams:
    """The ``vllm.SamplingParams`` keywords the worker passes."""

    temperature: float = 1.0
    max_tokens: int | None = 16
    seed: int | None = None
    logprobs: int | None = None


@dataclass(frozen=True)
class StandInLoRARequest:
    """``vllm.lora.request.LoRARequest(lora_name, lora_int_id, lora_path)``."""

    lora_name: str
    lora_int_id: int
    lora_path: str = ""


@dataclass(frozen=True)
class StandInLogprob:
    logprob: float


@dataclass
class StandInCompletion:
    text: str
    token_ids: list[int]
    logprobs: list[dict[int, StandInLogprob]] | None = None


@dataclass
class StandInRequestOutput:
    prompt_token_ids: list[int]
    outputs: list[StandInCompletion]


class StandInTokenizer:
    """One token per character: enough for the worker to find a verdict choice's first token id."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(ch) for ch in text]


@dataclass
class StandInVLLMEngine:
    """Deterministic stand-in for ``vllm.LLM``; construct with the keywords the worker gives ``vllm.LLM``."""

    model: str
    tensor_parallel_size: int = 1
    enable_lora: bool = False
    max_lora_rank: int = 16
    dtype: str = "auto"
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)

    def get_tokenizer(self, lora_request: StandInLoRARequest | None = None) -> StandInTokenizer:
        return StandInTokenizer()

    def chat(
        self,
        messages: Sequence[Sequence[dict[str, str]]],
        sampling_params: StandInSamplingParams | Sequence[StandInSamplingParams] | None = None,
        use_tqdm: bool = True,
        lora_request: StandInLoRARequest | None = None,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
    ) -> list[StandInRequestOutput]:
        conversations = [list(m) for m in messages]
        params = (
            list(sampling_params) if isinstance(sampling_params, (list, tuple))
            else [sampling_params or StandInSamplingParams()] * len(conversations)
        )
        if len(params) != len(conversations):
            raise ValueError("sampling_params list must match the number of conversations")  # as vLLM checks
        if lora_request is not None and not self.enable_lora:
            raise ValueError("LoRA is not enabled!")  # vLLM refuses adapters on an engine built without LoRA
        self._record(conversations, params, lora_request, continue_final_message)
        return [self._answer(c, p, lora_request, continue_final_message) for c, p in zip(conversations, params)]

    def _record(
        self,
        conversations: list[list[dict[str, str]]],
        params: list[StandInSamplingParams],
        lora_request: StandInLoRARequest | None,
        continue_final_message: bool,
    ) -> None:
        call = {
            "n": len(conversations),
            "user_turns": [sum(m["role"] == "user" for m in c) for c in conversations],
            "lora": None if lora_request is None
            else [lora_request.lora_name, lora_request.lora_int_id, lora_request.lora_path],
            "max_tokens": [p.max_tokens for p in params],
            "temperatures": [p.temperature for p in params],
            "continue_final_message": continue_final_message,
        }
        self.calls.append(call)
        log = os.environ.get("EVALSUITE_VLLM_STAND_IN_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(call) + "\n")
        crash_on = os.environ.get("EVALSUITE_VLLM_STAND_IN_CRASH_ON_CALL")
        if crash_on and len(self.calls) == int(crash_on):
            print("stand-in: simulated CUDA error: out of memory", file=sys.stderr, flush=True)
            os._exit(3)  # like a hard crash: no cleanup, no reply

    def _answer(
        self,
        conversation: list[dict[str, str]],
        params: StandInSamplingParams,
        lora_request: StandInLoRARequest | None,
        continue_final_message: bool,
    ) -> StandInRequestOutput:
        prompt_words = sum(len(m["content"].split()) + 2 for m in conversation)  # +2: role markers
        digest = hashlib.sha256(json.dumps([conversation, params.seed, params.temperature]).encode()).hexdigest()
        if continue_final_message and params.logprobs:
            # A fixed, prompt-dependent distribution over "A".."T" (the top-20 logprobs vLLM would return).
            weights = [int(digest[i : i + 2], 16) + 1 for i in range(0, 40, 2)]
            total = sum(weights)
            top = {ord("A") + i: StandInLogprob(math.log(w / total)) for i, w in enumerate(weights)}
            best = max(top, key=lambda t: top[t].logprob)
            return StandInRequestOutput(list(range(prompt_words)), [StandInCompletion(chr(best), [best], [top])])
        adapter = lora_request.lora_name if lora_request else "base"
        last_user = next((m["content"] for m in reversed(conversation) if m["role"] == "user"), "")
        words = f"[{adapter}] reply {digest[:8]} to: {last_user}".split()[: params.max_tokens or None]
        completion = StandInCompletion(" ".join(words), list(range(len(words))))
        return StandInRequestOutput(list(range(prompt_words)), [completion])


__all__ = [
    "StandInCompletion", "StandInLoRARequest", "StandInLogprob", "StandInRequestOutput", "StandInSamplingParams",
    "StandInTokenizer", "StandInVLLMEngine",
]
