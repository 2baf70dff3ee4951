"""``vllm`` backend: a local checkpoint served by vLLM in its own worker subprocess, LoRA adapters from the same engine.

One worker per backend instance (one engine per base model); it exits on ``close()`` (or when the backend is garbage
collected, or at interpreter exit), which returns its GPU memory before the next model loads. Each ``run`` sends all
pending requests as one batch (every turn 1), then the follow-ups ``on_done`` returned as the next batch (every
turn 2), and so on; vLLM schedules inside a batch. A request's ``meta["adapter"]`` (a LoRA directory) selects an
adapter, ``spec.adapter`` is the default; each adapter directory gets a stable integer id for the life of the worker.
``spec.extra`` may hold ``engine_args`` (passed to ``vllm.LLM``: gpu_memory_utilization, max_model_len, ...),
``enable_lora`` (load LoRA support up front) and ``max_lora_rank`` (else read from the adapters' configs).

What was verified where: on the CPU development machine only the protocol, batching, adapter mapping, token counts
and crash handling ran, through the real subprocess driving ``evalsuite.testing.vllm_stand_in`` (tests/
test_backend_vllm.py). No real vLLM engine was run there: the calls into vLLM (``LLM(...)``, ``LLM.chat``,
``SamplingParams``, ``LoRARequest``, logprob reading) follow vLLM's documented API and are unverified on a GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from evalsuite.backends._base import ChatRequest, ChatResult, OnDone, Progress
from evalsuite.backends.hf import check_checkpoint  # cheap: hf imports torch only when it loads a model
from evalsuite.errors import InputError

if TYPE_CHECKING:
    from evalsuite.config import ModelSpec

_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts


def _stop_worker(proc: subprocess.Popen[str], log_path: str, keep_log: bool) -> None:
    """Ask the worker to exit, then make sure it has; module-level so the finalizer holds no backend reference."""
    if proc.poll() is None:
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"type": "shutdown"}) + "\n")
            proc.stdin.close()
            proc.wait(timeout=60)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None and not stream.closed:
            stream.close()
    if not keep_log:
        Path(log_path).unlink(missing_ok=True)


class VLLMBackend:
    """vLLM in a subprocess; started on the first ``run``, kept for later runs, ended by ``close()``."""

    name = "vllm"

    def __init__(self, spec: "ModelSpec") -> None:
        self.spec = spec
        self._proc: subprocess.Popen[str] | None = None
        self._log_path = ""
        self._finalizer: weakref.finalize | None = None
        self._lora_enabled = False
        self._adapter_ids: dict[str, int] = {}  # resolved adapter dir -> LoRA int id, stable while the worker lives

    @classmethod
    def from_spec(cls, spec: "ModelSpec") -> "VLLMBackend":
        check_checkpoint(spec)
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
                fix="set adapter on the model entry, or extra.enable_lora = true, so the engine loads with LoRA",
            )
        lora_id = self._adapter_ids.setdefault(adapter, len(self._adapter_ids) + 1)  # vLLM needs ids >= 1
        return {"name": f"{Path(adapter).name}-{lora_id}", "id": lora_id, "path": adapter}

    def _max_lora_rank(self, adapters: set[str]) -> int:
        if "max_lora_rank" in self.spec.extra:
            return int(self.spec.extra["max_lora_rank"])
        ranks = [int(json.loads((Path(a) / "adapter_config.json").read_text()).get("r", 16)) for a in adapters]
        wanted = max(ranks, default=16)
        return next((r for r in _LORA_RANKS if r >= wanted), wanted)

    # ---- the worker ----------------------------------------------------------------------------------------------

    def _start(self, first_requests: Sequence[ChatRequest]) -> None:
        spec = self.spec
        adapters = {a for a in (self._adapter_of(r) for r in first_requests) if a}
        self._lora_enabled = bool(adapters) or bool(spec.extra.get("enable_lora"))
        load = {
            "type": "load",
            "model": str(Path(spec.model).expanduser()) if Path(spec.model).expanduser().is_dir() else spec.model,
            "tensor_parallel_size": spec.tensor_parallel_size,
            "enable_lora": self._lora_enabled,
            "max_lora_rank": self._max_lora_rank(adapters),
            "dtype": spec.dtype,
            "seed": spec.seed,
            "engine_args": dict(spec.extra.get("engine_args") or {}),
        }
        env = dict(os.environ)
        # The worker imports evalsuite from wherever this process did, installed or not.
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        log = tempfile.NamedTemporaryFile(prefix=f"evalsuite-vllm-{spec.name}-", suffix=".log", delete=False)
        self._log_path = log.name
        # stderr goes to a file, not a pipe: vLLM logs a lot and a full pipe would block the worker.
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "evalsuite.backends._vllm_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, encoding="utf-8", env=env,
        )
        log.close()
        self._finalizer = weakref.finalize(self, _stop_worker, self._proc, self._log_path, False)
        reply = self._exchange(load, phase="loading the model")
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
            fix=f"see the worker log {self._log_path} (GPU memory, model path, vLLM version)",
        )

    def close(self, keep_log: bool = False) -> None:
        """End the worker and free its GPU memory; a later ``run`` starts a new one."""
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
            "adapter": self._lora_payload(self._adapter_of(request)),
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


__all__ = ["VLLMBackend"]
