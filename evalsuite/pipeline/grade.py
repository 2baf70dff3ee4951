"""``grade``: single-answer grading (MT-Bench's score mode): generate what is missing, grade every answer 1-10 with
the judge, summarise each model's mean grade with a question-clustered CI per turn and category, and write
``grades.json`` into the run directory. The CLI's ``evalsuite grade`` only wires flags to it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.backends.roles import StageBackends
from evalsuite.config import Config, ModelSpec
from evalsuite.judge import JudgeSummary
from evalsuite.pipeline._stages import PipelineRun, ProgressFactory, run_pipeline
from evalsuite.records import Judgment

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
    progress: ProgressFactory,
    template: str | None = None,
    retry_errors: bool = False,
    n_resamples: int = 10_000,
    seed: int | None = None,
    backends: StageBackends | None = None,
) -> GradeOutcome:
    """Generate missing answers of ``models`` on the config's benchmark, grade them, write ``grades.json``."""
    from evalsuite.report.grades import grade_summary
    from evalsuite.report.results import StatsOptions

    names = [s.name for s in models]

    def grade_answers(run: PipelineRun) -> tuple[JudgeSummary, list[Judgment]]:
        summary = run.grade(names, template)
        ids = {q.question_id for q in run.questions}
        return summary, [g for g in run.store.judgments(summary.judge, grades=True) if g.question_id in ids]

    out = run_pipeline(grade_answers, questions=config.bench, store=Path(config.run_dir), models=models,
                       judge=config.judge, judging=config.judging, progress=progress, backends=backends,
                       retry_errors=retry_errors)
    summary, grades = out.value
    questions = out.questions
    rows = grade_summary(grades, {q.question_id: q.category for q in questions}, names,
                         StatsOptions(n_resamples=n_resamples, seed=config.seed if seed is None else seed))
    doc = {"judge": summary.judge, "benchmark": config.bench.path or config.bench.name, "n_questions": len(questions),
           "models": rows}
    path = Path(config.run_dir) / GRADES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return GradeOutcome(summary, rows, path, len(questions))


__all__ = ["GRADES_FILE", "GradeOutcome", "grade"]
