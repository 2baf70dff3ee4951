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

Replicas: ``base_url`` may list several servers of one model (:class:`ReplicaPool`). Each has its own client; a call
goes to the replica with the fewest calls in flight (ties in turn). A refused connection is not retried on the same
replica (the others are there): that replica is taken out at once; one that fails :data:`EJECT_AFTER_FAILURES` calls
in a row (5xx or timeouts after the SDK's retries) likewise. It comes back after a cool-down that doubles with each
ejection in a row (capped), on probation: one call at a time until one succeeds. A call that failed on a replica is
sent to another it has not tried; it is an ``api`` error only once every replica in rotation has failed it, and the
run stops with "cannot reach" only when every replica is out. A call that succeeded is handed to ``on_done`` once and
never sent again. Which replica answered is not part of any cache key.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable, Sequence

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
# Replicas: consecutive failed calls that take a replica out; its first cool-down, doubled per ejection in a row up to
# the cap; the start-up check's timeout (a replica that does not answer GET /models within it is slow, not down).
EJECT_AFTER_FAILURES = 3
COOLDOWN_S = 1.0
COOLDOWN_CAP_S = 60.0
PREFLIGHT_TIMEOUT_S = 10.0
# Replica URLs this process has reached: one of them that refuses a later stage's start check went down mid-run and
# is taken out like any failing replica; only a replica never reached is "unreachable at start" (one line, exit 2).
_REACHED: set[str] = set()
PROBATION_WAIT_S = 0.05  # how often a call waiting for a replica's probation slot looks again


def replica_urls(base_url: str | Sequence[str] | None, model: str = "?") -> tuple[str, ...]:
    """The replica URLs of a model's ``base_url`` (one for a string, none when unset); an empty list or one naming a
    server twice (trailing ``/`` ignored) is an input error naming ``model``.

    >>> replica_urls("http://a:8000/v1"), replica_urls(["http://a:8000/v1", "http://b:8000/v1"])
    (('http://a:8000/v1',), ('http://a:8000/v1', 'http://b:8000/v1'))
    >>> replica_urls(["http://a/v1", "http://a/v1/"], "sft")
    Traceback (most recent call last):
    evalsuite.errors.InputError: model 'sft' lists replica http://a/v1/ twice in base_url — fix: list each replica once
    """
    if base_url is None:
        return ()
    if isinstance(base_url, str):
        return (base_url,)
    urls = tuple(base_url)
    if not urls:
        raise InputError(f"model {model!r} has an empty base_url list",
                         fix="list at least one replica URL, or remove base_url")
    seen: set[str] = set()
    for url in urls:
        if url.rstrip("/") in seen:
            raise InputError(f"model {model!r} lists replica {url} twice in base_url", fix="list each replica once")
        seen.add(url.rstrip("/"))
    return urls


@dataclass(frozen=True)
class ReplicaStats:
    """What one replica of a model did over a backend's life: calls sent to it, answered, failed, times taken out."""

    url: str
    calls: int = 0
    answered: int = 0
    failed: int = 0
    ejections: int = 0

    def summary(self, model: str) -> str:
        """One line for the run's stderr."""
        return (f"replica {self.url} of {model!r}: {self.calls} calls, {self.answered} answered, {self.failed} failed, "
                f"{self.ejections} ejection{'s' * (self.ejections != 1)}")


class Replica:
    """One server of a replicated model, as the pool sees it: calls in flight, its health, its counts."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.in_flight = 0
        self.failures_in_row = 0
        self.ejections_in_row = 0
        self.out_until = 0.0  # clock time before which it gets no calls
        self.probation = False  # back from a cool-down: one call at a time until one succeeds
        self.stats = ReplicaStats(url)
        self.prefill = False  # its server continues a final assistant message (from its GET /models)
        self.last_error = ""  # why its last failed call failed
        self.client: openai.AsyncOpenAI | None = None  # open during a run


class ReplicaPool:
    """Picks a replica for each call and keeps their health: the routing rule, with no I/O (``clock`` is injectable).

    >>> now = [0.0]
    >>> pool = ReplicaPool(["http://a", "http://b"], clock=lambda: now[0])
    >>> a = pool.pick(); b = pool.pick(); (a.url, b.url)  # a tie goes round robin, then the least loaded
    ('http://a', 'http://b')
    >>> pool.release(a, ok=True); pool.pick().url
    'http://a'
    >>> pool.release(b, ok=False, refused=True); b.stats.ejections, pool.pick(exclude={"http://a"})
    (1, None)
    >>> now[0] = COOLDOWN_S; pool.pick(exclude={"http://a"}).url  # back after its cool-down, on probation
    'http://b'
    """

    def __init__(self, urls: Sequence[str], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.replicas = [Replica(u) for u in urls]
        self._clock = clock
        self._turn = 0  # where the next tie-break starts

    def in_rotation(self, replica: Replica) -> bool:
        """Not cooling down."""
        return self._clock() >= replica.out_until

    def available(self, replica: Replica) -> bool:
        """In rotation and not already holding its one probation call."""
        return self.in_rotation(replica) and not (replica.probation and replica.in_flight > 0)

    def all_out(self) -> bool:
        """Every replica is cooling down."""
        return not any(self.in_rotation(r) for r in self.replicas)

    def pick(self, exclude: frozenset[str] | set[str] = frozenset()) -> Replica | None:
        """The available replica not in ``exclude`` with the fewest calls in flight (ties in turn), counted as
        holding one more call; None when there is none."""
        n = len(self.replicas)
        best: Replica | None = None
        best_at = 0
        for step in range(n):
            at = (self._turn + step) % n
            r = self.replicas[at]
            if r.url in exclude or not self.available(r):
                continue
            if best is None or r.in_flight < best.in_flight:
                best, best_at = r, at
        if best is None:
            return None
        self._turn = (best_at + 1) % n
        best.in_flight += 1
        best.stats = replace(best.stats, calls=best.stats.calls + 1)
        return best

    def abandon(self, replica: Replica) -> None:
        """A call on ``replica`` was cancelled (the run is stopping): it neither answered nor failed."""
        replica.in_flight -= 1

    def release(self, replica: Replica, *, ok: bool, refused: bool = False, health: bool = True) -> None:
        """A call on ``replica`` ended: answered (``ok``), or failed. A failure counts against its health unless
        ``health`` is False (a rate limit says the server is busy, not broken); a refused connection takes it out at
        once, else :data:`EJECT_AFTER_FAILURES` failures in a row do."""
        replica.in_flight -= 1
        s = replica.stats
        if ok:
            replica.stats = replace(s, answered=s.answered + 1)
            replica.failures_in_row = replica.ejections_in_row = 0
            replica.probation = False
            return
        replica.stats = replace(s, failed=s.failed + 1)
        if not health or not self.in_rotation(replica):
            return  # already out: the calls it held as it went down do not lengthen its cool-down
        replica.failures_in_row += 1
        if refused or replica.probation or replica.failures_in_row >= EJECT_AFTER_FAILURES:
            self.take_out(replica)

    def take_out(self, replica: Replica) -> None:
        """Take ``replica`` out for its cool-down (doubling with each ejection in a row, capped); it comes back on
        probation."""
        cooldown = min(COOLDOWN_CAP_S, COOLDOWN_S * 2 ** replica.ejections_in_row)
        replica.out_until = self._clock() + cooldown
        replica.ejections_in_row += 1
        replica.failures_in_row = 0
        replica.probation = True
        replica.stats = replace(replica.stats, ejections=replica.stats.ejections + 1)


class _FailFastAioHttpClient(openai.DefaultAioHttpClient):
    """The SDK's aiohttp transport, except that a connection that cannot be opened is reported at once instead of
    being retried on the same server (the SDK re-raises its own errors without retrying): another replica takes the
    call. Every other failure keeps the SDK's retry policy."""

    async def send(self, request: Any, **kwargs: Any) -> Any:
        try:
            return await super().send(request, **kwargs)
        except Exception as exc:
            if type(exc).__name__ in {"ConnectError", "ConnectTimeout"}:
                raise openai.APIConnectionError(request=request) from exc
            raise


class OpenAIBackend:
    """An OpenAI-compatible endpoint, or several replicas of one model when ``base_url`` is a list."""

    name = "openai"

    def __init__(self, spec: ModelSpec) -> None:
        urls = replica_urls(spec.base_url, spec.name)
        if not urls and not os.environ.get("OPENAI_BASE_URL") and not spec.api_key_env:
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
        # a list, even of one URL, is a pool; a string is the one endpoint it always was
        self.pool = ReplicaPool(urls) if isinstance(spec.base_url, (list, tuple)) else None
        self._reported_calls = 0  # calls already summarised on stderr by close()

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> "OpenAIBackend":
        return cls(spec)

    def run(self, requests: Sequence[ChatRequest], on_done: OnDone, progress: Progress) -> None:
        if not requests:
            return
        asyncio.run(self._run(requests, on_done, progress))

    def replica_stats(self) -> list[ReplicaStats]:
        """Per replica, over this backend's life: calls sent, answered, failed, ejections; empty for one URL."""
        return [r.stats for r in self.pool.replicas] if self.pool is not None else []

    def close(self) -> None:
        """Nothing to release (each ``run`` opens and closes its own HTTP clients). A replicated backend prints one
        line per replica on stderr (calls, answered, failed, ejections) when it made calls since the last close."""
        stats = self.replica_stats()
        calls = sum(s.calls for s in stats)
        if calls > self._reported_calls:
            for s in stats:
                print(s.summary(self.spec.name), file=sys.stderr)
            self._reported_calls = calls

    def _client(self, base_url: str | None) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=base_url,
            api_key=self._api_key,
            max_retries=self.spec.max_retries,
            timeout=self.spec.timeout,
            # aiohttp transport: ~45% less CPU per call than the SDK's default one
            http_client=_FailFastAioHttpClient() if self.pool is not None else openai.DefaultAioHttpClient(),
        )

    @property
    def _url(self) -> str | None:
        """The one endpoint of an unreplicated model (None: the SDK's default, ``OPENAI_BASE_URL`` or OpenAI)."""
        return self.spec.base_url if isinstance(self.spec.base_url, str) else None

    async def _list_models(self, client: openai.AsyncOpenAI, url: str | None) -> bool:
        """Fail in a second, not after a full retry schedule, when the endpoint is unreachable or refuses the key;
        whether its server continues a prefilled verdict prefix, from its model list (False when it has none)."""
        try:
            listed = await client.with_options(max_retries=0, timeout=min(PREFLIGHT_TIMEOUT_S, self.spec.timeout)).models.list()
            owners = {m.id: str(getattr(m, "owned_by", "") or "") for m in listed.data}
            return owners.get(self.spec.model, next(iter(owners.values()), "")) in PREFILL_SERVERS
        except openai.APIConnectionError as exc:
            if _is_connect_failure(exc):
                if self.pool is not None:
                    raise InputError(f"replica {url} of model {self.spec.name!r} is unreachable at start "
                                     f"({exc.__cause__ or exc})", fix="remove it from base_url or start it") from None
                raise self._unreachable(exc, url) from None
            return False  # slow is not down: the real calls have their own timeout and retries
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise self._auth_error(exc, url) from None
        except openai.APIError:
            return False  # a server without GET /models is fine

    async def _check_replicas(self, pool: "ReplicaPool") -> None:
        """Every replica once, in parallel, before any work: the first one (in list order) that is unreachable or
        refuses the key stops the run, unless this process reached it before (it went down mid-run: it is taken out
        and its calls go to the others)."""
        async def check(replica: Replica) -> None:
            assert replica.client is not None
            try:
                replica.prefill = await self._list_models(replica.client, replica.url)
            except InputError as exc:
                if replica.url not in _REACHED or "unreachable" not in str(exc):
                    raise
                print(f"replica {replica.url} of {self.spec.name!r} went down; its calls go to the others",
                      file=sys.stderr)
                pool.take_out(replica)
                return
            _REACHED.add(replica.url)

        outcomes = await asyncio.gather(*(check(r) for r in pool.replicas), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def _unreachable(self, exc: openai.APIConnectionError, url: str | None) -> InputError:
        return InputError(
            f"cannot reach {url or 'the OpenAI API'} for model {self.spec.name!r} ({exc.__cause__ or exc})",
            fix="start the server or correct base_url; finished calls are saved, re-run the same command to resume",
        )

    def _auth_error(self, exc: openai.APIStatusError, url: str | None) -> InputError:
        return InputError(
            f"endpoint {url} refused model {self.spec.name!r}: HTTP {exc.status_code}",
            fix=f"export the key in ${self.spec.api_key_env}" if self.spec.api_key_env else f"set models.{self.spec.name}.api_key_env",
        )

    def _fatal(self, exc: openai.APIStatusError, url: str | None) -> InputError | None:
        """The input error a status no retry can fix stands for (key refused, unknown model, rejected request)."""
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return self._auth_error(exc, url)
        if isinstance(exc, openai.NotFoundError):
            return InputError(
                f"endpoint {url} has no model {self.spec.model!r} (HTTP 404; evalsuite model {self.spec.name!r})",
                fix="check the served model names (GET /v1/models) and the model key in the config",
            )
        if isinstance(exc, openai.BadRequestError):
            return InputError(
                f"endpoint {url} rejected a request for {self.spec.name!r}: {_error_message(exc)}",
                fix="check max_tokens and the model's context length",
            )
        return None

    async def _run(self, requests: Sequence[ChatRequest], on_done: OnDone, progress: Progress) -> None:
        async with contextlib.AsyncExitStack() as stack:
            call: Callable[[ChatRequest], Awaitable[ChatResult]]
            pool = self.pool
            if pool is None:
                client = await stack.enter_async_context(self._client(self._url))
                self.prefill = await self._list_models(client, self._url)
                call = functools.partial(self._call, client)
            else:
                stack.callback(_forget_clients, pool)
                for replica in pool.replicas:
                    replica.client = await stack.enter_async_context(self._client(replica.url))
                await self._check_replicas(pool)
                call = functools.partial(self._call_replicas, pool)
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
                        result = await call(req)
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
        start = time.perf_counter()
        try:
            # The SDK's generic POST: its transport, retries and error classes, without the typed-params transform and
            # pydantic response models that cost ~0.7 ms of CPU per call (measured with scripts/bench_judge_throughput.py).
            resp: dict[str, Any] = await client.post("/chat/completions", body=kwargs, cast_to=dict)
        except openai.APIConnectionError as exc:
            if _is_connect_failure(exc):
                raise self._unreachable(exc, self._url) from None
            # a read timeout or a dropped connection that outlasted the retries: an `api` error, the run goes on
            return ChatResult("", latency=time.perf_counter() - start, error=f"{type(exc).__name__} after {self.spec.max_retries} retries")
        except openai.APIStatusError as exc:
            fatal = self._fatal(exc, self._url)
            if fatal is not None:
                raise fatal from None
            # 429 and 5xx that outlasted the SDK's retries: an `api` error for this call, the run goes on
            return ChatResult("", latency=time.perf_counter() - start, error=f"HTTP {exc.status_code} after retries")
        return chat_result(req, resp, prefilled=self.prefill, latency=time.perf_counter() - start)

    async def _call_replicas(self, pool: ReplicaPool, req: ChatRequest) -> ChatResult:
        """One call on a replicated model: on the least loaded replica, then on each other one it has not failed on,
        until one answers; an ``api`` error once every replica in rotation failed it; "cannot reach" when all are out."""
        start = time.perf_counter()
        tried: set[str] = set()
        last: ChatResult | None = None
        while True:
            replica = pool.pick(exclude=tried)
            if replica is None:
                if pool.all_out():
                    reasons = "; ".join(f"{r.url}: {r.last_error or 'cooling down'}" for r in pool.replicas)
                    raise InputError(
                        f"cannot reach any replica of model {self.spec.name!r} ({reasons})",
                        fix="start the servers or correct base_url; finished calls are saved, re-run the same "
                            "command to resume",
                    )
                if any(r.url not in tried and pool.in_rotation(r) for r in pool.replicas):
                    await asyncio.sleep(PROBATION_WAIT_S)  # an untried replica holds its one probation call
                    continue
                assert last is not None  # a replica in rotation that is not waiting has been tried
                return replace(last, latency=time.perf_counter() - start)
            tried.add(replica.url)
            assert replica.client is not None
            body = chat_body(self.spec.model, req, prefill=replica.prefill)
            try:
                resp: dict[str, Any] = await replica.client.post("/chat/completions", body=body, cast_to=dict)
            except openai.APIConnectionError as exc:
                refused = _is_connect_failure(exc)
                reason = f"{exc.__cause__ or exc}" if refused else f"{type(exc).__name__} after {self.spec.max_retries} retries"
                pool.release(replica, ok=False, refused=refused)
            except openai.APIStatusError as exc:
                fatal = self._fatal(exc, replica.url)
                # a rate limit says the server is busy, not broken: another replica may take the call
                pool.release(replica, ok=False, health=fatal is None and exc.status_code >= 500)
                if fatal is not None:
                    raise fatal from None
                reason = f"HTTP {exc.status_code} after retries"
            except BaseException:
                pool.abandon(replica)  # cancelled with the run: the call neither succeeded nor failed
                raise
            else:
                pool.release(replica, ok=True)
                return chat_result(req, resp, prefilled=replica.prefill, latency=time.perf_counter() - start)
            replica.last_error = reason
            last = ChatResult("", latency=0.0, error=f"{reason} on {replica.url}")


def _forget_clients(pool: ReplicaPool) -> None:
    """Drop the replicas' clients once their run has closed them (the next run opens its own)."""
    for replica in pool.replicas:
        replica.client = None


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
