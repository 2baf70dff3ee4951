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
from evalsuite.judge import (
    JudgeSummary,
    ask_judge,
    build_matches,
    judge_label,
    load_template,
    plan_judge_requests,
    run_grade,
    run_judge,
)
from evalsuite.records import Answer, Match, Question
from evalsuite.report.build import (
    StyleInput,
    build_results,
    distinct_bigrams,
    load_style_reference,
    orient_to,
    style_input,
)
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
    did, and the judge stage (every judge call goes through :meth:`judge_pairs`, :meth:`grade` or :meth:`ask`).

    ``judges`` is the panel (default: ``[judge]``); ``judge`` is its first member, the one judge of the workflows
    that take one (grading, labeling). Each member has its own backend, built on first use and closed by
    :func:`run_pipeline`. ``failures``: the members whose judging failed in this run, by name, with the reason."""

    judge: ModelSpec
    judging: JudgingOptions
    questions: list[Question]
    store: RunStore
    generation: list[GenerationSummary]
    progress: ProgressFactory
    retry_errors: bool = False
    given_judge: ChatBackend | None = None
    judges: list[ModelSpec] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    _own_judges: dict[str, ChatBackend] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.judges:
            self.judges = [self.judge]
        if self.given_judge is not None and len(self.judges) > 1:
            raise ValueError("a given judge backend serves one judge, and this run has a panel of "
                             f"{len(self.judges)}: give none, or judge one member at a time")

    @property
    def judge_name(self) -> str:
        """The judge's name in stored judgments (see :func:`evalsuite.judge.judge_label`)."""
        return judge_label(self.judge)

    def judge_backend(self, spec: ModelSpec | None = None) -> ChatBackend:
        """The backend of ``spec`` (default: ``judge``): the one the caller gave, else one built now and kept for the
        rest of the run (a local judge loads its weights once, and not at all when every call is stored)."""
        spec = spec or self.judge
        if self.given_judge is not None:
            return self.given_judge
        label = judge_label(spec)
        if label not in self._own_judges:
            self._own_judges[label] = make_backend(spec)
        return self._own_judges[label]

    def judge_pairs(self, pairs: Sequence[tuple[str, str]], questions: Sequence[Question] | None = None
                    ) -> list[JudgeSummary]:
        """Judge every pair on ``questions`` (default: all of the run's) in both orders with every member of the
        panel; what the store holds for a member is not asked again. One summary per member, in panel order.

        With one judge, an input error (an unreachable endpoint, a missing model) stops the run, as it always did.
        In a panel, a failing member does not stop the others: its summary counts its unasked calls as errors and
        :attr:`failures` says why; only a panel whose every member failed stops the run."""
        asked = self.questions if questions is None else questions
        summaries: list[JudgeSummary] = []
        raised: list[InputError] = []
        for spec in self.judges:
            try:
                summary = run_judge(spec, pairs, asked, self.store, self.judging, progress=self.progress,
                                    retry_errors=self.retry_errors, backend=_Lazy(self, spec))
            except InputError as exc:
                if len(self.judges) == 1:
                    raise
                raised.append(exc)
                self.failures[spec.name] = str(exc)
                summary = self._unasked(spec, pairs, asked)
            else:
                if len(self.judges) > 1 and summary.requested and summary.errors == summary.requested:
                    self.failures[spec.name] = f"every one of its {summary.requested} calls failed"
            summaries.append(summary)
        if raised and len(raised) == len(self.judges):
            raise raised[0]
        return summaries

    def _unasked(self, spec: ModelSpec, pairs: Sequence[tuple[str, str]], questions: Sequence[Question]) -> JudgeSummary:
        """A failed member's summary: the calls it still owes (planned again now) count as asked and failed."""
        label = judge_label(spec)
        answers = {m: self.store.answers(m) for m in sorted({m for p in pairs for m in p})}
        pending, cached, missing = plan_judge_requests(spec, pairs, questions, answers, self.store.judgment_index(label),
                                                       self.judging, retry_errors=self.retry_errors)
        return JudgeSummary(label, len(pending), cached, len(pending), missing)

    def grade(self, models: Sequence[str], template: str | None) -> JudgeSummary:
        """Grade every answer of ``models`` 1-10 (single-answer grading) with ``judge``; what is stored is not asked."""
        return run_grade(self.judge, models, self.questions, self.store, template=template, progress=self.progress,
                         retry_errors=self.retry_errors, backend=_Lazy(self, self.judge))

    def ask(self, requests: Sequence[ChatRequest], title: str) -> tuple[int, int]:
        """Send requests a workflow planned itself (labeling's schedule) to ``judge``; returns (calls made, errors)."""
        return ask_judge(self.judge, requests, self.store, title, self.progress, self.judge_backend())

    def close(self) -> None:
        """Close every judge backend this run built."""
        while self._own_judges:
            _, backend = self._own_judges.popitem()
            backend.close()


class _Lazy:
    """One judge's backend, built only when a call is actually sent (a fully cached stage builds nothing)."""

    name = "lazy"

    def __init__(self, run: PipelineRun, spec: ModelSpec) -> None:
        self._run = run
        self._spec = spec

    def run(self, requests: Sequence[ChatRequest], on_done: OnDone, progress: Progress) -> None:
        self._run.judge_backend(self._spec).run(requests, on_done, progress)

    def close(self) -> None:
        """The run closes its judge backends (:meth:`PipelineRun.close`)."""


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
    judges: Sequence[ModelSpec] = (),
) -> PipelineOutput[T]:
    """Load -> store -> generate -> ``step`` (judge and compute): the one composition every workflow runs.

    ``questions``: a benchmark to load, or the workflow's own. ``store``: a run directory (opened and closed here)
    or an open store (left open). ``models``: the answer models to generate (with ``generate=False`` their answers
    must be stored already); ``generate_stage`` names the generation stage in its errors (labeling: "sampling").
    ``judges``: a panel that judges pairs together (default: ``judge`` alone; ``judge`` should be its first member).
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
        run = PipelineRun(judge, judging, loaded, opened, generation, progress, retry_errors, given.judge, list(judges))
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


def _judge_usage(store: RunStore, judge: ModelSpec) -> TokenUsage:
    """One judge's tokens in the store, and their cost where its entry names prices."""
    from evalsuite.backends.batch import token_cost  # calls a batch file answered are billed at the batch price

    label = judge_label(judge)
    p, c = store.judge_usage().get(label, (0, 0))
    return TokenUsage(p, c, token_cost(judge, (p, c), store.batch_usage()[1].get(label, (0, 0))))


def _usage(store: RunStore, specs: Mapping[str, ModelSpec], judges: Sequence[ModelSpec]) -> Usage:
    """Tokens and cost per answer model, and of the judges together (a panel's usage is its members' sum)."""
    from evalsuite.backends.batch import token_cost

    batch_models, _ = store.batch_usage()
    models = {}
    for name, (p, c) in store.usage_by_model().items():
        if name in specs:
            models[name] = TokenUsage(p, c, token_cost(specs[name], (p, c), batch_models.get(name, (0, 0))))
    each = [_judge_usage(store, j) for j in judges]
    costs = [u.cost_usd for u in each if u.cost_usd is not None]
    judge = TokenUsage(sum(u.prompt_tokens for u in each), sum(u.completion_tokens for u in each),
                       round(sum(costs), 6) if costs else None)
    return Usage(models, each[0] if len(each) == 1 else judge)


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
    """The results document of ``candidates`` against ``baseline`` over ``questions``, from what the store holds.

    With a panel of two or more judges (``config.judges``), each member's matches are collected under its own label
    and the panel's results are built from them (:func:`evalsuite.report.panel.build_panel_results`); the run's
    judge is then the members' names joined with ``+`` and its usage their sum."""
    panel = list(config.judges.values()) if len(config.judges) >= 2 and judge_name is None else []
    judge = "+".join(config.judges) if panel else judge_name or judge_label(config.judge)
    cand_names = [c.name for c in candidates]
    member_matches = {j.name: collect_matches(store, judge_label(j), questions, baseline.name, cand_names,
                                              config.judging.mode) for j in panel}
    matches = ([m for ms in member_matches.values() for m in ms] if panel
               else collect_matches(store, judge, questions, baseline.name, cand_names, config.judging.mode))
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
        usage=_usage(store, specs, panel or [config.judge]),
    )
    diversity = {m: distinct_bigrams([t for a in by_q.values() for t in a.turns]) for m, by_q in answers.items()}
    style = answer_style(answers, config.judge, config.judging.style_reference)
    if panel:
        from evalsuite.report.panel import PanelJudge, build_panel_results

        members = [PanelJudge(j.name, judge_label(j), tuple(member_matches[j.name]), _judge_usage(store, j).cost_usd,
                              j.extra.get("weight")) for j in panel]
        human = (None if config.judging.human_labels is None
                 else human_scores(config.judging.human_labels, baseline.name, cand_names, member_matches))
        return build_panel_results(members, baseline=baseline.name, candidates=cand_names, lengths=lengths,
                                   options=stats_options, info=info, diversity=diversity, style=style, human=human)
    return build_results(
        matches, baseline=baseline.name, candidates=cand_names, lengths=lengths, options=stats_options, info=info,
        diversity=diversity, style=style,
    )


def human_scores(path: str, baseline: str, candidates: Sequence[str],
                 member_matches: Mapping[str, Sequence[Match]]) -> dict[tuple[str, int, str, str], float]:
    """Human votes (``calibrate --human``'s shape) as scores of the run's oriented matches: the mean over a match's
    votes of 1 (its X picked), 0.5 (a tie) or 0; votes on matches the panel did not judge are left out, and a file
    that labels none of them is an input error."""
    from evalsuite.interop.votes import read_votes, vote_score

    if not Path(path).is_file():
        raise InputError("no such vote file", where=path, fix="set [judging] human_labels to a JSON/JSONL file of human votes")
    orient = orient_to(baseline, candidates)
    judged = {(m.question_id, m.turn, m.model_x, m.model_y) for ms in member_matches.values() for m in ms}
    sums: dict[tuple[str, int, str, str], list[float]] = {}
    for v in read_votes(path):
        x, y = orient(v.model_a, v.model_b)
        key = (v.question_id, v.turn, x, y)
        if key in judged:
            s = vote_score(v, path)
            sums.setdefault(key, []).append(s if v.model_a == x else 1.0 - s)
    if not sums:
        raise InputError("no human vote is on a match this run judged", where=path,
                         fix="label matches of the run's models and questions (question_id, turn, model_a, model_b)")
    return {k: sum(x) / len(x) for k, x in sums.items()}


def answer_style(answers: Mapping[str, Mapping[str, Answer]], judge: ModelSpec, reference: str | None) -> StyleInput:
    """Style features of what the judge read of each answer at each turn: turn t's features count the model's
    replies of turns 1..t, because a multi-turn judge prompt shows the whole conversation (style in turn 1 still
    sways the turn-2 verdict). Length is counted with the judge's tokenizer when the judge is a local checkpoint,
    else with the stated offline approximation; ``reference``: an earlier results.json whose normalisation to keep."""
    texts = {m: {(qid, i): "\n\n".join(a.turns[:i]) for qid, a in by_q.items() for i in range(1, len(a.turns) + 1)}
             for m, by_q in answers.items()}
    count, unit = _local_token_counter(judge)
    frozen = None if reference is None else load_style_reference(reference)
    return style_input(texts, count_tokens=count, length_unit=unit, reference=frozen, reference_source=reference or "run")


def _local_token_counter(judge: ModelSpec) -> tuple[Callable[[str], int] | None, str | None]:
    """The judge's own tokenizer when it is a local checkpoint folder (hf or vllm backend), else (None, None)."""
    if judge.backend not in ("hf", "vllm") or not Path(judge.model).is_dir():
        return None, None
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(judge.model, local_files_only=True)
    except Exception:  # noqa: BLE001 - no usable tokenizer there: the approximation, stated as such
        return None, None
    return (lambda text: len(tok.encode(text, add_special_tokens=False))), f"tokens of the judge's tokenizer ({Path(judge.model).name})"


def panel_summary(summaries: Sequence[JudgeSummary], name: str) -> JudgeSummary:
    """What a panel's judging did, as one summary named ``name``: its members' counts added up (one member: its own).

    >>> panel_summary([JudgeSummary("a", 4, 2, 1, 0), JudgeSummary("b", 6, 0, 6, 0)], "x+y")
    JudgeSummary(judge='x+y', requested=10, cached=2, errors=7, skipped_missing=0)
    """
    if len(summaries) == 1:
        return summaries[0]
    return JudgeSummary(name, sum(s.requested for s in summaries), sum(s.cached for s in summaries),
                        sum(s.errors for s in summaries), sum(s.skipped_missing for s in summaries))


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
    "answer_lengths", "collect_matches", "compute_results", "load_questions", "panel_summary", "require_answers",
    "require_judge", "run_pipeline", "with_run_records", "write_outputs",
]
