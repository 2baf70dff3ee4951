"""``evalsuite train``: SFT checkpoint + preference data -> one checkpoint per beta, registered in the manifest.

For several GPUs (DDP, DeepSpeed, FSDP) launch the same command through accelerate::

    accelerate launch --num_processes 8 -m evalsuite.cli train dpo --model ./sft --data prefs.jsonl --grid
"""

from __future__ import annotations

from pathlib import Path

import click

from evalsuite.errors import require_extra
from evalsuite.trainers import DTYPE_CHOICES, VARIANTS, TrainOptions

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
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train_cmd(
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
    quiet: bool,
) -> None:
    """Train VARIANT (sft, dpo, ipo, simpo, kto) from --model on --data, one checkpoint per beta."""
    require_extra("train", "evalsuite train")  # before any file is read: a core install lacks TRL and torch
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from evalsuite.trainers import train

    options = TrainOptions(
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
    )
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
        for flag in t.flags:
            console.print(Text.assemble((f"{t.name} ", "bold"), (f"[{flag['code']}] ", "yellow"), flag["message"]))
            console.print(Text(f"    fix: {flag['fix']}", style="dim"))


__all__ = ["train_cmd"]
