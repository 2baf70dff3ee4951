"""AlpacaEval files: annotations in (as Matches, with the answers' lengths), ``model_outputs.json`` in and out.

An AlpacaEval ``annotations.json`` is a list of records with ``instruction``, ``output_1`` (the baseline's answer),
``output_2``, ``generator_1``, ``generator_2`` and ``preference``: 1 = output_1 preferred, 2 = output_2 preferred,
0 = draw, a float in [1, 2] for a soft preference, null/NaN when the annotator gave none. The candidate is
``generator_2``, so a Match's X is generator_2 and its score is ``preference - 1`` (2 -> 1.0, 1.5 -> 0.5,
1 -> 0.0), a draw (0) is 0.5, and a missing preference is an error match. The outputs' lengths (characters, as
AlpacaEval's ``avg_length``) are kept for the average lengths and the length-controlled win rate.

AlpacaEval's own length-controlled win rate (LC v1) needs a per-instruction difficulty that AlpacaEval publishes as a
file: :func:`read_instruction_difficulty` reads it, :func:`alpaca_eval_length_controlled` hands each candidate's
preferences, lengths and difficulties to the formula (``evalsuite.stats.alpaca_eval_lc_win_rate``).

A ``model_outputs.json`` is a list of ``{instruction, output, generator}`` (plus optional ``dataset``): AlpacaEval's
benchmark (the instructions) and one model's answers at once. Its questions are keyed by the instruction text
(:func:`instruction_id`), so the same instruction gets the same id in every file whatever the order.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.errors import InputError
from evalsuite.records import Answer, Match, Question

from evalsuite.store.names import check_model_name

if TYPE_CHECKING:
    from evalsuite.stats import AlpacaEvalLC, GamedBaselineRows

_REQUIRED = ("instruction", "generator_1", "generator_2", "preference")
CATEGORY = "alpaca_eval"

# model -> (question_id, turn) -> characters, the shape build_results takes
Lengths = dict[str, dict[tuple[str, int], int]]


@dataclass(frozen=True)
class AlpacaEvalAnnotations:
    """What an annotations file gives: one Match per record, and each answer's length where the file has it."""

    matches: list[Match]
    lengths: Lengths = field(default_factory=dict)
    texts: dict[str, dict[tuple[str, int], str]] = field(default_factory=dict)  # the outputs, for style features


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
    texts: dict[str, dict[tuple[str, int], str]] = {}
    for index, record in enumerate(_read_list(path, "annotations.json")):
        match = _to_match(record, index, where)
        matches.append(match)
        for model, output in ((match.model_x, record.get("output_2")), (match.model_y, record.get("output_1"))):
            if isinstance(output, str):  # an annotation without the text leaves that length unknown
                lengths.setdefault(model, {})[(match.question_id, 1)] = len(output)
                texts.setdefault(model, {})[(match.question_id, 1)] = output
    return AlpacaEvalAnnotations(matches, lengths, texts)


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
    check_model_name(candidate, where, fix="rename generator_2 in the file")
    check_model_name(baseline, where, fix="rename generator_1 in the file")
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
# AlpacaEval's length-controlled win rate (LC v1): the instruction difficulties, and the data the formula takes

_DIFFICULTY_FIX = ("pass AlpacaEval's instruction_difficulty.csv or df_gamed.csv (the tatsu-lab/alpaca_eval dataset "
                   "on the Hugging Face hub): a CSV with an index column and an instruction_difficulty column")


@dataclass(frozen=True)
class InstructionDifficulty:
    """AlpacaEval's per-instruction difficulty, keyed by the instruction's index in the eval set (or by its text when
    the file names instructions), and the gamed-baseline rows when the file is ``df_gamed.csv``."""

    source: str
    by_key: dict[str, float]
    keyed_by: str  # "index" or "instruction"
    gamed: GamedBaselineRows | None = None


def read_instruction_difficulty(path: str | Path) -> InstructionDifficulty:
    """Read AlpacaEval's ``instruction_difficulty.csv`` or ``df_gamed.csv``.

    The key is the ``index`` column, else the first column (pandas writes the index there, unnamed): an integer is
    the instruction's position in the eval set, anything else is the instruction's text. ``df_gamed.csv`` (it also
    has ``preference``, ``std_delta_len`` and ``not_gamed_baseline``) gives each instruction's difficulty on every
    row (the first is kept) and its gamed rows regularise the fit as AlpacaEval's LC v1 does.
    """
    import numpy as np

    from evalsuite.stats import GamedBaselineRows

    where = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", where=where) from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"not a CSV file ({exc})", where=where, fix=_DIFFICULTY_FIX) from exc
    if not rows:
        raise InputError("empty file", where=where, fix=_DIFFICULTY_FIX)
    header = [h.strip() for h in rows[0]]
    if "instruction_difficulty" not in header:
        raise InputError("no instruction_difficulty column", where=where, fix=_DIFFICULTY_FIX)
    col = header.index("instruction_difficulty")
    key_col = header.index("index") if "index" in header else 0
    if key_col == col:
        raise InputError("no key column before instruction_difficulty", where=where, fix=_DIFFICULTY_FIX)
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    if not body:
        raise InputError("no rows", where=where, fix=_DIFFICULTY_FIX)

    def cell(row: list[str], i: int, line: int) -> str:
        if i >= len(row):
            raise InputError(f"has {len(row)} fields, the header {len(header)}", where=f"{where} line {line}",
                             fix=_DIFFICULTY_FIX)
        return row[i]

    def number(text: str, what: str, line: int) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise InputError(f"{what} {text!r} is not a finite number", where=f"{where} line {line}", fix=_DIFFICULTY_FIX)
        return value

    keys = [cell(r, key_col, n + 2).strip() for n, r in enumerate(body)]
    keyed_by = "index" if all(_is_int(k) for k in keys) else "instruction"
    if keyed_by == "index":
        keys = [str(int(k)) for k in keys]
    by_key: dict[str, float] = {}
    for n, (key, row) in enumerate(zip(keys, body)):
        value = number(cell(row, col, n + 2), "instruction_difficulty", n + 2)
        by_key.setdefault(key, value)  # df_gamed repeats every instruction once per gamed model

    gamed = None
    if {"preference", "std_delta_len", "not_gamed_baseline"} <= set(header):
        pref, sdl, ng = (header.index(c) for c in ("preference", "std_delta_len", "not_gamed_baseline"))
        g_scores, g_sdl, g_diff = [], [], []
        for n, (key, row) in enumerate(zip(keys, body)):
            if cell(row, ng, n + 2).strip().lower() in ("true", "1", "1.0"):
                continue  # only the gamed baselines' rows regularise
            raw = cell(row, pref, n + 2).strip()
            g_scores.append(math.nan if raw.lower() in ("", "nan") else number(raw, "preference", n + 2))
            g_sdl.append(number(cell(row, sdl, n + 2), "std_delta_len", n + 2))
            g_diff.append(by_key[key])
        scores = np.array(g_scores, dtype=np.float64)
        if np.nanmax(scores, initial=0.0) > 1.0:  # AlpacaEval's raw scale: 1 baseline, 2 model, 0 draw
            scores = np.where(scores == 0.0, 0.5, scores - 1.0)
        if np.any((scores < 0.0) | (scores > 1.0)):
            raise InputError("preference outside AlpacaEval's scales ([0, 1], or 0 and [1, 2])", where=where,
                             fix=_DIFFICULTY_FIX)
        if scores.size:
            gamed = GamedBaselineRows(scores=scores, std_delta_len=np.array(g_sdl), difficulty=np.array(g_diff))
    return InstructionDifficulty(source=where, by_key=by_key, keyed_by=keyed_by, gamed=gamed)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def alpaca_eval_length_controlled(path: str | Path, baseline: str,
                                  difficulty: InstructionDifficulty) -> dict[str, AlpacaEvalLC]:
    """AlpacaEval's LC v1 for every candidate of an annotations file, against ``baseline`` (generator_1).

    A candidate's instruction index is the position of its record among that candidate's records, in file order
    (AlpacaEval's rule: an annotations file lists the eval set in order), unless the difficulty file is keyed by the
    instruction text. Every record needs both outputs (their lengths) and a difficulty.
    """
    import numpy as np

    from evalsuite.stats import alpaca_eval_lc_win_rate

    where = str(path)
    per_candidate: dict[str, list[tuple[float, int, int, float]]] = {}
    for index, record in enumerate(_read_list(path, "annotations.json")):
        match = _to_match(record, index, where)
        if match.model_y != baseline or match.model_x == baseline:
            continue
        rows = per_candidate.setdefault(match.model_x, [])
        at = f"{where} record {index}"
        out_c, out_b = record.get("output_2"), record.get("output_1")
        if not isinstance(out_c, str) or not isinstance(out_b, str):
            raise InputError("no output_1/output_2 text: AlpacaEval's LC needs both answers' lengths", where=at,
                             fix="import the full annotations.json, or drop --instruction-difficulty")
        key = str(len(rows)) if difficulty.keyed_by == "index" else str(record.get("instruction", ""))
        if key not in difficulty.by_key:
            what = f"index {key}" if difficulty.keyed_by == "index" else "this instruction"
            raise InputError(f"{difficulty.source} has no difficulty for {what}", where=at,
                             fix="pass the difficulty file of the same AlpacaEval eval set")
        score = math.nan if match.score is None else match.score
        rows.append((score, len(out_c), len(out_b), difficulty.by_key[key]))
    out: dict[str, AlpacaEvalLC] = {}
    for candidate, rows in per_candidate.items():
        s, len_c, len_b, diff = (np.array(col, dtype=np.float64) for col in zip(*rows))
        try:
            out[candidate] = alpaca_eval_lc_win_rate(s, len_c, len_b, diff, gamed=difficulty.gamed)
        except ValueError as exc:
            raise InputError(f"AlpacaEval's LC for {candidate} cannot be fitted: {exc}", where=where) from exc
    return out


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
        check_model_name(name, where)
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
