"""``train``: the typed entry point for training — train a variant over its betas and get back one
:class:`TrainedCheckpoint` per checkpoint (what it is, how far it trained, its final loss and margin, its health
flags), which the CLI prints and a script can check. TRL, PEFT and torch load only when training starts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evalsuite.manifest import CheckpointEntry
from evalsuite.trainers._train import TrainOptions, read_metrics, train_variant


@dataclass(frozen=True)
class TrainedCheckpoint:
    """One trained checkpoint, summarised."""

    name: str
    kind: str  # "LoRA adapter" | "merged" | "full weights"
    steps: int | None
    final_loss: float | None
    final_margin: float | None
    flags: list[dict[str, str]] = field(default_factory=list)  # training-health flags: code, message, fix
    entry: CheckpointEntry | None = None  # the manifest entry, with paths and run settings

    @classmethod
    def of(cls, entry: CheckpointEntry) -> TrainedCheckpoint:
        last = read_metrics(entry.metrics)[-1] if entry.metrics and Path(entry.metrics).is_file() else {}
        kind = "LoRA adapter" if entry.adapter else "merged" if entry.extra.get("lora_merged") else "full weights"
        steps = entry.extra.get("steps")
        loss, margin = last.get("loss"), last.get("margin")
        return cls(
            name=entry.name,
            kind=kind,
            steps=None if steps is None else int(steps),
            final_loss=None if loss is None else float(loss),
            final_margin=None if margin is None else float(margin),
            flags=list(entry.flags),
            entry=entry,
        )


def train(
    variant: str,
    *,
    model: str,
    data: str,
    betas: Sequence[float] | None = None,
    grid: bool = False,
    options: TrainOptions | None = None,
    out_dir: str | Path = "checkpoints",
    manifest: str | Path | None = None,
    progress: bool = True,
    split: str = "train",
) -> list[TrainedCheckpoint]:
    """Train ``variant`` (sft, dpo, ipo, simpo, kto) from ``model`` on ``data``, one checkpoint per beta, registered in
    the manifest (``out_dir/manifest.json`` by default). Empty on a non-main process of a distributed launch."""
    entries = train_variant(variant, model=model, data=data, betas=list(betas) if betas else None, grid=grid,
                            options=options or TrainOptions(), out_dir=out_dir, manifest=manifest, progress=progress,
                            split=split)
    return [TrainedCheckpoint.of(e) for e in entries]


__all__ = ["TrainedCheckpoint", "train"]
