"""`compare --sequential` and `gate --sequential` through the CLI against the fake server: a clear winner stops
early with fewer judge calls, the store keeps what was judged so a full compare judges only the rest, a re-run makes
no call, the leaderboard marks the sequential result, and `point` is refused (one line, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli, write_config, write_questions

from evalsuite.testing.fake_server import FakeOpenAIServer

STRENGTHS = {"sft": 0.0, "strong": 3.0, "even": 0.0, "weak": -3.0}
N_Q = 40
CALLS_PER_Q = 4  # two turns, both orders


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    write_questions(tmp_path / "questions.jsonl", n=N_Q)
    return tmp_path


def _seq(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())["sequential"]


def test_compare_sequential_stops_a_clear_winner_early_and_full_compare_judges_only_the_rest(project: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = write_config(project / "evalsuite.toml", srv.base_url, STRENGTHS, project / "questions.jsonl")
        args = ("compare", "sft", "strong", "even", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "500")
        res = run_cli(*args, "--sequential", "--wave", "8", cwd=project)
        assert res.returncode == 0, res.stderr
        seq = _seq(project / "run")
        by = {c["model"]: c for c in seq["candidates"]}
        assert seq["rule"] == "lower-bound" and seq["threshold"] == 0.5 and seq["wave"] == 8
        assert sorted(seq["order"]) == [f"q{i:03d}" for i in range(N_Q)]
        strong, even = by["strong"], by["even"]
        assert strong["decision"] == "pass" and strong["settled"] and strong["questions_used"] < N_Q
        assert strong["lower"] > 0.5 and strong["alpha"] == pytest.approx(0.025)  # Bonferroni over two candidates
        assert even["decision"] == "fail"
        for c in (strong, even):
            assert c["questions_used"] % 8 == 0
            assert c["calls_used"] == CALLS_PER_Q * c["questions_used"]
            assert c["calls_full"] == CALLS_PER_Q * N_Q
            assert c["calls_saved"] == pytest.approx(1 - c["questions_used"] / N_Q)
        # the judge was asked exactly the calls the decisions took
        judge_calls = srv.stats()["by_model"]["judge"]
        assert judge_calls == strong["calls_used"] + even["calls_used"]
        board = (project / "run" / "leaderboard.md").read_text()
        assert "Sequential judging" in board and f"{strong['questions_used']} / {N_Q}" in board
        assert "strong" in res.stdout

        # the same command again: every wave is cached, the decisions replay, no call is made
        srv.reset_stats()
        again = run_cli(*args, "--sequential", "--wave", "8", cwd=project)
        assert again.returncode == 0, again.stderr
        assert srv.stats()["total_requests"] == 0
        assert _seq(project / "run")["candidates"] == seq["candidates"]

        # a full compare on the same run judges only the questions the sequential run did not
        srv.reset_stats()
        full = run_cli(*args, cwd=project)
        assert full.returncode == 0, full.stderr
        assert srv.stats()["by_model"].get("judge", 0) == 2 * CALLS_PER_Q * N_Q - judge_calls
        results = json.loads((project / "run" / "results.json").read_text())
        # the full compare did not recompute the sequential decisions: it keeps them (issue 17)
        assert results["sequential"]["candidates"] == seq["candidates"]
        assert "Sequential judging" in (project / "run" / "leaderboard.md").read_text()
        assert all(c["n"] + c["errors"] == 2 * N_Q for c in results["comparisons"])


def test_gate_sequential_prints_decisions_with_calls_and_exits_by_the_rule(project: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = write_config(project / "evalsuite.toml", srv.base_url, STRENGTHS, project / "questions.jsonl")
        common = ("gate", "--baseline", "sft", "--config", str(cfg), "--sequential", "--quiet")
        ok = run_cli(*common, "--candidate", "strong", "--run-dir", "a", "--rule", "lower-bound", cwd=project)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        line = next(x for x in ok.stdout.splitlines() if x.startswith("PASS"))
        used = _seq(project / "a")["candidates"][0]["calls_used"]
        assert "strong" in line and f"{used} of {CALLS_PER_Q * N_Q} judge calls" in line
        assert srv.stats()["by_model"]["judge"] == used

        bad = run_cli(*common, "--candidate", "weak", "--run-dir", "b", "--rule", "not-worse", cwd=project)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert any(x.startswith("FAIL") and "weak" in x for x in bad.stdout.splitlines())
        assert _seq(project / "b")["candidates"][0]["questions_used"] < N_Q  # a clear regression stops early too


def test_point_rule_cannot_run_sequentially(project: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = write_config(project / "evalsuite.toml", srv.base_url, STRENGTHS, project / "questions.jsonl")
        for args in (("gate", "--baseline", "sft", "--candidate", "strong", "--rule", "point"),
                     ("compare", "sft", "strong", "--rule", "point")):
            res = run_cli(*args, "--sequential", "--config", str(cfg), "--run-dir", "run", "--quiet", cwd=project)
            assert res.returncode == 2, res.stdout + res.stderr
            lines = [x for x in res.stderr.splitlines() if x.strip()]
            assert len(lines) == 1 and "point" in lines[0] and "--rule" in lines[0], res.stderr
        assert srv.stats()["total_requests"] == 0  # refused before any model call
