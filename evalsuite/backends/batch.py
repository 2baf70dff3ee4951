"""Batch files: a stage's pending model calls sent as OpenAI Batch input files instead of one request each.

This module owns the batch path of every stage that asks a model (``judge``, ``compare``, ``generate``, ``label``).
The stage plans its requests exactly as for live calls (each keyed by its cache key); :func:`run_batched` then

1. writes the calls not yet answered as OpenAI Batch input files in the run directory
   (``batches/*.jsonl``: one line per call, ``custom_id`` = the call's cache key, ``method: POST``,
   ``url: /v1/chat/completions``, ``body`` = the body the live path would send, :func:`evalsuite.backends.openai.chat_body`),
   as many files as the provider's :class:`FileLimits` need (OpenAI: 50,000 lines and 200 MB per file,
   :func:`plan_batch_files`);
2. has a provider answer them, chosen by the model entry's backend (:data:`PROVIDERS`):
   ``openai`` uploads each with the ``openai`` SDK (``files.create(purpose="batch")``, ``batches.create``, polling
   ``batches.retrieve``, then ``files.content`` of the output and error files), up to ``in_flight`` batches at once,
   all polled in one loop; ``vllm`` runs ``python -m vllm.entrypoints.openai.run_batch`` under the model entry's
   interpreter (``python = ...``), one file at a time (each runner loads the engine);
3. hands each answer to the stage's ``on_done`` as a ``ChatResult`` (the same callback the live backends call) as soon
   as its batch ends, so results land in the run store keyed by cache key exactly like live ones, and a later live run
   makes 0 calls. Follow-ups ``on_done`` returns (a generation's turn 2) go into the next batch.

Every batch id and its calls are recorded in the run store (``batches``, ``batch_calls``) *before* the runner waits
for it, so a killed run re-attaches to all of its open batches instead of paying twice: a re-run plans the same
pending calls, finds the open batches holding them, waits for those, and writes files only for the calls no batch
holds. (OpenAI batches also carry the input file's sha256 in their metadata, so a run killed between
``batches.create`` and the store write still finds its batch.)

Lines a batch answers with an error (the error file, a non-200 status in the output) are asked again live
(``retry="live"``, the default) or in a follow-up batch (``retry="batch"``); a call that fails every follow-up batch
is stored as an ``api`` error like a live call that outlasted its retries. A batch that ends ``expired``, ``failed``
or ``cancelled`` keeps what it answered; when another batch of the same round completed, its unanswered calls follow
the same retry policy and the other batches are not disturbed. When every batch of a round ends that way (the
endpoint, not one batch, is the problem), the run stops with one ``InputError`` naming the batch ids and the fix
(exit 2) once all of them stopped; a re-run submits only the calls still missing.

Cost: calls a batch answered are billed at the batch price (:func:`token_cost`; ``price_batch_input`` /
``price_batch_output`` on the model or judge entry, default half the live price, as OpenAI bills batches).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Final, Literal, Mapping, Protocol, Sequence

from evalsuite.backends._base import ChatRequest, ChatResult, OnDone, Progress
from evalsuite.backends.roles import StageBackends
from evalsuite.errors import InputError
from evalsuite.store.atomic import atomic_write_text
from evalsuite.store.names import path_inside, safe_file_name
from evalsuite.store import BatchRecord, RunStore

if TYPE_CHECKING:
    from evalsuite.config import ModelSpec

BATCH_URL: Final = "/v1/chat/completions"
BATCH_DIR = "batches"  # under the run directory: input files, local output files, runner logs
COMPLETION_WINDOW: Final = "24h"
# A batch in one of these is finished for good; anything else (validating, in_progress, finalizing, completed but not
# yet read, running) is open and may be re-attached to.
CLOSED_STATUSES = ("ingested", "failed", "expired", "cancelled")
BAD_STATUSES = ("failed", "expired", "cancelled")
STOPPED_STATUSES = ("completed", *BAD_STATUSES)  # the provider will not change the batch any more
# Default for the batch price: OpenAI bills batch calls at half the live price.
BATCH_PRICE_SHARE = 0.5
SHA_METADATA_KEY = "evalsuite_input_sha256"

RetryMode = Literal["live", "batch"]
Notify = Callable[[str], None]


@dataclass(frozen=True)
class BatchOptions:
    """How a stage's calls go through batch files."""

    retry: RetryMode = "live"  # failed lines: asked again live, or in a follow-up batch
    poll_interval: float = 10.0  # seconds between status checks of a submitted batch
    max_rounds: int = 3  # batches per call with retry="batch" before it is stored as an api error
    # None: the provider's own limits (FileLimits); more calls than one file holds go into several batches
    max_lines: int | None = None  # lines per batch input file
    max_bytes: int | None = None  # bytes per batch input file
    max_in_flight: int | None = None  # batches submitted and not yet ended at once
    notify: Notify | None = None  # one-line status messages (submitted, re-attached, retried); None: silent

    def __post_init__(self) -> None:
        for name in ("max_lines", "max_bytes", "max_in_flight"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"batch option {name} is {value}, but must be at least 1",
                                 fix=f"set {name} to a positive number, or leave it unset for the provider's limit")

    def limits(self, provider: "FileLimits") -> "FileLimits":
        """The provider's limits with this run's overrides."""
        return FileLimits(lines=self.max_lines or provider.lines, bytes=self.max_bytes or provider.bytes,
                          in_flight=self.max_in_flight or provider.in_flight)


@dataclass(frozen=True)
class FileLimits:
    """What one batch input file may hold (lines, bytes) and how many batches may be in flight at once."""

    lines: int
    bytes: int
    in_flight: int


# The OpenAI Batch API's per-file limits (50,000 requests, 200 MB). It sets no count of batches at once, only a
# per-model limit on enqueued tokens; 8 keeps a large run moving without queueing the whole run at once.
OPENAI_LIMITS: Final = FileLimits(lines=50_000, bytes=200_000_000, in_flight=8)
# vLLM's run_batch has no file limit, but each runner loads the engine: one at a time on one machine.
VLLM_LIMITS: Final = FileLimits(lines=50_000, bytes=2**62, in_flight=1)


@dataclass
class BatchReport:
    """What the batch path did in one ``run_batched`` call (or, summed, in a whole stage)."""

    created: list[str] = field(default_factory=list)  # batch ids this run submitted
    reattached: list[str] = field(default_factory=list)  # open batches of an earlier, interrupted run it waited for
    answered: int = 0  # calls a batch answered
    failed: int = 0  # calls a batch answered with an error
    retried_live: int = 0  # failed calls asked again live

    def add(self, other: "BatchReport") -> None:
        self.created += other.created
        self.reattached += other.reattached
        self.answered += other.answered
        self.failed += other.failed
        self.retried_live += other.retried_live

    def summary(self) -> str:
        return (f"{self.answered} calls answered by {len(self.created)} new and {len(self.reattached)} re-attached "
                f"batch(es); {self.failed} failed lines" + (f", {self.retried_live} retried live" if self.retried_live else ""))


# ---------------------------------------------------------------------------------------------------------------------
# Batch files (pure)


@dataclass(frozen=True)
class LineOutcome:
    """One line of a batch's output or error file: the chat completion body, or why the call failed."""

    custom_id: str
    body: dict[str, Any] | None
    error: str | None


def batch_line(key: str, body: Mapping[str, Any]) -> str:
    """One line of an OpenAI Batch input file (no newline).

    >>> batch_line("k1", {"model": "judge", "messages": []})
    '{"custom_id": "k1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "judge", "messages": []}}'
    """
    return json.dumps({"custom_id": key, "method": "POST", "url": BATCH_URL, "body": dict(body)}, ensure_ascii=False)


def plan_batch_files(sizes: Sequence[int], max_lines: int, max_bytes: int) -> list[range]:
    """Consecutive lines grouped into batch files: each file holds at most ``max_lines`` lines and ``max_bytes`` bytes
    (``sizes``: each line's bytes, newline included). A single line over ``max_bytes`` gets a file of its own (the
    caller refuses it before it is sent).

    >>> plan_batch_files([5, 5, 5, 5, 5], max_lines=2, max_bytes=100)
    [range(0, 2), range(2, 4), range(4, 5)]
    >>> plan_batch_files([60, 30, 30, 50], max_lines=10, max_bytes=100)
    [range(0, 2), range(2, 4)]
    >>> plan_batch_files([], max_lines=10, max_bytes=100)
    []
    """
    files: list[range] = []
    start, lines, size = 0, 0, 0
    for i, n in enumerate(sizes):
        if lines and (lines + 1 > max_lines or size + n > max_bytes):
            files.append(range(start, i))
            start, lines, size = i, 0, 0
        lines, size = lines + 1, size + n
    if lines:
        files.append(range(start, len(sizes)))
    return files


def parse_batch_output(text: str) -> dict[str, LineOutcome]:
    """custom_id -> outcome, from the text of a batch output or error file (OpenAI's and vLLM's ``run_batch`` share
    the shape ``{custom_id, response: {status_code, body}, error}``). A line with an ``error`` or a status other than
    200 is a failure; a line that is not JSON or has no custom_id is skipped (it cannot be matched to a call).

    >>> ok = '{"custom_id": "a", "response": {"status_code": 200, "body": {"choices": []}}, "error": null}'
    >>> bad = '{"custom_id": "b", "response": {"status_code": 500, "body": {"error": {"message": "boom"}}}, "error": null}'
    >>> out = parse_batch_output(ok + "\\n" + bad + "\\n")
    >>> out["a"].error is None, out["b"].error
    (True, 'HTTP 500: boom')
    """
    out: dict[str, LineOutcome] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("custom_id"), str):
            continue
        raw_response = obj.get("response")
        response: dict[str, Any] = raw_response if isinstance(raw_response, dict) else {}
        status = int(response.get("status_code") or 0)
        body = response.get("body") if isinstance(response.get("body"), dict) else None
        error = obj.get("error")
        if error is None and status == 200 and body is not None:
            out[obj["custom_id"]] = LineOutcome(obj["custom_id"], body, None)
            continue
        out[obj["custom_id"]] = LineOutcome(obj["custom_id"], None, _error_text(status, error, body))
    return out


def _error_text(status: int, error: Any, body: dict[str, Any] | None) -> str:
    detail: Any = error
    if isinstance(detail, dict):
        detail = detail.get("message") or (detail.get("error") or {}).get("message") or detail.get("code")
    if not detail and body is not None:
        detail = (body.get("error") or {}).get("message") if isinstance(body.get("error"), dict) else body.get("message")
    text = str(detail or "no response").splitlines()[0][:200] if detail else "no response"
    return f"HTTP {status}: {text}" if status and status != 200 else text


def batch_prices(spec: "ModelSpec") -> tuple[float | None, float | None]:
    """USD per 1M (prompt, completion) tokens of a call answered through a batch: the entry's
    ``price_batch_input`` / ``price_batch_output``, else half its live price."""
    p_in = spec.price_batch_input if spec.price_batch_input is not None else (
        None if spec.price_input is None else spec.price_input * BATCH_PRICE_SHARE)
    p_out = spec.price_batch_output if spec.price_batch_output is not None else (
        None if spec.price_output is None else spec.price_output * BATCH_PRICE_SHARE)
    return p_in, p_out


def token_cost(spec: "ModelSpec", tokens: tuple[int, int], batch_tokens: tuple[int, int] = (0, 0)) -> float | None:
    """USD for ``tokens`` (prompt, completion; all calls) of which ``batch_tokens`` were answered by a batch and
    billed at the batch price; None when the entry names no price at all."""
    b_in, b_out = batch_prices(spec)
    if all(x is None for x in (spec.price_input, spec.price_output, b_in, b_out)):
        return None
    live_p, live_c = tokens[0] - batch_tokens[0], tokens[1] - batch_tokens[1]
    usd = (live_p * (spec.price_input or 0) + live_c * (spec.price_output or 0)
           + batch_tokens[0] * (b_in or 0) + batch_tokens[1] * (b_out or 0))
    return round(usd / 1e6, 6)


# ---------------------------------------------------------------------------------------------------------------------
# Providers: who answers a batch file


@dataclass(frozen=True)
class BatchState:
    """What one status check of a batch found: its status and lines answered so far; once it stopped (``stopped``),
    also the answered and failed lines and a one-line reason."""

    status: str
    outcomes: dict[str, LineOutcome] = field(default_factory=dict)
    message: str = ""
    done: int = 0  # lines answered so far, as the provider counts them

    @property
    def stopped(self) -> bool:
        return self.status in STOPPED_STATUSES


class BatchProvider(Protocol):
    name: str
    endpoint: str  # where this provider's batches go; an open batch is re-attached only at the same endpoint
    limits: FileLimits  # what one input file may hold, and batches at once
    poll_cap: float  # the longest wait between two checks (a local runner is cheap to check)

    def body(self, req: ChatRequest) -> dict[str, Any]:
        """The request body of ``req`` in the batch file (what the live path would send)."""
        ...

    def result(self, req: ChatRequest, body: dict[str, Any], record: BatchRecord) -> ChatResult:
        """A successful line's chat completion as the ``ChatResult`` of ``req``."""
        ...

    def find(self, sha256: str) -> BatchRecord | None:
        """An open batch submitted for this exact input file but never recorded (the run died in between)."""
        ...

    def submit(self, input_path: Path, sha256: str, requests: Sequence[ChatRequest], target: str) -> BatchRecord:
        """Start the batch; returns its record (status as submitted)."""
        ...

    def poll(self, record: BatchRecord) -> BatchState:
        """One status check (no waiting): the status and lines done, with the outcomes once the batch stopped."""
        ...


def _runner_dir(run_dir: Path) -> Path:
    path = (run_dir / BATCH_DIR).resolve()  # absolute: a re-run from another folder still finds the files
    path.mkdir(parents=True, exist_ok=True)
    return path


class OpenAIBatchProvider:
    """The OpenAI Batch API (or any server that speaks it) through the ``openai`` SDK."""

    name = "openai"
    limits = OPENAI_LIMITS
    poll_cap = float("inf")  # --batch-poll as given: each check is an API request

    def __init__(self, spec: "ModelSpec", run_dir: Path) -> None:
        import openai

        from evalsuite.backends.openai import DUMMY_API_KEY, OpenAIBackend

        OpenAIBackend(spec)  # the live backend's checks: an endpoint or a key is configured
        if isinstance(spec.base_url, list):
            raise InputError(f"--batch sends {spec.name!r}'s calls as one batch file to one endpoint, but its base_url "
                             f"lists {len(spec.base_url)} replicas", where=f"models.{spec.name}.base_url",
                             fix="set base_url to one server for --batch, or drop --batch to spread calls live")
        self.spec = spec
        self.run_dir = run_dir
        self.endpoint = f"openai:{spec.base_url or os.environ.get('OPENAI_BASE_URL') or 'api.openai.com'}"
        key = (os.environ.get(spec.api_key_env) if spec.api_key_env else None) or DUMMY_API_KEY
        self._openai = openai
        self.client = openai.OpenAI(base_url=spec.base_url, api_key=key, max_retries=spec.max_retries,
                                    timeout=spec.timeout)
        self._prefill: bool | None = None
        # which run directory a batch belongs to, in its metadata (values are at most 512 characters)
        self._run_id = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:32]

    def _fail(self, exc: Exception, doing: str) -> InputError:
        status = getattr(exc, "status_code", None)
        what = f"HTTP {status}" if status else type(exc).__name__
        return InputError(
            f"batch endpoint {self.spec.base_url or 'api.openai.com'} failed while {doing} for model "
            f"{self.spec.name!r} ({what}: {str(exc).splitlines()[0][:160]})",
            fix="check base_url, the key and that the server offers /v1/files and /v1/batches; finished calls are "
                "saved, re-run the same command to resume",
        )

    @property
    def prefill(self) -> bool:
        """Whether the server continues a final assistant message (as the live backend learns it from GET /models)."""
        if self._prefill is None:
            from evalsuite.backends.openai import PREFILL_SERVERS

            try:
                listed = self.client.with_options(max_retries=0, timeout=min(10.0, self.spec.timeout)).models.list()
                owners = {m.id: str(getattr(m, "owned_by", "") or "") for m in listed.data}
                self._prefill = owners.get(self.spec.model, next(iter(owners.values()), "")) in PREFILL_SERVERS
            except self._openai.APIConnectionError as exc:
                raise self._fail(exc, "listing models") from None
            except (self._openai.AuthenticationError, self._openai.PermissionDeniedError) as exc:
                raise self._fail(exc, "listing models") from None
            except self._openai.APIError:
                self._prefill = False
        return self._prefill

    def body(self, req: ChatRequest) -> dict[str, Any]:
        from evalsuite.backends.openai import chat_body

        return chat_body(self.spec.model, req, prefill=self.prefill if req.logprob_choices else False)

    def result(self, req: ChatRequest, body: dict[str, Any], record: BatchRecord) -> ChatResult:
        from evalsuite.backends.openai import chat_result

        return chat_result(req, body, prefilled=bool(record.details.get("prefill")))

    def _record(self, batch: Any, input_path: Path, n: int, target: str, prefill: bool) -> BatchRecord:
        details = {"input_file_id": batch.input_file_id, "prefill": prefill}
        return BatchRecord(batch.id, self.name, target, self.endpoint, str(input_path), str(batch.status), n, details)

    def find(self, sha256: str) -> BatchRecord | None:
        try:
            for batch in self.client.batches.list(limit=100).data:  # the newest page only, never the whole history
                meta = batch.metadata or {}
                # the same calls submitted for this run directory (another run's batch is not this run's to take)
                if meta.get(SHA_METADATA_KEY) == sha256 and meta.get("evalsuite_run") == self._run_id \
                        and batch.status not in BAD_STATUSES:
                    total = batch.request_counts.total if batch.request_counts else 0
                    return self._record(batch, Path(meta.get("evalsuite_input", "")), total,
                                        meta.get("evalsuite_target", ""), meta.get("evalsuite_prefill") == "1")
        except self._openai.APIError:
            return None  # a server without GET /batches: nothing to find
        return None

    def submit(self, input_path: Path, sha256: str, requests: Sequence[ChatRequest], target: str) -> BatchRecord:
        prefill = any(r.logprob_choices for r in requests) and self.prefill
        try:
            with input_path.open("rb") as fh:
                uploaded = self.client.files.create(file=(input_path.name, fh), purpose="batch")
            batch = self.client.batches.create(
                input_file_id=uploaded.id, endpoint=BATCH_URL, completion_window=COMPLETION_WINDOW,
                metadata={SHA_METADATA_KEY: sha256, "evalsuite_run": self._run_id, "evalsuite_target": target[:500],
                          "evalsuite_input": str(input_path)[:500], "evalsuite_prefill": "1" if prefill else "0"},
            )
        except self._openai.APIError as exc:
            raise self._fail(exc, "submitting a batch") from None
        return self._record(batch, input_path, len(requests), target, prefill)

    def _content(self, file_id: str | None) -> str:
        if not file_id:
            return ""
        return self.client.files.content(file_id).text

    def poll(self, record: BatchRecord) -> BatchState:
        try:
            batch = self.client.batches.retrieve(record.batch_id)
        except self._openai.NotFoundError:
            return BatchState("failed", {}, "the server does not know this batch any more")
        except self._openai.APIError as exc:
            raise self._fail(exc, f"checking batch {record.batch_id}") from None
        counts = batch.request_counts
        done = counts.completed if counts else 0
        if batch.status not in STOPPED_STATUSES:
            return BatchState(str(batch.status), done=done)
        try:
            outcomes = parse_batch_output(self._content(batch.error_file_id))
            outcomes.update(parse_batch_output(self._content(batch.output_file_id)))
        except self._openai.APIError as exc:
            raise self._fail(exc, f"reading the results of batch {record.batch_id}") from None
        errors = getattr(batch, "errors", None)
        reasons = [str(getattr(e, "message", "") or "") for e in (getattr(errors, "data", None) or [])]
        return BatchState(str(batch.status), outcomes, "; ".join(r for r in reasons if r)[:200], done)


class VLLMBatchProvider:
    """A local checkpoint: ``python -m vllm.entrypoints.openai.run_batch`` under the entry's interpreter, in a process
    group of its own (a killed run leaves it running; the re-run waits for it by pid and reads its output file)."""

    name = "vllm"
    limits = VLLM_LIMITS
    poll_cap = 1.0
    _PROGRESS = re.compile(r"(\d+)/(\d+) \[")

    def __init__(self, spec: "ModelSpec", run_dir: Path) -> None:
        from evalsuite.backends.hf import check_checkpoint
        from evalsuite.backends.vllm import model_source, vllm_dtype, worker_python

        check_checkpoint(spec)
        vllm_dtype(spec)
        self.spec = spec
        self.run_dir = run_dir
        self.python = worker_python(spec)
        self.model = model_source(spec.model)
        self.endpoint = f"vllm:{self.python}:{self.model}"
        self._procs: dict[int, subprocess.Popen[bytes]] = {}  # runners this process started, by pid

    def _adapter_of(self, req: ChatRequest) -> str | None:
        # a generation request names its adapter (None: the base), as on a shared engine; a judge call does not
        adapter = req.meta["adapter"] if "adapter" in req.meta else self.spec.adapter
        return str(Path(adapter).expanduser().resolve()) if adapter else None

    def _served(self, adapter: str | None) -> str:
        # LoRA modules are served under a name derived from their directory, the base under the entry's name
        return f"lora-{hashlib.sha256(adapter.encode()).hexdigest()[:12]}" if adapter else self.spec.name

    def body(self, req: ChatRequest) -> dict[str, Any]:
        from evalsuite.backends.openai import chat_body

        return chat_body(self._served(self._adapter_of(req)), req, prefill=True)  # vLLM continues a prefilled turn

    def result(self, req: ChatRequest, body: dict[str, Any], record: BatchRecord) -> ChatResult:
        from evalsuite.backends.openai import chat_result

        return chat_result(req, body, prefilled=True)

    def find(self, sha256: str) -> BatchRecord | None:
        return None  # recorded before the runner starts: nothing can be submitted unrecorded

    def command(self, input_path: Path, output_path: Path, adapters: Sequence[str]) -> list[str]:
        """The ``run_batch`` command line: the engine settings of the model entry as vLLM flags."""
        from evalsuite.backends.vllm import vllm_dtype

        spec = self.spec
        cmd = [self.python, "-m", "vllm.entrypoints.openai.run_batch", "-i", str(input_path), "-o", str(output_path),
               "--model", self.model, "--served-model-name", spec.name, "--dtype", vllm_dtype(spec),
               "--seed", str(spec.seed), "--tensor-parallel-size", str(spec.tensor_parallel_size)]
        if adapters or spec.enable_lora:
            ranks = [int(json.loads((Path(a) / "adapter_config.json").read_text()).get("r", 16)) for a in adapters]
            rank = spec.max_lora_rank or next((r for r in (8, 16, 32, 64, 128, 256, 320, 512) if r >= max(ranks, default=16)), 16)
            cmd += ["--enable-lora", "--max-lora-rank", str(rank)]
            if adapters:
                cmd += ["--lora-modules", *(f"{self._served(a)}={a}" for a in adapters)]
        for key, value in spec.engine.items():
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                cmd.append(flag if value else "--no-" + key.replace("_", "-"))
            else:
                cmd += [flag, json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
        return cmd

    def submit(self, input_path: Path, sha256: str, requests: Sequence[ChatRequest], target: str) -> BatchRecord:
        adapters = sorted({a for a in (self._adapter_of(r) for r in requests) if a})
        stem = input_path.with_suffix("")
        output_path, log_path = Path(f"{stem}.output.jsonl"), Path(f"{stem}.log")
        output_path.unlink(missing_ok=True)
        env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        env.pop("PYTHONPATH", None)  # the vLLM venv needs nothing of this one
        with log_path.open("wb") as log:
            proc = subprocess.Popen(self.command(input_path, output_path, adapters), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._procs[proc.pid] = proc
        batch_id = f"vllm-run-batch-{sha256[:12]}-{proc.pid}"
        details = {"pid": proc.pid, "output": str(output_path), "log": str(log_path)}
        return BatchRecord(batch_id, self.name, target, self.endpoint, str(input_path), "running", len(requests), details)

    def _alive(self, record: BatchRecord) -> bool:
        pid = int(record.details.get("pid") or 0)
        proc = self._procs.get(pid)
        if proc is not None:
            return proc.poll() is None
        try:  # a runner an earlier, killed evalsuite started: alive while its pid still runs run_batch on our file
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return False
        return "run_batch" in cmdline and str(record.details.get("output")) in cmdline

    def _done_lines(self, log_path: Path) -> int:
        try:
            with log_path.open("rb") as fh:
                fh.seek(max(0, log_path.stat().st_size - 4096))
                tail = fh.read().decode(errors="replace")
        except OSError:
            return 0
        found = self._PROGRESS.findall(tail)
        return int(found[-1][0]) if found else 0

    def poll(self, record: BatchRecord) -> BatchState:
        output, log = Path(record.details["output"]), Path(record.details["log"])
        if self._alive(record):
            return BatchState("running", done=self._done_lines(log))
        if not output.is_file():
            tail = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
            last = next((line.strip() for line in reversed(tail) if line.strip()), "no log")
            return BatchState("failed", {}, f"run_batch exited without an output file: {last[:200]} (log {log})")
        outcomes = parse_batch_output(output.read_text(encoding="utf-8"))
        return BatchState("completed", outcomes, done=sum(o.error is None for o in outcomes.values()))

    def stop(self, record: BatchRecord) -> None:
        """End a runner (tests; a user cancels with kill)."""
        try:
            os.killpg(int(record.details["pid"]), signal.SIGTERM)
        except (ProcessLookupError, PermissionError, KeyError, ValueError):
            pass


# backend name -> provider class; a model whose backend has none (hf) is asked live
PROVIDERS: dict[str, Callable[["ModelSpec", Path], BatchProvider]] = {
    "openai": OpenAIBatchProvider,
    "vllm": VLLMBatchProvider,
}


def make_provider(spec: "ModelSpec", run_dir: Path) -> BatchProvider:
    factory = PROVIDERS.get(spec.backend)
    if factory is None:
        raise InputError(
            f"model {spec.name!r} has backend {spec.backend!r}, which has no batch files",
            fix=f"--batch works for backends {', '.join(sorted(PROVIDERS))}; run without --batch",
        )
    return factory(spec, run_dir)


# ---------------------------------------------------------------------------------------------------------------------
# The batch path


def _note(options: BatchOptions, message: str) -> None:
    if options.notify is not None:
        options.notify(message)


def _write_input(run_dir: Path, target: str, lines: Sequence[str]) -> tuple[Path, str]:
    text = "".join(line + "\n" for line in lines)
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    # the target (a model or judge name) is data: a safe file name, and a path checked to stay in the batch folder
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{safe_file_name(target or 'calls')}-{sha[:10]}.jsonl"
    path = path_inside(_runner_dir(run_dir), name)
    atomic_write_text(path, text)
    return path, sha


@dataclass
class _Flight:
    """A batch this round waits for: its record, the calls it holds, its last status and the lines shown as done."""

    record: BatchRecord
    keys: list[str]
    status: str
    requests: int  # stage requests its lines serve (one line serves every request with its cache key)
    shown: int = 0


@dataclass
class _Ended:
    """A batch of this round that ended badly (expired, failed, cancelled): what it answered and what it did not."""

    flight: _Flight
    state: BatchState
    answered: int
    unanswered: list[ChatRequest]


class _Round:
    """One round of the batch path: every pending call answered by open batches or new ones, several in flight."""

    def __init__(self, spec: "ModelSpec", provider: BatchProvider, store: RunStore, on_done: OnDone,
                 progress: Progress, options: BatchOptions, report: BatchReport) -> None:
        self.spec, self.provider, self.store = spec, provider, store
        self.on_done, self.progress, self.options, self.report = on_done, progress, options, report
        self.limits = options.limits(provider.limits)
        self.follow_ups: list[ChatRequest] = []
        self.lines_done = 0  # across this round's batches, for the status lines
        self.lines_total = 0

    def deliver(self, requests: Sequence[ChatRequest], result: ChatResult) -> None:
        for req in requests:
            more = list(self.on_done(req, result) or ())
            if more:
                self.progress.add_total(len(more))
                self.follow_ups.extend(more)

    def run(self, pending: Sequence[ChatRequest]) -> list[ChatRequest]:
        """Answer ``pending`` through batches; returns the calls whose line failed (not delivered)."""
        by_key: dict[str, list[ChatRequest]] = {}
        for req in pending:
            by_key.setdefault(req.key, []).append(req)  # same key, same answer: one line serves them all
        active: list[_Flight] = []
        left = dict.fromkeys(by_key)
        for record in self.store.batches(endpoint=self.provider.endpoint):
            if record.status in CLOSED_STATUSES:
                continue
            mine = [k for k, state in self.store.batch_calls(record.batch_id).items() if state == "pending" and k in left]
            if mine:
                active.append(self._flight(record, mine, by_key))
                self.report.reattached.append(record.batch_id)
                for k in mine:
                    left.pop(k)
                _note(self.options, f"re-attached to batch {record.batch_id} ({len(mine)} calls, status {record.status})")
        queue = self._plan_files(list(left), by_key)
        self.lines_total = len(by_key)
        failed: list[ChatRequest] = []
        ended: list[_Ended] = []
        completed = 0
        while queue or active:
            while queue and len(active) < self.limits.in_flight:
                keys, lines = queue.pop(0)
                active.append(self._submit(keys, lines, by_key))
            still: list[_Flight] = []
            for i, flight in enumerate(active):
                state = self.provider.poll(flight.record)
                self._show(flight, state)
                if not state.stopped:
                    still.append(flight)
                    continue
                # stored as soon as it ends: a kill later loses nothing this batch answered
                failed_here, bad = self._ingest(flight, state, by_key)
                failed += failed_here
                if bad is None:
                    completed += 1
                else:
                    ended.append(bad)
                self._note_ended(flight, state, len(still) + len(active) - i - 1 + len(queue))
            ended_now = len(still) < len(active)
            active = still
            if active and not (ended_now and queue):
                time.sleep(min(self.options.poll_interval, self.provider.poll_cap))
        if ended and not completed:
            raise self._all_ended(ended)
        for bad in ended:
            _note(self.options, f"batch {bad.flight.record.batch_id} {bad.state.status}: its {len(bad.unanswered)} "
                                f"unanswered calls are retried like failed lines ({self.options.retry}); the other "
                                "batches are kept")
            failed += bad.unanswered
        return failed

    def _flight(self, record: BatchRecord, keys: list[str], by_key: Mapping[str, list[ChatRequest]]) -> _Flight:
        return _Flight(record, keys, record.status, sum(len(by_key[k]) for k in keys))

    def _plan_files(self, keys: list[str], by_key: Mapping[str, list[ChatRequest]]) -> list[tuple[list[str], list[str]]]:
        """The input files (keys, lines) for calls no open batch holds, in the order the calls were planned (the same
        pending calls make the same files, so a batch created but never recorded is found by its sha256)."""
        lines = [batch_line(k, self.provider.body(by_key[k][0])) for k in keys]
        sizes = [len(line.encode("utf-8")) + 1 for line in lines]
        for key, size in zip(keys, sizes):
            if size > self.limits.bytes:
                raise InputError(
                    f"call {key} of {self.spec.name!r} is a batch line of {size:,} bytes, more than one batch file "
                    f"holds ({self.limits.bytes:,} bytes)", where=str(self.store.path),
                    fix="drop --batch for this stage (the call is asked live), or shorten its prompt")
        return [([keys[i] for i in part], [lines[i] for i in part])
                for part in plan_batch_files(sizes, self.limits.lines, self.limits.bytes)]

    def _submit(self, keys: list[str], lines: list[str], by_key: Mapping[str, list[ChatRequest]]) -> _Flight:
        first = [by_key[k][0] for k in keys]
        target = self.spec.name
        path, sha = _write_input(self.store.run_dir, target, lines)
        found = self.provider.find(sha)
        if found is not None:
            record = BatchRecord(found.batch_id, found.provider, target, found.endpoint, str(path), found.status,
                                 len(keys), found.details)
            self.store.put_batch(record, keys)
            self.report.reattached.append(record.batch_id)
            _note(self.options, f"re-attached to batch {record.batch_id} ({len(keys)} calls, found by its input file)")
            return self._flight(record, keys, by_key)
        record = self.provider.submit(path, sha, first, target)
        self.store.put_batch(record, keys)  # before any wait: a killed run re-attaches instead of paying twice
        self.report.created.append(record.batch_id)
        _note(self.options, f"submitted batch {record.batch_id} ({len(keys)} calls, input {path}); an interrupted "
                            "run re-attaches to it when re-run")
        return self._flight(record, keys, by_key)

    def _show(self, flight: _Flight, state: BatchState) -> None:
        """Progress over all batches: each batch advances the bar by the lines it answered since its last check."""
        done = min(state.done, flight.requests)
        if done > flight.shown:
            self.progress.advance(done - flight.shown)
            flight.shown = done
        if state.status != flight.status:
            self.store.set_batch_status(flight.record.batch_id, state.status)
            flight.status = state.status

    def _note_ended(self, flight: _Flight, state: BatchState, still_open: int) -> None:
        answered = sum(o.body is not None for k in flight.keys if (o := state.outcomes.get(k)) is not None)
        self.lines_done += answered
        _note(self.options, f"batch {flight.record.batch_id} {state.status}: {answered} of {len(flight.keys)} lines "
                            f"answered; {self.lines_done}/{self.lines_total} lines done across this round's batches, "
                            f"{still_open} still to end")

    def _ingest(self, flight: _Flight, state: BatchState,
                by_key: Mapping[str, list[ChatRequest]]) -> tuple[list[ChatRequest], _Ended | None]:
        """Store what a stopped batch answered; returns its failed lines' calls (to retry), and for a batch that ended
        badly, what it left unanswered."""
        record, keys = flight.record, flight.keys
        ok: list[str] = []
        bad: list[str] = []
        failed: list[ChatRequest] = []
        delivered = 0
        for key in keys:
            outcome = state.outcomes.get(key)
            if outcome is not None and outcome.body is not None:
                result = self.provider.result(by_key[key][0], outcome.body, record)
                self.deliver(by_key[key], result)
                delivered += len(by_key[key])
                ok.append(key)
            elif outcome is not None:
                bad.append(key)
                failed += [replace_meta(r, batch_error=outcome.error) for r in by_key[key]]
        if delivered > flight.shown:
            self.progress.advance(delivered - flight.shown)
            flight.shown = delivered
        missing = [k for k in keys if k not in state.outcomes]
        self.store.set_batch_call_state(record.batch_id, ok, "done")
        self.store.set_batch_call_state(record.batch_id, bad + missing, "failed")
        self.report.answered += len(ok)
        if state.status in BAD_STATUSES:
            self.store.set_batch_status(record.batch_id, state.status)
            why = f"batch {record.batch_id} {state.status}"
            unanswered = failed + [replace_meta(r, batch_error=why) for k in missing for r in by_key[k]]
            self.report.failed += len(bad) + len(missing)
            return [], _Ended(flight, state, len(ok), unanswered)
        if missing:  # a completed batch that left lines out: ask them again like failed lines
            failed += [replace_meta(r, batch_error="no line in the batch output") for k in missing for r in by_key[k]]
        self.report.failed += len(bad) + len(missing)
        self.store.set_batch_status(record.batch_id, "ingested")
        return failed, None

    def _all_ended(self, ended: Sequence[_Ended]) -> InputError:
        """Every batch of the round expired, failed or was cancelled: one line naming them, after all of them stopped."""
        names = ", ".join(f"{e.flight.record.batch_id} {e.state.status}" + (f": {e.state.message}" if e.state.message
                                                                              else "") for e in ended)
        answered = sum(e.answered for e in ended)
        total = sum(len(e.flight.keys) for e in ended)
        return InputError(
            f"batch{'es' if len(ended) > 1 else ''} {names}; {answered} of {total} calls answered and stored, "
            f"{total - answered} not",
            where=str(self.store.path),
            fix="re-run the same command to submit the unanswered calls in a new batch, or drop --batch to ask "
                "them live",
        )


def replace_meta(req: ChatRequest, **meta: Any) -> ChatRequest:
    """``req`` with extra ``meta`` entries (the cache key and everything sent stay the same)."""
    return dataclasses.replace(req, meta={**req.meta, **meta})


def run_batched(
    spec: "ModelSpec",
    requests: Sequence[ChatRequest],
    on_done: OnDone,
    store: RunStore,
    progress: Progress,
    options: BatchOptions = BatchOptions(),
    *,
    live_backend: Any = None,
) -> BatchReport:
    """Answer ``requests`` (planned as for live calls, keyed by cache key) through batch files of ``spec``'s backend,
    handing every answer to ``on_done`` exactly as a live backend would (``on_done`` stores it; follow-ups it returns
    go into the next batch). Re-attaches to open batches recorded in ``store`` that hold any of these calls.

    Failed lines go live (``options.retry == "live"``, through ``live_backend`` or one built from ``spec``) or into
    a follow-up batch (at most ``options.max_rounds`` batches per call, then stored as an ``api`` error).
    Raises ``InputError`` (naming the batch id) when a batch ends expired, failed or cancelled; what it answered is
    stored first. ``progress`` advances as lines are answered (a bar over ``len(requests)`` plus follow-ups).
    """
    report = BatchReport()
    if not requests:
        return report
    provider = make_provider(spec, Path(store.run_dir))
    pending = list(requests)
    tries: dict[str, int] = {}
    while pending:
        round_ = _Round(spec, provider, store, on_done, progress, options, report)
        failed = round_.run(pending)
        pending = round_.follow_ups
        if not failed:
            continue
        for req in failed:
            tries[req.key] = tries.get(req.key, 0) + 1
        if options.retry == "batch":
            again = [r for r in failed if tries[r.key] < options.max_rounds]
            for req in failed:
                if tries[req.key] >= options.max_rounds:
                    round_.deliver([req], ChatResult("", error=f"batch line failed {tries[req.key]} times: "
                                                                f"{req.meta.get('batch_error')}"))
                    progress.advance(error=True)
            if again:
                _note(options, f"{len(again)} failed batch lines go into a follow-up batch")
            pending = again + round_.follow_ups
            continue
        _note(options, f"{len(failed)} failed batch lines are asked again live")
        report.retried_live += len(failed)
        pending += _retry_live(spec, failed, round_, progress, live_backend)
    return report


def _retry_live(spec: "ModelSpec", failed: Sequence[ChatRequest], round_: _Round, progress: Progress,
                live_backend: Any) -> list[ChatRequest]:
    """Ask ``failed`` live; their follow-ups come back for the next batch."""
    from evalsuite.backends import make_backend

    backend = live_backend or make_backend(spec)
    follow_ups: list[ChatRequest] = []

    def on_done(req: ChatRequest, result: ChatResult) -> None:
        follow_ups.extend(round_.on_done(req, result) or ())
        return None

    try:
        backend.run(list(failed), on_done, progress)
    finally:
        if live_backend is None:
            backend.close()
    if follow_ups:
        progress.add_total(len(follow_ups))
    return follow_ups


class BatchBackend:
    """A ``ChatBackend`` whose ``run`` goes through :func:`run_batched`: pass it where a stage takes a backend (the
    ``judge`` or a model of a :class:`~evalsuite.backends.roles.StageBackends`). It opens the run store of
    ``run_dir`` for its batch records; ``report`` keeps what its runs did."""

    name = "batch"

    def __init__(self, spec: "ModelSpec", run_dir: str | Path, options: BatchOptions = BatchOptions()) -> None:
        make_provider(spec, Path(run_dir))  # a backend without batch files, or a bad endpoint, fails now
        self.spec = spec
        self.run_dir = Path(run_dir)
        self.options = options
        self.report = BatchReport()

    def run(self, requests: Sequence[ChatRequest], on_done: OnDone, progress: Progress) -> None:
        with RunStore(self.run_dir) as store:
            self.report.add(run_batched(self.spec, requests, on_done, store, progress, self.options))

    def close(self) -> None:
        """Nothing held between runs: every ``run`` opens and closes its own store and client."""


def batch_backends(judge: "ModelSpec | None", models: Sequence["ModelSpec"], run_dir: str | Path,
                   options: BatchOptions) -> StageBackends:
    """Batch backends for a workflow: the judge's (when given) and one per answer model whose backend has batch
    files (others, e.g. ``hf``, stay live)."""
    judge_backend = None if judge is None else BatchBackend(judge, run_dir, options)  # the judge's endpoint is checked first
    out: dict[str, BatchBackend] = {}
    for spec in models:
        if spec.backend in PROVIDERS:
            out[spec.name] = BatchBackend(spec, run_dir, options)
        else:
            _note(options, f"model {spec.name!r} has backend {spec.backend!r}, which has no batch files: asked live")
    return StageBackends(models=out, judge=judge_backend)


__all__ = [
    "BatchBackend", "BatchOptions", "BatchReport", "BatchState", "FileLimits", "LineOutcome", "OPENAI_LIMITS",
    "OpenAIBatchProvider", "PROVIDERS", "VLLMBatchProvider", "VLLM_LIMITS", "batch_backends", "batch_line",
    "batch_prices", "make_provider", "parse_batch_output", "plan_batch_files", "run_batched", "token_cost",
]
