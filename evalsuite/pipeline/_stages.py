"""The stages every workflow is made of, composed once: load the questions -> open the run store -> generate what is
missing -> judge -> compute -> write.

:func:`run_pipeline` does the part every workflow shares: it loads the benchmark (or takes the workflow's own
questions, e.g. labeling prompts), fails on a bad judge template before any model call, opens the run store, records
the questions, generates every missing answer, then hands a :class:`PipelineRun` to the workflow's ``step`` (what it
judges and what it computes), and finally closes the store and every backend it built. A workflow is a ``step``
function plus what it writes: ``compare`` judges pairs and computes :class:`~evalsuite.report.results.Results`,
``grade`` grades answers, ``sequential`` judges in waves, ``label`` judges on a schedule and picks pairs.

The compute and write stages of the results document live here too (:func:`compute_results`,
:func:`write_outputs`), so every workflow that writes ``results.json`` writes it the same way.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from evalsuite import __version__
from evalsuite.backends import ChatBackend, ChatRequest, OnDone, Progress, make_backend
from evalsuite.backends.roles import StageBackends
from evalsuite.config import BenchSpec, Config, JudgingOptions, ModelSpec
from evalsuite.errors import InputError
from evalsuite.generate import GenerationSummary, generate_all
from evalsuite.judge import JudgeSummary, ask_judge, build_matches, judge_label, load_template, run_grade, run_judge
from evalsuite.records import Answer, Match, Question
from evalsuite.report.build import build_results, distinct_bigrams, orient_to
from evalsuite.report.results import (
    Benchmark,
    GenerationRecord,
    JudgingRecord,
    Results,
    RunInfo,
    StatsOptions,
    TokenUsage,
    TrainingFlag,
    Usage,
    with_kept_sections,
    write_results,
)
from evalsuite.store import RunStore

ProgressFactory = Callable[[str, int], Any]
T = TypeVar("T")

RESULTS_FILE = "results.json"
LEADERBOARD_FILE = "leaderboard.md"


# ---------------------------------------------------------------------------------------------------------------------
# Load


def load_questions(source: BenchSpec | Sequence[Question], template: str | None = None) -> list[Question]:
    """The run's questions: a benchmark's, or a workflow's own (labeling prompts); a bad judge ``template`` fails
    here, before any model call."""
    from evalsuite.bench import load_benchmark

    loaded = load_benchmark(source) if isinstance(source, BenchSpec) else list(source)
    if template:
        load_template(template)
    return loaded


# ---------------------------------------------------------------------------------------------------------------------
# The run a workflow's step acts on


@dataclass
class PipelineRun:
    """What a workflow's ``step`` gets once answers are generated: the questions, the open store, what generation
    did, and the judge stage (every judge call goes through :meth:`judge_pairs`, :meth:`grade` or :meth:`ask`, all
    on one judge backend, built on first use and closed by :func:`run_pipeline`)."""

    judge: ModelSpec
    judging: JudgingOptions
    questions: list[Question]
    store: RunStore
    generation: list[GenerationSummary]
    progress: ProgressFactory
    retry_errors: bool = False
    given_judge: ChatBackend | None = None
    _own_judge: ChatBackend | None = field(default=None, repr=False)

    @property
    def judge_name(self) -> str:
        """The judge's name in stored judgments (see :func:`evalsuite.judge.judge_label`)."""
        return judge_label(self.judge)

    def judge_backend(self) -> ChatBackend:
        """The judge's backend: the one the caller gave, else one built now and kept for the rest of the run (a
        local judge loads its weights once, and not at all when every call is stored)."""
        if self.given_judge is not None:
            return self.given_judge
        if self._own_judge is None:
            self._own_judge = make_backend(self.judge)
        return self._own_judge

    def judge_pairs(self, pairs: Sequence[tuple[str, str]], questions: Sequence[Question] | None = None) -> JudgeSummary:
        """Judge every pair on ``questions`` (default: all of the run's) in both orders; what is stored is not asked."""
        return run_judge(self.judge, pairs, self.questions if questions is None else questions, self.store,
                         self.judging, progress=self.progress, retry_errors=self.retry_errors, backend=_Lazy(self))

    def grade(self, models: Sequence[str], template: str | None) -> JudgeSummary:
        """Grade every answer of ``models`` 1-10 (single-answer grading); what is stored is not asked."""
        return run_grade(self.judge, models, self.questions, self.store, template=template, progress=self.progress,
                         retry_errors=self.retry_errors, backend=_Lazy(self))

    def ask(self, requests: Sequence[ChatRequest], title: str) -> tuple[int, int]:
        """Send requests a workflow planned itself (labeling's schedule); returns (calls made, errors)."""
        return ask_judge(self.judge, requests, self.store, title, self.progress, self.judge_backend())

    def close(self) -> None:
        if self._own_judge is not None:
            self._own_judge.close()
            self._own_judge = None


class _Lazy:
    """The run's judge backend, built only when a call is actually sent (a fully cached stage builds nothing)."""

    name = "lazy"

    def __init__(self, run: PipelineRun) -> None:
        self._run = run

    def run(self, requests: Sequence[ChatRequest], on_done: OnDone, progress: Progress) -> None:
        self._run.judge_backend().run(requests, on_done, progress)

    def close(self) -> None:
        """The run closes its judge backend (:meth:`PipelineRun.close`)."""


@dataclass(frozen=True)
class PipelineOutput(Generic[T]):
    """What :func:`run_pipeline` returns: the step's value, what generation did, and the questions of the run."""

    value: T
    generation: list[GenerationSummary]
    questions: list[Question]


def run_pipeline(
    step: Callable[[PipelineRun], T],
    *,
    questions: BenchSpec | Sequence[Question],
    store: RunStore | Path,
    models: Sequence[ModelSpec],
    judge: ModelSpec,
    judging: JudgingOptions,
    progress: ProgressFactory,
    backends: StageBackends | None = None,
    generate: bool = True,
    retry_errors: bool = False,
    generate_stage: str | None = None,
) -> PipelineOutput[T]:
    """Load -> store -> generate -> ``step`` (judge and compute): the one composition every workflow runs.

    ``questions``: a benchmark to load, or the workflow's own. ``store``: a run directory (opened and closed here)
    or an open store (left open). ``models``: the answer models to generate (with ``generate=False`` their answers
    must be stored already); ``generate_stage`` names the generation stage in its errors (labeling: "sampling").
    The workflow writes what ``step`` returns. Safe to re-run at any point: every call is
    stored as it lands and a stored call is not asked again.
    """
    given = backends or StageBackends()
    loaded = load_questions(questions, judging.template)
    opened = store if isinstance(store, RunStore) else RunStore(store)
    run: PipelineRun | None = None
    try:
        opened.put_questions(loaded)
        try:
            generation = (
                generate_all(list(models), loaded, opened, progress=progress, backends=given.models) if generate else []
            )
        except InputError as exc:
            if generate_stage is None:
                raise
            raise InputError(f"{generate_stage}: {exc}") from None
        run = PipelineRun(judge, judging, loaded, opened, generation, progress, retry_errors, given.judge)
        return PipelineOutput(step(run), generation, loaded)
    finally:
        if run is not None:
            run.close()
        if opened is not store:
            opened.close()


# ---------------------------------------------------------------------------------------------------------------------
# Checks a strict workflow (iterate) makes between stages


def require_answers(generation: Sequence[GenerationSummary]) -> None:
    """Every model answered at least once (a model whose every call failed stops the workflow before judging)."""
    failed = [g for g in generation if g.errors and g.requested == g.errors]
    if failed:
        raise InputError(f"model {failed[0].model} produced no answer ({failed[0].first_error})")


def require_judge(summary: JudgeSummary) -> None:
    """The judge answered at least once."""
    if summary.requested and summary.errors == summary.requested:
        raise InputError(f"judge {summary.judge!r} cannot be reached: every call failed",
                         fix="start the judge server or fix [judge]; re-run the same command to resume")


# ---------------------------------------------------------------------------------------------------------------------
# Compute


def answer_lengths(answers: Mapping[str, Mapping[str, Answer]]) -> dict[str, dict[tuple[str, int], int]]:
    """Characters per answer turn, for length control and the leaderboard's average length."""
    return {m: {(qid, i): len(t) for qid, a in by_q.items() for i, t in enumerate(a.turns, 1)} for m, by_q in answers.items()}


def collect_matches(
    store: RunStore, judge: str, questions: Sequence[Question], baseline: str, candidates: Sequence[str], mode: str
) -> list[Match]:
    """The run's matches for this judge, limited to the selected questions and models, oriented for the results."""
    ids = {q.question_id for q in questions}
    models = {baseline, *candidates}
    judgments = [
        j for j in store.judgments(judge) if j.question_id in ids and j.model_a in models and j.model_b in models
    ]
    categories = {q.question_id: q.category for q in questions}
    return build_matches(judgments, categories, mode, orient_to(baseline, candidates))  # type: ignore[arg-type]


def _usage(store: RunStore, specs: Mapping[str, ModelSpec], judge: ModelSpec) -> Usage:
    from evalsuite.backends.batch import token_cost  # calls a batch file answered are billed at the batch price

    batch_models, batch_judges = store.batch_usage()
    models = {}
    for name, (p, c) in store.usage_by_model().items():
        if name in specs:
            models[name] = TokenUsage(p, c, token_cost(specs[name], (p, c), batch_models.get(name, (0, 0))))
    label = judge_label(judge)
    p, c = store.judge_usage().get(label, (0, 0))
    return Usage(models, TokenUsage(p, c, token_cost(judge, (p, c), batch_judges.get(label, (0, 0)))))


def compute_results(
    store: RunStore,
    config: Config,
    questions: Sequence[Question],
    baseline: ModelSpec,
    candidates: Sequence[ModelSpec],
    *,
    stats_options: StatsOptions,
    judge_name: str | None = None,
) -> Results:
    """The results document of ``candidates`` against ``baseline`` over ``questions``, from what the store holds."""
    judge = judge_name or judge_label(config.judge)
    cand_names = [c.name for c in candidates]
    matches = collect_matches(store, judge, questions, baseline.name, cand_names, config.judging.mode)
    ids = {q.question_id for q in questions}
    answers = {m: {q: a for q, a in store.answers(m).items() if q in ids} for m in (baseline.name, *cand_names)}
    lengths = answer_lengths(answers)
    templates = sorted({f"{j.template}:{j.template_hash}" for m in matches for j in (m.xy or m.yx,) if j is not None})
    specs = {s.name: s for s in (baseline, *candidates)}
    info = RunInfo(
        evalsuite_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        run_dir=str(store.run_dir),
        benchmark=Benchmark(
            name=config.bench.path or config.bench.hf_dataset or config.bench.name,
            n_questions=len(questions),
            categories=tuple(sorted({q.category for q in questions})),
            question_ids=tuple(q.question_id for q in questions),
        ),
        judge=judge,
        templates=tuple(templates),
        mode=config.judging.mode,
        pairs=config.judging.pairs,
        training={s.name: tuple(TrainingFlag.from_json(f) for f in s.extra["flags"]) for s in candidates if s.extra.get("flags")},
        usage=_usage(store, specs, config.judge),
    )
    diversity = {m: distinct_bigrams([t for a in by_q.values() for t in a.turns]) for m, by_q in answers.items()}
    return build_results(
        matches, baseline=baseline.name, candidates=cand_names, lengths=lengths, options=stats_options, info=info,
        diversity=diversity,
    )


def with_run_records(results: Results, generation: Sequence[GenerationSummary], judging: JudgeSummary,
                     note: str | None = None) -> Results:
    """The results with what this run's generation and judging did (and a note) in its run info."""
    return replace(results, info=replace(
        results.info,
        note=note or results.info.note,
        generation=tuple(GenerationRecord.from_json(asdict(g)) for g in generation),
        judging=JudgingRecord.from_json(asdict(judging)),
    ))


# ---------------------------------------------------------------------------------------------------------------------
# Write


def write_outputs(results: Results, run_dir: Path) -> tuple[Path, Path]:
    """Write ``results.json`` (atomically) and ``leaderboard.md`` into the run directory."""
    from evalsuite.report.markdown import render_markdown

    # a section this run did not compute (sequential, calibration) stays as an earlier run wrote it
    results = with_kept_sections(results, run_dir / RESULTS_FILE)
    rp = write_results(results, run_dir / RESULTS_FILE)
    lp = run_dir / LEADERBOARD_FILE
    lp.write_text(render_markdown(results), encoding="utf-8")
    return rp, lp


__all__ = [
    "LEADERBOARD_FILE", "RESULTS_FILE", "PipelineOutput", "PipelineRun", "ProgressFactory", "StageBackends",
    "answer_lengths", "collect_matches", "compute_results", "load_questions", "require_answers", "require_judge",
    "run_pipeline", "with_run_records", "write_outputs",
]
