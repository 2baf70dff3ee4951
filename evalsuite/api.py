"""The Python API: the pipeline's main jobs as plain calls that take names and paths and return typed results.

    from evalsuite.api import compare, gate, import_judgments, load_results

- :func:`compare` — generate what is missing, judge both orders, write ``results.json`` + ``leaderboard.md``, return
  the typed ``Results`` (the same as ``evalsuite compare``);
- :func:`load_results` — read any ``results.json`` this project has written;
- :func:`import_judgments` — FastChat pair judgments or AlpacaEval annotations -> a run's results;
- :func:`gate` — the CI gate's checks (``passed`` on each), as ``evalsuite gate`` computes them.

``gate``, ``load_results`` and ``import_judgments`` are also importable from ``evalsuite`` itself (loaded on first
use, so ``import evalsuite`` stays light); the workflows themselves are ``evalsuite.pipeline``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from evalsuite.config import Config, load_config, resolve_models
from evalsuite.errors import InputError
from evalsuite.interop.judgments import ImportOutcome, import_judgments
from evalsuite.report.gate import GateCheck
from evalsuite.report.results import Results, StatsOptions, load_results


def _silent(title: str, total: int) -> Any:
    from evalsuite.progress import StageProgress

    return StageProgress(title, total, enabled=False)


def compare(
    baseline: str,
    candidates: Sequence[str],
    *,
    config: str | Path | Config | None = None,
    run_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    retry_errors: bool = False,
    stats: StatsOptions | None = None,
    judges: Sequence[str] | None = None,
) -> Results:
    """Compare each candidate with ``baseline`` (names from the config's ``[models]`` or trained checkpoints).

    ``config`` is a path to ``evalsuite.toml`` (default: ``./evalsuite.toml`` when present) or a loaded ``Config``;
    ``overrides`` are ``--set``-style ``KEY=VALUE`` strings; ``run_dir`` defaults to the config's; ``judges`` picks
    the ``[judges.<name>]`` tables that judge (as ``--judges``; default: the config's panel).
    """
    from evalsuite.pipeline.compare import run_compare

    cfg = config if isinstance(config, Config) else load_config(config, overrides, run_dir=run_dir)
    if isinstance(config, Config) and run_dir is not None:
        cfg = replace(cfg, run_dir=Path(run_dir))
    if judges is not None:
        cfg = cfg.with_judges(judges, what="judges")
    base = resolve_models(cfg, [baseline])
    if len(base) != 1:
        raise InputError(f"baseline {baseline!r} expands to {len(base)} models", fix="name one checkpoint")
    cands = [c for c in resolve_models(cfg, candidates) if c.name != base[0].name]
    outcome = run_compare(cfg, base[0], cands, progress=_silent, retry_errors=retry_errors,
                          stats_options=stats or StatsOptions(seed=cfg.seed))
    return outcome.results


def gate(
    results: Results | str | Path,
    *,
    baseline: str,
    candidates: Sequence[str],
    min_win_rate: float = 0.5,
    rule: str = "lower-bound",
    alpha: float = 0.05,
    against: Results | str | Path | None = None,
) -> list[GateCheck]:
    """The gate's checks for ``candidates`` (each has ``passed`` and ``message``); ``results`` and ``against`` are
    ``Results`` or paths to ``results.json``. All passed <=> ``evalsuite gate`` exits 0."""
    from evalsuite.report.gate import GateOptions, run_gate

    res = results if isinstance(results, Results) else load_results(results)
    old = against if isinstance(against, Results) or against is None else load_results(against)
    return list(run_gate(res, GateOptions(baseline, list(candidates), min_win_rate, rule, alpha), old))


__all__ = ["GateCheck", "ImportOutcome", "Results", "compare", "gate", "import_judgments", "load_results"]
