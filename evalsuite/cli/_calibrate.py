"""``calibrate``: judge-only, human-only and prediction-powered (human-scale) win rates per model pair."""

from __future__ import annotations

import json

import click


@click.command("calibrate")
@click.option("--human", "human", required=True, type=click.Path(dir_okay=False),
              help="Human votes (MT-Bench human-judgment shape: question_id, model_a, model_b, winner, judge, turn; JSON or JSONL).")
@click.option("--run-dir", type=click.Path(file_okay=False), help="A run whose judge verdicts to calibrate (its results.json and leaderboard get the table).")
@click.option("--judge", "judge", type=click.Path(dir_okay=False), help="Or: the judge's votes as a file (same shape, or FastChat pair judgments).")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="CIs are two-sided (1 - alpha) intervals.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def calibrate_cmd(human: str, run_dir: str | None, judge: str | None, alpha: float, fmt: str) -> None:
    """Win rates on the human scale: the judge's verdicts on every item, corrected by human votes on a subset
    (prediction-powered inference, PPI++, clustered by question), beside the judge-only and human-only win rates."""
    from evalsuite.pipeline.calibrate import attach_to_run, calibrate
    from evalsuite.errors import InputError

    if not 0.0 < alpha < 1.0:
        raise InputError(f"--alpha {alpha} is not in (0, 1)", fix="e.g. --alpha 0.05")
    if run_dir is not None:
        _require_one_judge(run_dir)
    rows = calibrate(human, run_dir=run_dir, judge=judge, alpha=alpha)
    if fmt == "json":
        click.echo(json.dumps([r.to_json() for r in rows], indent=2))
    else:
        level = f"{100 * (1 - alpha):g}% CI"
        click.echo(f"{'model':<16} {'vs':<12} {'judge only':>24} {'human only':>24} {'PPI (human scale)':>24} {'lambda':>7}")
        for r in rows:
            cells = [f"{100 * b.win_rate:5.1f}% [{100 * b.ci_low:5.1f},{100 * b.ci_high:5.1f}] n={b.n}" for b in (r.judge, r.human, r.ppi)]
            click.echo(f"{r.model:<16} {r.opponent:<12} {cells[0]:>24} {cells[1]:>24} {cells[2]:>24} {r.lam:>7.2f}")
        click.echo(f"win rate of model vs opponent, ties as half; {level}s, clustered by question", err=True)
    if run_dir is not None:
        path = attach_to_run(run_dir, rows)
        if path is not None:
            click.echo(f"wrote the calibration into {path} and the leaderboard", err=True)


def _require_one_judge(run_dir: str) -> None:
    """A run judged by a panel holds several judges' verdicts; calibrate corrects one judge's."""
    from pathlib import Path

    from evalsuite.config import require_one_judge
    from evalsuite.store import RunStore

    if not (Path(run_dir) / "evalsuite.sqlite").is_file():
        return  # calibrate says what is wrong with the folder
    with RunStore(run_dir) as store:
        judges = sorted({j.judge for j in store.judgments()})
    require_one_judge("calibrate", judges, where=run_dir,
                      fix=f"to weigh the panel by these votes set [judging] human_labels and re-run `evalsuite judge`; "
                          f"to calibrate one member, export the run (evalsuite export --run-dir {run_dir} --out OUT) "
                          "and pass its OUT/model_judgment/<judge>_pair.jsonl with --judge")
