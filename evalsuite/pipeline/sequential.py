"""Sequential judging (``compare --sequential``, ``gate --sequential``): judge questions in a seeded random order, in
waves, and stop judging a candidate as soon as its gate decision is settled by an anytime-valid confidence sequence
(``evalsuite.stats``: the statistics and their rules live there; this module only orchestrates).

Per wave: every still-open candidate is judged against the baseline on the wave's questions (both turns, both
orders, through the same judge stage as ``compare``, so every call is stored as it lands and a re-run makes none);
then each candidate's per-question scores, in judging order, update its sequence at level alpha / K (Bonferroni over
the K candidates), and ``decide`` settles it or keeps it open. When the questions run out, an open decision takes the
rule's default (``lower-bound``: fail; ``not-worse``: pass). The store holds exactly the judgments made, so a later
full ``compare`` on the same run judges only the questions left.

Only candidate-vs-baseline pairs are judged (``judging.pairs = "all"`` is ignored here: head-to-head matches are not
part of a gate decision). The results document is ``compare``'s, over the questions judged so far, with a
``sequential`` section (:class:`~evalsuite.report.results.SequentialRun`) that the leaderboard and
``gate --sequential`` print.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.backends.roles import StageBackends
from evalsuite.config import Config, ModelSpec
from evalsuite.errors import InputError
from evalsuite.pipeline._stages import PipelineRun, collect_matches, compute_results, run_pipeline, write_outputs
from evalsuite.records import Match, Question
from evalsuite.report.results import (
    CandidateSequence,
    Results,
    SequentialRun,
    SequentialSettings,
    StatsOptions,
    WaveLook,
)
from evalsuite.stats import BETTING, DEFAULT_BETTING, check_rule, decide, family_alpha, sequence_bounds


@dataclass(frozen=True)
class SequentialOptions:
    """The gate rule to settle, the family-wise error, the wave size and the seed of the question order."""

    rule: str = "lower-bound"
    threshold: float = 0.5
    alpha: float = 0.05
    wave: int = 8
    seed: int = 0
    betting: str = DEFAULT_BETTING

    def settings(self) -> SequentialSettings:
        """The options as the results document records them."""
        return SequentialSettings(self.rule, self.threshold, self.alpha, self.wave, self.seed, self.betting)

    def check(self) -> None:
        check_rule(self.rule)
        if not 0.0 < self.alpha < 1.0:
            raise InputError(f"--alpha {self.alpha} is not in (0, 1)", fix="e.g. --alpha 0.05")
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"--min-win-rate {self.threshold} is not in (0, 1)", fix="e.g. --min-win-rate 0.5")
        if self.wave < 1:
            raise InputError(f"--wave {self.wave} must be at least 1", fix="e.g. --wave 8 (questions per wave)")
        if self.betting not in BETTING:
            raise InputError(f"unknown betting strategy {self.betting!r}", fix=f"use one of {', '.join(sorted(BETTING))}")


@dataclass(frozen=True)
class SequentialOutcome:
    """What ``run_sequential`` returns: the results document (with its section), the run, and the files written."""

    results: Results
    run: SequentialRun
    results_path: Path
    leaderboard_path: Path


def question_order(questions: Sequence[Question], seed: int) -> list[Question]:
    """The seeded random order questions are judged in (the same for every candidate; stable across re-runs)."""
    perm = np.random.default_rng(seed).permutation(len(questions))
    return [questions[i] for i in perm]


def question_scores(matches: Sequence[Match], model: str, order: Sequence[str]) -> list[float]:
    """Per-question scores of ``model`` (mean of its non-error match scores over the question's turns) in judging
    order; a question whose every match errored is not an observation and is skipped."""
    by_q: dict[str, list[float]] = {}
    for m in matches:
        if m.model_x == model and m.score is not None and not m.error:
            by_q.setdefault(m.question_id, []).append(m.score)
    return [float(np.mean(by_q[q])) for q in order if q in by_q]


def _calls(q: Question) -> int:
    return 2 * len(q.turns)  # both orders of every turn


def run_sequential(
    config: Config,
    baseline: ModelSpec,
    candidates: Sequence[ModelSpec],
    options: SequentialOptions,
    *,
    progress: Callable[[str, int], Any],
    retry_errors: bool = False,
    backends: StageBackends | None = None,
    generate_answers: bool = True,
    stats_options: StatsOptions | None = None,
) -> SequentialOutcome:
    """Sequential ``compare``: judge in waves until every candidate's decision is settled or the questions run out,
    then write ``results.json`` (with its ``sequential`` section) and ``leaderboard.md`` like ``compare``."""
    options.check()
    if not candidates:
        raise InputError("no candidates to judge", fix="name at least one candidate besides the baseline")
    names = [c.name for c in candidates]
    level = family_alpha(options.alpha, len(names))

    def judge_in_waves(run: PipelineRun) -> tuple[list[str], dict[str, CandidateSequence], Results]:
        order = question_order(run.questions, options.seed)
        order_ids = [q.question_id for q in order]
        calls_full = sum(_calls(q) for q in order)
        open_ = list(names)
        history: dict[str, list[WaveLook]] = {n: [] for n in names}
        done: dict[str, CandidateSequence] = {}
        for start in range(0, len(order), options.wave):
            wave = order[start : start + options.wave]
            seen = order[: start + len(wave)]
            last = start + len(wave) >= len(order)
            run.judge_pairs([(c, baseline.name) for c in open_], wave)
            matches = collect_matches(run.store, run.judge_name, seen, baseline.name, open_, config.judging.mode)
            for name in list(open_):
                scores = question_scores(matches, name, order_ids)
                b = sequence_bounds(scores, alpha=level, betting=options.betting,  # type: ignore[arg-type]
                                    thresholds=[options.threshold])
                mean = None if b.n == 0 else b.mean
                history[name].append(WaveLook(b.n, mean, b.lower, b.upper))
                verdict = decide(b.lower, b.upper, options.threshold, options.rule, exhausted=last)
                if verdict is None:
                    continue
                settled = decide(b.lower, b.upper, options.threshold, options.rule) is not None
                done[name] = CandidateSequence(
                    model=name, decision=verdict, settled=settled, questions_used=len(seen),
                    questions_total=len(order), calls_used=sum(_calls(q) for q in seen), calls_full=calls_full,
                    alpha=level, mean=mean, lower=b.lower, upper=b.upper, history=tuple(history[name]),
                )
                open_.remove(name)
            if not open_:
                break
        used = max(c.questions_used for c in done.values())
        results = compute_results(run.store, config, order[:used], baseline, candidates,
                                  stats_options=stats_options or StatsOptions(seed=config.seed))
        return order_ids, done, results

    out = run_pipeline(judge_in_waves, questions=config.bench, store=Path(config.run_dir), models=[baseline, *candidates],
                       judge=config.judge, judging=config.judging, progress=progress, backends=backends,
                       generate=generate_answers, retry_errors=retry_errors)
    order_ids, done, results = out.value
    run = SequentialRun(options.settings(), tuple(order_ids), tuple(done[n] for n in names))
    results = replace(results, sequential=run)
    rp, lp = write_outputs(results, config.run_dir)
    return SequentialOutcome(results, run, rp, lp)
