"""``compare``: the composition of the stages — generate what is missing, judge both orders, compute results, write
``results.json`` and ``leaderboard.md`` into the run directory. The CLI and the demo both call ``run_compare``."""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, replace
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from evalsuite import __version__
from evalsuite.bench import load_benchmark
from evalsuite.config import Config, ModelSpec
from evalsuite.generate import GenerationSummary, generate_all
from evalsuite.judge._calls import JudgeSummary, judge_label, run_judge
from evalsuite.judge.swap import build_matches
from evalsuite.judge.templates import load_template
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

RESULTS_FILE = "results.json"
LEADERBOARD_FILE = "leaderboard.md"


@dataclass(frozen=True)
class CompareOutcome:
    results: Results
    generation: list[GenerationSummary]
    judging: JudgeSummary | None
    results_path: Path
    leaderboard_path: Path
    viewer_path: Path | None = None  # the HTML viewer beside the leaderboard (None with viewer=False)


def judged_pairs(baseline: str, candidates: Sequence[str], pairs: str) -> list[tuple[str, str]]:
    out = [(c, baseline) for c in candidates]
    if pairs == "all":
        out += list(combinations(candidates, 2))
    return out


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
    from evalsuite.batch import token_cost  # calls a batch file answered are billed at the batch price

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


def write_outputs(results: Results, run_dir: Path) -> tuple[Path, Path]:
    """Write ``results.json`` (atomically) and ``leaderboard.md`` into the run directory."""
    from evalsuite.report.markdown import render_markdown

    # a section this run did not compute (sequential, calibration) stays as an earlier run wrote it
    results = with_kept_sections(results, run_dir / RESULTS_FILE)
    rp = write_results(results, run_dir / RESULTS_FILE)
    lp = run_dir / LEADERBOARD_FILE
    lp.write_text(render_markdown(results), encoding="utf-8")
    return rp, lp


def run_compare(
    config: Config,
    baseline: ModelSpec,
    candidates: Sequence[ModelSpec],
    *,
    progress: ProgressFactory,
    retry_errors: bool = False,
    stats_options: StatsOptions | None = None,
    backends: Mapping[str, Any] | None = None,
    generate_answers: bool = True,
    note: str | None = None,
    viewer: bool = True,
) -> CompareOutcome:
    """Generate what is missing, judge every pair in both orders, write results (and, with ``viewer``, the HTML
    viewer beside the leaderboard). Safe to re-run at any point."""
    questions = load_benchmark(config.bench)
    if config.judging.template:
        load_template(config.judging.template)  # a bad template fails before any model call
    store = RunStore(config.run_dir)
    try:
        store.put_questions(questions)
        gen = generate_all([baseline, *candidates], questions, store, progress=progress, backends=backends) if generate_answers else []
        pairs = judged_pairs(baseline.name, [c.name for c in candidates], config.judging.pairs)
        summary = run_judge(
            config.judge,
            pairs,
            questions,
            store,
            config.judging,
            progress=progress,
            retry_errors=retry_errors,
            backend=(backends or {}).get("__judge__"),
        )
        results = compute_results(
            store, config, questions, baseline, candidates, stats_options=stats_options or StatsOptions(seed=config.seed)
        )
        results = replace(results, info=replace(
            results.info,
            note=note or results.info.note,
            generation=tuple(GenerationRecord.from_json(asdict(g)) for g in gen),
            judging=JudgingRecord.from_json(asdict(summary)),
        ))
        rp, lp = write_outputs(results, config.run_dir)
    finally:
        store.close()
    vp = None
    if viewer:
        from evalsuite.report.html import write_viewer

        vp = write_viewer(config.run_dir, results)
    return CompareOutcome(results, gen, summary, rp, lp, vp)
