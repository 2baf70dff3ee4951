"""Logprob verdicts over an OpenAI-compatible judge, and `evalsuite agreement` on vote files and runs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli, write_config

from evalsuite.backends.openai import verdict_probs_from_logprobs
from evalsuite.testing.fake_server import FakeOpenAIServer, FaultPlan

STRENGTHS = {"sft": 0.0, "dpo": 2.0}


def test_logprob_verdict_mode_over_the_api_gives_soft_verdicts(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions, verdict_mode="logprob")
        res = run_cli("compare", "sft", "dpo", "--mode", "average", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "500", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    db = sqlite3.connect(tmp_path / "run" / "evalsuite.sqlite")
    p = [r[0] for r in db.execute("SELECT p_first FROM judgments")]
    assert len(p) == 12 * 2 * 2 and all(x is not None and 0.0 <= x <= 1.0 for x in p)
    assert len({round(x, 6) for x in p}) > 1  # soft values, not just 0/1
    c = json.loads((tmp_path / "run" / "results.json").read_text())["comparisons"][0]
    assert c["win_rate"] > 0.6  # the judge's probabilities favour the stronger model


def _judgments(run: Path) -> list[tuple[str, int, str, str, str, str | None, float | None, str, int]]:
    db = sqlite3.connect(run / "evalsuite.sqlite")
    rows = db.execute("SELECT question_id, turn, model_a, model_b, verdict, reason, p_first, raw, completion_tokens "
                      "FROM judgments ORDER BY question_id, turn, model_a, model_b").fetchall()
    db.close()
    return rows


def _tok(token: str, top: dict[str, float] | None = None) -> dict:
    return {"token": token, "logprob": -0.1, "top_logprobs": [{"token": k, "logprob": v} for k, v in (top or {}).items()]}


def test_verdict_position_is_right_after_the_last_prefix() -> None:
    reply = [_tok("I pick"), _tok(" [[", {}), _tok("A", {"A": -0.1}), _tok("]] no, "), _tok("[["),
             _tok("B", {"B": -0.5, "C": -1.5, "x": -0.1}), _tok("]]")]
    p = verdict_probs_from_logprobs(reply, ("A", "B", "C"), "[[")
    assert p is not None and p["A"] == 0.0 and p["B"] > p["C"] > 0 and abs(sum(p.values()) - 1) < 1e-9


@pytest.mark.parametrize("reply", [
    [_tok("A", {"A": 0.0}), _tok(" is better", {"is": 0.0})],               # a choice token, but no "[[" at all
    [_tok("Both"), _tok(" A", {" A": 0.0}), _tok(" and B", {" B": 0.0})],    # choices later on, still no "[["
    [_tok("Verdict: "), _tok("[[", {"A": 0.0})],                             # text ends with the prefix
    [_tok("[["), _tok("The", {"The": -0.1, "I": -0.2})],                     # no choice among the alternatives there
    [_tok("[[A]] first, then "), _tok("[["), _tok("maybe", {"maybe": 0.0})],  # the last "[[" counts, not the first
])
def test_no_verdict_position_means_no_probabilities(reply: list[dict]) -> None:
    assert verdict_probs_from_logprobs(reply, ("A", "B", "C"), "[[") is None


def test_prefix_inside_a_token_and_sentencepiece_spaces() -> None:
    # a tokenizer that merged "[[" with the letter: the alternatives at that token are "[[A", "[[B", ...
    merged = [_tok("Final: "), _tok("[[B", {"[[B": -0.2, "[[A": -1.9, "[[C]]": -2.5, "[": -3.0}), _tok("]]")]
    p = verdict_probs_from_logprobs(merged, ("A", "B", "C"), "[[")
    assert p is not None and p["B"] > p["A"] > p["C"] > 0
    # prefilled reply whose first token is SentencePiece-style "▁A" (decoded " A")
    p = verdict_probs_from_logprobs([_tok(" A", {" A": -0.1, " B": -2.4})], ("A", "B", "C"), "[[", prefilled=True)
    assert p is not None and round(p["A"], 3) == 0.909 and p["C"] == 0.0
    # prefilled, but the first token is no choice: no verdict, although " A" comes later
    assert verdict_probs_from_logprobs([_tok("Both", {"Both": 0.0}), _tok(" A", {" A": 0.0})], ("A", "B", "C"), "[[",
                                       prefilled=True) is None


@pytest.mark.parametrize("owned_by", ["evalsuite-fake", "vllm"])  # generate then read, or prefill "[[" (vLLM)
def test_verdict_less_replies_are_parse_errors_never_verdicts(tmp_path: Path, questions: Path, owned_by: str) -> None:
    faults = FaultPlan(rate_no_verdict=0.3, seed=3)
    with FakeOpenAIServer(strengths=STRENGTHS, faults=faults, owned_by=owned_by) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions, verdict_mode="logprob")
        res = run_cli("compare", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "200", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        no_verdict = srv.stats()["by_fault"]["no_verdict"]
    rows = _judgments(tmp_path / "run")
    errors = [r for r in rows if r[4] == "error"]
    assert len(rows) == 48 and 0 < no_verdict == len(errors) < len(rows)
    assert all(r[5] == "parse" and r[6] is None and "Both" in r[7] for r in errors)
    assert all(r[4] in ("A", "B", "tie") and r[6] is not None and "[[" in r[7] for r in rows if r[4] != "error")


def test_prefill_reads_the_one_token_after_the_prefix(tmp_path: Path, questions: Path) -> None:
    """On a vLLM server the verdict prefix is sent as the assistant turn and one token is generated: same
    probabilities as reading them after "[[" in generated text, one completion token per call."""
    runs = {}
    for owned_by in ("evalsuite-fake", "vllm"):
        with FakeOpenAIServer(strengths=STRENGTHS, owned_by=owned_by) as srv:
            cfg = write_config(tmp_path / f"{owned_by}.toml", srv.base_url, STRENGTHS, questions, verdict_mode="logprob")
            res = run_cli("compare", "sft", "dpo", "--config", str(cfg), "--run-dir", owned_by, "--quiet", "--resamples", "200",
                          cwd=tmp_path)
            assert res.returncode == 0, res.stderr
        runs[owned_by] = _judgments(tmp_path / owned_by)
    generated, prefilled = runs["evalsuite-fake"], runs["vllm"]
    assert len(prefilled) == len(generated) == 48
    assert all(r[8] == 1 and r[7].startswith("[[") and not r[7].endswith("]]") for r in prefilled)
    assert all(r[7].endswith("]]") for r in generated)
    assert [round(r[6], 9) for r in prefilled] == [round(r[6], 9) for r in generated]


def _vote(q: int, a: str, b: str, w: str, judge: str, turn: int = 1) -> dict:
    return {"question_id": q, "model_a": a, "model_b": b, "winner": w, "judge": judge, "turn": turn}


def test_agreement_cli_on_vote_files(tmp_path: Path) -> None:
    humans = [_vote(1, "x", "y", "model_a", "author_1"), _vote(1, "y", "x", "model_b", "author_2"),
              _vote(2, "x", "y", "tie", "author_1"), _vote(3, "x", "y", "model_b", "author_3", turn=2)]
    gpt = [_vote(1, "x", "y", "model_a", "gpt-4"), _vote(2, "y", "x", "tie (inconsistent)", "gpt-4"), _vote(3, "x", "y", "model_a", "gpt-4", turn=2)]
    (tmp_path / "h.jsonl").write_text("".join(json.dumps(v) + "\n" for v in humans))
    (tmp_path / "g.json").write_text(json.dumps(gpt))
    res = run_cli("agreement", "g.json", "h.jsonl", "--judges2", "author", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = {tuple(ln.split()[:2]): ln.split()[2:] for ln in res.stdout.splitlines()[1:-1]}
    # S1: q1 gpt picks x, both humans pick x (2/2); q2 tie vs tie (1/1); q3 turn 2 gpt x vs human y (0/1)
    assert lines[("1", "S1")][:2] == ["3", "3"] and lines[("2", "S1")][:2] == ["0", "1"]
    # S2 drops the tie comparison
    assert lines[("1", "S2")][:2] == ["2", "2"]
    assert "Cohen's kappa" in res.stdout


def test_agreement_on_a_run_directory(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        assert run_cli("compare", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "200", cwd=tmp_path).returncode == 0
    humans = [_vote(f"q{i:03d}", "dpo", "sft", "model_a", "human") for i in range(12)]
    (tmp_path / "h.jsonl").write_text("".join(json.dumps(v) + "\n" for v in humans))
    res = run_cli("agreement", "run", "h.jsonl", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "S1" in res.stdout and "S2" in res.stdout


def test_single_answer_grading_scores_each_answer_and_resumes(tmp_path: Path, questions: Path) -> None:
    strengths = {"sft": 0.0, "dpo": 1.0}  # the fake judge grades round(5 + 3 * strength): sft 5, dpo 8
    with FakeOpenAIServer(strengths=strengths) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, strengths, questions)
        args = ("grade", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "500")
        res = run_cli(*args, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert srv.stats()["by_model"]["judge"] == 2 * 12 * 2
        grades = {r["model"]: r for r in json.loads((tmp_path / "run" / "grades.json").read_text())["models"]}
        assert grades["dpo"]["score"] == 8.0 and grades["sft"]["score"] == 5.0
        assert grades["dpo"]["n"] == 24 and set(grades["dpo"]["by_turn"]) == {"1", "2"}
        srv.reset_stats()
        assert run_cli(*args, cwd=tmp_path).returncode == 0
        assert srv.stats()["total_requests"] == 0
        # grades live beside pairwise judgments without disturbing them
        res = run_cli("compare", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "200", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert json.loads((tmp_path / "run" / "results.json").read_text())["comparisons"][0]["n"] == 24
