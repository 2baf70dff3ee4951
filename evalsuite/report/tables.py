"""Flat tables of a results document (CSV): one row per candidate, with its per-turn win rates beside the pooled one."""

from __future__ import annotations

import csv
import io
from typing import Any

from evalsuite.report.results import Comparison, Rating, Results

CSV_COLUMNS = (
    "model", "baseline", "n", "wins", "ties", "losses", "errors", "inconsistent", "win_rate", "ci_low", "ci_high",
    "ci_bca_low", "ci_bca_high", "p_bootstrap", "p_bootstrap_bound", "p_sign", "p_holm", "p_holm_bound", "significant",
    "lc_win_rate", "avg_length", "external_se", "alpaca_eval_lc_win_rate", "bt_rating", "bt_ci_low", "bt_ci_high", "bt_rank",
    "turn1_win_rate", "turn1_ci_low", "turn1_ci_high", "turn2_win_rate", "turn2_ci_low", "turn2_ci_high",
    "turn_diff", "turn_diff_ci_low", "turn_diff_ci_high", "turn_diff_p", "turn_diff_p_bound",
    "effect", "mde", "judge_health",
)


def _row(c: Comparison, r: Rating | None) -> list[Any]:
    t1, t2, d = c.turn(1), c.turn(2), c.turn_difference
    return [
        c.model, c.baseline, c.n, c.wins, c.ties, c.losses, c.errors, c.inconsistent, c.win_rate, c.ci_low, c.ci_high,
        c.ci_bca_low, c.ci_bca_high, c.p_bootstrap, c.p_bootstrap_bound, c.p_sign, c.p_holm, c.p_holm_bound,
        c.significant, c.lc_win_rate, c.avg_length, c.external_se, c.alpaca_eval_lc_win_rate,
        None if r is None else r.rating, None if r is None else r.ci_low, None if r is None else r.ci_high,
        None if r is None else r.rank,
        None if t1 is None else t1.win_rate, None if t1 is None else t1.ci_low, None if t1 is None else t1.ci_high,
        None if t2 is None else t2.win_rate, None if t2 is None else t2.ci_low, None if t2 is None else t2.ci_high,
        None if d is None else d.diff, None if d is None else d.ci_low, None if d is None else d.ci_high,
        None if d is None else d.p_value, None if d is None else d.p_value_bound,
        c.effect, c.mde, c.health_verdict.status,
    ]


def results_csv(results: Results) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for c in results.comparisons:
        writer.writerow(["" if v is None else v for v in _row(c, results.rating(c.model))])
    return buf.getvalue()
