"""Other tools' file shapes in and out: Arena-Hard questions and answers, AlpacaEval model_outputs.json (benchmark,
answers, export), the one JSONL reader's rules, and agreement of a vote file with itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli, write_config

from evalsuite.bench import read_questions
from evalsuite.errors import InputError
from evalsuite.interop.alpaca_eval import instruction_id, read_alpaca_eval_outputs, read_alpaca_eval_questions
from evalsuite.interop.answers import read_answers
from evalsuite.jsonl import iter_jsonl
from evalsuite.stats import Vote, agreement
from evalsuite.store import RunStore
from evalsuite.testing.fake_server import FakeOpenAIServer

# --------------------------------------------------------------------------------------------- Arena-Hard


def _arena_questions(path: Path, n: int = 4) -> Path:
    rows = [{"uid": f"{i:016x}", "category": "arena-hard-v0.1", "cluster": f"cluster {i % 2}", "prompt": f"Prompt {i}?"}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _arena_answers(path: Path, model: str, n: int = 4, *, v2: bool = True) -> Path:
    rows = []
    for i in range(n):
        reply = f"«{model}» reply {i}"
        rows.append({"uid": f"{i:016x}", "ans_id": f"a{i}", "model": model, "tstamp": 0,
                     "messages": [{"role": "user", "content": f"Prompt {i}?"},
                                  {"role": "assistant", "content": {"answer": reply} if v2 else reply}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_arena_hard_questions_are_a_benchmark(tmp_path: Path) -> None:
    qs = read_questions(_arena_questions(tmp_path / "question.jsonl"))
    assert [(q.question_id, q.category, q.turns) for q in qs[:2]] == [
        ("0000000000000000", "arena-hard-v0.1", ("Prompt 0?",)),
        ("0000000000000001", "arena-hard-v0.1", ("Prompt 1?",)),
    ]
    # v0.1 question files write turns as [{"content": ...}]
    (tmp_path / "v01.jsonl").write_text(json.dumps({"question_id": "x1", "category": "c", "cluster": "k",
                                                    "turns": [{"content": "Hello?"}]}) + "\n")
    (q,) = read_questions(tmp_path / "v01.jsonl")
    assert (q.question_id, q.turns) == ("x1", ("Hello?",))


@pytest.mark.parametrize("v2", [True, False])
def test_arena_hard_answers_are_read(tmp_path: Path, v2: bool) -> None:
    read = read_answers(_arena_answers(tmp_path / "m.jsonl", "gpt-4-0314", v2=v2))
    assert read.format == "arena-hard" and read.models == ["gpt-4-0314"]
    assert read.answers[1].question_id == "0000000000000001" and read.answers[1].turns == ("«gpt-4-0314» reply 1",)


def test_arena_hard_import_then_judge(tmp_path: Path) -> None:
    questions = _arena_questions(tmp_path / "question.jsonl")
    for m in ("base", "cand"):
        res = run_cli("import-answers", str(_arena_answers(tmp_path / f"{m}.jsonl", m)), "--run-dir", "run", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert "read as arena-hard" in res.stderr and f"['{m}']" in res.stderr
    with FakeOpenAIServer(strengths={"base": 0.0, "cand": 2.0}) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, [], questions)
        res = run_cli("judge", "base", "cand", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "200",
                      cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert srv.stats()["by_model"] == {"judge": 4 * 2}  # four one-turn questions, both orders
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["comparisons"][0]["n"] == 4


def test_bad_arena_hard_answer_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({"uid": "1", "model": "m", "messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(InputError, match=r"bad\.jsonl:1: no assistant message"):
        read_answers(p)
    p.write_text(json.dumps({"id": 1, "text": "?"}) + "\n")
    with pytest.raises(InputError, match=r"not an answer file I know.*FastChat.*Arena-Hard.*AlpacaEval"):
        read_answers(p)


# --------------------------------------------------------------------------------------------- AlpacaEval outputs


INSTRUCTIONS = ["Name three primes.", "Write a haiku about rain.", "What is 2 + 2?"]


def _outputs(path: Path, model: str, order: list[int], dataset: bool = True) -> Path:
    recs = []
    for i in order:
        r = {"instruction": INSTRUCTIONS[i], "output": f"«{model}» answer {i}", "generator": model}
        if dataset:
            r["dataset"] = "helpful_base"
        recs.append(r)
    path.write_text(json.dumps(recs, indent=1), encoding="utf-8")
    return path


def test_alpaca_eval_outputs_are_a_benchmark_and_answers(tmp_path: Path) -> None:
    base = _outputs(tmp_path / "base.json", "base", [0, 1, 2])
    cand = _outputs(tmp_path / "cand.json", "cand", [2, 0, 1])  # another order: ids come from the instruction
    qs = read_alpaca_eval_questions(base)
    assert [q.turns for q in qs] == [(t,) for t in INSTRUCTIONS] and {q.category for q in qs} == {"helpful_base"}
    assert [q.question_id for q in read_questions(base)] == [instruction_id(t) for t in INSTRUCTIONS]
    by_q = {a.question_id: a for a in read_alpaca_eval_outputs(cand)}
    assert by_q[instruction_id(INSTRUCTIONS[2])].turns == ("«cand» answer 2",)
    assert read_answers(cand).format == "alpaca-eval"


def test_alpaca_eval_import_judge_and_export_round_trip(tmp_path: Path) -> None:
    base = _outputs(tmp_path / "base.json", "base", [0, 1, 2])
    cand = _outputs(tmp_path / "cand.json", "cand", [2, 0, 1])
    res = run_cli("import-answers", str(base), str(cand), "--run-dir", "run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("read as alpaca-eval") == 2
    with FakeOpenAIServer(strengths={"base": 0.0, "cand": 2.0}) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, [], base)
        res = run_cli("judge", "base", "cand", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "200",
                      cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert srv.stats()["by_model"] == {"judge": 3 * 2}
    res = run_cli("export", "--run-dir", "run", "--format", "alpaca-eval", "--out", "ae", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for name, src in (("base", base), ("cand", cand)):
        out = json.loads((tmp_path / "ae" / name / "model_outputs.json").read_text())
        key = sorted((r["instruction"], r["output"], r["generator"], r["dataset"]) for r in out)
        assert key == sorted((r["instruction"], r["output"], r["generator"], r["dataset"])
                             for r in json.loads(src.read_text()))


# --------------------------------------------------------------------------------------------- the JSONL reader


def test_one_jsonl_reader_rules(tmp_path: Path) -> None:
    p = tmp_path / "f.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"a": "\xc3\xa9"}\n\n   \n{"a": 2}\n')  # BOM, UTF-8, blank lines
    assert list(iter_jsonl(p)) == [(1, {"a": "é"}), (4, {"a": 2})]
    p.write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(InputError, match=r"f\.jsonl: record 2 \(line 3\) is not valid JSON"):
        list(iter_jsonl(p))
    p.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(InputError, match=r"f\.jsonl: line 2 is a JSON list, not an object"):
        list(iter_jsonl(p))


# --------------------------------------------------------------------------------------------- agreement with itself


def _mtbench_votes() -> list[dict[str, object]]:
    """MT-Bench human-judgment shape: three experts on the same four (question, pair) items."""
    winners = {101: ["model_a", "model_a", "model_a"], 102: ["model_a", "model_b", "model_a"],
               103: ["model_a", "tie", "model_b"], 104: ["model_b", "model_b", "tie"]}
    return [{"question_id": q, "model_a": "gpt-4", "model_b": "claude-v1", "winner": w, "judge": f"expert_{k}",
             "turn": 1, "conversation_a": [], "conversation_b": []}
            for q, ws in winners.items() for k, w in enumerate(ws)]


def test_agreement_of_a_file_with_itself_compares_distinct_pairs_only(tmp_path: Path) -> None:
    (tmp_path / "human.json").write_text(json.dumps(_mtbench_votes()))
    res = run_cli("agreement", "human.json", "human.json", "--judges1", "expert", "--judges2", "expert", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "one set against itself" in res.stdout
    rows = {tuple(ln.split()[:2]): ln.split()[2:] for ln in res.stdout.splitlines() if ln.split()[:1] in (["1"], ["all"])}
    # distinct pairs per item: 3/3, 1/3, 0/3, 1/3 -> 5 of 12 (every vote with itself too would read 22 of 36)
    assert rows[("all", "S1")][:2] == ["5", "12"]
    alone = run_cli("agreement", "human.json", cwd=tmp_path)  # one file, no second set: the same rule
    assert alone.stdout.splitlines()[-4:] == res.stdout.splitlines()[-4:]
    # two different judge filters are two sets: no self pairs to drop, no note
    two = run_cli("agreement", "human.json", "human.json", "--judges1", "expert_0", "--judges2", "expert_1", cwd=tmp_path)
    assert two.returncode == 0 and "one set against itself" not in two.stdout


def test_agreement_same_votes_is_one_set() -> None:
    votes = [Vote(str(v["question_id"]), 1, str(v["model_a"]), str(v["model_b"]), str(v["winner"]), str(v["judge"]))
             for v in _mtbench_votes()]
    same = agreement(votes, list(reversed(votes)))
    assert same.same_set and same.rows == agreement(votes).rows
    overall = next(r for r in same.rows if r.turn is None and r.setup == "S1")
    assert (overall.agree, overall.total) == (5, 12)
    assert not agreement(votes[:6], votes[6:]).same_set
