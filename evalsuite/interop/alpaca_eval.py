"""AlpacaEval files: annotations in (as Matches, with the answers' lengths), ``model_outputs.json`` in and out.

An AlpacaEval ``annotations.json`` is a list of records with ``instruction``, ``output_1`` (the baseline's answer),
``output_2``, ``generator_1``, ``generator_2`` and ``preference``: 1 = output_1 preferred, 2 = output_2 preferred,
0 = draw, a float in [1, 2] for a soft preference, null/NaN when the annotator gave none. The candidate is
``generator_2``, so a Match's X is generator_2 and its score is ``preference - 1`` (2 -> 1.0, 1.5 -> 0.5,
1 -> 0.0), a draw (0) is 0.5, and a missing preference is an error match. The outputs' lengths (characters, as
AlpacaEval's ``avg_length``) are kept for the average lengths and the length-controlled win rate.

A ``model_outputs.json`` is a list of ``{instruction, output, generator}`` (plus optional ``dataset``): AlpacaEval's
benchmark (the instructions) and one model's answers at once. Its questions are keyed by the instruction text
(:func:`instruction_id`), so the same instruction gets the same id in every file whatever the order.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite.errors import InputError
from evalsuite.records import Answer, Match, Question

_REQUIRED = ("instruction", "generator_1", "generator_2", "preference")
CATEGORY = "alpaca_eval"

# model -> (question_id, turn) -> characters, the shape build_results takes
Lengths = dict[str, dict[tuple[str, int], int]]


@dataclass(frozen=True)
class AlpacaEvalAnnotations:
    """What an annotations file gives: one Match per record, and each answer's length where the file has it."""

    matches: list[Match]
    lengths: Lengths = field(default_factory=dict)


def _read_list(path: str | Path, what: str) -> list[Any]:
    where = str(path)
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc})", where=where, fix=f"pass an AlpacaEval {what}") from exc
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", where=where) from exc
    if not isinstance(records, list):
        raise InputError("expected a JSON list of records", where=where, fix=f"pass an AlpacaEval {what}")
    return records


def read_alpaca_eval(path: str | Path) -> AlpacaEvalAnnotations:
    """Matches (question ``ae-{index}``, X = generator_2, Y = generator_1) and the lengths of output_1 / output_2."""
    where = str(path)
    matches: list[Match] = []
    lengths: Lengths = {}
    for index, record in enumerate(_read_list(path, "annotations.json")):
        match = _to_match(record, index, where)
        matches.append(match)
        for model, output in ((match.model_x, record.get("output_2")), (match.model_y, record.get("output_1"))):
            if isinstance(output, str):  # an annotation without the text leaves that length unknown
                lengths.setdefault(model, {})[(match.question_id, 1)] = len(output)
    return AlpacaEvalAnnotations(matches, lengths)


def read_alpaca_eval_annotations(path: str | Path) -> list[Match]:
    """One Match per annotation record (see :func:`read_alpaca_eval` for the lengths too)."""
    return read_alpaca_eval(path).matches


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
        category=CATEGORY,
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


# ---------------------------------------------------------------------------------------------------------------------
# model_outputs.json: the benchmark and one model's answers


def instruction_id(instruction: str) -> str:
    """The question id of an AlpacaEval instruction: stable across files and orders.

    >>> instruction_id("Say hi.")
    'ae-e276e57b8ac9'
    """
    return "ae-" + hashlib.sha256(instruction.encode("utf-8")).hexdigest()[:12]


def _output_records(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for index, record in enumerate(_read_list(path, "model_outputs.json")):
        where = f"{path} record {index}"
        if not isinstance(record, dict):
            raise InputError("expected a JSON object", where=where)
        if not isinstance(record.get("instruction"), str) or not record["instruction"].strip():
            raise InputError("no instruction (a non-empty string)", where=where,
                             fix="AlpacaEval model outputs are {instruction, output, generator}")
        out.append((where, record))
    return out


def read_alpaca_eval_questions(path: str | Path) -> list[Question]:
    """The instructions of a ``model_outputs.json`` (or of AlpacaEval's eval set) as one-turn questions."""
    questions: dict[str, Question] = {}
    for _, record in _output_records(path):
        qid = instruction_id(record["instruction"])
        category = record.get("dataset") if isinstance(record.get("dataset"), str) else CATEGORY
        questions.setdefault(qid, Question(qid, str(category), (record["instruction"],)))
    if not questions:
        raise InputError("no records", where=str(path), fix="the file is an empty list")
    return list(questions.values())


def read_alpaca_eval_outputs(path: str | Path, model: str | None = None) -> list[Answer]:
    """One model's answers from a ``model_outputs.json``; ``model`` renames them (default: the ``generator``)."""
    answers = []
    for where, record in _output_records(path):
        output = record.get("output")
        if not isinstance(output, str):
            raise InputError("no output (a string)", where=where, fix="AlpacaEval model outputs are {instruction, output, generator}")
        name = model or record.get("generator")
        if not isinstance(name, str) or not name:
            raise InputError("no generator (the model's name)", where=where, fix="pass --model NAME")
        answers.append(Answer(model=name, question_id=instruction_id(record["instruction"]), turns=(output,),
                              backend="import", settings={"source": str(path), "format": "alpaca-eval"}))
    if not answers:
        raise InputError("no answers", where=str(path), fix="the file is an empty list")
    return answers


def write_alpaca_eval_outputs(answers: Iterable[Answer], questions: dict[str, Question], path: str | Path) -> int:
    """Write one model's answers as AlpacaEval's ``model_outputs.json`` (first turn only: AlpacaEval is one turn)."""
    records = []
    for a in answers:
        q = questions.get(a.question_id)
        if q is None or not a.turns:
            continue
        rec: dict[str, Any] = {"instruction": q.turns[0], "output": a.turns[0], "generator": a.model}
        if q.category != CATEGORY:
            rec["dataset"] = q.category
        records.append(rec)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return len(records)
