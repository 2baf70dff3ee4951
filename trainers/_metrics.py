"""metrics.jsonl: the stable metric names every trainer's log is mapped to, one line per logged step, written as it
arrives (so a crashed run keeps its history) and read back for health checks and summaries. Shared by the offline
trainers (``_train.py``) and online DPO (``_online.py``); transformers loads only when a writer is built."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.jsonl import iter_jsonl

if TYPE_CHECKING:
    from transformers import TrainerCallback

# The stable metric names of metrics.jsonl; every line carries all of them (null when the trainer did not log it).
STABLE_METRICS: tuple[str, ...] = (
    "loss",
    "margin",
    "chosen_reward",
    "rejected_reward",
    "chosen_logp",
    "rejected_logp",
    "accuracy",
    "kl",
)
# TRL 1.16 log keys (DPOTrainer, KTOTrainer, experimental CPOTrainer, SFTTrainer) -> stable names.
TRL_METRIC_NAMES: dict[str, str] = {
    "loss": "loss",
    "rewards/margins": "margin",
    "rewards/chosen": "chosen_reward",
    "rewards/rejected": "rejected_reward",
    "logps/chosen": "chosen_logp",
    "logps/rejected": "rejected_logp",
    "rewards/accuracies": "accuracy",
    "kl": "kl",
    # Kept when logged, outside the stable set.
    "grad_norm": "grad_norm",
    "learning_rate": "learning_rate",
    "epoch": "epoch",
    "nll_loss": "nll_loss",
    "mean_token_accuracy": "token_accuracy",
    "entropy": "entropy",
}
# The stable metrics each trainer family (VariantSpec.trainer) logs through TRL_METRIC_NAMES. One that no step of a
# run logged is a `metrics-missing` health flag, so a TRL release that renames a key cannot silence the checks. (KTO's
# margin needs desirable and undesirable rows in one batch, so it is not expected of every run.)
TRAINER_METRICS: dict[str, tuple[str, ...]] = {
    "dpo": ("loss", "margin", "chosen_reward", "rejected_reward", "chosen_logp", "rejected_logp", "accuracy"),
    "cpo": ("loss", "margin", "chosen_reward", "rejected_reward", "chosen_logp", "rejected_logp", "accuracy"),
    "kto": ("loss", "chosen_reward", "rejected_reward", "chosen_logp", "rejected_logp", "kl"),
    "sft": ("loss",),
}


def expected_metrics(trainer: str) -> dict[str, str]:
    """Stable name -> the TRL log key it is read from, for every metric ``trainer`` is expected to log."""
    source = {stable: key for key, stable in TRL_METRIC_NAMES.items()}
    return {name: source[name] for name in TRAINER_METRICS[trainer]}


def metrics_row(logs: Mapping[str, Any], step: int,
                names: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """One metrics.jsonl line from a trainer log, or None for logs that are not a training step (eval, summary).

    ``names`` maps the trainer's log keys to the stable names (default: the offline TRL trainers' keys).
    """
    if "loss" not in logs:
        return None
    key_names = TRL_METRIC_NAMES if names is None else names
    row: dict[str, Any] = {"step": int(step)}
    row.update({name: None for name in STABLE_METRICS})
    for key, value in logs.items():
        name = key_names.get(key)
        if name is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        # JSON has no NaN/inf; a diverged value is recorded as null rather than an unreadable line.
        row[name] = number if math.isfinite(number) else None
    return row


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a metrics.jsonl file."""
    return [obj for _, obj in iter_jsonl(path)]


def metrics_writer(path: Path, names: Mapping[str, str] | None = None) -> "TrainerCallback":
    """A callback that appends each training log to ``path`` under the stable names (``names``: see metrics_row)."""
    from transformers import TrainerCallback

    class MetricsWriter(TrainerCallback):
        """Appends each training log to metrics.jsonl as it arrives, so a crashed run keeps its history."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                path.write_text("", encoding="utf-8")  # a re-run replaces the history, it does not append to it

        def on_log(
            self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kwargs: Any
        ) -> None:
            if not logs or not state.is_world_process_zero:
                return
            row = metrics_row(logs, state.global_step, names)
            if row is not None:
                with path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")

    return MetricsWriter()


__all__ = [
    "STABLE_METRICS",
    "TRAINER_METRICS",
    "TRL_METRIC_NAMES",
    "expected_metrics",
    "metrics_row",
    "metrics_writer",
    "read_metrics",
]
