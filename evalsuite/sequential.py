"""Sequential judging (``compare --sequential``, ``gate --sequential``): judge questions in a seeded random order, in
waves, and stop judging a candidate as soon as its gate decision is settled by an anytime-valid confidence sequence
(``evalsuite.stats._sequential``: the statistics and their rules live there; this module only orchestrates).

Per wave: every still-open candidate is judged against the baseline on the wave's questions (both turns, both
orders, through the same judge stage as ``compare``, so every call is stored as it lands and a re-run makes none);
then each candidate's per-question scores, in judging order, update its sequence at level alpha / K (Bonferroni over
the K candidates), and ``decide`` settles it or keeps it open. When the questions run out, an open decision takes the
rule's default (``lower-bound``: fail; ``not-worse``: pass). The store holds exactly the judgments made, so a later
full ``compare`` on the same run judges only the questions left.

Only candidate-vs-baseline pairs are judged (``judging.pairs = "all"`` is ignored here: head-to-head matches are not
part of a gate decision). The results document is ``compare``'s, over the questions judged so far, with a
``sequential`` section (:class:`SequentialRun`) that the leaderboard and ``gate --sequential`` print.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from evalsuite.config import Config, ModelSpec
from evalsuite.errors import InputError
from evalsuite.records import Match, Question
from evalsuite.stats._sequential import (
    DEFAULT_BETTING,
    BETTING,
    check_rule,
    decide,
    family_alpha,
    sequence_bounds,
)

SECTION = "sequential"  # key of the results document's section


@dataclass(frozen=True)
class SequentialOptions:
    """The gate rule to settle, the family-wise error, the wave size and the seed of the question order."""

    rule: str = "lower-bound"
    threshold: float = 0.5
    alpha: float = 0.05
    wave: int = 8
    seed: int = 0
    betting: str = DEFAULT_BETTING

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
class WaveLook:
    """A candidate's sequence after a wave: questions scored so far, their mean and the bounds."""

    questions: int
    mean: float | None
    lower: float
    upper: float


@dataclass(frozen=True)
class CandidateSequence:
    """One candidate's sequential decision: how many questions and judge calls it took, and the sequence then."""

    model: str
    decision: str  # pass | fail
    settled: bool  # the sequence settled it (False: the questions ran out and the rule's default applied)
    questions_used: int
    questions_total: int
    calls_used: int
    calls_full: int
    alpha: float  # this candidate's level: the family's alpha / K
    mean: float | None
    lower: float
    upper: float
    history: tuple[WaveLook, ...] = ()

    @property
    def calls_saved(self) -> float:
        return 1.0 - self.calls_used / self.calls_full if self.calls_full else 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["history"] = [asdict(h) for h in self.history]
        out["calls_saved"] = round(self.calls_saved, 6)
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CandidateSequence:
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "history"}
        return cls(**fields, history=tuple(WaveLook(**h) for h in d.get("history") or []))


@dataclass(frozen=True)
class SequentialRun:
    """The ``sequential`` section of a results document: the options, the question order and each candidate."""

    options: SequentialOptions
    order: tuple[str, ...]
    candidates: tuple[CandidateSequence, ...]

    @property
    def passed(self) -> bool:
        return all(c.decision == "pass" for c in self.candidates)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self.options), "order": list(self.order), "candidates": [c.to_json() for c in self.candidates]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SequentialRun:
        opts = SequentialOptions(**{k: d[k] for k in SequentialOptions.__dataclass_fields__ if k in d})
        return cls(opts, tuple(d.get("order") or ()), tuple(CandidateSequence.from_json(c) for c in d.get("candidates") or []))


@dataclass(frozen=True)
class SequentialOutcome:
    """What ``run_sequential`` returns: the results document (with its section), the run, and the files written."""

    results: Any  # evalsuite.report.results.Results (imported lazily: this module stays light for the leaderboard)
    run: SequentialRun
    results_path: Path
    leaderboard_path: Path


def sequential_section(extra: Mapping[str, Any]) -> SequentialRun | None:
    """The sequential section of a results document's extra keys, if it has one."""
    d = extra.get(SECTION)
    return SequentialRun.from_json(d) if isinstance(d, Mapping) else None


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
    progress: Any,
    retry_errors: bool = False,
    backends: Mapping[str, Any] | None = None,
    generate_answers: bool = True,
    stats_options: Any = None,
) -> SequentialOutcome:
    """Sequential ``compare``: judge in waves until every candidate's decision is settled or the questions run out,
    then write ``results.json`` (with its ``sequential`` section) and ``leaderboard.md`` like ``compare``."""
    from evalsuite.backends import make_backend
    from evalsuite.bench import load_benchmark
    from evalsuite.compare import collect_matches, compute_results, write_outputs
    from evalsuite.generate import generate_all
    from evalsuite.judge._calls import judge_label, run_judge
    from evalsuite.judge.templates import load_template
    from evalsuite.report.results import StatsOptions
    from evalsuite.store import RunStore

    options.check()
    if not candidates:
        raise InputError("no candidates to judge", fix="name at least one candidate besides the baseline")
    questions = load_benchmark(config.bench)
    if config.judging.template:
        load_template(config.judging.template)  # a bad template fails before any model call
    order = question_order(questions, options.seed)
    order_ids = [q.question_id for q in order]
    names = [c.name for c in candidates]
    level = family_alpha(options.alpha, len(names))
    label = judge_label(config.judge)
    calls_full = sum(_calls(q) for q in order)
    open_ = list(names)
    history: dict[str, list[WaveLook]] = {n: [] for n in names}
    done: dict[str, CandidateSequence] = {}
    judge_backend = (backends or {}).get("__judge__")
    own_backend = None
    store = RunStore(config.run_dir)
    try:
        store.put_questions(questions)
        if generate_answers:
            generate_all([baseline, *candidates], questions, store, progress=progress, backends=backends)
        if judge_backend is None:
            # one judge backend for every wave: a local judge loads its weights once
            judge_backend = own_backend = make_backend(config.judge)
        for start in range(0, len(order), options.wave):
            wave = order[start : start + options.wave]
            seen = order[: start + len(wave)]
            last = start + len(wave) >= len(order)
            run_judge(config.judge, [(c, baseline.name) for c in open_], wave, store, config.judging,
                      progress=progress, retry_errors=retry_errors, backend=judge_backend)
            matches = collect_matches(store, label, seen, baseline.name, open_, config.judging.mode)
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
        results = compute_results(store, config, order[:used], baseline, candidates,
                                  stats_options=stats_options or StatsOptions(seed=config.seed))
    finally:
        if own_backend is not None:
            own_backend.close()
        store.close()
    run = SequentialRun(options, tuple(order_ids), tuple(done[n] for n in names))
    results = replace(results, extra={**results.extra, SECTION: run.to_json()})
    rp, lp = write_outputs(results, config.run_dir)
    return SequentialOutcome(results, run, rp, lp)


def sequential_lines(run: SequentialRun, baseline: str) -> list[str]:
    """One line per candidate, as the gate prints it: PASS/FAIL, the calls it took, and the sequence at stopping."""
    o = run.options
    lines = []
    for c in run.candidates:
        how = "settled" if c.settled else "questions ran out"
        if o.rule == "lower-bound":
            bound = f"lower bound {'clears' if c.lower > o.threshold else 'does not clear'} {100 * o.threshold:.1f}%"
        else:
            bound = f"upper bound {'is below' if c.upper < o.threshold else 'reaches'} {100 * o.threshold:.1f}%"
        lines.append(
            f"{'PASS' if c.decision == 'pass' else 'FAIL'} {c.model} vs {baseline}: decided after {c.questions_used} of "
            f"{c.questions_total} questions ({c.calls_used} of {c.calls_full} judge calls, {100 * c.calls_saved:.0f}% "
            f"saved; {how}); {100 * (1 - c.alpha):g}% confidence sequence [{100 * c.lower:.1f}%, {100 * c.upper:.1f}%]: "
            f"{bound} (rule {o.rule})"
        )
    return lines


def sequential_markdown(extra: Mapping[str, Any]) -> str:
    """The leaderboard's section for a sequential run ('' when the results have none)."""
    run = sequential_section(extra)
    if run is None:
        return ""
    o = run.options
    k = len(run.candidates)
    rows = [
        "## Sequential judging",
        "",
        f"Questions judged in a seeded random order (seed {o.seed}) in waves of {o.wave}; each candidate stopped once "
        f"its `{o.rule}` decision at {100 * o.threshold:.1f}% was settled by an anytime-valid confidence sequence "
        f"({o.betting} betting), family-wise error {o.alpha:g} over {k} candidate{'s' if k != 1 else ''} "
        "(Bonferroni). Win rates above are over the questions judged.",
        "",
        "| Model | Decision | Questions used | Judge calls | Calls saved | Sequence at stopping | Mean |",
        "| :--- | :--- | ---: | ---: | ---: | :--- | ---: |",
    ]
    for c in run.candidates:
        mean = "-" if c.mean is None else f"{100 * c.mean:.1f}%"
        how = "" if c.settled else " (questions ran out)"
        rows.append(
            f"| {c.model} | {c.decision}{how} | {c.questions_used} / {c.questions_total} | {c.calls_used} / {c.calls_full} "
            f"| {100 * c.calls_saved:.0f}% | [{100 * c.lower:.1f}%, {100 * c.upper:.1f}%] at {100 * (1 - c.alpha):g}% | {mean} |"
        )
    return "\n".join(rows) + "\n"
