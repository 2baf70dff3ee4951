"""Training across processes: what evalsuite adds to accelerate's launchers, and nothing distributed of its own.

accelerate (DDP, FSDP or DeepSpeed behind it) starts the processes and TRL trains in each; this module owns the rest:

- **who is who**: :func:`launched_world` reads the launcher's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``);
  without a GPU a launched run joins its ranks over gloo (:func:`cpu_ranks`), where accelerate alone would let each
  process train on its own and all of them write the same checkpoint;
- **one run, not several**: before anything loads, every rank's model and data (path and size,
  :func:`run_fingerprint`) are gathered and compared; ranks that disagree stop with one line
  (:func:`check_ranks_agree`), and so does FSDP or DeepSpeed asked of a machine without a GPU (:func:`check_launch`),
  which accelerate would quietly run as plain DDP;
- **one data set on disk**: TRL shares its precomputed reference log-probs through a cache file next to the data, so
  with several ranks the data is written once to a folder every rank reads (:func:`shared_dataset`);
- **what the manifest records**: world size, per-device batch, accumulation, global batch and the rows of each rank's
  shard (:func:`world_record`, :func:`shard_recorder`);
- **launching**: an accelerate config file checked before use (:func:`read_accelerate_config`), the command that
  re-runs ``evalsuite train`` under ``accelerate launch`` (:func:`accelerate_command`), and a launched training
  whose input error comes back as that one line (:func:`run_launched`).

Only the main process (rank 0) writes the checkpoint's tokenizer, ``metrics.jsonl``, the health verdict and the
manifest entry; the other ranks wait at :func:`wait_for_ranks` and return nothing. torch, accelerate and datasets are
imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.errors import InputError

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import TrainerCallback

# Set by `evalsuite train --accelerate-config` in the processes it launches, so they never launch again.
RELAUNCHED_ENV = "EVALSUITE_LAUNCHED"
# Set by an evalsuite that launches training (--accelerate-config, iterate's launcher): a rank that stops on bad
# input writes its one line there, and the launching evalsuite reports it as its own.
ERROR_FILE_ENV = "EVALSUITE_ERROR_FILE"
# Set by run_launched when its stderr is a terminal: the ranks draw their progress bar into the pipe it reads.
BAR_ENV = "EVALSUITE_PROGRESS_BAR"
# accelerate's distributed types that need a GPU (or several) to run at all.
_GPU_ONLY_TYPES = {"DEEPSPEED", "FSDP", "MEGATRON_LM", "XLA"}


@dataclass(frozen=True)
class LaunchedWorld:
    """The processes of one launched training, as its launcher announced them."""

    size: int  # processes in all (1: not launched, or launched alone)
    rank: int  # this process, 0 .. size-1
    local_rank: int  # this process on its machine

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_world(env: Mapping[str, str] | None = None) -> LaunchedWorld:
    """This process's place among the launched ones, from torchrun/accelerate's variables (defaults: alone).

    >>> launched_world({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"})
    LaunchedWorld(size=4, rank=2, local_rank=0)
    >>> launched_world({})
    LaunchedWorld(size=1, rank=0, local_rank=0)
    """
    values = os.environ if env is None else env

    def number(name: str, default: int) -> int:
        try:
            return int(values.get(name, default))
        except ValueError:
            raise InputError(f"the launcher's {name}={values[name]!r} is not a number",
                             fix="start training through accelerate launch or torchrun") from None

    size = number("WORLD_SIZE", 1)
    rank = number("RANK", number("LOCAL_RANK", 0))
    return LaunchedWorld(size=max(size, 1), rank=rank, local_rank=number("LOCAL_RANK", rank))


def under_launcher(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started by a launcher (torchrun, accelerate launch, or evalsuite re-launching itself).

    >>> under_launcher({"LOCAL_RANK": "0"}), under_launcher({"PATH": "/bin"})
    (True, False)
    """
    values = os.environ if env is None else env
    # accelerate's single-process launcher sets no rank, only its own settings (mixed precision among them).
    return any(name in values for name in ("WORLD_SIZE", "LOCAL_RANK", "ACCELERATE_MIXED_PRECISION", RELAUNCHED_ENV))


def cpu_ranks() -> bool:
    """Whether a launched run must join its ranks on the CPU (gloo): several processes and no GPU.

    accelerate joins ranks over gloo only when told the run is on CPU (``--cpu``, whose launcher starts one process);
    ``accelerate launch --multi_gpu --num_processes 2`` on a machine without a GPU would start two processes that each
    train alone and all write the same checkpoint.
    """
    import torch

    return launched_world().size > 1 and not torch.cuda.is_available()


def _bytes_of(path: Path) -> int | None:
    """Size of a file, or of a folder's files (not recursive): enough to tell two copies of a checkpoint apart."""
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return None


def run_fingerprint(model: str, data: str) -> dict[str, Any]:
    """What this rank is about to train: the model and the data, each as its absolute path and size in bytes (a hub
    id as given, size None), and a hash of all four, which every rank must share."""
    parts: dict[str, Any] = {}
    for key, value in (("model", model), ("data", data)):
        path = Path(value).expanduser()
        parts[key] = str(path.resolve()) if path.exists() else value
        parts[f"{key}_bytes"] = _bytes_of(path)
    parts["hash"] = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return parts


def ranks_disagreement(fingerprints: Sequence[Mapping[str, Any]]) -> str | None:
    """What the ranks disagree on (the first rank that differs from rank 0, by model or data), or None.

    >>> a = {"model": "/m", "model_bytes": 10, "data": "/d.jsonl", "data_bytes": 5, "hash": "x"}
    >>> ranks_disagreement([a, a]) is None
    True
    >>> ranks_disagreement([a, {**a, "data_bytes": 7, "hash": "y"}])
    'rank 1 reads data /d.jsonl (7 bytes), rank 0 /d.jsonl (5 bytes)'
    """
    first = fingerprints[0]
    for rank, other in enumerate(fingerprints[1:], start=1):
        if other["hash"] == first["hash"]:
            continue
        key = "model" if (other["model"], other["model_bytes"]) != (first["model"], first["model_bytes"]) else "data"
        verb = "trains" if key == "model" else "reads"

        def said(fp: Mapping[str, Any]) -> str:
            size = fp[f"{key}_bytes"]
            return fp[key] + ("" if size is None else f" ({size} bytes)")

        return f"rank {rank} {verb} {key} {said(other)}, rank 0 {said(first)}"
    return None


def _state() -> Any:
    """accelerate's process state, joined over gloo when the ranks have no GPU (see :func:`cpu_ranks`)."""
    from accelerate import PartialState

    return PartialState(cpu=cpu_ranks())


def launched_kind(env: Mapping[str, str] | None = None) -> str | None:
    """The GPU-only kind of run (``FSDP``, ``DEEPSPEED``) accelerate's launcher asked this process for, or None.

    >>> launched_kind({"ACCELERATE_USE_FSDP": "true"}), launched_kind({"ACCELERATE_USE_FSDP": "false"})
    ('FSDP', None)
    """
    values = os.environ if env is None else env
    for kind in ("FSDP", "DEEPSPEED"):
        if values.get(f"ACCELERATE_USE_{kind}", "false").lower() in ("1", "true", "yes"):
            return kind
    return None


def check_launch(model: str, data: str) -> dict[str, Any]:
    """Before anything loads: stop (every rank alike, one line) when the launch asks for FSDP or DeepSpeed on a
    machine without a GPU, or when its ranks disagree on the model or data (:func:`check_ranks_agree`). Returns this
    rank's :func:`run_fingerprint`."""
    import torch

    kind = launched_kind()
    if kind is not None and not torch.cuda.is_available():
        # accelerate turns FSDP on only for GPU runs: on CPU the ranks would silently train as plain DDP over gloo.
        raise LaunchInputError(f"this launch asks for {kind}, which needs CUDA GPUs, and this machine has none",
                               fix="on CPU launch with a DDP config (examples/accelerate/ddp.yaml), or run on GPUs")
    return check_ranks_agree(model, data)


def check_ranks_agree(model: str, data: str) -> dict[str, Any]:
    """Gather every rank's :func:`run_fingerprint` and stop every rank with one line when they differ (different
    files at one path on two machines, a relative path read from two folders). Returns this rank's fingerprint.

    Nothing that could fail on one rank alone runs before this: a rank that stopped early would leave the others
    waiting in the gather until the process group's timeout.
    """
    from accelerate.utils import gather_object

    mine = run_fingerprint(model, data)
    if launched_world().size == 1:
        return mine
    _state()
    everyone = gather_object([mine])
    problem = ranks_disagreement(everyone)
    if problem is not None:
        raise RanksDisagree(f"the ranks of this launch disagree on what to train: {problem}",
                            fix="give every process the same --model and --data (the same files on every machine)")
    return mine


class LaunchInputError(InputError):
    """Bad input that every rank of a launch finds alike; rank 0 alone reports it."""


class RanksDisagree(LaunchInputError):
    """Ranks of one launch were given different models or data."""


def wait_for_ranks() -> None:
    """Every rank waits here until all have arrived (rank 0 after writing the checkpoint's files and the manifest);
    a no-op in one process."""
    if launched_world().size > 1:
        _state().wait_for_everyone()


def shared_dataset(dataset: "Dataset", folder: Path) -> "Dataset":
    """``dataset`` written once to ``folder`` (by rank 0) and read back by every rank, so the cache files TRL writes
    next to it, the reference log-probs among them, are seen by all ranks (an in-memory data set keeps its caches in
    a temporary folder of each process). Unchanged in one process."""
    if launched_world().size == 1:
        return dataset
    import datasets

    with _state().main_process_first():
        if launched_world().is_main:
            shutil.rmtree(folder, ignore_errors=True)  # a previous launch's rows and caches are stale
            dataset.save_to_disk(str(folder))
        return datasets.load_from_disk(str(folder))


def remove_shared_dataset(folder: Path) -> None:
    """Rank 0 removes the folder of :func:`shared_dataset` once every rank is done with it (one process: none)."""
    if launched_world().size == 1:
        return
    wait_for_ranks()
    if launched_world().is_main:
        shutil.rmtree(folder, ignore_errors=True)


def shard_recorder(rows: list[int]) -> "TrainerCallback":
    """A callback that, when training begins, gathers the rows of each rank's shard of one epoch into ``rows`` (on
    every rank; rank r's at index r), from the data loader accelerate prepared for that rank."""
    from transformers import TrainerCallback

    class ShardRecorder(TrainerCallback):
        """Rows per rank and epoch: accelerate's sharded sampler gives each rank its own batches (padded to even
        batches across ranks); one process holds every row."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            loader = kwargs.get("train_dataloader")
            if loader is None:
                return
            if launched_world().size == 1:
                rows[:] = [len(loader.dataset)]
                return
            from accelerate.utils import gather_object

            rows[:] = [int(n) for n in gather_object([len(loader) * int(args.per_device_train_batch_size)])]

    return ShardRecorder()


def world_record(trainer: Any, rows_per_rank: Sequence[int]) -> dict[str, Any]:
    """The manifest's account of how a checkpoint was trained across processes (:class:`TrainingWorld`, as the
    ``extra`` keys of its entry), read from the trainer's arguments and accelerate's state."""
    from evalsuite.manifest import TrainingWorld

    args = trainer.args
    state = trainer.accelerator.state
    per_device = int(args.per_device_train_batch_size)
    accumulation = int(args.gradient_accumulation_steps)
    world = int(args.world_size)
    return TrainingWorld(
        world_size=world,
        per_device_batch=per_device,
        grad_accum=accumulation,
        global_batch=per_device * world * accumulation,
        rows_per_rank=tuple(rows_per_rank),
        distributed_type=str(getattr(state.distributed_type, "value", state.distributed_type)),
        backend=getattr(state, "backend", None),
    ).to_extra()


# ---------------------------------------------------------------------------------------------------- launching


def read_accelerate_config(path: str | Path) -> dict[str, Any]:
    """The accelerate config file at ``path`` as accelerate reads it (YAML, or JSON by its suffix), checked before any
    process starts: it exists, parses, holds only keys accelerate knows, and what it asks for can run here (DeepSpeed
    needs the ``deepspeed`` package)."""
    import importlib.util

    config_path = Path(path).expanduser()
    fix = "pass an accelerate config file (see examples/accelerate/, or run `accelerate config`)"
    if not config_path.is_file():
        raise InputError("accelerate config file not found", where=str(config_path), fix=fix)
    from accelerate.commands.config.config_args import load_config_from_file

    try:
        config = load_config_from_file(str(config_path)).to_dict()
    except Exception as exc:  # yaml/json errors, unknown keys, values accelerate rejects: all a bad file
        reason = " ".join(str(exc).split())[:300]
        raise InputError(f"not a usable accelerate config ({type(exc).__name__}: {reason})", where=str(config_path),
                         fix=fix) from None
    kind = str(config.get("distributed_type", "NO")).split(".")[-1]
    if kind == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
        raise InputError("the config asks for DeepSpeed, which is not installed", where=str(config_path),
                         fix="pip install deepspeed (it needs CUDA GPUs), or use the DDP or FSDP example")
    return config


def needs_gpu(config: Mapping[str, Any]) -> bool:
    """Whether an accelerate config's type of run cannot work without GPUs (FSDP, DeepSpeed, ...).

    >>> needs_gpu({"distributed_type": "FSDP"}), needs_gpu({"distributed_type": "MULTI_GPU"})
    (True, False)
    """
    return str(config.get("distributed_type", "NO")).split(".")[-1] in _GPU_ONLY_TYPES


def launch_with_config(config_file: str | Path, program: Sequence[str]) -> int:
    """Run ``evalsuite <program...>`` under ``accelerate launch --config_file FILE`` once the file is checked
    (:func:`read_accelerate_config`) and fits this machine (FSDP, DeepSpeed: GPUs); its exit status."""
    if under_launcher():
        raise LaunchInputError("--accelerate-config inside a launched process",
                               fix="give the config to the launcher (accelerate launch --config_file) or to evalsuite, "
                                   "not both")
    config = read_accelerate_config(config_file)
    if needs_gpu(config):
        import torch

        if not torch.cuda.is_available():
            kind = str(config.get("distributed_type")).split(".")[-1]
            raise InputError(f"{kind} needs CUDA GPUs and this machine has none", where=str(config_file),
                             fix="on CPU use a DDP config (examples/accelerate/ddp.yaml)")
    return run_launched(accelerate_command(config_file, program))


def accelerate_launcher(config_file: str | Path) -> list[str]:
    """``accelerate launch --config_file FILE`` with this interpreter's accelerate (its own console script may belong
    to another environment).

    >>> accelerate_launcher("ddp.yaml")[1:]
    ['-m', 'accelerate.commands.launch', '--config_file', 'ddp.yaml']
    """
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file)]


def accelerate_command(config_file: str | Path, program: Sequence[str]) -> list[str]:
    """``accelerate launch --config_file FILE -m evalsuite <program...>``.

    >>> accelerate_command("ddp.yaml", ["train", "dpo"])[-4:]
    ['-m', 'evalsuite', 'train', 'dpo']
    """
    return [*accelerate_launcher(config_file), "-m", "evalsuite", *program]


def leave_process_group() -> None:
    """Close this rank's process group, if it joined one, so that a rank stopping on an error exits cleanly (gloo
    aborts the interpreter at exit when a peer has already gone)."""
    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def hand_over_rank_error(exc: InputError) -> bool:
    """Leave the process group and hand a rank's input error to the evalsuite that launched it
    (:data:`ERROR_FILE_ENV`); True when handed over, then that evalsuite prints it and this rank should exit (2)
    quietly. Rank 0 alone reports an error every rank raised (:class:`LaunchInputError`)."""
    leave_process_group()
    target = os.environ.get(ERROR_FILE_ENV)
    if isinstance(exc, LaunchInputError) and not launched_world().is_main:
        return True  # rank 0 says it; the same line once per rank would read as several problems
    if not target:
        return False
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(str(exc).replace("\n", " ") + "\n")
    return True


def _write_stderr(chunk: bytes) -> None:
    raw = getattr(sys.stderr, "buffer", None)  # a captured stderr (pytest, a notebook) may take text only
    if raw is not None:
        raw.write(chunk)
    else:
        sys.stderr.write(chunk.decode("utf-8", errors="replace"))
    sys.stderr.flush()


def run_launched(command: Sequence[str], *, env: Mapping[str, str] | None = None, stdout_to_stderr: bool = False) -> int:
    """Run a launched training (``command``: a launcher and its evalsuite arguments) with its output shown as it
    comes, and return its exit status. A rank's input error is raised here as that one :class:`InputError`, and the
    launcher's own traceback after it is not shown. The ranks draw their progress bar when this stderr is a terminal,
    though theirs is a pipe. ``stdout_to_stderr``: what the ranks print goes to stderr (a caller whose stdout is
    its own results)."""
    with tempfile.TemporaryDirectory(prefix="evalsuite-launch-") as folder:
        error_file = Path(folder) / "error.txt"
        child_env = {**os.environ, **(env or {}), ERROR_FILE_ENV: str(error_file), RELAUNCHED_ENV: "1"}
        if sys.stderr.isatty():
            child_env[BAR_ENV] = "1"
        read_end, write_end = os.pipe()
        try:
            process = subprocess.Popen(list(command), env=child_env, stderr=write_end,
                                       stdout=write_end if stdout_to_stderr else None)
        except OSError as exc:
            os.close(read_end)
            raise InputError(f"cannot start the launcher {command[0]!r} ({exc.strerror})",
                             fix="check the launcher command (is accelerate installed in this environment?)") from None
        finally:
            os.close(write_end)  # the launcher and its ranks hold it now: the pipe ends when they do
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                if not error_file.exists():  # after a rank's input error, only the launcher's teardown is left
                    _write_stderr(chunk)
        status = process.wait()
        if error_file.exists():
            lines = [x for x in error_file.read_text(encoding="utf-8").splitlines() if x.strip()]
            raise InputError(lines[0] if lines else "a launched rank stopped on bad input")
        return status


__all__ = [
    "BAR_ENV",
    "ERROR_FILE_ENV",
    "RELAUNCHED_ENV",
    "LaunchInputError",
    "LaunchedWorld",
    "RanksDisagree",
    "accelerate_command",
    "accelerate_launcher",
    "check_launch",
    "check_ranks_agree",
    "cpu_ranks",
    "hand_over_rank_error",
    "launch_with_config",
    "launched_kind",
    "launched_world",
    "leave_process_group",
    "needs_gpu",
    "ranks_disagreement",
    "read_accelerate_config",
    "remove_shared_dataset",

    "run_fingerprint",
    "run_launched",
    "shard_recorder",
    "shared_dataset",
    "under_launcher",
    "wait_for_ranks",
]
