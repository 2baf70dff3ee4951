"""``compare`` (and ``judge``, which is ``compare`` without generation): generate what is missing, judge every pair
in both orders (with every judge of the panel, when the config has one), compute the results, write ``results.json``,
``leaderboard.md`` and the viewer into the run directory. The CLI, the Python API, ``iterate`` and the demo all call
:func:`run_compare`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from evalsuite.backends.roles import StageBackends
from evalsuite.config import Config, ModelSpec
from evalsuite.generate import GenerationSummary
from evalsuite.judge import JudgeSummary
from evalsuite.pipeline._stages import (
    PipelineRun,
    ProgressFactory,
    compute_results,
    panel_summary,
    require_answers,
    require_judge,
    run_pipeline,
    with_run_records,
    write_outputs,
)
from evalsuite.report.results import Results, StatsOptions


@dataclass(frozen=True)
class CompareOutcome:
    """What a compare did and wrote. ``judging``: the judge's summary (a panel's: its members' counts added up);
    ``judgings``: one summary per judge of the panel; ``judge_failures``: the panel members that failed in this run,
    by name, with the reason (the others' verdicts made the results)."""

    results: Results
    generation: list[GenerationSummary]
    judging: JudgeSummary | None
    results_path: Path
    leaderboard_path: Path
    viewer_path: Path | None = None  # the HTML viewer beside the leaderboard (None with viewer=False)
    judgings: list[JudgeSummary] = field(default_factory=list)
    judge_failures: dict[str, str] = field(default_factory=dict)


def judged_pairs(baseline: str, candidates: Sequence[str], pairs: str) -> list[tuple[str, str]]:
    """Every candidate against the baseline, plus every candidate pair with ``pairs="all"``.

    >>> judged_pairs("sft", ["dpo", "ipo"], "all")
    [('dpo', 'sft'), ('ipo', 'sft'), ('dpo', 'ipo')]
    """
    out = [(c, baseline) for c in candidates]
    if pairs == "all":
        out += list(combinations(candidates, 2))
    return out


def run_compare(
    config: Config,
    baseline: ModelSpec,
    candidates: Sequence[ModelSpec],
    *,
    progress: ProgressFactory,
    retry_errors: bool = False,
    stats_options: StatsOptions | None = None,
    backends: StageBackends | None = None,
    generate_answers: bool = True,
    note: str | None = None,
    viewer: bool = True,
    out_dir: Path | None = None,
    strict: bool = False,
) -> CompareOutcome:
    """Generate what is missing, judge every pair in both orders with every judge (``config.judges``, else
    ``config.judge``), write results (and, with ``viewer``, the HTML viewer beside the leaderboard) into ``out_dir``
    (default: the run directory). A panel member that fails does not stop the others (``judge_failures``).
    ``strict``: a model with no answer or a judge that never answers stops the run with an input error instead of a
    results document of errors. Safe to re-run at any point."""
    names = [c.name for c in candidates]

    def judge_and_compute(run: PipelineRun) -> tuple[list[JudgeSummary], dict[str, str], Results]:
        if strict:
            require_answers(run.generation)
        summaries = run.judge_pairs(judged_pairs(baseline.name, names, config.judging.pairs))
        if strict:
            for s in summaries:
                require_judge(s)
        results = compute_results(run.store, config, run.questions, baseline, candidates,
                                  stats_options=stats_options or StatsOptions(seed=config.seed))
        return summaries, dict(run.failures), results

    out = run_pipeline(judge_and_compute, questions=config.bench, store=Path(config.run_dir), models=[baseline, *candidates],
                       judge=config.judge, judging=config.judging, progress=progress, backends=backends,
                       generate=generate_answers, retry_errors=retry_errors, judges=list(config.judges.values()))
    summaries, failures, results = out.value
    summary = panel_summary(summaries, "+".join(config.judges))
    results = with_run_records(results, out.generation, summary, note)
    target = Path(out_dir) if out_dir is not None else Path(config.run_dir)
    rp, lp = write_outputs(results, target)
    vp = None
    if viewer:
        from evalsuite.report.html import write_viewer

        vp = write_viewer(target, results)
    return CompareOutcome(results, out.generation, summary, rp, lp, vp, summaries, failures)


__all__ = ["CompareOutcome", "judged_pairs", "run_compare"]
