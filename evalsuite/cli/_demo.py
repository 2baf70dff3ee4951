"""``demo``: the whole pipeline on tiny local models (CPU, no network)."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False), help="Where to put models, checkpoints and the run (default runs/demo).")
@click.option("--questions-per-category", type=int, default=1, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo_cmd(out: str | None, questions_per_category: int, quiet: bool) -> None:
    """Build a tiny model, SFT it, train DPO and SimPO at two betas, generate, judge both orders, write the leaderboard.

    Runs on a 2-core CPU with no GPU and no network in a few minutes. Tiny models make the verdicts noise: this shows
    the machinery; the command it prints at the end runs the same pipeline on real checkpoints.
    """
    from dataclasses import replace

    from evalsuite.errors import require_extra

    require_extra("train", "evalsuite demo")  # the demo trains and runs local models: torch, transformers, TRL

    from evalsuite.cli._run import print_summary, progress_factory
    from evalsuite.demo._pipeline import NOTE, REAL_COMMANDS, DemoOptions, run_demo, with_out

    options = replace(with_out(DemoOptions(), out), questions_per_category=questions_per_category)
    results = run_demo(options, say=lambda m: click.echo(m, err=True), progress=progress_factory(quiet))
    print_summary(results)
    click.echo(f"\n{NOTE}\n")
    click.echo(f"Leaderboard: {options.out / 'run' / 'leaderboard.md'}\n")
    click.echo(REAL_COMMANDS)
