"""Benchmarks: question sets in, ``Question`` records out.

Readers: the bundled sets (``mtb-style``), any JSONL in the project's or FastChat's ``question.jsonl`` shape (same field
names; FastChat keeps references in a separate ``reference_answer/*.jsonl``, which ``reference_path`` merges) or in
Arena-Hard's (``{uid, category, cluster, prompt}``), AlpacaEval's ``model_outputs.json`` (its instructions), and Hugging
Face datasets through ``datasets`` (for users with network; the same loader reads local dataset files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from evalsuite._resources import benchmarks_dir
from evalsuite.errors import InputError
from evalsuite.jsonl import iter_jsonl
from evalsuite.records import Question
from evalsuite.schema import key


@dataclass(frozen=True)
class BenchSpec:
    """``[bench]``: which questions; each field's help is the configuration reference's text."""

    name: str | None = key("mtb-style", "A bundled question set (`mtb-style`: 80 two-turn questions in MT-Bench's "
                                        "8 categories). Setting `path` alone unsets it.")
    path: str | None = key(None, "A question JSONL (the project's, FastChat's or Arena-Hard's shape) or, with "
                                 "`hf_dataset`, a local data file.")
    reference_path: str | None = key(None, "FastChat-style reference answers (`reference_answer/*.jsonl`) merged "
                                           "by `question_id`.")
    hf_dataset: str | None = key(None, "A Hugging Face dataset name, read with `datasets` (needs network).")
    hf_split: str = key("train", "Split of `hf_dataset`.")
    limit: int | None = key(None, "First N questions of each category (after the category filter).")
    categories: tuple[str, ...] = key((), "Categories to keep (a list, or one comma-separated string). Empty: all.")


def bundled_benchmarks() -> list[str]:
    root = _bundled_root()
    return sorted(p.name for p in root.iterdir() if (p / "question.jsonl").is_file())


def _bundled_root() -> Path:
    return benchmarks_dir()


def question_from_record(obj: Mapping[str, Any], *, where: str, reference: Sequence[str] | None = None) -> Question:
    """One question record -> Question; InputError names the record and the fix.

    Shapes: the project's and FastChat's ``{question_id, category, turns}`` (Arena-Hard v0.1 writes each turn as
    ``{"content": ...}``), and Arena-Hard v2's ``{uid, category, cluster, prompt}`` (one turn).
    """
    qid = obj.get("question_id", obj.get("uid"))
    turns = obj.get("turns", obj.get("prompt"))
    if qid is None or turns is None:
        missing = [k for k, v in (("question_id (or uid)", qid), ("turns (or prompt)", turns)) if v is None]
        raise InputError(
            f"missing field(s) {', '.join(missing)}",
            where=where,
            fix="each question needs question_id, category and turns (a list of user messages), "
            "or Arena-Hard's uid, category and prompt",
        )
    if isinstance(turns, str):
        turns = [turns]
    if isinstance(turns, list):
        turns = [t["content"] if isinstance(t, dict) and isinstance(t.get("content"), str) else t for t in turns]
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise InputError("turns must be a non-empty list of non-empty strings", where=where, fix="fix the turns field")
    ref = obj.get("reference", reference)
    if isinstance(ref, str):
        ref = [ref]
    if ref is not None and not (isinstance(ref, (list, tuple)) and all(isinstance(r, str) for r in ref)):
        raise InputError("reference must be a list of strings", where=where, fix="one reference answer per turn")
    return Question(
        question_id=str(qid),
        category=str(obj.get("category") or "general"),
        turns=tuple(turns),
        reference=tuple(ref) if ref else None,
    )


def read_references(path: str | Path) -> dict[str, tuple[str, ...]]:
    """FastChat ``reference_answer/*.jsonl``: {question_id, choices: [{turns}]} -> question_id -> turns."""
    refs: dict[str, tuple[str, ...]] = {}
    for lineno, obj in iter_jsonl(path):
        try:
            refs[str(obj["question_id"])] = tuple(obj["choices"][0]["turns"])
        except (KeyError, IndexError, TypeError):
            raise InputError(
                f"line {lineno}: expected question_id and choices[0].turns",
                where=str(path),
                fix="use FastChat's reference_answer format",
            ) from None
    return refs


def read_questions(path: str | Path, reference_path: str | Path | None = None) -> list[Question]:
    """Questions of a JSONL file (project, FastChat or Arena-Hard shape) or of an AlpacaEval ``.json`` list."""
    if Path(path).suffix.lower() == ".json":
        from evalsuite.interop.alpaca_eval import read_alpaca_eval_questions

        return read_alpaca_eval_questions(path)
    refs = read_references(reference_path) if reference_path else {}
    questions: list[Question] = []
    seen: set[str] = set()
    for lineno, obj in iter_jsonl(path):
        q = question_from_record(obj, where=f"{path}:{lineno}", reference=refs.get(str(obj.get("question_id", obj.get("uid")))))
        if q.question_id in seen:
            raise InputError(f"line {lineno}: duplicate question_id {q.question_id!r}", where=str(path), fix="make ids unique")
        seen.add(q.question_id)
        questions.append(q)
    if not questions:
        raise InputError("no questions", where=str(path), fix="add at least one question line")
    return questions


def read_hf_questions(dataset: str, *, split: str = "train", data_file: str | None = None) -> list[Question]:
    """Questions from a Hugging Face dataset (by name, needs network) or a local data file read by ``datasets``."""
    try:
        import datasets
    except ImportError as exc:
        raise InputError("reading a Hugging Face dataset needs `datasets`", fix="pip install 'evalsuite[train]'") from exc
    if data_file:
        kind = "json" if data_file.endswith((".json", ".jsonl")) else Path(data_file).suffix.lstrip(".")
        ds = datasets.load_dataset(kind, data_files=data_file, split=split)
    else:
        ds = datasets.load_dataset(dataset, split=split)
    where = data_file or dataset
    return [question_from_record(row, where=f"{where}[{i}]") for i, row in enumerate(ds)]


def load_benchmark(spec: BenchSpec) -> list[Question]:
    if spec.hf_dataset:
        questions = read_hf_questions(spec.hf_dataset, split=spec.hf_split, data_file=spec.path)
    elif spec.path:
        questions = read_questions(spec.path, spec.reference_path)
    else:
        name = spec.name or "mtb-style"
        folder = _bundled_root() / name
        if not (folder / "question.jsonl").is_file():
            raise InputError(
                f"unknown benchmark {name!r}",
                fix=f"use one of {', '.join(bundled_benchmarks()) or '(none bundled)'} or set bench.path",
            )
        questions = read_questions(folder / "question.jsonl", spec.reference_path)
    return select_questions(questions, categories=spec.categories, limit=spec.limit)


def select_questions(questions: Iterable[Question], *, categories: Sequence[str] = (), limit: int | None = None) -> list[Question]:
    """Subset: keep the given categories (all when empty), then the first ``limit`` questions of each category.

    Per category, so ``--limit 2`` on an 8-category set still covers every category.
    """
    qs = list(questions)
    if categories:
        known = {q.category for q in qs}
        unknown = sorted(set(categories) - known)
        if unknown:
            raise InputError(f"unknown categories {unknown}", fix=f"choose from {sorted(known)}")
        qs = [q for q in qs if q.category in set(categories)]
    if limit is not None:
        taken: dict[str, int] = {}
        kept = []
        for q in qs:
            if taken.get(q.category, 0) < limit:
                taken[q.category] = taken.get(q.category, 0) + 1
                kept.append(q)
        qs = kept
    return qs
