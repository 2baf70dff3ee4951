"""The checkpoint manifest: the one contract between training and the rest of evalsuite.

``evalsuite train`` writes one :class:`CheckpointEntry` per trained checkpoint into ``manifest.json`` (beside the
checkpoints by default); ``generate``/``compare`` read it to turn a name such as ``dpo`` or ``dpo-b0.1`` into
checkpoint directories. Plain JSON, stdlib only: reading a manifest never loads a training library.

File format::

    {"version": 1, "checkpoints": [{"name": "dpo-b0.1", "variant": "dpo", "beta": 0.1, "path": "dpo-b0.1", ...}]}

Paths inside the manifest's folder are stored relative to it, so a folder of checkpoints can be moved or copied
to another machine as a whole.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from evalsuite.errors import InputError
from evalsuite.store.atomic import atomic_write_text
from evalsuite.store.names import check_model_name

MANIFEST_VERSION = 1
DEFAULT_MANIFEST_NAME = "manifest.json"


@dataclass
class CheckpointEntry:
    """One trained (or registered) checkpoint."""

    name: str  # "dpo-b0.1", "sft"
    variant: str  # "sft" | "dpo" | "ipo" | "simpo" | "kto" | "base"
    beta: float | None
    path: str  # checkpoint dir; relative to the manifest's folder when inside it
    base: str | None = None  # the base model dir when `path` is a LoRA adapter
    adapter: bool = False
    metrics: str | None = None  # metrics.jsonl, one line per logged step
    flags: list[dict[str, str]] = field(default_factory=list)  # training-health flags: code, message, fix
    created: str = ""  # ISO-8601 UTC
    extra: dict[str, Any] = field(default_factory=dict)  # run settings: options, steps, data source, versions

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CheckpointEntry":
        known = {f.name for f in fields(cls)}
        missing = {"name", "variant", "path"} - data.keys()
        if missing:
            raise ValueError(f"entry lacks {', '.join(sorted(missing))}")
        # Unknown keys from a newer writer land in `extra` rather than failing the read.
        extra = dict(data.get("extra") or {})
        extra.update({k: v for k, v in data.items() if k not in known})
        beta = data.get("beta")
        return cls(
            name=str(data["name"]),
            variant=str(data["variant"]),
            beta=None if beta is None else float(beta),
            path=str(data["path"]),
            base=data.get("base"),
            adapter=bool(data.get("adapter", False)),
            metrics=data.get("metrics"),
            flags=list(data.get("flags") or []),
            created=str(data.get("created") or ""),
            extra=extra,
        )


@dataclass(frozen=True)
class TrainingWorld:
    """How a checkpoint was trained across processes, as its entry's ``extra`` records it: the world size, the batch
    of each process, gradient accumulation, the global batch (their product: the rows behind one optimizer step), the
    rows of each rank's shard of one epoch, and accelerate's kind of run (``NO``, ``MULTI_GPU``, ``MULTI_CPU``,
    ``FSDP``, ``DEEPSPEED``) with its communication backend."""

    world_size: int
    per_device_batch: int
    grad_accum: int
    global_batch: int
    rows_per_rank: tuple[int, ...]
    distributed_type: str
    backend: str | None = None

    @classmethod
    def of(cls, entry: CheckpointEntry) -> "TrainingWorld | None":
        """The entry's record; None for an entry written before evalsuite recorded it (or registered by hand)."""
        extra = entry.extra
        if "world_size" not in extra:
            return None
        return cls(
            world_size=int(extra["world_size"]),
            per_device_batch=int(extra["per_device_batch"]),
            grad_accum=int(extra["grad_accum"]),
            global_batch=int(extra["global_batch"]),
            rows_per_rank=tuple(int(n) for n in extra.get("rows_per_rank") or ()),
            distributed_type=str(extra.get("distributed_type", "NO")),
            backend=extra.get("backend"),
        )

    def to_extra(self) -> dict[str, Any]:
        """The ``extra`` keys of this record (JSON types)."""
        return {**asdict(self), "rows_per_rank": list(self.rows_per_rank)}

    def describe(self) -> str:
        """One line, e.g. ``2 processes (MULTI_CPU, gloo), global batch 8 = 2 per device x 2 x 2 accumulation``."""
        how = ", ".join(x for x in (self.distributed_type, self.backend) if x)
        rows = ", ".join(str(n) for n in self.rows_per_rank)
        return (f"{self.world_size} process{'es' if self.world_size != 1 else ''} ({how}), global batch "
                f"{self.global_batch} = {self.per_device_batch} per device x {self.world_size} x {self.grad_accum} "
                f"accumulation; rows per rank and epoch: {rows}")


def format_beta(beta: float) -> str:
    """Minimal decimal form used in checkpoint names: 0.05 -> "0.05", 2.0 -> "2", 1e-05 -> "1e-05"."""
    return f"{beta:g}"


def checkpoint_name(variant: str, beta: float | None) -> str:
    """``<variant>-b<beta>`` (``dpo-b0.1``); a variant without beta (``sft``) is named after itself."""
    return variant if beta is None else f"{variant}-b{format_beta(beta)}"


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def read_manifest(path: str | Path) -> list[CheckpointEntry]:
    """Entries of the manifest at ``path``; a missing file is an empty manifest."""
    manifest = Path(path)
    if not manifest.exists():
        return []
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"not a readable JSON manifest ({exc})",
            where=str(manifest),
            fix="restore it from a backup or delete it and re-run `evalsuite train`",
        ) from exc
    items = data.get("checkpoints") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise InputError(
            'expected an object with a "checkpoints" list',
            where=str(manifest),
            fix="restore it from a backup or delete it and re-run `evalsuite train`",
        )
    entries = []
    for number, item in enumerate(items, start=1):
        try:
            if not isinstance(item, dict):
                raise ValueError("entry is not an object")
            entry = CheckpointEntry.from_dict(item)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"checkpoint entry {number} is malformed ({exc})",
                where=str(manifest),
                fix="each entry needs at least name, variant and path",
            ) from exc
        # a shared checkpoint folder's names are data: they become model names in runs and exports
        check_model_name(entry.name, f"{manifest} entry {number}", fix="rename the checkpoint in the manifest")
        entries.append(entry)
    return entries


def _relative_if_inside(value: str | None, folder: Path) -> str | None:
    if value is None:
        return None
    candidate = Path(value)
    if not candidate.is_absolute():
        return value
    try:
        return candidate.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return value


@contextmanager
def _locked(manifest: Path) -> Iterator[None]:
    """Serialise read-modify-write between concurrent trainers sharing one manifest (POSIX; no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks, last writer wins
        yield
        return
    lock_path = manifest.with_name(manifest.name + ".lock")
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upsert_entry(path: str | Path, entry: CheckpointEntry) -> None:
    """Add ``entry`` to the manifest, replacing an entry of the same name; written atomically (tmp + rename)."""
    manifest = Path(path)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    folder = manifest.parent
    stored = CheckpointEntry(
        **{
            **asdict(entry),
            "path": _relative_if_inside(entry.path, folder) or entry.path,
            "base": _relative_if_inside(entry.base, folder),
            "metrics": _relative_if_inside(entry.metrics, folder),
            "created": entry.created or utc_now(),
        }
    )
    with _locked(manifest):
        entries = [e for e in read_manifest(manifest) if e.name != stored.name]
        entries.append(stored)
        payload = {"version": MANIFEST_VERSION, "checkpoints": [e.to_dict() for e in entries]}
        # A crash mid-write must never leave a half-written manifest.
        atomic_write_text(manifest, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def expand_name(entries: Sequence[CheckpointEntry], name: str) -> list[CheckpointEntry]:
    """An exact checkpoint name -> that entry; a variant name (``dpo``) -> its sweep sorted by beta; else ``[]``."""
    exact = [e for e in entries if e.name == name]
    if exact:
        return exact[:1]
    sweep = [e for e in entries if e.variant == name]
    # Entries without a beta sort last so a sweep reads from the smallest beta up.
    return sorted(sweep, key=lambda e: (e.beta is None, e.beta if e.beta is not None else 0.0, e.name))


def resolve_path(manifest_path: str | Path, entry: CheckpointEntry) -> Path:
    """Absolute checkpoint directory of ``entry`` (relative paths are relative to the manifest's folder)."""
    return _resolve(manifest_path, entry.path)


def resolve_base(manifest_path: str | Path, entry: CheckpointEntry) -> Path | str | None:
    """Absolute base-model directory of an adapter entry; a hub id (no such local path) is returned unchanged."""
    if entry.base is None:
        return None
    resolved = _resolve(manifest_path, entry.base)
    return resolved if resolved.exists() or Path(entry.base).is_absolute() else entry.base


def _resolve(manifest_path: str | Path, value: str) -> Path:
    candidate = Path(value).expanduser()
    if candidate.is_absolute():
        return candidate
    return (Path(manifest_path).resolve().parent / candidate).resolve()


__all__ = [
    "DEFAULT_MANIFEST_NAME",
    "CheckpointEntry",
    "TrainingWorld",
    "checkpoint_name",
    "expand_name",
    "format_beta",
    "read_manifest",
    "resolve_base",
    "resolve_path",
    "upsert_entry",
]
