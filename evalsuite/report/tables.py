"""Flat tables of a results document (CSV)."""

from __future__ import annotations

import csv
import io
from typing import Any, Mapping

CSV_COLUMNS = (
    "model", "baseline", "n", "wins", "ties", "losses", "errors", "inconsistent", "win_rate", "ci_low", "ci_high",
    "ci_bca_low", "ci_bca_high", "p_bootstrap", "p_sign", "p_holm", "significant", "lc_win_rate", "avg_length",
    "bt_rating", "bt_ci_low", "bt_ci_high", "bt_rank",
)


def results_csv(results: Mapping[str, Any]) -> str:
    ratings = {r["model"]: r for r in results.get("ratings", [])}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for c in results.get("comparisons", []):
        r = ratings.get(c["model"], {})
        row = {**c, "bt_rating": r.get("rating"), "bt_ci_low": r.get("ci_low"), "bt_ci_high": r.get("ci_high"), "bt_rank": r.get("rank")}
        writer.writerow(["" if row.get(k) is None else row.get(k) for k in CSV_COLUMNS])
    return buf.getvalue()
