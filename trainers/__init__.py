"""Training: SFT checkpoint + preference data -> DPO/IPO/SimPO/KTO checkpoints (a beta per run), metrics, manifest.

A thin layer over TRL and PEFT. It talks to the rest of evalsuite only through checkpoints on disk and their
manifest (:mod:`evalsuite.manifest`); across processes it runs under accelerate's launchers (``_distributed.py``).
Importing this package is cheap: torch, transformers, TRL, PEFT and datasets
load inside :func:`train` (:func:`train_variant`) and :func:`load_preference_data` only.
"""

from __future__ import annotations

from evalsuite.trainers._data import (
    PreferencePair,
    load_preference_data,
    parse_preference_pairs,
    read_preference_pairs,
    read_records,
)
from evalsuite.trainers._distributed import (
    LaunchedWorld,
    accelerate_command,
    accelerate_launcher,
    hand_over_rank_error,
    launch_with_config,
    launched_world,
    read_accelerate_config,
    run_launched,
)
from evalsuite.trainers._online import JudgeReward, train_online_dpo
from evalsuite.trainers._trained import TrainedCheckpoint, train
from evalsuite.trainers._train import (
    DTYPE_CHOICES,
    STABLE_METRICS,
    TRL_METRIC_NAMES,
    TrainOptions,
    metrics_row,
    read_metrics,
    train_variant,
)
from evalsuite.trainers._variants import VARIANTS, VariantSpec, get_variant, resolve_betas
from evalsuite.trainers.health import Flag, training_flags

__all__ = [
    "DTYPE_CHOICES",
    "parse_preference_pairs",
    "read_records",
    "STABLE_METRICS",
    "TRL_METRIC_NAMES",
    "VARIANTS",
    "Flag",
    "JudgeReward",
    "LaunchedWorld",
    "PreferencePair",
    "TrainOptions",
    "TrainedCheckpoint",
    "VariantSpec",
    "accelerate_command",
    "accelerate_launcher",
    "get_variant",
    "hand_over_rank_error",
    "launch_with_config",
    "launched_world",
    "load_preference_data",
    "metrics_row",
    "read_metrics",
    "read_preference_pairs",
    "read_accelerate_config",
    "resolve_betas",
    "run_launched",
    "train_online_dpo",
    "train_variant",
    "train",
    "training_flags",
]
