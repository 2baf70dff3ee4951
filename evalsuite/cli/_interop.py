"""``export``, ``import-answers`` and ``import-judgments``: wiring over :mod:`evalsuite.interop`."""

from __future__ import annotations

import click

from evalsuite.interop.answers import ANSWER_FORMATS
from evalsuite.interop.export import EXPORT_FORMATS
from evalsuite.interop.judgments import JUDGMENT_FORMATS
from evalsuite.judge.swap import RECONCILE_MODES


@click.command("export")
@click.option("--run-dir", required=True, type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(list(EXPORT_FORMATS)), default="fastchat", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write into (fastchat: model_answer/ and model_judgment/; alpaca-eval: <model>/model_outputs.json).")
def export_cmd(run_dir: str, fmt: str, out: str) -> None:
    """Write a run's answers (and judgments) in FastChat llm_judge's or AlpacaEval's formats."""
    from evalsuite.interop.export import export_run

    for f in export_run(run_dir, out, fmt):
        click.echo(f"{f.path}: {f.records} {f.what}", err=True)


@click.command("import-answers")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--model", help="Name to store the answers under (default: the model named in each file).")
@click.option("--format", "fmt", type=click.Choice(list(ANSWER_FORMATS)),
              help="The files' format (default: told from the first record).")
@click.option("--run-dir", default="runs/default", show_default=True, type=click.Path(file_okay=False))
def import_answers_cmd(files: tuple[str, ...], model: str | None, fmt: str | None, run_dir: str) -> None:
    """Bring answer files into a run (FastChat model_answer, Arena-Hard model_answer, AlpacaEval model_outputs.json),
    to judge answers you already have without regenerating them."""
    from evalsuite.interop.answers import import_answers

    for batch in import_answers(files, run_dir, model=model, fmt=fmt):
        click.echo(f"{batch.path}: read as {batch.format}; {len(batch.answers)} answers stored as {batch.models} in {run_dir}",
                   err=True)


@click.command("import-judgments")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(list(JUDGMENT_FORMATS)), required=True)
@click.option("--baseline", help="Baseline model (AlpacaEval: taken from the file).")
@click.option("--run-dir", default="runs/imported", show_default=True, type=click.Path(file_okay=False))
@click.option("--questions", "bench_path", type=click.Path(dir_okay=False), help="question.jsonl giving categories (FastChat).")
@click.option("--mode", type=click.Choice(list(RECONCILE_MODES)), default="strict", show_default=True,
              help="Swap reconciliation of two-order judgments (games: each order one game, for Bradley-Terry).")
@click.option("--resamples", type=int, default=10_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--instruction-difficulty", "difficulty", type=click.Path(dir_okay=False),
              help="AlpacaEval's instruction_difficulty.csv or df_gamed.csv: adds AlpacaEval's own LC v1 (alpaca-eval).")
@click.option("--style-reference", type=click.Path(dir_okay=False),
              help="An earlier results.json whose style normalisation to keep, so adding a model moves no other "
                   "model's style-controlled win rate.")
def import_judgments_cmd(file: str, fmt: str, baseline: str | None, run_dir: str, bench_path: str | None, mode: str,
                         resamples: int, seed: int, difficulty: str | None, style_reference: str | None = None) -> None:
    """Import external judgments (FastChat pair judgments, AlpacaEval annotations) and write the run's results.

    Then `evalsuite report --run-dir DIR` and `evalsuite gate` work on them like on a run of evalsuite's own.
    """
    from evalsuite.cli._run import print_summary
    from evalsuite.interop.judgments import import_judgments
    from evalsuite.report.results import StatsOptions

    outcome = import_judgments(file, fmt, baseline=baseline, run_dir=run_dir, questions=bench_path, mode=mode,
                               options=StatsOptions(n_resamples=resamples, seed=seed), instruction_difficulty=difficulty,
                               style_reference=style_reference)
    print_summary(outcome.results)
    for c in outcome.results.comparisons:
        if c.external_se is not None and c.win_rate is not None:
            click.echo(f"{c.model}: win rate {100 * c.win_rate:.2f}% ± {100 * c.external_se:.2f} (the source's own SE); "
                       f"clustered {100 * outcome.results.stats.confidence:.0f}% CI [{100 * (c.ci_low or 0):.2f}, "
                       f"{100 * (c.ci_high or 0):.2f}]", err=True)
        if fmt == "alpaca-eval" and c.lc_win_rate is not None:
            ae = ("" if c.alpaca_eval_lc_win_rate is None
                  else f", AlpacaEval's LC v1 {100 * c.alpaca_eval_lc_win_rate:.2f}%")
            click.echo(f"{c.model}: length-controlled win rate {100 * c.lc_win_rate:.2f}% (evalsuite's LC, not "
                       f"AlpacaEval's){ae}", err=True)
    click.echo(f"wrote {outcome.results_path} and {outcome.leaderboard_path}", err=True)
