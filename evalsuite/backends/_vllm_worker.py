"""The vLLM worker process: one engine per base model, driven by JSON lines on stdin/stdout.

Run as ``python -m evalsuite.backends._vllm_worker`` by ``VLLMBackend``; its GPU memory is returned when it exits.

Protocol (one JSON object per line):
  parent -> worker  {"type": "load", "model", "tensor_parallel_size", "enable_lora", "max_lora_rank", "dtype", "seed",
                     "engine_args": {...}}                               answered by {"type": "ready"} or an error
  parent -> worker  {"type": "batch", "requests": [{"id", "messages", "temperature", "max_tokens", "seed",
                     "adapter": {"name", "id", "path"} | null, "logprob_choices": [...] | null, "verdict_prefix"}]}
  worker -> parent  {"type": "results", "results": [{"id", "text", "prompt_tokens", "completion_tokens", "latency",
                     "choice_probs", "error"}]}
  parent -> worker  {"type": "shutdown"} (or EOF)
  worker -> parent  {"type": "error", "kind": "input", "message", "fix"} when the engine cannot be built.

Requests in a batch are grouped by (adapter, mode) and each group is one ``LLM.chat`` call with one ``LoRARequest``
(or none): every vLLM version's ``chat`` accepts a single LoRA request, and vLLM batches the group internally.
Logprob verdict mode continues an assistant message holding the verdict prefix, asks for one token with the top-20
logprobs, and renormalises over the choices' first tokens; a choice outside the top 20 gets probability 0.

``EVALSUITE_VLLM_STAND_IN=1`` swaps vLLM for ``evalsuite.testing.vllm_stand_in`` — for tests only, never for results.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import IO, Any, Callable

from evalsuite.errors import InputError

STAND_IN_ENV = "EVALSUITE_VLLM_STAND_IN"
TOP_LOGPROBS = 20  # vLLM's default cap on returned logprobs (max_logprobs)


@dataclass
class Engine:
    """The engine and the two vLLM constructors the worker needs, so the stand-in can replace all three."""

    llm: Any  # vllm.LLM or StandInVLLMEngine
    sampling_params: Callable[..., Any]  # vllm.SamplingParams
    lora_request: Callable[..., Any]  # vllm.lora.request.LoRARequest


def make_engine(load_msg: dict[str, Any]) -> Engine:
    """Build the engine a ``load`` message describes (vLLM, or the stand-in when ``EVALSUITE_VLLM_STAND_IN=1``)."""
    kwargs: dict[str, Any] = {
        "model": load_msg["model"],
        "tensor_parallel_size": int(load_msg.get("tensor_parallel_size", 1)),
        "enable_lora": bool(load_msg.get("enable_lora", False)),
        "dtype": load_msg.get("dtype", "auto"),
        "seed": int(load_msg.get("seed", 0)),
    }
    if kwargs["enable_lora"]:
        kwargs["max_lora_rank"] = int(load_msg.get("max_lora_rank", 16))
    engine_args = dict(load_msg.get("engine_args") or {})
    if os.environ.get(STAND_IN_ENV) == "1":
        from evalsuite.testing.vllm_stand_in import StandInLoRARequest, StandInSamplingParams, StandInVLLMEngine

        return Engine(StandInVLLMEngine(**kwargs, extra=engine_args), StandInSamplingParams, StandInLoRARequest)
    try:
        import vllm
        from vllm.lora.request import LoRARequest
    except ImportError as exc:
        raise InputError(
            f"the vllm backend needs vLLM, which is not installed here ({exc.name})",
            fix="pip install 'evalsuite[vllm]' (needs CUDA), or use backend = 'hf'",
        ) from exc
    # engine_args (gpu_memory_utilization, max_model_len, ...) pass straight to vLLM and win over the defaults above.
    return Engine(vllm.LLM(**{**kwargs, **engine_args}), vllm.SamplingParams, LoRARequest)


def _result(request_id: int, **fields: Any) -> dict[str, Any]:
    base = {"id": request_id, "text": "", "prompt_tokens": 0, "completion_tokens": 0, "latency": 0.0,
            "choice_probs": None, "error": None}
    base.update(fields)
    return base


def _choice_probs(engine: Engine, request: dict[str, Any], top: Any) -> dict[str, float] | None:
    tokenizer = engine.llm.get_tokenizer()
    choices = list(request["logprob_choices"])
    first_ids = [tokenizer.encode(choice, add_special_tokens=False)[0] for choice in choices]
    if len(set(first_ids)) != len(first_ids):
        raise ValueError(f"logprob choices {choices} share a first token, so their probabilities cannot be told apart")
    probs = [math.exp(top[t].logprob) if t in top else 0.0 for t in first_ids]
    total = sum(probs)
    return None if total <= 0 else {c: p / total for c, p in zip(choices, probs)}


def _run_group(
    engine: Engine, group: list[dict[str, Any]], adapter: dict[str, Any] | None, logprob: bool
) -> list[dict[str, Any]]:
    lora = engine.lora_request(adapter["name"], adapter["id"], adapter["path"]) if adapter else None
    if logprob:
        conversations = [r["messages"] + [{"role": "assistant", "content": r["verdict_prefix"]}] for r in group]
        params = [engine.sampling_params(temperature=0.0, max_tokens=1, logprobs=TOP_LOGPROBS) for _ in group]
        # The reply already starts with the prefix ("[["); the one generated token is the verdict.
        chat_mode = {"add_generation_prompt": False, "continue_final_message": True}
    else:
        conversations = [r["messages"] for r in group]
        params = [
            engine.sampling_params(temperature=r["temperature"], max_tokens=r["max_tokens"], seed=r["seed"])
            for r in group
        ]
        chat_mode = {"add_generation_prompt": True, "continue_final_message": False}
    started = time.perf_counter()
    outputs = engine.llm.chat(conversations, sampling_params=params, use_tqdm=False, lora_request=lora, **chat_mode)
    latency = (time.perf_counter() - started) / len(group)
    results = []
    for request, out in zip(group, outputs):
        completion = out.outputs[0]
        counts = {"prompt_tokens": len(out.prompt_token_ids), "latency": latency}
        if not logprob:
            tokens = len(completion.token_ids)
            results.append(_result(request["id"], text=completion.text, completion_tokens=tokens, **counts))
            continue
        probs = _choice_probs(engine, request, completion.logprobs[0] if completion.logprobs else {})
        if probs is None:
            reason = f"logprob: no verdict choice among the top {TOP_LOGPROBS} tokens"
            results.append(_result(request["id"], error=reason, **counts))
            continue
        best = max(probs, key=lambda c: probs[c])
        closing = request["verdict_prefix"][::-1].translate(str.maketrans("[(<{", "])>}"))
        text = f"{request['verdict_prefix']}{best}{closing if set(request['verdict_prefix']) <= set('[(<{') else ''}"
        results.append(_result(request["id"], text=text, choice_probs=probs, **counts))
    return results


def run_batch(engine: Engine, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answer one batch; a group whose ``chat`` call raises comes back as error results, the worker lives on."""
    groups: dict[tuple[int, bool], list[dict[str, Any]]] = {}
    adapters: dict[int, dict[str, Any] | None] = {}
    for request in requests:
        adapter = request.get("adapter")
        key = (adapter["id"] if adapter else 0, bool(request.get("logprob_choices")))
        groups.setdefault(key, []).append(request)
        adapters[key[0]] = adapter
    results: list[dict[str, Any]] = []
    for (adapter_id, logprob), group in groups.items():
        try:
            results.extend(_run_group(engine, group, adapters[adapter_id], logprob))
        except Exception as exc:  # noqa: BLE001 - a bad prompt must not take the other groups down with it
            reason = f"vllm: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            traceback.print_exc(file=sys.stderr)
            results.extend(_result(r["id"], error=reason) for r in group)
    return results


def _send(out: IO[str], message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def serve(engine: Engine, stdin: IO[str], stdout: IO[str]) -> None:
    """Answer ``batch`` messages until ``shutdown`` or EOF."""
    for line in stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        if message["type"] == "shutdown":
            return
        if message["type"] != "batch":
            raise ValueError(f"unexpected message type {message['type']!r}")
        _send(stdout, {"type": "results", "results": run_batch(engine, message["requests"])})


def main() -> int:
    # The protocol owns the real stdout; everything libraries print (vLLM logs to stdout, C code too) goes to stderr.
    protocol_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    first = sys.stdin.readline()
    if not first:
        return 0
    try:
        engine = make_engine(json.loads(first))
    except InputError as exc:
        message, _, fix = str(exc).partition(" — fix: ")
        _send(protocol_out, {"type": "error", "kind": "input", "message": message, "fix": fix or None})
        return 2
    _send(protocol_out, {"type": "ready"})
    serve(engine, sys.stdin, protocol_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
