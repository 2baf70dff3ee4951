"""What the pipeline's verbs share: the option groups, the config built from the flags, model resolution, progress
bars and ``--batch`` backends. The verbs live in ``_run.py`` (compare, generate, judge, grade), ``_sequential.py``
(``--sequential``) and ``_loop.py`` (label, iterate); they import what they share from here, so no verb's module
imports another's back."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

import click

from evalsuite.backends.roles import StageBackends
from evalsuite.config import Config, ModelSpec, load_config

_common_options: list[Callable[[Any], Any]] = [
    click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Project file (default: ./evalsuite.toml)."),
    click.option("--run-dir", type=click.Path(file_okay=False), help="Run directory (default: run.dir or runs/default)."),
    click.option("--bench", "bench_name", help="Bundled benchmark name (default mtb-style)."),
    click.option("--questions", "bench_path", type=click.Path(dir_okay=False), help="A question.jsonl (project or FastChat shape)."),
    click.option("--limit", type=int, help="First N questions of each category."),
    click.option("--categories", help="Comma-separated categories to keep."),
    click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any config key, e.g. --set judge.concurrency=64 (repeatable)."),
]


_judging_options: list[Callable[[Any], Any]] = [
    click.option("--mode", type=click.Choice(["strict", "average", "games"]),
                 help="Swap reconciliation (default strict, MT-Bench's rule; games: each order is one game, Arena-Hard)."),
    click.option("--template", help="Judge template name or file (used for the turn it judges)."),
    click.option("--pairs", type=click.Choice(["baseline", "all"]), help="Judge candidates only vs the baseline, or every pair."),
    click.option("--judges", "judges", metavar="NAME,...",
                 help="The [judges.<name>] tables that judge, as a panel (default: judging.panel, else every one)."),
    click.option("--retry-errors", is_flag=True, help="Re-ask judgments stored as errors."),
    click.option("--resamples", type=int, default=10_000, show_default=True, help="Bootstrap resamples for CIs and p-values."),
    click.option("--bt-rounds", type=int, default=1_000, show_default=True, help="Bootstrap rounds for Bradley-Terry CIs."),
    click.option("--seed", type=int, help="Seed for every resampling (default run.seed or 0)."),
    click.option("--quiet", is_flag=True, help="No progress bars."),
]


_batch_options: list[Callable[[Any], Any]] = [
    click.option("--batch", "batch", is_flag=True,
                 help="Send pending calls as OpenAI Batch files (openai: Batch API, half price, several files past one "
                      "file's limits; vllm: run_batch); a re-run re-attaches to every batch still running."),
    click.option("--batch-retry", type=click.Choice(["live", "batch"]), default="live", show_default=True,
                 help="Failed batch lines: ask them again live, or in a follow-up batch."),
    click.option("--batch-poll", type=float, default=10.0, show_default=True, help="Seconds between batch status checks."),
]


def batch_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(_batch_options):
        fn = opt(fn)
    return fn


def batch_backends(config: Config, judge: bool, models: Sequence[ModelSpec], batch: bool, batch_retry: str,
                   batch_poll: float) -> StageBackends | None:
    """``--batch``: batch backends for the judge (``judge``) and the answer models that have batch files; else None.
    A batch serves one judge: with a panel, judge one member at a time (``--judges NAME``)."""
    if not batch:
        return None
    if judge and len(config.judges) >= 2:
        from evalsuite.errors import InputError

        raise InputError(f"--batch sends one judge's calls, but the panel has {len(config.judges)} "
                         f"({', '.join(config.judges)})", fix=f"run --batch --judges NAME once per judge (e.g. "
                         f"--judges {next(iter(config.judges))}), then once without --batch: stored calls are not asked again")
    from evalsuite.backends.batch import BatchOptions
    from evalsuite.backends.batch import batch_backends as build

    options = BatchOptions(retry="batch" if batch_retry == "batch" else "live", poll_interval=batch_poll,
                           notify=lambda line: click.echo(f"batch: {line}", err=True))
    return build(config.judge if judge else None, models, config.run_dir, options)


def echo_batch_reports(backends: StageBackends | None) -> None:
    """One line per batch backend that submitted or re-attached to a batch, named by its role."""
    from evalsuite.backends.batch import BatchBackend

    for role, backend in (backends or StageBackends()).by_role():
        if isinstance(backend, BatchBackend) and (backend.report.created or backend.report.reattached):
            click.echo(f"batch {role}: {backend.report.summary()}", err=True)


def common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(_common_options):
        fn = opt(fn)
    return fn


def judging_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(_judging_options):
        fn = opt(fn)
    return fn


def judging_flags(config: Config, mode: str | None, pairs: str | None, template: str | None,
                  judges: str | None = None) -> Config:
    """The config with the judging flags that were given applied (flags win over the project file); ``judges``:
    ``--judges a,b``, the panel's members."""
    if judges is not None:
        config = pick_judges(config, judges)
    judging = config.judging
    if mode:
        judging = replace(judging, mode=mode)
    if pairs:
        judging = replace(judging, pairs=pairs)
    if template:
        judging = replace(judging, template=template)
    return replace(config, judging=judging)


def pick_judges(config: Config, judges: str | None) -> Config:
    """``--judges a,b``: the config judged by those ``[judges.<name>]`` tables (None: as the project file says)."""
    if judges is None:
        return config
    names = [n.strip() for n in judges.split(",") if n.strip()]
    if not names:
        raise click.UsageError("--judges names no judge; e.g. --judges gpt4,claude")
    return config.with_judges(names)


def build_config(config_path: str | None, run_dir: str | None, bench_name: str | None, bench_path: str | None,
                 limit: int | None, categories: str | None, overrides: Sequence[str]) -> Config:
    """``evalsuite.toml`` with ``--set`` overrides, then the benchmark flags applied to the typed config."""
    config = load_config(config_path, overrides, run_dir=run_dir)
    bench = config.bench
    if bench_name:
        bench = replace(bench, name=bench_name, path=None, hf_dataset=None)
    if bench_path:
        bench = replace(bench, path=bench_path, hf_dataset=None)
    if limit is not None:
        bench = replace(bench, limit=limit)
    if categories:
        bench = replace(bench, categories=tuple(c.strip() for c in categories.split(",") if c.strip()))
    return replace(config, bench=bench)


def baseline_and_candidates(config: Config, baseline: str, candidates: Sequence[str]) -> tuple[ModelSpec, list[ModelSpec]]:
    """The baseline (one checkpoint) and the candidates (sweeps expanded, the baseline left out) as model specs."""
    from evalsuite.config import resolve_models

    base = resolve_models(config, [baseline])
    if len(base) != 1:
        raise click.UsageError(f"baseline {baseline!r} expands to {len(base)} models; name one checkpoint")
    return base[0], [c for c in resolve_models(config, candidates) if c.name != base[0].name]


def progress_factory(quiet: bool = False) -> Callable[[str, int], Any]:
    from evalsuite.progress import StageProgress

    def make(description: str, total: int) -> StageProgress:
        return StageProgress(description, total, enabled=False if quiet else None)

    return make
