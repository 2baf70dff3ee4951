"""Any OpenAI-compatible endpoint (OpenAI, ``vllm serve``, SGLang, llama.cpp, Ollama) through the async ``openai`` SDK.

Concurrency is a fixed pool of workers pulling from one queue, so a pair's two orders, queued side by side, are in
flight together. Retries are the SDK's own policy (exponential backoff with jitter that honours ``retry-after``):
one retry policy, in one place. What no retry can fix (unreachable endpoint, 401, unknown model) stops the run with
an ``InputError``; everything already finished has been handed to ``on_done`` and stored.

Logprob verdicts (``ChatRequest.logprob_choices``) come only from the verdict position, never from a guess:

- **prefill**, on servers that continue a final assistant message (vLLM, SGLang: ``owned_by`` in ``GET /models``):
  the verdict prefix (``[[``) is sent as the assistant turn with ``continue_final_message=True,
  add_generation_prompt=False`` and ``max_tokens=1``; the first generated token's ``top_logprobs`` are the verdict
  distribution;
- **generate**, elsewhere: the judge writes its text and only the ``top_logprobs`` of the token right after the
  *last* prefix in it are read.

No prefix in the output, or no choice among the alternatives at that position, is a result with no probability
mass on any choice, which the judge stage stores as ``error`` with reason ``parse`` (never a verdict).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from typing import Any, Sequence

import openai

from evalsuite.backends._base import ChatRequest, ChatResult, OnDone, Progress
from evalsuite.config import ModelSpec
from evalsuite.errors import InputError

# Sent when a model's api_key_env is unset: local servers ignore the key, and the SDK refuses an empty one.
DUMMY_API_KEY = "sk-evalsuite-no-key"
# The OpenAI API's maximum (and vLLM's default --max-logprobs): the most alternatives a verdict position can offer.
TOP_LOGPROBS = 20
# ``owned_by`` of servers whose chat endpoint continues a final assistant message (``continue_final_message``).
PREFILL_SERVERS = frozenset({"vllm", "sglang"})


class OpenAIBackend:
    name = "openai"

    def __init__(self, spec: ModelSpec) -> None:
        if not spec.base_url and not os.environ.get("OPENAI_BASE_URL") and not spec.api_key_env:
            # api.openai.com without a key can only fail; say so before any call
            raise InputError(
                f"model {spec.name!r} has backend 'openai' but no base_url and no api_key_env",
                fix=f"set models.{spec.name}.base_url (e.g. http://127.0.0.1:8000/v1) or api_key_env",
            )
        self.spec = spec
        self._api_key = DUMMY_API_KEY
        if spec.api_key_env:
            self._api_key = os.environ.get(spec.api_key_env) or DUMMY_API_KEY
        self.prefill = False  # set by the preflight: the server continues a final assistant message

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> "OpenAIBackend":
        return cls(spec)

    def run(self, requests: Sequence[ChatRequest], on_done: OnDone, progress: Progress) -> None:
        if not requests:
            return
        asyncio.run(self._run(requests, on_done, progress))

    def close(self) -> None:
        """Nothing to release: each ``run`` opens and closes its own HTTP client."""

    def _client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.spec.base_url,
            api_key=self._api_key,
            max_retries=self.spec.max_retries,
            timeout=self.spec.timeout,
            # aiohttp transport: ~45% less CPU per call than the SDK's default one
            http_client=openai.DefaultAioHttpClient(),
        )

    async def _preflight(self, client: openai.AsyncOpenAI) -> None:
        """Fail in a second, not after a full retry schedule, when the endpoint is unreachable or refuses the key;
        learn from the model list whether the server can continue a prefilled verdict prefix."""
        try:
            listed = await client.with_options(max_retries=0, timeout=min(10.0, self.spec.timeout)).models.list()
            owners = {m.id: str(getattr(m, "owned_by", "") or "") for m in listed.data}
            self.prefill = owners.get(self.spec.model, next(iter(owners.values()), "")) in PREFILL_SERVERS
        except openai.APIConnectionError as exc:
            if _is_connect_failure(exc):
                raise self._unreachable(exc) from None
            return  # slow is not down: the real calls have their own timeout and retries
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise self._auth_error(exc) from None
        except openai.APIError:
            return  # a server without GET /models is fine

    def _unreachable(self, exc: openai.APIConnectionError) -> InputError:
        return InputError(
            f"cannot reach {self.spec.base_url or 'the OpenAI API'} for model {self.spec.name!r} ({exc.__cause__ or exc})",
            fix="start the server or correct base_url; finished calls are saved, re-run the same command to resume",
        )

    def _auth_error(self, exc: openai.APIStatusError) -> InputError:
        return InputError(
            f"endpoint {self.spec.base_url} refused model {self.spec.name!r}: HTTP {exc.status_code}",
            fix=f"export the key in ${self.spec.api_key_env}" if self.spec.api_key_env else f"set models.{self.spec.name}.api_key_env",
        )

    async def _run(self, requests: Sequence[ChatRequest], on_done: OnDone, progress: Progress) -> None:
        async with self._client() as client:
            await self._preflight(client)
            queue: asyncio.Queue[ChatRequest] = asyncio.Queue()
            for r in requests:
                queue.put_nowait(r)
            fatal: list[BaseException] = []
            stop = asyncio.Event()

            async def worker() -> None:
                while True:
                    req = await queue.get()
                    try:
                        if fatal:
                            continue
                        result = await self._call(client, req)
                        follow = on_done(req, result)
                        progress.advance(error=result.error is not None)
                        if follow:
                            follow = list(follow)
                            progress.add_total(len(follow))
                            for f in follow:
                                queue.put_nowait(f)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - re-raised by the caller below, never swallowed
                        fatal.append(exc)
                        stop.set()
                    finally:
                        queue.task_done()

            workers = [asyncio.create_task(worker()) for _ in range(max(1, self.spec.concurrency))]
            joined = asyncio.create_task(queue.join())
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({joined, stopped}, return_when=asyncio.FIRST_COMPLETED)
            for t in (*workers, joined, stopped):
                t.cancel()
            await asyncio.gather(*workers, joined, stopped, return_exceptions=True)
            if fatal:
                raise fatal[0]

    async def _call(self, client: openai.AsyncOpenAI, req: ChatRequest) -> ChatResult:
        kwargs = chat_body(self.spec.model, req, prefill=self.prefill)
        prefill = bool(req.logprob_choices) and self.prefill
        start = time.perf_counter()
        try:
            # The SDK's generic POST: its transport, retries and error classes, without the typed-params transform and
            # pydantic response models that cost ~0.7 ms of CPU per call (measured with scripts/bench_judge_throughput.py).
            resp: dict[str, Any] = await client.post("/chat/completions", body=kwargs, cast_to=dict)
        except openai.APIConnectionError as exc:
            if _is_connect_failure(exc):
                raise self._unreachable(exc) from None
            # a read timeout or a dropped connection that outlasted the retries: an `api` error, the run goes on
            return ChatResult("", latency=time.perf_counter() - start, error=f"{type(exc).__name__} after {self.spec.max_retries} retries")
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise self._auth_error(exc) from None
        except openai.NotFoundError:
            raise InputError(
                f"endpoint {self.spec.base_url} has no model {self.spec.model!r} (HTTP 404; evalsuite model {self.spec.name!r})",
                fix="check the served model names (GET /v1/models) and the model key in the config",
            ) from None
        except openai.BadRequestError as exc:
            raise InputError(
                f"endpoint {self.spec.base_url} rejected a request for {self.spec.name!r}: {_error_message(exc)}",
                fix="check max_tokens and the model's context length",
            ) from None
        except openai.APIStatusError as exc:
            # 429 and 5xx that outlasted the SDK's retries: an `api` error for this call, the run goes on
            return ChatResult("", latency=time.perf_counter() - start, error=f"HTTP {exc.status_code} after retries")
        return chat_result(req, resp, prefilled=prefill, latency=time.perf_counter() - start)


def chat_body(model: str, req: ChatRequest, *, prefill: bool) -> dict[str, Any]:
    """The JSON body of ``POST /chat/completions`` for ``req`` (``prefill``: the server continues a final assistant
    message, so a logprob request opens the assistant turn with the verdict prefix). Live calls and batch files send
    exactly this."""
    body: dict[str, Any] = {
        "model": model,
        "messages": list(req.messages),
        "temperature": req.temperature,
        "max_tokens": req.max_tokens,
    }
    if req.seed is not None:
        body["seed"] = req.seed
    if req.logprob_choices:
        body["logprobs"] = True
        body["top_logprobs"] = TOP_LOGPROBS
        if prefill:
            # the verdict prefix opens the assistant turn; the one token generated after it is the verdict position
            body["messages"].append({"role": "assistant", "content": req.verdict_prefix})
            body.update(max_tokens=1, continue_final_message=True, add_generation_prompt=False)
    return body


def chat_result(req: ChatRequest, resp: dict[str, Any], *, prefilled: bool, latency: float = 0.0) -> ChatResult:
    """A chat completion's JSON reply to ``req`` (sent as :func:`chat_body` built it) as a ``ChatResult``."""
    prefill = bool(req.logprob_choices) and prefilled
    choices = resp.get("choices") or [{}]
    choice = choices[0] or {}
    text = (choice.get("message") or {}).get("content") or ""
    usage = resp.get("usage") or {}
    probs = None
    if req.logprob_choices:
        content = (choice.get("logprobs") or {}).get("content") or []
        if prefill:
            text = req.verdict_prefix + text
        # {} (no mass on any choice) when there is no verdict position: the judge stores a parse error
        probs = verdict_probs_from_logprobs(content, req.logprob_choices, req.verdict_prefix, prefilled=prefill) or {}
    return ChatResult(
        text=text,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        latency=latency,
        choice_probs=probs,
    )


def _is_connect_failure(exc: openai.APIConnectionError) -> bool:
    """No connection could be opened (refused, no route, DNS). The aiohttp transport reports a refused connection
    as a ConnectTimeout, so the cause's type decides, not the SDK's class."""
    cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else ""
    return cause.startswith(("Connect", "ClientConnector")) or cause in {"gaierror", "ConnectionRefusedError"}


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    return str(body.get("message") or exc.message).splitlines()[0][:200]


def verdict_probs_from_logprobs(
    content: Sequence[dict[str, Any]], choices: Sequence[str], prefix: str, *, prefilled: bool = False
) -> dict[str, float] | None:
    """Normalised probabilities of ``choices`` at the verdict position, or None when there is none.

    ``content`` is a reply's ``logprobs.content`` (one entry per generated token, each with ``top_logprobs``). The
    verdict position is the token that holds the character right after the *last* ``prefix`` in the generated text
    (``prefilled``: the prefix was sent as the start of the assistant turn, so the text is ``prefix`` + the reply).
    An alternative counts for a choice when, after the part of the prefix inside that token, it
    reads as the choice (spaces stripped, so SentencePiece's ``▁A`` is ``A``) or as the choice then ``]``. None when
    the text has no prefix, ends with it, or no alternative there is a choice: never a guess from another position.

    >>> tok = lambda t, top: {"token": t, "top_logprobs": [{"token": k, "logprob": v} for k, v in top.items()]}
    >>> reply = [tok("Both fine.", {}), tok(" [[", {}), tok("B", {"B": -0.1, "A": -2.4, "x": -3.0}), tok("]]", {})]
    >>> {k: round(v, 3) for k, v in verdict_probs_from_logprobs(reply, "ABC", "[[").items()}
    {'A': 0.091, 'B': 0.909, 'C': 0.0}
    >>> verdict_probs_from_logprobs([tok("A", {"A": 0.0}), tok(" is better", {})], "ABC", "[[") is None
    True
    >>> verdict_probs_from_logprobs([tok("C", {"C": -0.7, "A": -0.7})], "ABC", "[[", prefilled=True)
    {'A': 0.5, 'B': 0.0, 'C': 0.5}
    """
    tokens = [str(t.get("token") or "") for t in content]
    start = len(prefix) if prefilled else 0  # where the first generated token begins in ``text``
    text = (prefix if prefilled else "") + "".join(tokens)
    if not prefix or prefix not in text:
        return None
    at = text.rfind(prefix) + len(prefix)
    for tok, entry in zip(tokens, content):
        end = start + len(tok)
        if start <= at < end:
            return _choice_mass(entry.get("top_logprobs") or [], choices, lead=text[start:at])
        start = end
    return None


def _choice_mass(top: Sequence[dict[str, Any]], choices: Sequence[str], lead: str) -> dict[str, float] | None:
    """Normalised probabilities of ``choices`` among one position's alternatives (``lead``: their text before it)."""
    mass = dict.fromkeys(choices, 0.0)
    for alt in top:
        token = str(alt.get("token") or "")
        if not token.startswith(lead):
            continue
        rest = token[len(lead):].strip()
        key = next((c for c in choices if rest == c or rest.startswith(c + "]")), None)
        if key is not None:
            mass[key] += math.exp(float(alt["logprob"]))
    total = sum(mass.values())
    if total <= 0:
        return None
    return {k: v / total for k, v in mass.items()}
