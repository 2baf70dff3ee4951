"""``evalsuite train``: SFT checkpoint + preference data -> one checkpoint per beta, registered in the manifest.

For several processes (GPUs, machines; DDP, FSDP, DeepSpeed) launch the same command through accelerate, or let it
launch itself with an accelerate config file::

    accelerate launch --num_processes 8 -m evalsuite train dpo --model ./sft --data prefs.jsonl --grid
    evalsuite train dpo --model ./sft --data prefs.jsonl --grid --accelerate-config examples/accelerate/ddp.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from evalsuite.errors import InputError, require_extra
from evalsuite.trainers import DTYPE_CHOICES, VARIANTS, TrainOptions
from evalsuite.trainers import hand_over_rank_error, launch_with_config

_DEFAULTS = TrainOptions()


@click.command("train")
@click.argument("variant", type=click.Choice(list(VARIANTS)))
@click.option("--model", required=True, help="SFT checkpoint directory to start from (or a hub id, with network).")
@click.option("--data", required=True, help="Preference .jsonl/.json (sft: prompt/completion), or a hub dataset name.")
@click.option("--split", default="train", show_default=True, help="Dataset split, for a hub dataset.")
@click.option(
    "--beta", "betas", type=float, multiple=True, help="Beta of a run; repeat for a sweep. Default: the variant's."
)
@click.option(
    "--grid", is_flag=True, help="Run the variant's default beta grid (dpo/ipo/kto 0.05,0.1,0.5; simpo 1,2,5)."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("checkpoints"),
    show_default=True,
    help="One folder per checkpoint is created here.",
)
@click.option(
    "--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Default: OUT/manifest.json."
)
@click.option("--lr", type=float, default=_DEFAULTS.lr, show_default=True)
@click.option("--epochs", type=float, default=_DEFAULTS.epochs, show_default=True)
@click.option("--max-steps", type=int, default=_DEFAULTS.max_steps, show_default=True, help="> 0 overrides --epochs.")
@click.option("--batch-size", type=int, default=_DEFAULTS.batch_size, show_default=True, help="Per device.")
@click.option("--grad-accum", type=int, default=_DEFAULTS.grad_accum, show_default=True)
@click.option("--max-length", type=int, default=_DEFAULTS.max_length, show_default=True, help="Prompt + reply tokens.")
@click.option("--lora/--full", default=_DEFAULTS.lora, show_default=True, help="LoRA adapter or full weights.")
@click.option("--lora-r", type=int, default=_DEFAULTS.lora_r, show_default=True)
@click.option("--lora-alpha", type=int, default=_DEFAULTS.lora_alpha, show_default=True)
@click.option("--lora-dropout", type=float, default=_DEFAULTS.lora_dropout, show_default=True)
@click.option(
    "--lora-target", "lora_targets", multiple=True, help="Module name to adapt; repeatable. Default: all linear layers."
)
@click.option("--merge", is_flag=True, help="Merge the LoRA adapter into full weights after training.")
@click.option(
    "--simpo-gamma", type=float, default=_DEFAULTS.simpo_gamma, show_default=True, help="SimPO target margin."
)
@click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True)
@click.option("--logging-steps", type=int, default=_DEFAULTS.logging_steps, show_default=True)
@click.option("--bf16/--no-bf16", default=None, help="bf16 autocast. Default: on when the GPU supports it.")
@click.option(
    "--dtype",
    type=click.Choice(list(DTYPE_CHOICES)),
    default=_DEFAULTS.dtype,
    show_default=True,
    help="Weights as loaded. auto: bf16 for LoRA on a bf16 GPU, else fp32. Full weights are saved in the base's dtype.",
)
@click.option(
    "--reference-model",
    default=None,
    help="A frozen reference checkpoint other than --model (DPO, IPO, KTO). Default: --model itself.",
)
@click.option(
    "--accelerate-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Train across processes: re-run this command under `accelerate launch --config_file FILE` "
    "(examples/accelerate/: ddp.yaml runs on CPU too; fsdp.yaml, deepspeed_zero2.yaml need GPUs).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def train_cmd(
    ctx: click.Context,
    variant: str,
    model: str,
    data: str,
    split: str,
    betas: tuple[float, ...],
    grid: bool,
    out_dir: Path,
    manifest: Path | None,
    lr: float,
    epochs: float,
    max_steps: int,
    batch_size: int,
    grad_accum: int,
    max_length: int,
    lora: bool,
    lora_r: int,
    lora_alpha: int,
    lora_dropout: float,
    lora_targets: tuple[str, ...],
    merge: bool,
    simpo_gamma: float,
    seed: int,
    logging_steps: int,
    bf16: bool | None,
    dtype: str,
    reference_model: str | None,
    accelerate_config: Path | None,
    quiet: bool,
) -> None:
    """Train VARIANT (sft, dpo, ipo, simpo, kto) from --model on --data, one checkpoint per beta."""
    require_extra("train", "evalsuite train")  # before any file is read: a core install lacks TRL and torch
    try:
        if accelerate_config is not None:  # the same command, less this option, under accelerate's launcher
            program = ["train", *_given_arguments(ctx, skip={"accelerate_config"})]
            sys.exit(launch_with_config(accelerate_config, program))
        _train(variant, model, data, split, betas, grid, out_dir, manifest, quiet, TrainOptions(
            lr=lr,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            grad_accum=grad_accum,
            max_length=max_length,
            lora=lora,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            lora_targets=list(lora_targets) or None,
            merge=merge,
            seed=seed,
            logging_steps=logging_steps,
            simpo_gamma=simpo_gamma,
            bf16=bf16,
            dtype=dtype,
            reference_model=reference_model,
        ))
    except InputError as exc:
        if hand_over_rank_error(exc):  # a launched rank: the launching evalsuite (or rank 0) says it, once
            sys.exit(2)
        raise


def _given_arguments(ctx: click.Context, *, skip: set[str]) -> list[str]:
    """The command line of ``ctx`` as the user gave it (options left at their defaults omitted), less ``skip``."""
    args: list[str] = []
    for param in ctx.command.params:
        name = param.name or ""
        value: Any = ctx.params.get(name)
        if name in skip or ctx.get_parameter_source(name) is click.core.ParameterSource.DEFAULT:
            continue
        if isinstance(param, click.Argument):
            args.append(str(value))
            continue
        assert isinstance(param, click.Option)
        if param.is_flag:
            flags = param.opts if value else param.secondary_opts
            args.extend(flags[:1])
            continue
        for item in value if param.multiple else [value]:
            args.extend([param.opts[0], str(item)])
    return args


def _train(variant: str, model: str, data: str, split: str, betas: tuple[float, ...], grid: bool, out_dir: Path,
           manifest: Path | None, quiet: bool, options: TrainOptions) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from evalsuite.manifest import TrainingWorld
    from evalsuite.trainers import train

    trained = train(
        variant,
        model=model,
        data=data,
        betas=list(betas) or None,
        grid=grid,
        options=options,
        out_dir=out_dir,
        manifest=manifest,
        progress=not quiet,
        split=split,
    )
    if not trained:  # a non-main process of a distributed launch
        return
    console = Console()
    table = Table(title=f"Trained -> {manifest or out_dir / 'manifest.json'}", title_justify="left")
    for name in ("checkpoint", "kind", "steps", "final loss", "final margin", "health"):
        table.add_column(name, justify="right" if name in ("steps", "final loss", "final margin") else "left")
    for t in trained:
        health = Text(f"{len(t.flags)} flag(s)", style="bold yellow") if t.flags else Text("ok", style="green")
        table.add_row(
            t.name,
            t.kind,
            "" if t.steps is None else str(t.steps),
            "" if t.final_loss is None else f"{t.final_loss:.4f}",
            "" if t.final_margin is None else f"{t.final_margin:.3f}",
            health,
        )
    console.print(table)
    for t in trained:
        world = TrainingWorld.of(t.entry) if t.entry is not None else None
        if world is not None and world.world_size > 1:
            console.print(Text(f"{t.name}: {world.describe()}", style="dim"))
        for flag in t.flags:
            console.print(Text.assemble((f"{t.name} ", "bold"), (f"[{flag['code']}] ", "yellow"), flag["message"]))
            console.print(Text(f"    fix: {flag['fix']}", style="dim"))


__all__ = ["train_cmd"]
