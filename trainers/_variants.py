"""The training variants evalsuite knows, as data: which TRL trainer, which loss, which beta and beta grid.

Adding a variant is one entry in ``VARIANTS`` (plus, for a new trainer family, one builder in ``_train.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from evalsuite.errors import InputError

TrainerFamily = Literal["dpo", "cpo", "kto", "sft", "online"]
DataShape = Literal["paired", "unpaired", "sft", "prompts"]


@dataclass(frozen=True)
class VariantSpec:
    """How one variant is trained."""

    name: str
    trainer: TrainerFamily  # key of the trainer builder registry in _train.py
    loss_type: str | None  # the TRL config's loss_type
    default_beta: float | None  # None: the variant has no beta (sft)
    grid: tuple[float, ...]  # the `--grid` sweep
    data_shape: DataShape  # what load_preference_data hands the trainer
    uses_reference: bool  # needs a frozen reference (ref model, precomputed log-probs, or adapter-off base)
    summary: str


VARIANTS: dict[str, VariantSpec] = {
    "sft": VariantSpec(
        name="sft",
        trainer="sft",
        loss_type=None,
        default_beta=None,
        grid=(),
        data_shape="sft",
        uses_reference=False,
        summary="supervised fine-tuning on prompt/completion pairs (the starting point of the others)",
    ),
    "dpo": VariantSpec(
        name="dpo",
        trainer="dpo",
        loss_type="sigmoid",
        default_beta=0.1,
        grid=(0.05, 0.1, 0.5),
        data_shape="paired",
        uses_reference=True,
        summary="DPO, sigmoid loss (Rafailov et al. 2023)",
    ),
    "ipo": VariantSpec(
        name="ipo",
        trainer="dpo",
        loss_type="ipo",
        default_beta=0.1,
        grid=(0.05, 0.1, 0.5),
        data_shape="paired",
        uses_reference=True,
        summary="IPO, squared loss on the log-ratio gap (Azar et al. 2023); beta is the regulariser tau",
    ),
    "simpo": VariantSpec(
        name="simpo",
        trainer="cpo",
        loss_type="simpo",
        default_beta=2.0,
        grid=(1.0, 2.0, 5.0),
        data_shape="paired",
        uses_reference=False,
        summary="SimPO, length-normalised reward with target margin gamma, no reference (Meng et al. 2024)",
    ),
    "kto": VariantSpec(
        name="kto",
        trainer="kto",
        loss_type="kto",
        default_beta=0.1,
        grid=(0.05, 0.1, 0.5),
        data_shape="unpaired",
        uses_reference=True,
        summary="KTO on unpaired desirable/undesirable completions (Ethayarajh et al. 2024)",
    ),
    "online-dpo": VariantSpec(
        name="online-dpo",
        trainer="online",
        loss_type="sigmoid",
        default_beta=0.1,
        grid=(0.05, 0.1, 0.5),
        data_shape="prompts",
        uses_reference=True,
        summary="online DPO: two fresh samples per prompt, labelled by evalsuite's judge in both orders (trainers/_online.py)",
    ),
}


def get_variant(name: str) -> VariantSpec:
    """The spec of ``name``, or an InputError listing the known variants."""
    spec = VARIANTS.get(name)
    if spec is None:
        raise InputError(f"unknown training variant {name!r}", fix=f"use one of {', '.join(VARIANTS)}")
    return spec


def resolve_betas(
    spec: VariantSpec, betas: Sequence[float] | None, *, grid: bool = False
) -> list[float | None]:
    """The betas to run: explicit ones, the variant's grid, or its default; ``[None]`` for a beta-less variant."""
    if spec.default_beta is None:
        if betas or grid:
            raise InputError(f"variant {spec.name!r} takes no beta", fix="drop --beta/--grid")
        return [None]
    if grid and betas:
        raise InputError("--beta and --grid both given", fix="pass either explicit --beta values or --grid")
    chosen = list(spec.grid) if grid else list(betas) if betas else [spec.default_beta]
    for beta in chosen:
        if not beta > 0:
            raise InputError(f"beta must be positive, got {beta:g}", fix="pass --beta with a value > 0")
    # Keep the order given but run each beta once.
    unique: list[float | None] = list(dict.fromkeys(float(b) for b in chosen))
    return unique


__all__ = ["VARIANTS", "VariantSpec", "get_variant", "resolve_betas"]
