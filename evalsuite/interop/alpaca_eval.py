"""Read AlpacaEval annotation files as Matches, and AlpacaEval's own win rate over them.

An AlpacaEval ``annotations.json`` is a list of records with ``instruction``, ``output_1`` (the baseline's answer),
``output_2``, ``generator_1``, ``generator_2`` and ``preference``: 1 = output_1 preferred, 2 = output_2 preferred,
0 = draw, a float in [1, 2] for a soft preference, null/NaN when the annotator gave none. The candidate is
``generator_2``, so a Match's X is generator_2 and its score is ``preference - 1`` (2 -> 1.0, 1.5 -> 0.5,
1 -> 0.0), a draw (0) is 0.5, and a missing preference is an error match.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalsuite.errors import InputError
from evalsuite.records import Match

_REQUIRED = ("instruction", "generator_1", "generator_2", "preference")


def read_alpaca_eval_annotations(path: str | Path) -> list[Match]:
    """One Match per annotation record: question ``ae-{index}``, X = generator_2 (candidate), Y = generator_1."""
    where = str(path)
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc})", where=where, fix="pass an AlpacaEval annotations.json") from exc
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", where=where) from exc
    if not isinstance(records, list):
        raise InputError("expected a JSON list of annotation records", where=where)
    return [_to_match(record, index, where) for index, record in enumerate(records)]


def alpaca_eval_win_rate(matches: Sequence[Match]) -> tuple[float, float]:
    """(win rate, standard error of the mean with ddof=1), both in percent, over non-error matches.

    This is the leaderboard's ``win_rate`` / ``standard_error`` (items treated as independent; no clustering).
    """
    scores = [m.score for m in matches if not m.error and m.score is not None]
    if not scores:
        raise ValueError("no scored matches (every match is an error)")
    n = len(scores)
    mean = sum(scores) / n
    if n < 2:
        return 100.0 * mean, float("nan")
    variance = sum((s - mean) ** 2 for s in scores) / (n - 1)
    return 100.0 * mean, 100.0 * math.sqrt(variance / n)


def _to_match(record: Any, index: int, file: str) -> Match:
    where = f"{file} record {index}"
    if not isinstance(record, dict):
        raise InputError("expected a JSON object", where=where)
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        raise InputError(f"missing field(s) {', '.join(missing)}", where=where)
    candidate, baseline = record["generator_2"], record["generator_1"]
    if not isinstance(candidate, str) or not isinstance(baseline, str):
        raise InputError("generator_1 and generator_2 must be model names (strings)", where=where)
    score = _score(record["preference"], where)
    return Match(
        question_id=f"ae-{index}",
        category="alpaca_eval",
        turn=1,
        model_x=candidate,
        model_y=baseline,
        score=score,
        inconsistent=False,
        error=score is None,
    )


def _score(preference: Any, where: str) -> float | None:
    """generator_2's score in [0, 1] from an AlpacaEval preference, None when there is none."""
    if preference is None:
        return None
    # bool is an int subclass; true/false is not a preference.
    if isinstance(preference, bool) or not isinstance(preference, (int, float)):
        raise InputError(f"preference must be a number or null, got {preference!r}", where=where)
    value = float(preference)
    if math.isnan(value):
        return None
    if value == 0.0:
        return 0.5  # draw: half a win
    if 1.0 <= value <= 2.0:
        return value - 1.0
    raise InputError(f"preference must be 0 (draw), in [1, 2], or null; got {preference!r}", where=where)
