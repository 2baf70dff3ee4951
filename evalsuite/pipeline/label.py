"""Labeling: a policy's K samples per prompt -> swap-consistent judge preferences -> a TRL preference file.

This module owns the loop's labeling step (``evalsuite label``, and each round of ``evalsuite iterate``):

- reading a prompts file (:func:`read_prompts`, from :mod:`evalsuite.bench.prompts`);
- sampling: sample ``k`` of the policy is the model ``<policy>@s<k>`` in the run store, asked with seed
  ``seed + k``, so each sample has its own cache key and is stored (and resumed) like any other generation;
- the judging schedule (:func:`next_pairs`): **all pairs** for K <= 4; for larger K the **pivot** schedule: every
  sample against sample 0, then the two leaders against each other and the two trailers against each other, then
  the best against the worst if that pair was not judged yet (K + 2 pairs at most instead of K(K-1)/2);
- picking the pair (:func:`pick_pair`): samples ranked by mean match score over their judged matches (MT-Bench's
  strict swap rule); chosen = best, rejected = worst, kept only when both orders of that very pair agree and are
  decisive;
- the preference-data checklist as a filter (:func:`filter_pairs`, rules from ``trainers/data_check.py``);
- labeling health (:class:`LabelReport`): share of prompts with a usable pair, the judge's position consistency,
  ``labels unreliable`` below 80%.

Labeling runs the pipeline's stages (:func:`evalsuite.pipeline._stages.run_pipeline`: the prompts as questions, the
K samples as the answer models); its judge step plans on the schedule with the judge stage's planner, in both
orders, and every call is committed to the run store as it lands: a killed ``label`` re-run asks only what is
missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any

from evalsuite.backends import ChatBackend, make_backend
from evalsuite.backends.roles import StageBackends
from evalsuite.bench.prompts import read_prompts
from evalsuite.config import JudgingOptions, ModelSpec
from evalsuite.errors import InputError
from evalsuite.judge import judge_health, judge_label, plan_requests
from evalsuite.pipeline._stages import PipelineRun, run_pipeline
from evalsuite.records import Judgment, Match, ParsedVerdict, Question
from evalsuite.store import RunStore
from evalsuite.store.atomic import atomic_write_text
from evalsuite.trainers import PreferencePair
from evalsuite.trainers.data_check import LENGTH_BIAS_RATIO, MAX_WORDS, MIN_WORDS, check_preferences, near_identical

SCHEDULES: tuple[str, ...] = ("auto", "all-pairs", "pivot")
ALL_PAIRS_MAX_K = 4  # auto: all pairs up to this K, the pivot schedule above it
UNRELIABLE_CONSISTENCY = 0.8  # position consistency below this: "labels unreliable"
FILTER_RULES: tuple[str, ...] = ("abnormal_length", "near_identical", "length_ratio", "duplicate")

ProgressFactory = Callable[[str, int], Any]


@dataclass(frozen=True)
class LabelOptions:
    """How to sample and judge."""

    samples: int = 4  # K answers per prompt
    temperature: float = 1.0  # sampling temperature of every sample (0 would make the K samples identical)
    seed: int = 0  # sample k is asked with seed + k
    max_tokens: int | None = None  # None: the policy's own max_tokens
    schedule: str = "auto"  # auto | all-pairs | pivot
    min_words: int = MIN_WORDS
    max_words: int = MAX_WORDS

    def validate(self) -> None:
        if self.samples < 2:
            raise InputError(f"--samples {self.samples}: a pair needs at least 2 samples per prompt", fix="pass --samples 2 or more")
        if self.schedule not in SCHEDULES:
            raise InputError(f"unknown schedule {self.schedule!r}", fix=f"use one of {', '.join(SCHEDULES)}")
        if self.temperature < 0:
            raise InputError(f"temperature {self.temperature:g} is negative", fix="pass --temperature >= 0")

    def resolved_schedule(self) -> str:
        if self.schedule != "auto":
            return self.schedule
        return "all-pairs" if self.samples <= ALL_PAIRS_MAX_K else "pivot"


# ---------------------------------------------------------------------------------------------------------------------
# Prompts


def check_disjoint(prompts: Sequence[Question], benchmark: Sequence[Question], *, where: str) -> None:
    """Labeling prompts must not be evaluation questions: training on the test set would make every win rate a lie."""
    bench_texts = {" ".join(t.split()) for q in benchmark for t in q.turns}
    shared = [q.question_id for q in prompts if " ".join(q.turns[0].split()) in bench_texts]
    if shared:
        raise InputError(
            f"{len(shared)} labeling prompt(s) are evaluation questions (e.g. {shared[0]})",
            where=where,
            fix="label on prompts that are not in the evaluation benchmark",
        )


# ---------------------------------------------------------------------------------------------------------------------
# Samples


def sample_name(policy: str, k: int) -> str:
    """The store's name for sample ``k`` of ``policy``."""
    return f"{policy}@s{k}"


def sample_specs(policy: ModelSpec, options: LabelOptions) -> list[ModelSpec]:
    """One spec per sample: the policy with its own seed (so its own cache key) and the labeling temperature."""
    return [
        replace(
            policy,
            name=sample_name(policy.name, k),
            seed=options.seed + k,
            temperature=options.temperature,
            max_tokens=options.max_tokens or policy.max_tokens,
        )
        for k in range(options.samples)
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Schedules and ranking (pure)

Outcomes = Mapping[tuple[str, str], float | None]  # (x, y) -> x's strict match score; None: an order failed


def _score(outcomes: Outcomes, x: str, y: str) -> float | None:
    if (x, y) in outcomes:
        return outcomes[(x, y)]
    s = outcomes.get((y, x))
    return None if s is None else 1.0 - s


def _judged(outcomes: Outcomes, x: str, y: str) -> bool:
    return (x, y) in outcomes or (y, x) in outcomes


def rank_samples(samples: Sequence[str], outcomes: Outcomes) -> list[str]:
    """Samples best first: by mean match score over their judged (non-error) matches, then wins, then sample order.

    >>> rank_samples(["a", "b", "c"], {("a", "b"): 0.0, ("b", "c"): 1.0, ("a", "c"): 0.5})
    ['b', 'a', 'c']
    """
    def key(item: tuple[int, str]) -> tuple[float, int, int]:
        i, s = item
        scores = [v for o in samples if o != s for v in [_score(outcomes, s, o)] if v is not None]
        mean = sum(scores) / len(scores) if scores else 0.5
        return (-mean, -sum(v == 1.0 for v in scores), i)

    return [s for _, s in sorted(enumerate(samples), key=key)]


def _restricted(outcomes: Outcomes, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], float | None]:
    keep = {frozenset(p) for p in pairs}
    return {k: v for k, v in outcomes.items() if frozenset(k) in keep}


def _better(outcomes: Outcomes, x: str, y: str) -> tuple[str, str]:
    """(winner, loser) of the judged match x-y; x (the better-ranked going in) keeps its place on a tie or error."""
    s = _score(outcomes, x, y)
    return (y, x) if s == 0.0 else (x, y)


def plan(samples: Sequence[str], outcomes: Outcomes, schedule: str, leaders: int = 2) -> tuple[list[tuple[str, str]], tuple[str, str] | None]:
    """The pairs still to judge for one prompt, and (best, worst) once every stage is judged (else None).

    ``all-pairs``: every pair in one stage; best and worst by :func:`rank_samples`. ``pivot``: (1) every sample
    against ``samples[0]``; (2) the ``leaders`` best of stage 1 against each other and the ``leaders`` worst against
    each other; best = the winner among the leaders, worst = the loser among the trailers; (3) best against worst when
    that pair is not judged yet. Each stage is a function of the stored verdicts of the stages before, so a resumed
    run picks up at the same stage.
    """
    if schedule == "all-pairs":
        todo = [(x, y) for x, y in combinations(samples, 2) if not _judged(outcomes, x, y)]
        if todo:
            return todo, None
        ranked = rank_samples(samples, outcomes)
        return [], (ranked[0], ranked[-1])
    if schedule != "pivot":
        raise ValueError(f"unknown schedule {schedule!r}")
    pivot = samples[0]
    stage1 = [(s, pivot) for s in samples[1:]]
    todo = [p for p in stage1 if not _judged(outcomes, *p)]
    if todo:
        return todo, None
    ranked = rank_samples(samples, _restricted(outcomes, stage1))
    top, bottom = ranked[:leaders], ranked[::-1][:leaders][::-1]
    stage2 = list(dict.fromkeys((x, y) for group in (top, bottom) for x, y in combinations(group, 2)))
    todo = [p for p in stage2 if not _judged(outcomes, *p)]
    if todo:
        return todo, None
    known = _restricted(outcomes, stage1 + stage2)
    best = rank_samples(top, known)[0]
    worst = rank_samples(bottom, known)[-1]
    if best == worst:  # two samples only: the pivot match decides
        best, worst = _better(outcomes, samples[0], samples[1])
    return ([] if _judged(outcomes, best, worst) else [(best, worst)]), (best, worst)


def next_pairs(samples: Sequence[str], outcomes: Outcomes, schedule: str, leaders: int = 2) -> list[tuple[str, str]]:
    """The pairs to judge next for one prompt (``[]``: the prompt is finished); see :func:`plan`.

    >>> next_pairs(["a", "b", "c"], {}, "all-pairs")
    [('a', 'b'), ('a', 'c'), ('b', 'c')]
    >>> next_pairs(["a", "b", "c", "d", "e"], {}, "pivot")
    [('b', 'a'), ('c', 'a'), ('d', 'a'), ('e', 'a')]
    """
    return plan(samples, outcomes, schedule, leaders)[0]


def pairs_for(k: int, schedule: str) -> str:
    """How many pairs a schedule judges per prompt at most, in words (for help and the report)."""
    if schedule == "all-pairs":
        return f"{k * (k - 1) // 2} pairs"
    return f"at most {k + 2} pairs"


@dataclass(frozen=True)
class PickedPair:
    """The candidate pair of one prompt: chosen = best-ranked sample, rejected = worst, with the verdicts of that pair."""

    question_id: str
    chosen: str
    rejected: str
    verdict_chosen_first: str
    verdict_rejected_first: str
    soft_score: float | None  # chosen's score averaged over both orders (log-prob verdicts: their probabilities)
    judge: str
    template: str
    template_hash: str


def pick_pair(question_id: str, samples: Sequence[str], matches: Mapping[tuple[str, str], Match],
              schedule: str = "all-pairs") -> tuple[PickedPair | None, str]:
    """Best vs worst of one prompt (as :func:`plan` ranks them), kept when both orders of that very pair agree and are
    decisive; else None and why (``error``, ``inconsistent``, ``tie``, ``missing``)."""
    from evalsuite.judge.swap import reconcile_swap

    todo, ends = plan(samples, _outcomes(matches), schedule)
    if todo or ends is None:
        return None, "missing"
    best, worst = ends
    m = matches.get((best, worst)) or matches.get((worst, best))
    if m is None or m.xy is None or m.yx is None:
        return None, "missing"
    if m.error:
        return None, "error"
    if m.inconsistent:
        return None, "inconsistent"
    if m.score is None or m.score == 0.5:
        return None, "tie"
    x_wins = m.score == 1.0
    chosen, rejected = (m.model_x, m.model_y) if x_wins else (m.model_y, m.model_x)
    first, second = (m.xy, m.yx) if chosen == m.model_x else (m.yx, m.xy)  # first: chosen shown first
    avg, _, _ = reconcile_swap(_parsed(m.xy), _parsed(m.yx), "average")
    soft = None if avg is None else (avg if chosen == m.model_x else 1.0 - avg)
    return PickedPair(question_id, chosen, rejected, first.verdict, second.verdict, soft, first.judge, first.template,
                      first.template_hash), "kept"


def _outcomes(matches: Mapping[tuple[str, str], Match]) -> dict[tuple[str, str], float | None]:
    """Finished matches only: both orders stored and neither a failed call (those are asked again)."""
    return {k: m.score for k, m in matches.items()
            if m.xy is not None and m.yx is not None and "api" not in (m.xy.reason, m.yx.reason)}


def _parsed(j: Judgment) -> ParsedVerdict:
    return ParsedVerdict(j.verdict, reason=j.reason, p_first=j.p_first)


# ---------------------------------------------------------------------------------------------------------------------
# The checklist as a filter (pure)


def filter_pairs(pairs: Sequence[PreferencePair], *, min_words: int = MIN_WORDS,
                 max_words: int = MAX_WORDS) -> tuple[list[PreferencePair], dict[str, list[int]]]:
    """Drop what the preference-data checklist flags, each pair under its first rule:

    ``abnormal_length`` (an empty reply, or one under ``min_words`` / over ``max_words`` words), ``near_identical``
    (chosen ≈ rejected), ``length_ratio`` (one reply more than ``LENGTH_BIAS_RATIO`` times longer than the other:
    the pair would teach length, not quality), ``duplicate`` (a prompt already kept).
    """
    dropped: dict[str, list[int]] = {rule: [] for rule in FILTER_RULES}
    kept: list[PreferencePair] = []
    seen: set[str] = set()
    for p in pairs:
        words = [len(p.chosen.split()), len(p.rejected.split())]
        prompt_key = " ".join(p.prompt_text.split())
        if min(words) == 0 or min(words) < min_words or max(words) > max_words:
            dropped["abnormal_length"].append(p.record)
        elif near_identical(p.chosen, p.rejected) is not None:
            dropped["near_identical"].append(p.record)
        elif max(words) > LENGTH_BIAS_RATIO * min(words):
            dropped["length_ratio"].append(p.record)
        elif prompt_key in seen:
            dropped["duplicate"].append(p.record)
        else:
            seen.add(prompt_key)
            kept.append(p)
    return kept, dropped


# ---------------------------------------------------------------------------------------------------------------------
# The labeling run


@dataclass(frozen=True)
class LabelReport:
    """What a labeling run did and how much its labels can be trusted."""

    out: Path
    policy: str
    judge: str
    prompts: int
    samples: int
    schedule: str
    generation_calls: int
    judge_calls: int  # calls made by this run (a resumed run: only the missing ones)
    judge_calls_total: int  # judgments the kept labels rest on, stored (this run or an earlier one)
    candidates: int  # prompts whose best-vs-worst pair was consistent and decisive
    kept: int  # pairs written after the checklist
    dropped: dict[str, int] = field(default_factory=dict)  # checklist rule -> pairs dropped
    no_pair: dict[str, int] = field(default_factory=dict)  # why a prompt gave no candidate: inconsistent, tie, error
    consistency: float | None = None  # position consistency of the labeling judge over every labeling match
    length_ratio: float | None = None  # chosen/rejected mean length over the written pairs
    judge_errors: int = 0

    @property
    def usable_share(self) -> float:
        """Share of prompts with a usable pair (written after the checklist)."""
        return self.kept / self.prompts if self.prompts else 0.0

    @property
    def unreliable(self) -> bool:
        return self.consistency is not None and self.consistency < UNRELIABLE_CONSISTENCY

    def health_lines(self) -> list[str]:
        """The labeling health, one fact a line."""
        cons = "-" if self.consistency is None else f"{100 * self.consistency:.1f}%"
        lines = [
            f"prompts with a usable pair: {self.kept}/{self.prompts} ({100 * self.usable_share:.1f}%)",
            f"position consistency of the labeling judge ({self.judge}): {cons}",
        ]
        if self.unreliable:
            lines.append(f"labels unreliable: position consistency {cons} is under {UNRELIABLE_CONSISTENCY:.0%}; "
                         "the judge often flips its verdict when the answers swap places")
        return lines


def _write_jsonl_atomic(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _matches_by_prompt(judgments: Sequence[Judgment], prompts: Sequence[Question],
                       samples: Sequence[str]) -> dict[str, dict[tuple[str, str], Match]]:
    from evalsuite.judge.swap import build_matches

    names = set(samples)
    mine = [j for j in judgments if j.model_a in names and j.model_b in names]
    categories = {q.question_id: q.category for q in prompts}
    mine = [j for j in mine if j.question_id in categories]
    out: dict[str, dict[tuple[str, str], Match]] = {q.question_id: {} for q in prompts}
    order = {s: i for i, s in enumerate(samples)}
    for m in build_matches(mine, categories, "strict", lambda a, b: (a, b) if order[a] < order[b] else (b, a)):
        out[m.question_id][(m.model_x, m.model_y)] = m
    return out


def _unreachable(judge: ModelSpec, judgments: Sequence[Judgment]) -> InputError:
    reason = next((j.raw for j in judgments if j.reason == "api"), "")
    return InputError(f"judge {judge.name!r} ({judge.base_url or judge.model}) cannot be reached: every call failed ({reason[:200]})",
                      fix="start the judge server or fix [judge] base_url/model; re-run the same command to resume")


def label(
    prompts: Sequence[Question],
    policy: ModelSpec,
    judge: ModelSpec,
    store: RunStore,
    out: str | Path,
    options: LabelOptions,
    *,
    progress: ProgressFactory,
    template: str | None = None,
    policy_backend: ChatBackend | None = None,
    judge_backend: ChatBackend | None = None,
) -> LabelReport:
    """Sample, judge both orders on the schedule, pick, filter, write ``out``; resumable at every call.

    ``store`` is the :class:`~evalsuite.store.RunStore` every sample and judgment is committed to.
    """
    options.validate()
    if not prompts:
        raise InputError("no prompts to label", fix="pass a prompts file with at least one prompt")
    schedule = options.resolved_schedule()
    specs = sample_specs(policy, options)
    names = [s.name for s in specs]
    by_id = {q.question_id: q for q in prompts}
    # one policy backend shared by the K sample specs (K differently seeded views of one model)
    policy_own = policy_backend is None
    backend = policy_backend or make_backend(policy)

    def release_policy() -> None:
        nonlocal policy_own
        if policy_own:
            policy_own = False
            backend.close()  # a local policy returns its memory before the judge loads

    def judge_on_schedule(run: PipelineRun) -> tuple[dict[str, Any], int, int, int]:
        release_policy()
        summaries = run.generation
        answers = {n: store.answers(n) for n in names}
        failed = [s for s in summaries if s.errors]
        if failed and not any(answers.values()):
            raise InputError(f"policy {policy.name!r} produced no sample ({failed[0].first_error})",
                             fix="check the policy's [models] entry; re-run the same command to resume")
        # judging in stages; each stage is re-derived from what the store holds, so a resumed run continues it
        calls = errors = 0
        asked: set[str] = set()
        while True:
            stored = store.judgments(run.judge_name)
            matches = _matches_by_prompt(stored, prompts, names)
            # a failed call (reason api) is not finished work: it is asked again; a parse error is an answer
            done = {(j.question_id, j.turn, j.model_a, j.model_b): (j.cache_key, j.verdict)
                    for j in stored if not (j.verdict == "error" and j.reason == "api")}
            requests = []
            for q in prompts:
                have = [n for n in names if q.question_id in answers[n]]
                if len(have) < 2:
                    continue
                pairs = next_pairs(have, _outcomes(matches[q.question_id]), schedule)
                if not pairs:
                    continue
                reqs, _, _ = plan_requests(judge, "pairwise", pairs, [by_id[q.question_id]], answers, done, template)
                requests += [r for r in reqs if r.key not in asked]  # a call that failed in this run waits for a re-run
            if not requests:
                break
            asked.update(r.key for r in requests)
            try:
                made, errs = run.ask(requests, f"label: judge ({run.judge_name})")
            except InputError as exc:
                raise InputError(f"judging: {exc}") from None
            calls += made
            errors += errs
            if made and errs == made:
                fresh = [j for j in store.judgments(run.judge_name) if j.verdict == "error" and j.reason == "api"]
                raise _unreachable(judge, fresh)
        return answers, sum(s.requested for s in summaries), calls, errors

    try:
        out_run = run_pipeline(judge_on_schedule, questions=prompts, store=store, models=specs, judge=judge,
                               judging=JudgingOptions(template=template), progress=progress, generate_stage="sampling",
                               backends=StageBackends(models={n: backend for n in names}, judge=judge_backend))
    finally:
        release_policy()
    answers, gen_calls, calls, errors = out_run.value
    label_name = judge_label(judge)

    # 3. pick chosen/rejected per prompt
    stored = store.judgments(label_name)
    matches = _matches_by_prompt(stored, prompts, names)
    picked: list[PickedPair] = []
    no_pair: dict[str, int] = {}
    for q in prompts:
        have = [n for n in names if q.question_id in answers[n]]
        if len(have) < 2:
            no_pair["no samples"] = no_pair.get("no samples", 0) + 1
            continue
        pair, why = pick_pair(q.question_id, have, matches[q.question_id], schedule)
        if pair is None:
            no_pair[why] = no_pair.get(why, 0) + 1
        else:
            picked.append(pair)
    all_matches = [m for ms in matches.values() for m in ms.values()]
    health = judge_health(all_matches)
    used_calls = sum(2 for m in all_matches if m.xy is not None and m.yx is not None)

    # 4. the checklist, then the file
    def text(name: str, qid: str) -> str:
        return answers[name][qid].turns[0]

    candidates = [
        PreferencePair(record=i, prompt=({"role": "user", "content": by_id[p.question_id].turns[0]},),
                       chosen=text(p.chosen, p.question_id), rejected=text(p.rejected, p.question_id), conversational=False)
        for i, p in enumerate(picked, 1)
    ]
    kept, dropped = filter_pairs(candidates, min_words=options.min_words, max_words=options.max_words)
    kept_records = {p.record for p in kept}
    rows = []
    for i, p in enumerate(picked, 1):
        if i not in kept_records:
            continue
        q = by_id[p.question_id]
        row: dict[str, Any] = {
            "prompt": q.turns[0],
            "chosen": text(p.chosen, p.question_id),
            "rejected": text(p.rejected, p.question_id),
            "prompt_id": q.question_id,
            "policy": policy.name,
            "chosen_sample": names.index(p.chosen),
            "rejected_sample": names.index(p.rejected),
            "judge": p.judge,
            "template": p.template,
            "template_hash": p.template_hash,
            "verdicts": {"chosen_first": p.verdict_chosen_first, "rejected_first": p.verdict_rejected_first},
            "soft_score": p.soft_score,
            "schedule": schedule,
        }
        if q.category != "general":
            row["category"] = q.category
        rows.append(row)
    out_path = Path(out)
    _write_jsonl_atomic(out_path, rows)
    ratio = check_preferences(kept, sample=0).length_ratio if kept else None
    return LabelReport(
        out=out_path, policy=policy.name, judge=label_name, prompts=len(prompts), samples=options.samples,
        schedule=schedule, generation_calls=gen_calls, judge_calls=calls, judge_calls_total=used_calls,
        candidates=len(picked), kept=len(rows), dropped={k: len(v) for k, v in dropped.items()}, no_pair=no_pair,
        consistency=health.consistency, length_ratio=ratio, judge_errors=errors,
    )


__all__ = [
    "ALL_PAIRS_MAX_K", "FILTER_RULES", "SCHEDULES", "UNRELIABLE_CONSISTENCY", "LabelOptions", "LabelReport",
    "PickedPair", "check_disjoint", "filter_pairs", "label", "next_pairs", "pick_pair", "plan", "rank_samples",
    "read_prompts", "sample_name", "sample_specs",
]
