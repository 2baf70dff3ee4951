"""``label`` and ``iterate``: the loop's verbs (the judge labels new preference pairs; label -> train -> compare)."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from evalsuite.cli._common import batch_backends, batch_options, build_config, echo_batch_reports, progress_factory
from evalsuite.config import Config
from evalsuite.errors import InputError

if TYPE_CHECKING:
    from evalsuite.pipeline.label import LabelReport

_SCHEDULES = ["auto", "all-pairs", "pivot"]


def _judging_config(config_path: str | None, run_dir: str | None, overrides: tuple[str, ...]) -> Config:
    return build_config(config_path, run_dir, None, None, None, None, overrides)


@click.command("label")
@click.argument("prompts", type=click.Path(dir_okay=False))
@click.option("--policy", required=True, help="Model to sample: a [models] entry or a trained checkpoint name.")
@click.option("--samples", "-k", type=int, default=4, show_default=True, help="Answers sampled per prompt (K >= 2).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="TRL preference file to write (JSONL).")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Sampling temperature of every sample.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sample k is asked with seed + k.")
@click.option("--max-tokens", type=int, default=None, help="Reply length cap (default: the policy's max_tokens).")
@click.option("--schedule", type=click.Choice(_SCHEDULES), default="auto", show_default=True,
              help="Pairs judged per prompt: all-pairs (K(K-1)/2), pivot (each vs sample 0, then leaders and trailers, "
                   "K+2 at most); auto: all pairs for K <= 4.")
@click.option("--template", help="Judge template name or file (default: the pairwise template).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Project file (default: ./evalsuite.toml).")
@click.option("--run-dir", type=click.Path(file_okay=False),
              help="Run store for the samples and judgments (default: <run.dir>/label).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any config key (repeatable).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@batch_options
def label_cmd(prompts: str, policy: str, samples: int, out: str, temperature: float, seed: int, max_tokens: int | None,
              schedule: str, template: str | None, config_path: str | None, run_dir: str | None,
              overrides: tuple[str, ...], quiet: bool, batch: bool, batch_retry: str, batch_poll: float) -> None:
    """Sample K answers per prompt from POLICY, judge pairs in both orders, write swap-consistent preferences.

    A pair is kept only when both orders agree on a winner; chosen = the best-ranked sample, rejected = the worst.
    The preference-data checklist filters the output. Re-running resumes without repeating a finished call.
    """
    from evalsuite.backends.roles import StageBackends
    from evalsuite.config import resolve_models
    from evalsuite.pipeline.label import LabelOptions, label, read_prompts
    from evalsuite.store import RunStore

    config = _judging_config(config_path, None, overrides)
    config.single_judge("label")  # labeling asks one judge: a panel of several is refused before any call
    options = LabelOptions(samples=samples, temperature=temperature, seed=seed, max_tokens=max_tokens, schedule=schedule)
    options.validate()
    questions = read_prompts(prompts)
    specs = resolve_models(config, [policy])
    if len(specs) != 1:
        raise click.UsageError(f"policy {policy!r} expands to {len(specs)} models; name one checkpoint")
    store_dir = Path(run_dir) if run_dir else config.run_dir / "label"
    # --batch: the judge's calls (and an endpoint policy's samples) go through batch files recorded in this store
    backends = batch_backends(replace(config, run_dir=store_dir), True, specs, batch, batch_retry, batch_poll)
    roles = backends or StageBackends()
    with RunStore(store_dir) as store:
        report = label(questions, specs[0], config.judge, store, out, options, progress=progress_factory(quiet),
                       template=template or config.judging.template, policy_backend=roles.models.get(specs[0].name),
                       judge_backend=roles.judge)
    echo_batch_reports(backends)
    echo_label_report(report)


def echo_label_report(report: LabelReport) -> None:
    click.echo(f"labeled {report.prompts} prompts x {report.samples} samples of {report.policy} "
               f"({report.schedule}); judge calls: {report.judge_calls} this run, {report.judge_calls_total} behind the "
               f"labels; {report.candidates} consistent decisive pairs", err=True)
    if report.no_pair:
        click.echo("no pair: " + ", ".join(f"{k} {v}" for k, v in sorted(report.no_pair.items())), err=True)
    click.echo("checklist dropped: " + ", ".join(f"{k} {v}" for k, v in report.dropped.items()), err=True)
    for line in report.health_lines():
        click.echo(line, err=True)
    click.echo(f"wrote {report.kept} pairs to {report.out}", err=True)


@click.command("iterate")
@click.option("--rounds", type=int, default=None, help="Rounds to run (default: iterate.rounds, else 2).")
@click.option("--no-early-stop", is_flag=True, help="Run every round even when a round is not significantly better.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Project file (default: ./evalsuite.toml).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any config key (repeatable).")
@click.option("--launcher", default=None, metavar="COMMAND",
              help='Train each round under this launcher, as `COMMAND -m evalsuite train ...` in a subprocess, e.g. '
                   '"accelerate launch --num_processes 8" (on CPU: "accelerate launch --multi_gpu --num_processes 2"). '
                   'Default: train in this process.')
@click.option("--accelerate-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Train each round under `accelerate launch --config_file FILE` (examples/accelerate/).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def iterate_cmd(rounds: int | None, no_early_stop: bool, config_path: str | None, overrides: tuple[str, ...],
                launcher: str | None, accelerate_config: Path | None, quiet: bool) -> None:
    """Iterative preference optimisation from [iterate]: each round labels pairs with the current policy, trains
    <variant>-r<round>, and compares every round with the SFT baseline and with the round before.

    Kill it anywhere: the same command resumes at the step it was in.
    """
    from evalsuite.pipeline.iterate import iterate

    config = _judging_config(config_path, None, overrides)
    config.single_judge("iterate")  # each round labels with one judge
    opts = config.iterate
    # checked before anything runs; the flags win over [iterate] launcher
    launch = launcher_words(launcher if launcher is not None or accelerate_config is not None else opts.launcher,
                            accelerate_config)
    if rounds is not None:
        opts = replace(opts, rounds=rounds)
    if no_early_stop:
        opts = replace(opts, early_stop=False)
    outcome = iterate(config, opts, progress=progress_factory(quiet), say=lambda m: click.echo(m, err=True),
                      launcher=launch)
    for row in outcome.table():
        click.echo(row)
    if outcome.stopped is not None:
        click.echo(outcome.stopped)


def launcher_words(launcher: str | None, accelerate_config: Path | None) -> list[str] | None:
    """The launcher of iterate's training rounds as words: ``--launcher`` split as a shell would, or accelerate's
    launcher with ``--accelerate-config`` (checked before any round starts); None: train in this process."""
    if launcher is not None and accelerate_config is not None:
        raise InputError("--launcher and --accelerate-config both given",
                         fix='pass one (a launcher with its own config: --launcher "accelerate launch --config_file F")')
    if accelerate_config is not None:
        from evalsuite.trainers import accelerate_launcher, read_accelerate_config

        read_accelerate_config(accelerate_config)
        return accelerate_launcher(accelerate_config)
    if launcher is None:
        return None
    try:
        words = shlex.split(launcher)
    except ValueError as exc:
        raise InputError(f"--launcher {launcher!r} does not parse ({exc})", fix="quote it as a shell would") from None
    if not words:
        raise InputError("--launcher is empty", fix='e.g. --launcher "accelerate launch --num_processes 2"')
    return words


__all__ = ["iterate_cmd", "label_cmd", "launcher_words"]
