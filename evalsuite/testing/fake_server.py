"""A fake OpenAI-compatible chat server for tests and benchmarks (loopback only, no model, no network).

It speaks enough of the OpenAI HTTP API (``POST /v1/chat/completions``, ``GET /v1/models``) for the real ``openai``
SDK, so the project's endpoint backend, retries, timeouts and judging pipeline are exercised end to end without a
model. Everything it says is a pure function of the request, so a test can predict it:

* **Answer models** (names in ``strengths`` that are not judges) reply ``«NAME» w1 w2 ...``: the marker names the
  model so a judge prompt built from the answers reveals who wrote what, and the words come from a hash of the last
  user message (turn 2 differs from turn 1). Temperature is ignored.
* **Judge models** read the ``«NAME»`` markers in the user messages (first distinct name = A, second = B) and pick a
  verdict with P(A) = sigmoid(s[A] - s[B] + position_bias) * (1 - tie_rate), P(tie) = tie_rate, else B, drawn from a
  hash of the seed and the messages. The output format follows the prompt: ``[[A>>B]]`` in the prompt -> Arena-Hard
  five-point, ``[[A]]`` -> MT-Bench pairwise (``[[A]]``/``[[B]]``/``[[C]]``), else single grading ``Rating: [[N]]``
  with N = clip(round(5 + 3 * s), 1, 10). With ``logprobs: true`` the reply is the bare verdict and the verdict
  token carries ``top_logprobs`` holding the model's probabilities. With ``continue_final_message: true`` and a
  final assistant message ``[[`` (vLLM's prefill), the reply continues it: the verdict token first, cut to
  ``max_tokens``.
* **Answer styles** (``styles``, per answer model): ``"plain"`` (default) as above; ``"markdown"`` lays the same
  hashed words out as markdown: the marker on a line of its own, a ``## `` header (the first three words), a
  paragraph whose first two words are a ``**bold**`` span, and 2-4 ``- `` list items (count from the hash; fewer
  when the answer is too short). The words, and so the word count, are those of the plain answer; with ``lengths``
  a test makes a candidate exactly as strong as the baseline but longer and/or formatted. ``"mixed"`` varies style
  per answer (two hash bytes of model and question): markdown or plain, independently 1x or 1.5x the words, so the
  style terms of a style-controlled fit are identified apart from the model's strength.
* **Judge profiles** (:class:`JudgeProfile`, ``judge_profiles``, per judge model; a judge named there needs no
  ``judges`` entry): a judge with faults. Its pairwise verdict distribution is the mixture
  ``(1 - noise - style_share) * strength + noise * uniform(A, B, tie) + style_share * style``, where ``strength`` is
  the rule above with the profile's ``position_bias`` and ``tie_rate`` (None: the server's), ``uniform`` ignores the
  answers, and ``style`` gives the verdict to the answer with more markdown (headers + list items + bold spans), at
  equal markdown to the one with more words (runs of letters, digits, ``_``), and at equal words falls back to
  ``strength``. ``style_logit`` instead adds a logit per unit of style gap to the strength rule (a judge whose
  log-odds pay for style, the model style control fits). The judge finds each answer in its prompt as the text from its ``«NAME»`` marker to the next marker
  or to the next template line (a line starting with ``[`` or ``<|``, or FastChat's ``### User`` /
  ``### Assistant``); in multi-turn prompts a model's replies are counted together. One draw from sha256(seed, judge
  name, messages) picks the verdict, and ``top_logprobs`` carry the mixture's probabilities; the Arena-Hard
  five-point format uses the strong forms when the strength gap exceeds 1, as for other judges. A judge without a
  profile behaves exactly as the rule above says (server-wide ``position_bias`` and ``tie_rate``, the draw without
  the judge name). Single-answer grading ignores profiles.
* **Faults** (:class:`FaultPlan`): 429 (with ``retry-after``/``retry-after-ms``), 500, slow replies and judge replies
  without a verdict, chosen per request body by hash, for the first ``faulty_attempts`` attempts of that body.
* **Batch API** (``/v1/files``: multipart upload, retrieve, ``/content``; ``/v1/batches``: create, retrieve, list,
  cancel): enough for the real SDK's ``files.create`` / ``batches.create`` / ``batches.retrieve`` / ``files.content``.
  A batch is processed in the background with the same models as live calls (each line's body gets exactly the
  completion ``POST /v1/chat/completions`` would give it); :class:`BatchPlan` makes lines fail (500 lines in the error
  file, chosen by custom_id hash, for their first ``faulty_attempts`` batches), batches take a while
  (``line_seconds``) or expire after ``expire_after`` lines (every batch, or only those ``expiring`` names). A batch
  whose input file holds more than ``max_lines`` requests or ``max_bytes`` bytes (OpenAI's limits, 50,000 and 200 MB,
  by default) fails validation with one error naming the limit and answers nothing (the error codes are this
  server's own). ``stats()`` counts ``batches_created``, ``files_created``, ``batch_lines`` (lines answered, failed
  ones included), ``batch_api_requests`` (HTTP requests to /v1/files and /v1/batches) apart from chat requests, and
  ``batches_running_max`` (the most batches in progress at once).

Run it in-process (``with FakeOpenAIServer(...) as srv: srv.base_url``; it lives on its own event loop in a daemon
thread) or as a process: ``python -m evalsuite.testing.fake_server --port 0 --strength sft=0 --strength dpo=0.5``
prints ``READY http://127.0.0.1:PORT/v1`` once listening and serves until SIGTERM/SIGINT. ``--style dpo=markdown``
sets an answer style; ``--judge-profile NAME=position_bias:3,noise:0,style_share:0,tie_rate:0.1`` adds a judge with
a profile (keys from :class:`JudgeProfile`, any subset, comma-separated ``key:value``).

The handler is kept lean (one JSON parse, one canonical re-dump + sha256, one small JSON reply) because benchmarks
use this server as the "infinitely fast model": it must not be the bottleneck at ~1,000 requests/s on one core.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, TypeVar

from aiohttp import web

__all__ = ["BatchPlan", "FaultPlan", "FakeOpenAIServer", "JudgeProfile", "main"]

_T = TypeVar("_T")

# Keys that do not change what a request asks for; left out of the body hash so a streamed retry or a different
# end-user tag counts as the same request for fault selection and attempt counting.
_HASH_EXCLUDED_KEYS = frozenset({"stream", "stream_options", "user"})

# 64 words: one hash byte (masked to 6 bits) picks one word, so an answer of n words costs one shake_256 call.
_VOCAB = (
    "the model answers each question with care and detail so that readers can follow every step of "
    "reasoning while checking facts against known sources before writing a short summary about results "
    "methods data tests limits errors costs speed memory quality style tone length clarity order scope "
    "plan goal risk value proof example source context table graph number first second third useful "
    "simple clear brief"
).split()
assert len(_VOCAB) == len(set(_VOCAB)) == 64, len(_VOCAB)
_WORD_OF_BYTE = _VOCAB * 4  # byte value -> word, so a digest maps to words with one C-level map()

_MARKER_RE = re.compile(r"«([^«»\n]{1,200})»")

# Filler tokens used to pad top_logprobs up to the requested k (the real API always returns k entries); their
# logprobs are far below any real candidate's, so a consumer that sums only its own choices is unaffected.
_FILLERS = ("The", " ", "[", "]", "Assistant", "Both", "tie", "none", "Neither", "**", "\n", ":", "Verdict",
            "Final", "I", "My", "is", "a", "an", "it")

_ZERO_LOGPROB = -9999.0  # what the real API reports for a zero-probability alternative; -inf is not valid JSON

ANSWER_STYLES = ("plain", "markdown", "mixed")

# Where a judge template's own text resumes after an answer: "[End reply of assistant A]", "[User, message 2]",
# "[The End of Assistant A's Answer]", "<|The End of ...|>", FastChat's multi-turn "### User:" / "### Assistant B:".
_TEMPLATE_LINE_RE = re.compile(r"^[ \t]*(?:\[|<\||###[ \t]*(?:User|Assistant)\b)", re.M)
# Markdown as a style-biased judge counts it: header lines, list-item lines, bold spans.
_MARKDOWN_RE = re.compile(r"^[ \t]*(?:#{1,6}|[-*+]|\d+[.)])[ \t]+\S|\*\*[^*\n]+\*\*|__[^_\n]+__", re.M)
_WORD_RE = re.compile(r"\w+")


def _logprob(p: float) -> float:
    return math.log(p) if p > 0 else _ZERO_LOGPROB


def _uniform(*parts: str) -> float:
    """A uniform in [0, 1) derived from sha256 of the parts: the server's only source of "randomness"."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _content_text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a content-part list (vision-style requests)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _error(status: int, message: str, type_: str, code: str | None, param: str | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json",
                        headers=headers)


@dataclass
class FaultPlan:
    """Which requests fail, and how. Rates are shares of distinct request bodies, chosen by hash (deterministic).

    The kinds are mutually exclusive: one uniform per body is compared with the cumulative rates in the order
    429, 500, slow, no_verdict, so the rates must sum to at most 1. A chosen body fails its first
    ``faulty_attempts`` attempts and then succeeds with exactly the reply it would have had without faults.
    ``rate_no_verdict`` only affects judge models (an answer model chosen for it replies normally).
    """

    rate_429: float = 0
    rate_500: float = 0
    rate_slow: float = 0
    slow_seconds: float = 5.0  # a "slow" attempt replies only after this long, to trip client timeouts
    rate_no_verdict: float = 0
    retry_after: float = 0.01  # seconds, sent on 429 as retry-after (and as retry-after-ms)
    faulty_attempts: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        rates = (self.rate_429, self.rate_500, self.rate_slow, self.rate_no_verdict)
        if any(r < 0 or r > 1 for r in rates) or sum(rates) > 1 + 1e-9:
            raise ValueError(f"fault rates must be in [0, 1] and sum to at most 1, got {rates}")
        if self.faulty_attempts < 0:
            raise ValueError("faulty_attempts must be >= 0")

    @property
    def active(self) -> bool:
        return self.faulty_attempts > 0 and (self.rate_429 + self.rate_500 + self.rate_slow
                                             + self.rate_no_verdict) > 0

    def kind_for(self, body_hash: str) -> str | None:
        """The fault this body is chosen for ("429", "500", "slow", "no_verdict"), or None."""
        u = _uniform("fault", str(self.seed), body_hash)
        edge = 0.0
        for kind, rate in (("429", self.rate_429), ("500", self.rate_500), ("slow", self.rate_slow),
                           ("no_verdict", self.rate_no_verdict)):
            edge += rate
            if u < edge:
                return kind
        return None


@dataclass
class BatchPlan:
    """How the fake Batch API behaves. Line failures are chosen by hash of the line's custom_id (deterministic)."""

    fail_rate: float = 0.0  # share of lines answered with a 500 (error file) ...
    faulty_attempts: int = 1  # ... in the first this-many batches that hold them; later batches answer them
    line_seconds: float = 0.0  # processing time per line: a batch that takes a while
    expire_after: int | None = None  # a batch expires after answering this many lines (its output keeps them) ...
    expiring: tuple[int, ...] | None = None  # ... only the batches created n-th (1 = the server's first); None: all
    seed: int = 0
    max_lines: int = 50_000  # requests one input file may hold (the OpenAI Batch API's limit) ...
    max_bytes: int = 200_000_000  # ... and its size; a batch over either fails validation

    def __post_init__(self) -> None:
        if not 0 <= self.fail_rate <= 1:
            raise ValueError(f"fail_rate must be in [0, 1], got {self.fail_rate}")
        if self.max_lines < 1 or self.max_bytes < 1:
            raise ValueError(f"max_lines and max_bytes must be positive, got {self.max_lines} and {self.max_bytes}")


@dataclass(frozen=True)
class JudgeProfile:
    """The faults of one simulated judge: how far position, coin flips and answer style move its pairwise verdicts.

    ``position_bias`` is a logit added to answer A (as the server-wide one); ``noise`` is the probability that the
    verdict is a uniform draw of A, B or tie that ignores the answers; ``style_share`` the probability that it goes
    to the answer with more markdown, then the longer one, instead of by strength; ``tie_rate`` the tie probability
    of the strength rule (None: the server's). ``noise + style_share`` must be at most 1.
    """

    position_bias: float = 0.0
    noise: float = 0.0
    style_share: float = 0.0
    tie_rate: float | None = None
    # a logit added to A per unit of style gap in the strength rule: a judge whose log-odds pay for style, the model
    # style control fits (gap: the words' (a - b) / (a + b) plus the markdown elements' (a - b) / (a + b + 1))
    style_logit: float = 0.0

    def __post_init__(self) -> None:
        if not (0 <= self.noise <= 1 and 0 <= self.style_share <= 1 and self.noise + self.style_share <= 1 + 1e-9):
            raise ValueError(f"noise and style_share must be in [0, 1] and sum to at most 1, got {self.noise} and "
                             f"{self.style_share}")
        if self.tie_rate is not None and not 0 <= self.tie_rate <= 1:
            raise ValueError(f"tie_rate must be in [0, 1] or None, got {self.tie_rate}")
        if not math.isfinite(self.position_bias):
            raise ValueError(f"position_bias must be finite, got {self.position_bias}")
        if not math.isfinite(self.style_logit):
            raise ValueError(f"style_logit must be finite, got {self.style_logit}")

    @classmethod
    def parse(cls, spec: str) -> "JudgeProfile":
        """A profile from ``"position_bias:3,noise:0.2"`` (any subset of the fields; ``tie_rate:none`` = server's).

        >>> JudgeProfile.parse("noise:0.5,tie_rate:0.2")
        JudgeProfile(position_bias=0.0, noise=0.5, style_share=0.0, tie_rate=0.2, style_logit=0.0)
        """
        numbers: dict[str, float] = {}
        tie_rate: float | None = None
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, value = part.partition(":")
            key = key.strip()
            if not sep or key not in ("position_bias", "noise", "style_share", "tie_rate", "style_logit"):
                raise ValueError(f"judge profile part {part!r}: expected KEY:VALUE with KEY one of position_bias, "
                                 "noise, style_share, tie_rate, style_logit")
            try:
                number = None if key == "tie_rate" and value.strip().lower() == "none" else float(value)
            except ValueError:
                raise ValueError(f"judge profile part {part!r}: {value!r} is not a number") from None
            if key == "tie_rate":
                tie_rate = number
            elif number is not None:
                numbers[key] = number
        return cls(tie_rate=tie_rate, **numbers)


def _markdown_answer(model: str, words: Sequence[str], extra: int) -> str:
    """The markdown layout of an answer's words (module docstring); ``extra`` is a hash byte picking 2-4 items."""
    head, rest = list(words[:3]), list(words[3:])
    n_items = min(2 + extra % 3, len(rest))
    per_item = min(3, len(rest) // n_items) if n_items else 0
    cut = len(rest) - n_items * per_item
    paragraph, items = rest[:cut], [rest[cut + i * per_item: cut + (i + 1) * per_item] for i in range(n_items)]
    bolded = paragraph or (items[0] if items else head)  # the first two words of the first block that has words
    bolded[:2] = [f"**{' '.join(bolded[:2])}**"]
    lines = [f"«{model}»", f"## {' '.join(head)}"]
    if paragraph:
        lines += ["", f"{' '.join(paragraph)}."]
    if items:
        lines += [""] + [f"- {' '.join(item)}" for item in items]
    return "\n".join(lines)


def _answer_text(text: str, name: str) -> str:
    """The answers of ``name`` in a judge prompt, each read from its marker on (as :func:`_answer_style` reads them)."""
    markers = list(_MARKER_RE.finditer(text))
    parts = []
    for i, marker in enumerate(markers):
        if marker.group(1) == name:
            end = markers[i + 1].start() if i + 1 < len(markers) else len(text)
            template_line = _TEMPLATE_LINE_RE.search(text, marker.end(), end)
            parts.append(text[marker.end(): template_line.start() if template_line else end])
    return "\x00".join(parts)


def _answer_style(text: str, name: str) -> tuple[int, int]:
    """(markdown elements, words) of the answers of ``name`` in a judge prompt, each read from its marker on."""
    markdown = words = 0
    markers = list(_MARKER_RE.finditer(text))
    for i, marker in enumerate(markers):
        if marker.group(1) != name:
            continue
        end = markers[i + 1].start() if i + 1 < len(markers) else len(text)
        template_line = _TEMPLATE_LINE_RE.search(text, marker.end(), end)
        segment = text[marker.end(): template_line.start() if template_line else end]
        markdown += len(_MARKDOWN_RE.findall(segment))
        words += len(_WORD_RE.findall(segment))
    return markdown, words


class FakeOpenAIServer:
    """An OpenAI-compatible chat server with deterministic answer models, simulated judges and fault injection.

    ``strengths`` maps answer-model names to a latent strength (logit scale); ``None`` accepts any model name with
    strength 0. Names in ``judges`` and in ``judge_profiles`` are always accepted and act as judges. Unknown names get
    a 404 ``model_not_found``. If ``api_key`` is set, requests without ``Authorization: Bearer <api_key>`` get a 401.
    ``styles`` maps answer models to ``"plain"`` (default) or ``"markdown"``; ``judge_profiles`` maps judge models to
    their :class:`JudgeProfile` (module docstring). ``answer_spread`` gives each answer a quality of its own for the
    judges with a profile (a logit uniform in +-spread, drawn from the answer's text): questions then differ, so two
    sound judges agree beyond chance.
    """

    def __init__(
        self,
        *,
        strengths: dict[str, float] | None = None,
        judges: Iterable[str] = ("judge",),
        lengths: dict[str, int] | None = None,
        styles: dict[str, str] | None = None,
        judge_profiles: dict[str, JudgeProfile] | None = None,
        answer_spread: float = 0.0,
        latency: float = 0.0,
        tie_rate: float = 0.1,
        position_bias: float = 0.0,
        faults: FaultPlan | None = None,
        batch: BatchPlan | None = None,
        api_key: str | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        owned_by: str = "evalsuite-fake",
    ) -> None:
        if not 0 <= tie_rate <= 1:
            raise ValueError(f"tie_rate must be in [0, 1], got {tie_rate}")
        bad_styles = {k: v for k, v in (styles or {}).items() if v not in ANSWER_STYLES}
        if bad_styles:
            raise ValueError(f"styles must be one of {ANSWER_STYLES}, got {bad_styles}")
        self.strengths = None if strengths is None else dict(strengths)
        self.judge_profiles = dict(judge_profiles or {})
        # each answer's own quality for judges with a profile: a logit uniform in +-answer_spread drawn from the
        # answer's text, so every such judge (and both orders) sees the same per-question differences
        self.answer_spread = float(answer_spread)
        self.judges = frozenset(judges) | frozenset(self.judge_profiles)
        self.lengths = dict(lengths or {})
        self.styles = dict(styles or {})
        self.latency = float(latency)
        self.tie_rate = float(tie_rate)
        self.position_bias = float(position_bias)
        self.faults = faults or FaultPlan()
        self.batch_plan = batch or BatchPlan()
        self._files: dict[str, dict[str, Any]] = {}  # file id -> file object + "_data" bytes
        self._batches: dict[str, dict[str, Any]] = {}  # batch id -> batch object
        self._batch_tasks: set[asyncio.Task[None]] = set()
        self._batch_attempts: Counter[str] = Counter()  # custom_id -> batches that held it (fault state)
        self._batches_running = 0  # batches in progress now (not a counter reset_stats clears)
        self.api_key = api_key
        self.seed = seed
        self.owned_by = owned_by  # GET /models' owner; "vllm" makes clients treat this server as vLLM
        self.host = host
        self.port = port
        self.base_url = ""
        self._expected_auth = f"Bearer {api_key}" if api_key is not None else None
        self._attempts: dict[str, int] = {}  # body hash -> attempts seen; survives reset_stats (it is fault state)
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id: int | None = None
        self._thread: threading.Thread | None = None
        self._reset_counters()

    # ------------------------------------------------------------------ lifecycle

    async def astart(self) -> str:
        """Start listening on the running event loop; returns the base URL. For callers that own a loop."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/stats", self._stats_handler)
        app.router.add_post("/v1/files", self._file_create)
        app.router.add_get("/v1/files/{file_id}", self._file_retrieve)
        app.router.add_get("/v1/files/{file_id}/content", self._file_content)
        app.router.add_post("/v1/batches", self._batch_create)
        app.router.add_get("/v1/batches", self._batch_list)
        app.router.add_get("/v1/batches/{batch_id}", self._batch_retrieve)
        app.router.add_post("/v1/batches/{batch_id}/cancel", self._batch_cancel)
        # Short shutdown timeout: a "slow" fault may leave a handler sleeping for seconds after its client gave up,
        # and stop() should not wait for it.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.25)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=1024)
        await site.start()
        self._runner = runner
        self._loop = asyncio.get_running_loop()
        self._loop_thread_id = threading.get_ident()
        self.port = int(runner.addresses[0][1])
        self.base_url = f"http://{self.host}:{self.port}/v1"
        return self.base_url

    async def astop(self) -> None:
        for task in list(self._batch_tasks):
            task.cancel()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def start(self) -> str:
        """Run the server on its own event loop in a daemon thread; returns ``http://127.0.0.1:PORT/v1``."""
        if self._thread is not None:
            return self.base_url
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.astart())
            except BaseException as exc:  # surfaced to start()'s caller (e.g. port in use)
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.astop())
                loop.close()

        thread = threading.Thread(target=run, name=f"fake-openai-{id(self):x}", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        self._thread = thread
        return self.base_url

    def stop(self) -> None:
        """Stop serving and join the server thread (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        self._thread = None
        if loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self.astop(), loop).result(timeout=10)
            finally:
                loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    def __enter__(self) -> "FakeOpenAIServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ stats

    def _reset_counters(self) -> None:
        self._total = 0
        self._ok = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._by_model: Counter[str] = Counter()
        self._by_status: Counter[int] = Counter()
        self._by_fault: Counter[str] = Counter()
        self._log: list[tuple[str, str, int]] = []
        self._batch_counts: Counter[str] = Counter()

    def _snapshot(self) -> dict[str, Any]:
        return {
            "total_requests": self._total,
            "successful": self._ok,
            "by_model": dict(self._by_model),
            "by_status": dict(self._by_status),
            "by_fault": dict(self._by_fault),
            "in_flight": self._in_flight,
            "max_in_flight": self._max_in_flight,
            "log": list(self._log),
            "batches_created": self._batch_counts["batches_created"],
            "files_created": self._batch_counts["files_created"],
            "batch_lines": self._batch_counts["batch_lines"],
            "batch_api_requests": self._batch_counts["api_requests"],
            "batches_running_max": self._batch_counts["running_max"],
        }

    def _on_loop(self, fn: Callable[[], _T]) -> _T:
        # Counters are only touched on the server's loop (no locks in the hot path); another thread reads them by
        # running the read on that loop, so it never sees a dict mid-update.
        loop = self._loop
        if loop is not None and loop.is_running() and threading.get_ident() != self._loop_thread_id:
            async def call() -> _T:
                return fn()
            return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=10)
        return fn()

    def stats(self) -> dict[str, Any]:
        """Counters since start or the last reset_stats().

        Keys: ``total_requests`` (chat completion requests), ``successful`` (200 replies), ``by_model``,
        ``by_status`` (int status -> count; string keys in the ``GET /stats`` JSON), ``by_fault`` ("429", "500",
        "slow", "no_verdict" -> injected count), ``in_flight``, ``max_in_flight`` (most concurrent chat requests
        seen), ``log`` (list of ``(model, body_hash, status)`` in arrival-completion order; 499 = the client
        disconnected before the reply).
        """
        return self._on_loop(self._snapshot)

    def reset_stats(self) -> None:
        """Zero the counters and the log. Attempt counts per body (fault state) are kept, so retries still heal."""
        def reset() -> None:
            in_flight = self._in_flight
            self._reset_counters()
            self._in_flight = in_flight
            self._max_in_flight = in_flight
        self._on_loop(reset)

    # ------------------------------------------------------------------ model behaviour

    def _known(self, model: str) -> bool:
        return model in self.judges or self.strengths is None or model in self.strengths

    def _strength(self, model: str) -> float:
        return 0.0 if self.strengths is None else float(self.strengths.get(model, 0.0))

    def _answer(self, model: str, messages: Sequence[dict[str, Any]], max_tokens: int | None) -> tuple[str, str]:
        last_user = ""
        for m in reversed(messages):
            if m.get("role") == "user":
                last_user = _content_text(m.get("content"))
                break
        n = self.lengths.get(model, 40)
        style = self.styles.get(model, "plain")
        if style == "mixed":  # per answer, from two hash bytes: markdown or plain, and 1x or 1.5x the words
            coin = hashlib.shake_256(f"style\x00{model}\x00{last_user}".encode()).digest(2)
            style, n = ("markdown" if coin[0] < 128 else "plain"), (n if coin[1] < 128 else round(1.5 * n))
        finish = "stop"
        # The marker counts as one token against max_tokens; truncation lets tests exercise finish_reason=length.
        if max_tokens is not None and n + 1 > max_tokens:
            n, finish = max(0, max_tokens - 1), "length"
        if n and style == "markdown":
            # shake_256 is an extendable-output function: one byte more leaves the first n (the words) unchanged
            digest = hashlib.shake_256(f"{model}\x00{last_user}".encode()).digest(n + 1)
            return _markdown_answer(model, list(map(_WORD_OF_BYTE.__getitem__, digest[:n])), digest[n]), finish
        digest = hashlib.shake_256(f"{model}\x00{last_user}".encode()).digest(max(n, 1))
        words = " ".join(map(_WORD_OF_BYTE.__getitem__, digest[:n]))
        return (f"«{model}» {words}." if n else f"«{model}»"), finish

    def _profiled_probs(self, profile: JudgeProfile, user_text: str, a: str, b: str,
                        diff: float) -> tuple[float, float, float]:
        """(P(A), P(tie), P(B)) of a judge with a profile: the mixture of strength, coin flip and style."""
        tie = self.tie_rate if profile.tie_rate is None else profile.tie_rate
        if self.answer_spread:
            diff += self.answer_spread * (2.0 * (_uniform(_answer_text(user_text, a)) - _uniform(_answer_text(user_text, b))))
        if profile.style_logit:
            (m_a, w_a), (m_b, w_b) = _answer_style(user_text, a), _answer_style(user_text, b)
            gap = (w_a - w_b) / max(1, w_a + w_b) + (m_a - m_b) / (m_a + m_b + 1)
            diff += profile.style_logit * gap
        s_a = _sigmoid(diff + profile.position_bias) * (1.0 - tie)
        strength = (s_a, tie, max(0.0, 1.0 - s_a - tie))
        style = strength
        if profile.style_share > 0:
            style_a, style_b = _answer_style(user_text, a), _answer_style(user_text, b)
            if style_a != style_b:  # tuples compare markdown first, then words
                style = (1.0, 0.0, 0.0) if style_a > style_b else (0.0, 0.0, 1.0)
        rest = 1.0 - profile.noise - profile.style_share
        p_a, p_tie, p_b = (rest * st + profile.noise / 3 + profile.style_share * sy for st, sy in zip(strength, style))
        return p_a, p_tie, p_b

    def _judge(self, messages: Sequence[dict[str, Any]], logprobs: bool, top_k: int, no_verdict: bool,
               profiled: tuple[str, JudgeProfile] | None = None) -> tuple[str, list[dict[str, Any]] | None]:
        """A judge's reply and its logprobs; ``profiled`` = (judge name, its profile) for a judge with a profile."""
        all_text = "\n".join(f"{m.get('role', '')}:{_content_text(m.get('content'))}" for m in messages)
        user_text = "\n".join(_content_text(m.get("content")) for m in messages if m.get("role") == "user")
        names: list[str] = []
        for match in _MARKER_RE.finditer(user_text):
            name = match.group(1)
            if name not in names:
                names.append(name)
                if len(names) == 2:
                    break
        if no_verdict:
            # Choice letters as tokens but no "[[": a verdict read from anywhere but the verdict position is a guess.
            text = "Both A and B raise points worth weighing, and I would need more context to decide."
            return text, (self._plain_logprobs(text, top_k) if logprobs else None)

        if "[[A>>B]]" in all_text:
            fmt = "arena5"
        elif "[[A]]" in all_text:
            fmt = "pairwise"
        else:
            fmt = "single"

        if fmt == "single":
            score = min(10, max(1, round(5 + 3 * self._strength(names[0])))) if names else 5
            if not logprobs:
                return f"The answer is relevant and reasonably complete for the question. Rating: [[{score}]]", None
            # A peaked distribution around the given score, so expected-score consumers get a sensible value.
            probs = {str(score): 0.8}
            for nb in (score - 1, score + 1):
                if 1 <= nb <= 10:
                    probs[str(nb)] = 0.1
            total = sum(probs.values())
            probs = {k: v / total for k, v in probs.items()}
            return f"[[{score}]]", self._verdict_logprobs(str(score), probs, top_k)

        a = names[0] if names else ""
        b = names[1] if len(names) > 1 else ""
        diff = self._strength(a) - self._strength(b)
        if profiled is None:
            p_a = _sigmoid(diff + self.position_bias) * (1.0 - self.tie_rate)
            p_tie = self.tie_rate
            p_b = max(0.0, 1.0 - p_a - p_tie)
            u = _uniform(str(self.seed), all_text)
        else:
            p_a, p_tie, p_b = self._profiled_probs(profiled[1], user_text, a, b, diff)
            u = _uniform(str(self.seed), profiled[0], all_text)  # judges of one panel draw apart
        winner = "A" if u < p_a else ("tie" if u < p_a + p_tie else "B")

        if fmt == "pairwise":
            letter = {"A": "A", "B": "B", "tie": "C"}[winner]
            if logprobs:
                return f"[[{letter}]]", self._verdict_logprobs(letter, {"A": p_a, "B": p_b, "C": p_tie}, top_k)
            why = {"A": "Assistant A's answer is more accurate and more helpful than Assistant B's.",
                   "B": "Assistant B's answer is more accurate and more helpful than Assistant A's.",
                   "C": "Both answers are of comparable quality and helpfulness."}[letter]
            return f"{why} [[{letter}]]", None

        strong = abs(diff) > 1
        a_form, b_form = ("A>>B", "B>>A") if strong else ("A>B", "B>A")
        inner = {"A": a_form, "B": b_form, "tie": "A=B"}[winner]
        if logprobs:
            probs = {a_form: p_a, "A=B": p_tie, b_form: p_b}
            for form in ("A>>B", "A>B", "B>A", "B>>A"):
                probs.setdefault(form, 0.0)
            return f"[[{inner}]]", self._verdict_logprobs(inner, probs, top_k)
        why = {"A": "Assistant A gives the better answer overall.",
               "B": "Assistant B gives the better answer overall.",
               "tie": "The two answers are about equally good."}[winner]
        return f"{why} My final verdict is: [[{inner}]]", None

    @staticmethod
    def _entry(token: str, logprob: float, top: list[dict[str, Any]]) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": top}

    @staticmethod
    def _top(cands: list[tuple[str, float]], k: int) -> list[dict[str, Any]]:
        # The real API returns exactly k alternatives, most likely first; pad with far-off fillers.
        cands = sorted(cands, key=lambda c: -c[1])
        seen = {t for t, _ in cands}
        fillers = [f for f in _FILLERS if f not in seen]
        cands += [(f, -20.0 - i) for i, f in enumerate(fillers[: max(0, k - len(cands))])]
        return [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in cands[:k]]

    def _verdict_logprobs(self, chosen: str, probs: dict[str, float], k: int) -> list[dict[str, Any]]:
        """Tokens ``["[[", chosen, "]]"]``; the middle one carries the verdict distribution in top_logprobs."""
        cands = [(t, _logprob(p)) for t, p in probs.items()]
        return [
            self._entry("[[", 0.0, self._top([("[[", 0.0)], k)),
            self._entry(chosen, _logprob(probs[chosen]), self._top(cands, k)),
            self._entry("]]", 0.0, self._top([("]]", 0.0)], k)),
        ]

    def _plain_logprobs(self, text: str, k: int) -> list[dict[str, Any]]:
        return [self._entry(t, -0.05, self._top([(t, -0.05)], k)) for t in re.findall(r"\s*\S+", text)]

    def _completion(self, body: dict[str, Any], model: str, messages: list[dict[str, Any]], logprobs: bool, top_k: int,
                    max_tokens: int | None, body_hash: str, *, no_verdict: bool = False) -> dict[str, Any]:
        """The chat completion a request gets (live calls and batch lines alike)."""
        finish = "stop"
        lp_content: list[dict[str, Any]] | None = None
        if model in self.judges:
            profile = self.judge_profiles.get(model)
            # a profile-less judge gets the call subclasses (tests' special judges) have always overridden
            text, lp_content = (self._judge(messages, logprobs, top_k, no_verdict) if profile is None
                                else self._judge(messages, logprobs, top_k, no_verdict, profiled=(model, profile)))
            last = messages[-1]
            if body.get("continue_final_message") and last.get("role") == "assistant" and lp_content:
                # continue the prefilled assistant text: drop what it already holds, keep max_tokens tokens
                held = _content_text(last.get("content"))
                if held and text.startswith(held) and lp_content[0]["token"] == held:
                    lp_content = lp_content[1:]
                lp_content = lp_content[: max_tokens or None]
                text = "".join(t["token"] for t in lp_content)
        else:
            text, finish = self._answer(model, messages, max_tokens)
            if logprobs:
                lp_content = self._plain_logprobs(text, top_k)

        prompt_chars = sum(len(_content_text(m.get("content"))) for m in messages if isinstance(m, dict))
        prompt_tokens = max(1, prompt_chars // 4)  # the usual ~4 characters per token; no tokenizer here
        completion_tokens = len(text.split())
        return {
            "id": f"chatcmpl-{body_hash[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_evalsuite_fake",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": {"content": lp_content, "refusal": None} if logprobs else None,
                "finish_reason": finish,
            }],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    # ------------------------------------------------------------------ Batch API

    def _new_id(self, prefix: str, table: dict[str, Any]) -> str:
        return f"{prefix}-{hashlib.sha256(f'{prefix}{len(table)}{time.time_ns()}'.encode()).hexdigest()[:24]}"

    @staticmethod
    def _public(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def _put_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        fid = self._new_id("file", self._files)
        obj = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()), "filename": filename,
               "purpose": purpose, "status": "processed", "_data": data}
        self._files[fid] = obj
        return obj

    async def _file_create(self, request: web.Request) -> web.Response:
        self._batch_counts["api_requests"] += 1
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        form = await request.post()
        upload, purpose = form.get("file"), str(form.get("purpose") or "")
        if not isinstance(upload, web.FileField):
            return _error(400, "'file' is a required multipart field.", "invalid_request_error", None, param="file")
        if purpose != "batch":
            return _error(400, f"purpose {purpose!r} is not supported here; use 'batch'.", "invalid_request_error", None,
                          param="purpose")
        self._batch_counts["files_created"] += 1
        obj = self._put_file(upload.file.read(), upload.filename or "upload.jsonl", purpose)
        return web.json_response(self._public(obj))

    async def _file_retrieve(self, request: web.Request) -> web.Response:
        self._batch_counts["api_requests"] += 1
        obj = self._files.get(request.match_info["file_id"])
        if obj is None:
            return _error(404, "No such File object.", "invalid_request_error", None)
        return web.json_response(self._public(obj))

    async def _file_content(self, request: web.Request) -> web.Response:
        self._batch_counts["api_requests"] += 1
        obj = self._files.get(request.match_info["file_id"])
        if obj is None:
            return _error(404, "No such File object.", "invalid_request_error", None)
        return web.Response(body=obj["_data"], content_type="application/octet-stream")

    async def _batch_create(self, request: web.Request) -> web.Response:
        self._batch_counts["api_requests"] += 1
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Could not parse the JSON body of your request.", "invalid_request_error", None)
        source = self._files.get(str(body.get("input_file_id")))
        if source is None:
            return _error(404, "No such File object.", "invalid_request_error", None, param="input_file_id")
        if body.get("endpoint") != "/v1/chat/completions":
            return _error(400, "This fake server batches only /v1/chat/completions.", "invalid_request_error", None,
                          param="endpoint")
        now = int(time.time())
        bid = self._new_id("batch", self._batches)
        lines = [line for line in source["_data"].decode("utf-8").splitlines() if line.strip()]
        batch: dict[str, Any] = {
            "id": bid, "object": "batch", "endpoint": body["endpoint"], "errors": None,
            "input_file_id": source["id"], "completion_window": body.get("completion_window", "24h"),
            "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": now,
            "in_progress_at": None, "expires_at": now + 86400, "finalizing_at": None, "completed_at": None,
            "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        self._batches[bid] = batch
        self._batch_counts["batches_created"] += 1
        task = asyncio.get_running_loop().create_task(self._process_batch(batch, lines, len(self._batches)))
        self._batch_tasks.add(task)
        task.add_done_callback(self._batch_tasks.discard)
        return web.json_response(batch)

    async def _batch_retrieve(self, request: web.Request) -> web.Response:
        self._batch_counts["api_requests"] += 1
        batch = self._batches.get(request.match_info["batch_id"])
        if batch is None:
            return _error(404, "No such batch.", "invalid_request_error", None)
        return web.json_response(batch)

    async def _batch_list(self, request: web.Request) -> web.Response:
        self._batch_counts["api_requests"] += 1
        data = sorted(self._batches.values(), key=lambda b: b["created_at"], reverse=True)
        return web.json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None, "has_more": False})

    async def _batch_cancel(self, request: web.Request) -> web.Response:
        self._batch_counts["api_requests"] += 1
        batch = self._batches.get(request.match_info["batch_id"])
        if batch is None:
            return _error(404, "No such batch.", "invalid_request_error", None)
        if batch["status"] in ("validating", "in_progress"):
            batch["status"], batch["cancelling_at"] = "cancelling", int(time.time())
        return web.json_response(batch)

    def _batch_line(self, line: str) -> tuple[bool, dict[str, Any]]:
        """(answered, output line) for one input line: the completion a live call with this body would get."""
        obj = json.loads(line)
        cid = str(obj.get("custom_id"))
        rid = f"req_{hashlib.sha256(cid.encode()).hexdigest()[:20]}"

        def failure(status: int, message: str, code: str | None) -> tuple[bool, dict[str, Any]]:
            err = {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
                             "param": None, "code": code}}
            return False, {"id": f"batch_{rid}", "custom_id": cid, "error": None,
                           "response": {"status_code": status, "request_id": rid, "body": err}}

        body = obj.get("body") if isinstance(obj.get("body"), dict) else {}
        model = str(body.get("model", ""))
        messages = body.get("messages")
        if obj.get("method") != "POST" or obj.get("url") != "/v1/chat/completions":
            return failure(400, "Lines must POST to /v1/chat/completions.", None)
        if not self._known(model):
            return failure(404, f"The model '{model}' does not exist", "model_not_found")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return failure(400, "'messages' must be a non-empty array of message objects.", None)
        plan = self.batch_plan
        self._batch_attempts[cid] += 1
        if plan.fail_rate and self._batch_attempts[cid] <= plan.faulty_attempts \
                and _uniform("batch", str(plan.seed), cid) < plan.fail_rate:
            return failure(500, "The server had an error processing this line (injected fault).", None)
        max_tokens_raw = body.get("max_completion_tokens") or body.get("max_tokens")
        canonical = json.dumps({k: v for k, v in body.items() if k not in _HASH_EXCLUDED_KEYS},
                               sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        reply = self._completion(body, model, messages, bool(body.get("logprobs")), int(body.get("top_logprobs") or 0),
                                 int(max_tokens_raw) if max_tokens_raw else None,
                                 hashlib.sha256(canonical.encode()).hexdigest())
        return True, {"id": f"batch_{rid}", "custom_id": cid, "error": None,
                      "response": {"status_code": 200, "request_id": rid, "body": reply}}

    async def _process_batch(self, batch: dict[str, Any], lines: list[str], nth: int) -> None:
        plan = self.batch_plan
        await asyncio.sleep(0)

        def invalid(code: str, message: str, line: int | None) -> None:
            batch.update(status="failed", failed_at=int(time.time()), errors={"object": "list", "data": [
                {"code": code, "message": message, "param": None, "line": line}]})

        size = len(self._files[batch["input_file_id"]]["_data"])
        if len(lines) > plan.max_lines:  # the whole file is refused before any line runs, as OpenAI's validation does
            invalid("too_many_requests", f"The input file holds {len(lines)} requests; a batch may hold at most "
                                         f"{plan.max_lines}.", None)
            return
        if size > plan.max_bytes:
            invalid("file_too_large", f"The input file is {size} bytes; a batch input file may be at most "
                                      f"{plan.max_bytes} bytes.", None)
            return
        for i, line in enumerate(lines, 1):  # a line that is not JSON fails the whole batch, as OpenAI's validation does
            try:
                json.loads(line)
            except ValueError:
                invalid("invalid_json_line", f"line {i} is not valid JSON", i)
                return
        batch.update(status="in_progress", in_progress_at=int(time.time()))
        self._batches_running += 1
        self._batch_counts["running_max"] = max(self._batch_counts["running_max"], self._batches_running)
        try:
            await self._answer_batch(batch, lines, nth)
        finally:
            self._batches_running -= 1

    async def _answer_batch(self, batch: dict[str, Any], lines: list[str], nth: int) -> None:
        plan = self.batch_plan
        expires = plan.expire_after is not None and (plan.expiring is None or nth in plan.expiring)
        ok: list[str] = []
        bad: list[str] = []
        counts = batch["request_counts"]
        end = "completed"
        for i, line in enumerate(lines):
            if batch["status"] == "cancelling":
                end = "cancelled"
                break
            if expires and plan.expire_after is not None and i >= plan.expire_after:
                end = "expired"
                break
            if plan.line_seconds > 0:
                await asyncio.sleep(plan.line_seconds)
            elif i % 200 == 199:
                await asyncio.sleep(0)  # stay responsive to retrieve calls
            answered, out = self._batch_line(line)
            self._batch_counts["batch_lines"] += 1
            (ok if answered else bad).append(json.dumps(out, separators=(",", ":")))
            counts["completed" if answered else "failed"] += 1
        batch.update(status="finalizing", finalizing_at=int(time.time()))
        await asyncio.sleep(0)
        if ok:
            batch["output_file_id"] = self._put_file(("\n".join(ok) + "\n").encode(), "batch_output.jsonl",
                                                     "batch_output")["id"]
        if bad:
            batch["error_file_id"] = self._put_file(("\n".join(bad) + "\n").encode(), "batch_errors.jsonl",
                                                    "batch_output")["id"]
        stamp = {"completed": "completed_at", "expired": "expired_at", "cancelled": "cancelled_at"}[end]
        batch.update({"status": end, stamp: int(time.time())})

    # ------------------------------------------------------------------ HTTP handlers

    def _authorized(self, request: web.Request) -> bool:
        return self._expected_auth is None or request.headers.get("Authorization") == self._expected_auth

    async def _models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        names = sorted(set(self.strengths or ()) | self.judges)
        data = [{"id": n, "object": "model", "created": 0, "owned_by": self.owned_by} for n in names]
        return web.json_response({"object": "list", "data": data})

    async def _stats_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self._snapshot())

    async def _chat(self, request: web.Request) -> web.Response:
        self._total += 1
        self._in_flight += 1
        if self._in_flight > self._max_in_flight:
            self._max_in_flight = self._in_flight
        model, body_hash, status = "", "", 0
        try:
            raw = await request.read()
            try:
                body = json.loads(raw)
                if not isinstance(body, dict):
                    raise ValueError("body is not a JSON object")
            except ValueError as exc:
                body_hash = hashlib.sha256(raw).hexdigest()
                status = 400
                return _error(400, f"Could not parse the JSON body of your request: {exc}",
                              "invalid_request_error", None)
            model = str(body.get("model", ""))
            canonical = json.dumps({k: v for k, v in body.items() if k not in _HASH_EXCLUDED_KEYS},
                                   sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            body_hash = hashlib.sha256(canonical.encode()).hexdigest()

            if not self._authorized(request):
                status = 401
                return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
            if not self._known(model):
                status = 404
                return _error(404, f"The model '{model}' does not exist", "invalid_request_error",
                              "model_not_found", param="model")
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
                status = 400
                return _error(400, "'messages' must be a non-empty array of message objects.", "invalid_request_error", None,
                              param="messages")
            if body.get("stream"):
                status = 400
                return _error(400, "This fake server does not support stream=true.", "invalid_request_error",
                              None, param="stream")
            try:
                logprobs = bool(body.get("logprobs"))
                top_k = int(body.get("top_logprobs") or 0)
                max_tokens_raw = body.get("max_completion_tokens") or body.get("max_tokens")
                max_tokens = int(max_tokens_raw) if max_tokens_raw else None
            except (TypeError, ValueError) as exc:
                status = 400
                return _error(400, f"Invalid request parameter: {exc}", "invalid_request_error", None)

            fault = None
            faults = self.faults
            if faults.active:
                attempt = self._attempts.get(body_hash, 0) + 1
                self._attempts[body_hash] = attempt
                if attempt <= faults.faulty_attempts:
                    fault = faults.kind_for(body_hash)
            if fault == "429":
                self._by_fault["429"] += 1
                status = 429
                headers = {"retry-after": f"{faults.retry_after:g}",
                           "retry-after-ms": f"{faults.retry_after * 1000:g}"}
                return _error(429, "Rate limit reached for requests (injected fault).", "requests",
                              "rate_limit_exceeded", headers=headers)
            if fault == "500":
                self._by_fault["500"] += 1
                status = 500
                return _error(500, "The server had an error while processing your request (injected fault).",
                              "server_error", None)
            if fault == "slow":
                self._by_fault["slow"] += 1
                await asyncio.sleep(faults.slow_seconds)
            elif self.latency > 0:
                await asyncio.sleep(self.latency)

            if fault == "no_verdict" and model in self.judges:
                self._by_fault["no_verdict"] += 1
            reply = self._completion(body, model, messages, logprobs, top_k, max_tokens, body_hash,
                                     no_verdict=fault == "no_verdict")
            transport = request.transport
            if transport is None or transport.is_closing():
                status = 499  # the client gave up (timeout) while we slept; the reply goes nowhere
            else:
                status = 200
                self._ok += 1
            return web.Response(body=json.dumps(reply, separators=(",", ":")).encode(),
                                content_type="application/json")
        except asyncio.CancelledError:
            status = 499
            raise
        finally:
            self._in_flight -= 1
            self._by_model[model] += 1
            self._by_status[status] += 1
            self._log.append((model, body_hash, status))


# ---------------------------------------------------------------------- CLI


def _pairs(items: Sequence[str], cast: Callable[[str], _T], flag: str) -> dict[str, _T]:
    out: dict[str, _T] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not name:
            raise SystemExit(f"{flag} expects NAME=VALUE, got {item!r}")
        out[name] = cast(value)
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evalsuite.testing.fake_server",
                                description="Fake OpenAI-compatible chat server for tests and benchmarks.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = any free port (printed in the READY line)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds every reply waits")
    p.add_argument("--strength", action="append", default=[], metavar="NAME=S",
                   help="answer model and its strength (repeat); none given = accept any model with strength 0")
    p.add_argument("--judge", action="append", default=None, metavar="NAME", help="judge model name (repeat)")
    p.add_argument("--length", action="append", default=[], metavar="NAME=N", help="answer length in words")
    p.add_argument("--style", action="append", default=[], metavar="NAME=STYLE",
                   help=f"answer style of a model (repeat): {' or '.join(ANSWER_STYLES)}")
    p.add_argument("--judge-profile", action="append", default=[], metavar="NAME=KEY:V,...",
                   help="a judge with faults (repeat), e.g. biased=position_bias:3 or "
                        "noisy=noise:0.5,style_share:0.2,tie_rate:0.1")
    p.add_argument("--tie-rate", type=float, default=0.1)
    p.add_argument("--position-bias", type=float, default=0.0)
    p.add_argument("--api-key", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rate-429", type=float, default=0.0)
    p.add_argument("--rate-500", type=float, default=0.0)
    p.add_argument("--rate-slow", type=float, default=0.0)
    p.add_argument("--slow-seconds", type=float, default=5.0)
    p.add_argument("--rate-no-verdict", type=float, default=0.0)
    p.add_argument("--retry-after", type=float, default=0.01)
    p.add_argument("--faulty-attempts", type=int, default=1)
    p.add_argument("--fault-seed", type=int, default=0)
    p.add_argument("--batch-fail-rate", type=float, default=0.0, help="share of batch lines answered with a 500")
    p.add_argument("--batch-line-seconds", type=float, default=0.0, help="processing time per batch line")
    p.add_argument("--batch-expire-after", type=int, default=None, help="batches expire after this many lines")
    return p


def _style(value: str) -> str:
    if value not in ANSWER_STYLES:
        raise ValueError(f"style must be one of {ANSWER_STYLES}, got {value!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; prints ``READY <base_url>`` (one line, flushed) once listening."""
    args = _parser().parse_args(argv)
    try:
        styles = _pairs(args.style, _style, "--style")
        profiles = _pairs(args.judge_profile, JudgeProfile.parse, "--judge-profile")
    except ValueError as exc:
        raise SystemExit(f"fake_server: {exc}") from None
    server = FakeOpenAIServer(
        strengths=_pairs(args.strength, float, "--strength") or None,
        judges=args.judge if args.judge is not None else ("judge",),
        lengths=_pairs(args.length, int, "--length"),
        styles=styles,
        judge_profiles=profiles,
        latency=args.latency,
        tie_rate=args.tie_rate,
        position_bias=args.position_bias,
        faults=FaultPlan(rate_429=args.rate_429, rate_500=args.rate_500, rate_slow=args.rate_slow,
                         slow_seconds=args.slow_seconds, rate_no_verdict=args.rate_no_verdict,
                         retry_after=args.retry_after, faulty_attempts=args.faulty_attempts, seed=args.fault_seed),
        batch=BatchPlan(fail_rate=args.batch_fail_rate, line_seconds=args.batch_line_seconds,
                        expire_after=args.batch_expire_after),
        api_key=args.api_key,
        seed=args.seed,
        host=args.host,
        port=args.port,
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        url = await server.astart()
        sys.stdout.write(f"READY {url}\n")
        sys.stdout.flush()
        try:
            await stop.wait()
        finally:
            await server.astop()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
