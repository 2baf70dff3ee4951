"""``compare``, ``generate``, ``judge`` and ``grade``: the pipeline's verbs (flags -> a workflow of
``evalsuite.pipeline`` -> a printed summary)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import click

from evalsuite.cli._common import (
    baseline_and_candidates,
    batch_backends,
    batch_options,
    build_config,
    common_options,
    echo_batch_reports,
    judging_flags,
    judging_options,
    pick_judges,
    progress_factory,
)
from evalsuite.cli._sequential import compare_sequential_options, run_sequential_cli

if TYPE_CHECKING:
    from evalsuite.report.results import Results

@click.command("compare")
@click.argument("baseline")
@click.argument("candidates", nargs=-1, required=True)
@common_options
@judging_options
@batch_options
@compare_sequential_options
@click.option("--no-viewer", is_flag=True, help="Do not write viewer.html (every judgment, as one HTML page) beside leaderboard.md.")
@click.option("--allow-unhealthy-judge", is_flag=True,
              help="Keep significance marks and the best beta when the judge fails its health check (docs/judge-health.md).")
def compare_cmd(baseline: str, candidates: tuple[str, ...], config_path: str | None, run_dir: str | None, bench_name: str | None,
                bench_path: str | None, limit: int | None, categories: str | None, overrides: tuple[str, ...], mode: str | None,
                template: str | None, pairs: str | None, judges: str | None, retry_errors: bool, resamples: int, bt_rounds: int,
                seed: int | None, quiet: bool, batch: bool, batch_retry: str, batch_poll: float, sequential: bool = False, wave: int = 8,
                rule: str = "lower-bound", min_win_rate: float = 0.5, alpha: float = 0.05, no_viewer: bool = False,
                allow_unhealthy_judge: bool = False) -> None:
    """Generate what is missing, judge every CANDIDATE against BASELINE in both orders, print and write the leaderboard.

    Names are [models.*] entries or trained checkpoints: `dpo` expands to every trained beta (dpo-b0.05, dpo-b0.1, ...).
    With [judges.<name>] tables every judge of the panel judges both orders. Re-running finishes an interrupted run
    without repeating a finished call.
    """
    from evalsuite.pipeline.compare import run_compare
    from evalsuite.report.results import StatsOptions

    config = judging_flags(build_config(config_path, run_dir, bench_name, bench_path, limit, categories, overrides),
                           mode, pairs, template, judges)
    if seed is not None:
        config = replace(config, seed=seed)
    base, cands = baseline_and_candidates(config, baseline, candidates)
    backends = batch_backends(config, True, [base, *cands], batch, batch_retry, batch_poll)
    stats_options = StatsOptions(n_resamples=resamples, bt_rounds=bt_rounds, seed=config.seed,
                                 allow_unhealthy_judge=allow_unhealthy_judge)
    if sequential:  # judge in waves, stop each candidate once its gate decision is settled
        from evalsuite.pipeline.sequential import SequentialOptions

        seq = run_sequential_cli(config, base, cands, SequentialOptions(rule, min_win_rate, alpha, wave, config.seed),
                                 quiet=quiet, retry_errors=retry_errors, stats_options=stats_options, backends=backends)
        print_summary(seq.results)
        click.echo(f"wrote {seq.results_path} and {seq.leaderboard_path}", err=True)
        if not no_viewer:
            from evalsuite.report.html import write_viewer

            click.echo(f"wrote {write_viewer(config.run_dir, seq.results)}", err=True)
        return
    outcome = run_compare(
        config, base, cands, progress=progress_factory(quiet), retry_errors=retry_errors,
        stats_options=stats_options, backends=backends, viewer=not no_viewer,
    )
    echo_batch_reports(backends)
    echo_judge_failures(outcome.judge_failures)
    print_summary(outcome.results)
    click.echo(f"wrote {outcome.results_path} and {outcome.leaderboard_path}", err=True)
    if outcome.viewer_path is not None:
        click.echo(f"wrote {outcome.viewer_path}", err=True)


def echo_judge_failures(failures: Mapping[str, str]) -> None:
    """One warning line on stderr per panel member that failed in this run (the others' verdicts made the results)."""
    for name, reason in failures.items():
        click.echo(f"warning: judge {name} failed, the panel went on without it: {reason}", err=True)


def print_summary(results: Results) -> None:
    """The terminal table of a run: win rates vs the baseline (pooled and per turn), then judge health per judge x
    template x turn, then token usage."""
    import sys

    from rich.console import Console
    from rich.table import Table

    from evalsuite.report.results import format_p

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    b = results.stats.n_resamples
    table = Table(title=f"vs {results.baseline} (judge {results.info.judge}, {results.info.mode})")
    for col in ("model", "n", "W", "T", "L", "err", "incons.", "win rate", "CI", "p (Holm)", "turn 1", "turn 2", "t2-t1 p"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for c in results.comparisons:
        t1, t2, d = c.turn(1), c.turn(2), c.turn_difference
        table.add_row(
            c.model, str(c.n), str(c.wins), str(c.ties), str(c.losses), str(c.errors), str(c.inconsistent),
            pct(c.win_rate), f"[{pct(c.ci_low)}, {pct(c.ci_high)}]", format_p(c.p_holm, c.p_holm_bound, b),
            pct(None if t1 is None else t1.win_rate), pct(None if t2 is None else t2.win_rate),
            "-" if d is None or d.p_value is None else format_p(d.p_value, d.p_value_bound, b),
        )
    health = Table(title="judge health (per judge, template and turn)")
    for col in ("judge", "template", "turn", "judgments", "consistency", "1st-pos wins", "ties", "errors", "verdict"):
        health.add_column(col, justify="left" if col in ("judge", "template", "verdict") else "right")
    for g in results.health_by_group:
        h = g.health
        health.add_row(g.judge, g.template, str(g.turn), str(h.n_judgments), pct(h.consistency),
                       pct(h.first_position_win_share), pct(h.tie_share), pct(h.error_share), h.verdict().status)

    # piped output (CI logs, files) gets a fixed width instead of rich's 80-column fallback
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    if results.health_by_group:
        console.print(health)
    if results.health_verdict.unreliable:  # docs/judge-health.md
        console.print(f"the judge failed its health check ({'; '.join(results.health_verdict.reasons)}): "
                      "no conclusion from its verdicts (leaderboard marks them unreliable; gate fails on them)")
    usage = results.info.usage
    parts = []
    if usage is not None:
        for name, u in sorted(usage.models.items()) + [("judge", usage.judge)]:
            if u.prompt_tokens or u.completion_tokens:
                cost = f" (${u.cost_usd:.4f})" if u.cost_usd is not None else ""
                parts.append(f"{name} {u.prompt_tokens:,} in / {u.completion_tokens:,} out{cost}")
    if parts:
        console.print("tokens: " + "; ".join(parts), highlight=False)


@click.command("generate")
@click.argument("models", nargs=-1, required=True)
@common_options
@click.option("--quiet", is_flag=True, help="No progress bars.")
@batch_options
def generate_cmd(models: tuple[str, ...], config_path: str | None, run_dir: str | None, bench_name: str | None,
                 bench_path: str | None, limit: int | None, categories: str | None, overrides: tuple[str, ...], quiet: bool,
                 batch: bool, batch_retry: str, batch_poll: float) -> None:
    """Generate two-turn answers for MODELS into the run store (only what is missing)."""
    from evalsuite.bench import load_benchmark
    from evalsuite.config import resolve_models
    from evalsuite.generate import generate_all
    from evalsuite.store import RunStore

    config = build_config(config_path, run_dir, bench_name, bench_path, limit, categories, overrides)
    specs = resolve_models(config, models)
    questions = load_benchmark(config.bench)
    with RunStore(config.run_dir) as store:
        store.put_questions(questions)
        backends = batch_backends(config, False, specs, batch, batch_retry, batch_poll)
        given = backends.models if backends is not None else None
        for s in generate_all(specs, questions, store, progress=progress_factory(quiet), backends=given):
            first = f" (first: {s.first_error}; a re-run asks them again)" if s.errors and s.first_error else ""
            click.echo(f"{s.model}: {s.requested} calls, {s.cached} turns cached, {s.errors} errors{first}", err=True)
        echo_batch_reports(backends)


@click.command("judge")
@click.argument("baseline")
@click.argument("candidates", nargs=-1, required=True)
@common_options
@judging_options
@batch_options
@click.option("--no-viewer", is_flag=True, help="Do not write viewer.html (every judgment, as one HTML page) beside leaderboard.md.")
def judge_cmd(baseline: str, candidates: tuple[str, ...], config_path: str | None, run_dir: str | None, bench_name: str | None,
              bench_path: str | None, limit: int | None, categories: str | None, overrides: tuple[str, ...], mode: str | None,
              template: str | None, pairs: str | None, judges: str | None, retry_errors: bool, resamples: int, bt_rounds: int,
              seed: int | None, quiet: bool, batch: bool, batch_retry: str, batch_poll: float, no_viewer: bool = False) -> None:
    """Judge stored answers only (no generation): CANDIDATES vs BASELINE in both orders, then write the results.

    Names are answer-model names in the run store (generated, or brought in with `evalsuite import-answers`).
    """
    from evalsuite.config import ModelSpec
    from evalsuite.pipeline.compare import run_compare
    from evalsuite.report.results import StatsOptions

    config = judging_flags(build_config(config_path, run_dir, bench_name, bench_path, limit, categories, overrides),
                           mode, pairs, template, judges)
    if seed is not None:
        config = replace(config, seed=seed)
    specs = [config.models.get(n) or ModelSpec(name=n, backend="none") for n in (baseline, *candidates)]
    backends = batch_backends(config, True, [], batch, batch_retry, batch_poll)
    outcome = run_compare(config, specs[0], specs[1:], progress=progress_factory(quiet), retry_errors=retry_errors,
                          generate_answers=False, backends=backends, viewer=not no_viewer,
                          stats_options=StatsOptions(n_resamples=resamples, bt_rounds=bt_rounds, seed=config.seed))
    echo_batch_reports(backends)
    echo_judge_failures(outcome.judge_failures)
    print_summary(outcome.results)
    click.echo(f"wrote {outcome.results_path} and {outcome.leaderboard_path}", err=True)
    if outcome.viewer_path is not None:
        click.echo(f"wrote {outcome.viewer_path}", err=True)


@click.command("grade")
@click.argument("models", nargs=-1, required=True)
@common_options
@click.option("--template", help="A single-answer grading template (kind = \"single\"); default: picked per category and turn.")
@click.option("--judges", "judges", metavar="NAME", help="The [judges.<name>] table that grades (grading takes one judge).")
@click.option("--retry-errors", is_flag=True, help="Re-ask grades stored as errors.")
@click.option("--resamples", type=int, default=10_000, show_default=True, help="Bootstrap resamples for the CIs.")
@click.option("--seed", type=int, help="Seed for the resampling.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def grade_cmd(models: tuple[str, ...], config_path: str | None, run_dir: str | None, bench_name: str | None, bench_path: str | None,
              limit: int | None, categories: str | None, overrides: tuple[str, ...], template: str | None, judges: str | None,
              retry_errors: bool, resamples: int, seed: int | None, quiet: bool) -> None:
    """Single-answer grading (MT-Bench's score mode): generate what is missing, grade every answer 1-10, write grades.json."""
    from evalsuite.config import resolve_models
    from evalsuite.pipeline.grade import grade

    config = pick_judges(build_config(config_path, run_dir, bench_name, bench_path, limit, categories, overrides), judges)
    config.single_judge("grade", judges_flag=True)
    outcome = grade(config, resolve_models(config, models), progress=progress_factory(quiet), template=template,
                    retry_errors=retry_errors, n_resamples=resamples, seed=seed)
    click.echo(f"{'model':<20} {'score':>6} {'95% CI':>15} {'turn 1':>7} {'turn 2':>7} {'n':>5} {'errors':>6}")
    for r in outcome.rows:
        if r["score"] is None:
            click.echo(f"{r['model']:<20} {'-':>6} {'-':>15} {'-':>7} {'-':>7} {r['n']:>5} {r['errors']:>6}")
            continue
        ci = f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
        t1, t2 = r["by_turn"].get("1"), r["by_turn"].get("2")
        click.echo(f"{r['model']:<20} {r['score']:>6.2f} {ci:>15} {t1 if t1 is not None else '-':>7} {t2 if t2 is not None else '-':>7} "
                   f"{r['n']:>5} {r['errors']:>6}")
    s = outcome.judging
    click.echo(f"grade {s.judge}: {s.requested} calls, {s.cached} cached, {s.errors} errors; wrote {outcome.path}", err=True)
