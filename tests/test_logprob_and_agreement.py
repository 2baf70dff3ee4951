"""Logprob verdicts over an OpenAI-compatible judge, and `evalsuite agreement` on vote files and runs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from conftest import run_cli, write_config

from evalsuite.testing.fake_server import FakeOpenAIServer

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
