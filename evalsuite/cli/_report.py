"""``report``, ``gate`` and ``agreement``: read results and judgments, never call a model."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from evalsuite.cli._sequential import gate_sequential_options
from evalsuite.errors import InputError

if TYPE_CHECKING:
    from evalsuite.report.results import Results


def load_results(run_dir: str | Path, *, path: str | Path | None = None) -> Results:
    """A run's results.json (or the file at ``path``) as typed ``Results``; a one-line error when missing or broken."""
    from evalsuite.report.results import load_results as read_results

    return read_results(Path(path) if path is not None else Path(run_dir) / "results.json")


@click.command("report")
@click.option("--run-dir", default="runs/default", show_default=True, type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["md", "json", "csv", "html"]), default="md", show_default=True,
              help="html: the viewer page (leaderboard + every judgment), also written to RUN_DIR/viewer.html.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False), help="Write PNG plots here (needs matplotlib: evalsuite[plots]).")
def report_cmd(run_dir: str, fmt: str, plots_dir: str | None) -> None:
    """Print the leaderboard of a run (markdown for GitHub, JSON, CSV, or the HTML viewer) from its results.json."""
    from evalsuite.report.markdown import render_markdown
    from evalsuite.report.tables import results_csv

    results = load_results(run_dir)
    if fmt == "md":
        click.echo(render_markdown(results), nl=False)
    elif fmt == "json":
        click.echo(results.dumps(), nl=False)
    elif fmt == "html":  # the same file `evalsuite view` writes
        from evalsuite.report.html import write_viewer

        click.echo(write_viewer(Path(run_dir), results).read_text(encoding="utf-8"), nl=False)
    else:
        click.echo(results_csv(results), nl=False)
    if plots_dir:
        from evalsuite.report.plots import write_plots

        for p in write_plots(results, Path(plots_dir)):
            click.echo(f"wrote {p}", err=True)


@click.command("gate")
@click.option("--run-dir", default="runs/default", show_default=True, type=click.Path(file_okay=False))
@click.option("--baseline", required=True, help="The model the candidates were compared with.")
@click.option("--candidate", "candidates", multiple=True, required=True, help="Candidate to check (repeatable; a variant name checks every beta).")
@click.option("--min-win-rate", type=float, default=0.5, show_default=True, help="Threshold on the win rate vs the baseline.")
@click.option("--rule", type=click.Choice(["lower-bound", "not-worse", "point"]), default="lower-bound", show_default=True,
              help="lower-bound: pass only if the CI's lower bound clears the threshold (evidence of improvement); "
                   "not-worse: fail only if the CI's upper bound is below it (evidence of regression); point: the win rate itself.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="The CI is the two-sided (1 - alpha) interval.")
@click.option("--against", "against", type=click.Path(dir_okay=False), help="An older results.json: also fail when a candidate's win rate dropped significantly on the same questions.")
@click.option("--allow-unhealthy-judge", is_flag=True,
              help="Decide on comparisons whose judge failed its health check (position consistency or first-position "
                   "share: docs/judge-health.md) instead of failing them.")
@click.option("--metric", type=click.Choice(["win-rate", "style"]), default="win-rate", show_default=True,
              help="win-rate: the judge's win rate; style: the style-controlled win rate (answers equally long and "
                   "formatted), so a candidate that only learned markdown or length does not pass.")
@gate_sequential_options
def gate_cmd(run_dir: str, baseline: str, candidates: tuple[str, ...], min_win_rate: float, rule: str, alpha: float,
             against: str | None, allow_unhealthy_judge: bool = False, metric: str = "win-rate", sequential: bool = False,
             wave: int = 8, config_path: str | None = None,
             overrides: tuple[str, ...] = (), seed: int | None = None, quiet: bool = False) -> None:
    """CI gate on win rate: exit 0 when every check passes, 1 when one fails (a judge that failed its health check
    fails every check it judged), 2 on bad input."""""
    from evalsuite.report.gate import GateOptions, gate_markdown, run_gate

    if sequential:  # judge now, stopping each candidate once its decision is settled
        from evalsuite.cli._sequential import gate_sequential

        if against:
            raise InputError("--against compares finished runs", where="--sequential", fix="drop --against or --sequential")
        if metric != "win-rate":
            raise InputError(f"--metric {metric} gates a finished run", where="--sequential",
                             fix="drop --sequential, or --metric")
        checks = gate_sequential(run_dir, baseline, candidates, rule, min_win_rate, alpha, wave, config_path, overrides,
                                 seed, quiet, allow_unhealthy_judge)
    else:
        results = load_results(run_dir)
        old = load_results(run_dir, path=against) if against else None
        checks = run_gate(results, GateOptions(baseline, list(candidates), min_win_rate, rule, alpha,
                                               allow_unhealthy_judge=allow_unhealthy_judge, metric=metric), old)
    for c in checks:
        click.echo(("PASS " if c.passed else "FAIL ") + c.message)
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_path:  # the GitHub Actions job summary, for either kind of gate
        with open(summary_path, "a", encoding="utf-8") as fh:
            fh.write(gate_markdown(checks, rule, min_win_rate, alpha))
    sys.exit(0 if all(c.passed for c in checks) else 1)


@click.command("agreement")
@click.argument("file1", type=click.Path(exists=True))
@click.argument("file2", required=False, type=click.Path(exists=True))
@click.option("--judges1", help="Regex: keep votes of set 1 whose judge matches.")
@click.option("--judges2", help="Regex: keep votes of set 2 whose judge matches.")
def agreement_cmd(file1: str, file2: str | None, judges1: str | None, judges2: str | None) -> None:
    """Agreement between two sets of votes (or one set with itself), MT-Bench rules: S1 (ties count), S2 (ties dropped), Cohen's kappa.

    FILE is a vote file in the MT-Bench human-judgment shape (JSON or JSONL: question_id, model_a, model_b, winner,
    judge, turn), a FastChat pair-judgment file, or a run directory (its own judgments).
    """
    from evalsuite.interop.votes import filter_votes, read_votes
    from evalsuite.stats import agreement

    v1 = filter_votes(read_votes(file1), judges1)
    if file2:
        v2 = filter_votes(read_votes(file2), judges2)
    elif judges2:
        v2 = filter_votes(read_votes(file1), judges2)
    else:
        v2 = None
    if not v1 or (v2 is not None and not v2):
        raise InputError("no votes left after the judge filters", fix="check --judges1/--judges2 against the judge names in the files")
    res = agreement(v1, v2)
    if res.same_set:
        click.echo(f"both sides are the same {len(v1)} votes: one set against itself (distinct pairs of votes only)")
    click.echo(f"{'turn':>5} {'setup':>5} {'agree':>7} {'total':>7} {'ratio':>7}")
    for r in res.rows:
        turn = "all" if r.turn is None else str(r.turn)
        ratio = "-" if r.total == 0 else f"{r.ratio:.3f}"
        click.echo(f"{turn:>5} {r.setup:>5} {r.agree:>7} {r.total:>7} {ratio:>7}")
    click.echo(f"Cohen's kappa (S1 pairs): {res.kappa:.3f}   groups: {res.n_groups}")
