#!/usr/bin/env python3
"""Validate the bundled MT-Bench-style question set and the demo training data.

Checks ``benchmarks/mtb-style/question.jsonl`` (80 questions, ids ``mtbs-001`` .. ``mtbs-080`` in order, 10 per
category in the documented category order, two non-empty user turns each, a two-entry ``reference`` on exactly the
math / reasoning / coding questions and on no others) and the field shapes of ``evalsuite/demo/data/sft.jsonl`` and
``evalsuite/demo/data/prefs.jsonl``.

Prints every problem found (one line each, to stderr), then a one-line summary; exits 1 if there was any problem.
Standard library only, so it runs before the package is installed:  ``python scripts/check_benchmark.py``
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "benchmarks" / "mtb-style" / "question.jsonl"
SFT = ROOT / "evalsuite" / "demo" / "data" / "sft.jsonl"
PREFS = ROOT / "evalsuite" / "demo" / "data" / "prefs.jsonl"

CATEGORIES = ["writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"]
PER_CATEGORY = 10
WITH_REFERENCE = {"math", "reasoning", "coding"}
N_TURNS = 2
N_SFT = 120
N_PREFS = 120
PREF_CATEGORIES = {"general", "math", "coding", "writing"}
MAX_LENGTH_RATIO = 1.5  # mean chosen words / mean rejected words (and the inverse) must stay below this


def read_jsonl(path: Path, problems: list[str]) -> list[tuple[int, dict[str, object]]]:
    """Parse a JSONL file into (line number, object) pairs; every line must be a JSON object.
    Blank lines are reported, not skipped."""
    rel = path.relative_to(ROOT)
    if not path.is_file():
        problems.append(f"{rel}: file not found")
        return []
    rows: list[tuple[int, dict[str, object]]] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                problems.append(f"{rel}:{lineno}: blank line")
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{rel}:{lineno}: invalid JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                problems.append(f"{rel}:{lineno}: not a JSON object")
                continue
            rows.append((lineno, row))
    return rows


def is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def check_questions(problems: list[str]) -> int:
    rel = QUESTIONS.relative_to(ROOT)
    rows = read_jsonl(QUESTIONS, problems)
    expected_total = PER_CATEGORY * len(CATEGORIES)
    if len(rows) != expected_total:
        problems.append(f"{rel}: {len(rows)} questions, expected {expected_total}")

    ids = [row.get("question_id") for _, row in rows]
    for qid, count in Counter(map(str, ids)).items():
        if count > 1:
            problems.append(f"{rel}: question_id {qid} appears {count} times")

    expected_categories = [c for c in CATEGORIES for _ in range(PER_CATEGORY)]
    for i, (lineno, row) in enumerate(rows):
        where = f"{rel}:{lineno}"
        qid = row.get("question_id")
        if not isinstance(qid, str) or not qid:
            problems.append(f"{where}: question_id must be a non-empty string, got {qid!r}")
        elif qid != f"mtbs-{i + 1:03d}":
            problems.append(f"{where}: question_id {qid!r}, expected 'mtbs-{i + 1:03d}' (ids run in order)")
        where = f"{rel}:{lineno} ({qid})"

        extra = set(row) - {"question_id", "category", "turns", "reference"}
        if extra:
            problems.append(f"{where}: unexpected fields {sorted(extra)}")

        category = row.get("category")
        if category not in CATEGORIES:
            problems.append(f"{where}: unknown category {category!r}")
        elif i < len(expected_categories) and category != expected_categories[i]:
            problems.append(f"{where}: category {category!r}, expected {expected_categories[i]!r} at this position")

        turns = row.get("turns")
        if not isinstance(turns, list) or len(turns) != N_TURNS or not all(is_text(t) for t in turns):
            problems.append(f"{where}: turns must be a list of {N_TURNS} non-empty strings")

        has_reference = "reference" in row
        if category in WITH_REFERENCE:
            ref = row.get("reference")
            if not has_reference:
                problems.append(f"{where}: {category} question without a reference")
            elif not isinstance(ref, list) or len(ref) != N_TURNS or not all(is_text(r) for r in ref):
                problems.append(f"{where}: reference must be a list of {N_TURNS} non-empty strings")
        elif has_reference:
            problems.append(f"{where}: {category} question must not carry a reference")

    counts = Counter(row.get("category") for _, row in rows)
    for category in CATEGORIES:
        if counts[category] != PER_CATEGORY:
            problems.append(f"{rel}: {counts[category]} {category} questions, expected {PER_CATEGORY}")
    return len(rows)


def check_sft(problems: list[str]) -> int:
    rel = SFT.relative_to(ROOT)
    rows = read_jsonl(SFT, problems)
    if len(rows) != N_SFT:
        problems.append(f"{rel}: {len(rows)} records, expected {N_SFT}")
    for i, row in rows:
        if set(row) != {"prompt", "completion"}:
            problems.append(f"{rel}:{i}: fields {sorted(row)}, expected ['completion', 'prompt']")
        for key in ("prompt", "completion"):
            if key in row and not is_text(row[key]):
                problems.append(f"{rel}:{i}: {key} must be a non-empty string")
    return len(rows)


def check_prefs(problems: list[str]) -> int:
    rel = PREFS.relative_to(ROOT)
    rows = read_jsonl(PREFS, problems)
    if len(rows) != N_PREFS:
        problems.append(f"{rel}: {len(rows)} records, expected {N_PREFS}")
    fields = {"prompt", "chosen", "rejected", "category"}
    chosen_words: list[int] = []
    rejected_words: list[int] = []
    for i, row in rows:
        if set(row) != fields:
            problems.append(f"{rel}:{i}: fields {sorted(row)}, expected {sorted(fields)}")
        for key in ("prompt", "chosen", "rejected"):
            if key in row and not is_text(row[key]):
                problems.append(f"{rel}:{i}: {key} must be a non-empty string")
        if "category" in row and row["category"] not in PREF_CATEGORIES:
            problems.append(f"{rel}:{i}: category {row['category']!r} not in {sorted(PREF_CATEGORIES)}")
        chosen, rejected = row.get("chosen"), row.get("rejected")
        if is_text(chosen) and is_text(rejected):
            if " ".join(str(chosen).split()) == " ".join(str(rejected).split()):
                problems.append(f"{rel}:{i}: chosen and rejected are identical")
            chosen_words.append(len(str(chosen).split()))
            rejected_words.append(len(str(rejected).split()))
    if chosen_words and rejected_words:
        mean_c = sum(chosen_words) / len(chosen_words)
        mean_r = sum(rejected_words) / len(rejected_words)
        ratio = max(mean_c / mean_r, mean_r / mean_c)
        if ratio > MAX_LENGTH_RATIO:
            problems.append(
                f"{rel}: length bias: mean chosen {mean_c:.1f} words vs rejected {mean_r:.1f} "
                f"(ratio {ratio:.2f} > {MAX_LENGTH_RATIO})"
            )
    return len(rows)


def main() -> int:
    problems: list[str] = []
    n_questions = check_questions(problems)
    n_sft = check_sft(problems)
    n_prefs = check_prefs(problems)
    for problem in problems:
        print(problem, file=sys.stderr)
    status = "OK" if not problems else f"FAILED ({len(problems)} problem{'s' if len(problems) != 1 else ''})"
    print(f"check_benchmark: {status}: {n_questions} questions, {n_sft} sft records, {n_prefs} preference pairs")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
