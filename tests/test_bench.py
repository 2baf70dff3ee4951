"""Question readers: the bundled set, FastChat's question.jsonl with its references, Hugging Face datasets (local)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import shared_data

from evalsuite.bench import BenchSpec, bundled_benchmarks, load_benchmark, read_hf_questions, read_questions, select_questions
from evalsuite.errors import InputError
from evalsuite.records import CATEGORIES, REFERENCE_CATEGORIES


def test_bundled_mtb_style_has_80_two_turn_questions_with_references_where_needed() -> None:
    assert "mtb-style" in bundled_benchmarks()
    qs = load_benchmark(BenchSpec())
    assert len(qs) == 80
    assert {q.category for q in qs} == set(CATEGORIES)
    assert all(len(q.turns) == 2 for q in qs)
    assert {q.question_id for q in qs if q.reference} == {q.question_id for q in qs if q.category in REFERENCE_CATEGORIES}
    assert all(len(q.reference) == 2 for q in qs if q.reference)


def test_limit_is_per_category_and_categories_filter() -> None:
    qs = load_benchmark(BenchSpec(limit=2))
    assert len(qs) == 16 and all(sum(q.category == c for q in qs) == 2 for c in CATEGORIES)
    math = load_benchmark(BenchSpec(categories=("math", "coding")))
    assert {q.category for q in math} == {"math", "coding"} and len(math) == 20
    with pytest.raises(InputError, match="unknown categories"):
        select_questions(math, categories=("poetry",))


def test_fastchat_question_file_with_separate_references() -> None:
    path = shared_data("mt_bench", "question.jsonl")
    refs = shared_data("mt_bench", "reference_answer", "gpt-4.jsonl")
    qs = read_questions(path, refs)
    assert len(qs) == 80 and qs[0].question_id == "81"
    with_ref = [q for q in qs if q.reference]
    assert len(with_ref) >= 30 and {q.category for q in with_ref} >= {"math", "reasoning", "coding"}


def test_hugging_face_dataset_reader_on_a_local_file(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    f = tmp_path / "qs.jsonl"
    f.write_text("".join(json.dumps({"question_id": i, "category": "stem", "turns": [f"q{i}", f"follow {i}"]}) + "\n" for i in range(5)))
    qs = read_hf_questions("local", data_file=str(f))
    assert [q.question_id for q in qs] == ["0", "1", "2", "3", "4"] and qs[2].turns == ("q2", "follow 2")
    assert load_benchmark(BenchSpec(name=None, path=str(f), hf_dataset="local"))[0].category == "stem"


def test_duplicate_ids_and_unknown_bundled_name(tmp_path: Path) -> None:
    f = tmp_path / "dup.jsonl"
    f.write_text('{"question_id": 1, "turns": ["a"]}\n{"question_id": 1, "turns": ["b"]}\n')
    with pytest.raises(InputError, match="duplicate question_id"):
        read_questions(f)
    with pytest.raises(InputError, match="unknown benchmark"):
        load_benchmark(BenchSpec(name="nope"))
