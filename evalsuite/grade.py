"""``grade``: single-answer grading as one call (MT-Bench's score mode) — generate what is missing, grade every
answer 1-10 with the judge, summarise each model's mean grade with a question-clustered CI per turn and category,
and write ``grades.json`` into the run directory. The CLI's ``evalsuite grade`` only wires flags to it."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.config import Config, ModelSpec
from evalsuite.judge._calls import JudgeSummary

GRADES_FILE = "grades.json"


@dataclass(frozen=True)
class GradeOutcome:
    judging: JudgeSummary
    rows: list[dict[str, Any]]  # one per model, best first (see evalsuite.report.grades.grade_summary)
    path: Path
    n_questions: int


def grade(
    config: Config,
    models: Sequence[ModelSpec],
    *,
    progress: Callable[[str, int], Any],
    template: str | None = None,
    retry_errors: bool = False,
    n_resamples: int = 10_000,
    seed: int | None = None,
    backends: dict[str, Any] | None = None,
) -> GradeOutcome:
    """Generate missing answers of ``models`` on the config's benchmark, grade them, write ``grades.json``."""
    from evalsuite.bench import load_benchmark
    from evalsuite.generate import generate_all
    from evalsuite.judge._calls import run_grade
    from evalsuite.report.grades import grade_summary
    from evalsuite.report.results import StatsOptions
    from evalsuite.store import RunStore

    questions = load_benchmark(config.bench)
    names = [s.name for s in models]
    with RunStore(config.run_dir) as store:
        store.put_questions(questions)
        generate_all(list(models), questions, store, progress=progress, backends=backends)
        summary = run_grade(config.judge, names, questions, store, template=template, progress=progress,
                            retry_errors=retry_errors, backend=(backends or {}).get("__judge__"))
        ids = {q.question_id for q in questions}
        grades = [g for g in store.judgments(summary.judge, grades=True) if g.question_id in ids]
    rows = grade_summary(grades, {q.question_id: q.category for q in questions}, names,
                         StatsOptions(n_resamples=n_resamples, seed=config.seed if seed is None else seed))
    doc = {"judge": summary.judge, "benchmark": config.bench.path or config.bench.name, "n_questions": len(questions),
           "models": rows}
    path = Path(config.run_dir) / GRADES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return GradeOutcome(summary, rows, path, len(questions))
