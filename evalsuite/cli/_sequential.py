"""``--sequential`` for ``compare`` and ``gate``: the flags and the wiring (the logic is
``evalsuite.pipeline.sequential``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import click

from evalsuite.cli._common import baseline_and_candidates, build_config, progress_factory

if TYPE_CHECKING:
    from evalsuite.backends.roles import StageBackends
    from evalsuite.config import Config, ModelSpec
    from evalsuite.pipeline.sequential import SequentialOptions, SequentialOutcome
    from evalsuite.report.gate import GateCheck

RULES = ["lower-bound", "not-worse", "point"]  # point is refused with an input error that names it

_wave_option = click.option("--wave", type=int, default=8, show_default=True,
                            help="With --sequential: questions per wave (the sequence is looked at after each wave).")


def compare_sequential_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--sequential and the gate rule it settles, for ``compare``."""
    for opt in reversed([
        click.option("--sequential", is_flag=True,
                     help="Judge questions in a seeded random order, in waves, and stop judging a candidate once an "
                          "anytime-valid confidence sequence settles its gate decision (--rule, --min-win-rate)."),
        _wave_option,
        click.option("--rule", type=click.Choice(RULES), default="lower-bound", show_default=True,
                     help="With --sequential: the gate rule to settle (lower-bound or not-worse)."),
        click.option("--min-win-rate", type=float, default=0.5, show_default=True, help="With --sequential: the threshold."),
        click.option("--alpha", type=float, default=0.05, show_default=True,
                     help="With --sequential: family-wise error over the candidates (Bonferroni)."),
    ]):
        fn = opt(fn)
    return fn


def gate_sequential_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--sequential for ``gate``: judge now (from the project file) instead of reading results.json."""
    for opt in reversed([
        click.option("--sequential", is_flag=True,
                     help="Judge now, sequentially, and stop each candidate once its decision is settled "
                          "(needs the project file: --config); prints the calls each decision took."),
        _wave_option,
        click.option("--config", "config_path", type=click.Path(dir_okay=False), help="With --sequential: project file (default ./evalsuite.toml)."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="With --sequential: override a config key (repeatable)."),
        click.option("--seed", type=int, help="With --sequential: seed of the question order (default run.seed or 0)."),
        click.option("--quiet", is_flag=True, help="With --sequential: no progress bars."),
    ]):
        fn = opt(fn)
    return fn


def run_sequential_cli(
    config: Config,
    baseline: ModelSpec,
    candidates: Sequence[ModelSpec],
    options: SequentialOptions,
    *,
    quiet: bool,
    retry_errors: bool = False,
    stats_options: Any = None,
    backends: StageBackends | None = None,
) -> SequentialOutcome:
    """Run the sequential judging and print one line per candidate (PASS/FAIL, the calls it took)."""
    from evalsuite.pipeline.sequential import run_sequential
    from evalsuite.report.gate import sequential_checks

    config.single_judge("compare --sequential", judges_flag=True)
    outcome = run_sequential(config, baseline, candidates, options, progress=progress_factory(quiet),
                             retry_errors=retry_errors, stats_options=stats_options, backends=backends)
    allow_unhealthy = bool(getattr(stats_options, "allow_unhealthy_judge", False))
    for check in sequential_checks(outcome.run, outcome.results, allow_unhealthy):
        click.echo(f"{'PASS' if check.passed else 'FAIL'} {check.message}")
    return outcome


def gate_sequential(run_dir: str, baseline: str, candidates: Sequence[str], rule: str, threshold: float, alpha: float,
                    wave: int, config_path: str | None, overrides: Sequence[str], seed: int | None, quiet: bool,
                    allow_unhealthy_judge: bool = False) -> list[GateCheck]:
    """``gate --sequential``: resolve the models from the project file, judge sequentially; the gate's checks (a
    candidate whose judge failed its health check fails unless ``allow_unhealthy_judge``)."""
    from dataclasses import replace

    from evalsuite.pipeline.sequential import SequentialOptions, run_sequential
    from evalsuite.report.gate import sequential_checks

    options = SequentialOptions(rule=rule, threshold=threshold, alpha=alpha, wave=wave)
    options.check()  # before anything is read or asked
    config = build_config(config_path, run_dir, None, None, None, None, overrides)
    if seed is not None:
        config = replace(config, seed=seed)
    config.single_judge("gate --sequential")
    base, cands = baseline_and_candidates(config, baseline, candidates)
    outcome = run_sequential(config, base, cands, replace(options, seed=config.seed), progress=progress_factory(quiet))
    click.echo(f"wrote {outcome.results_path} and {outcome.leaderboard_path}", err=True)
    results = outcome.results
    if results.sequential is None:  # the run's results always carry the section; a missing one is a bug, not a pass
        raise RuntimeError("sequential judging wrote no sequential section")
    return sequential_checks(results.sequential, results, allow_unhealthy_judge)
