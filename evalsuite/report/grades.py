"""Single-answer grading results: each model's mean 1-10 grade (MT-Bench's "single" score) with a
question-clustered bootstrap CI, per turn and per category. Pure: grades in, a document out."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from evalsuite.records import Judgment
from evalsuite.report.results import StatsOptions


def grade_summary(
    grades: Sequence[Judgment], categories: Mapping[str, str], models: Sequence[str], options: StatsOptions = StatsOptions()
) -> list[dict[str, Any]]:
    from evalsuite.stats import cluster_bootstrap

    rows = []
    for model in models:
        mine = [g for g in grades if g.model_a == model]
        ok = [g for g in mine if g.verdict != "error" and g.score is not None]
        row: dict[str, Any] = {"model": model, "n": len(ok), "errors": len(mine) - len(ok)}
        if ok:
            scores = np.array([g.score for g in ok], dtype=float)
            # the bootstrap works on [0, 1]: grades 1-10 are scaled by 1/10 and back
            ci = cluster_bootstrap(scores / 10.0, np.array([g.question_id for g in ok]), n_resamples=options.n_resamples,
                                   confidence=options.confidence, seed=options.seed)
            row.update(
                score=round(float(scores.mean()), 4),
                ci_low=round(10 * ci.ci_low, 4),
                ci_high=round(10 * ci.ci_high, 4),
                by_turn={str(t): round(float(np.mean([g.score for g in ok if g.turn == t])), 4) for t in sorted({g.turn for g in ok})},
                by_category={c: round(float(np.mean([g.score for g in ok if categories.get(g.question_id) == c])), 4)
                             for c in sorted({categories.get(g.question_id, "unknown") for g in ok})},
            )
        else:
            row.update(score=None, ci_low=None, ci_high=None, by_turn={}, by_category={})
        rows.append(row)
    return sorted(rows, key=lambda r: -1 if r["score"] is None else r["score"], reverse=True)
