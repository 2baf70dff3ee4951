"""`evalsuite compare` end to end over real HTTP on loopback, through the real `openai` client and the fake server."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from conftest import run_cli, write_config

from evalsuite.testing.fake_server import FakeOpenAIServer, FaultPlan

STRENGTHS = {"sft": 0.0, "dpo": 1.5, "simpo": -1.0}
N_Q = 12
GEN_CALLS = 3 * N_Q * 2  # three models, two turns each
JUDGE_CALLS = 2 * N_Q * 2 * 2  # two candidates, two turns, two orders


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def _core(results: dict) -> list[tuple]:
    keys = ("model", "n", "wins", "ties", "losses", "errors", "inconsistent", "win_rate", "ci_low", "ci_high", "p_holm")
    return [tuple(c[k] for k in keys) for c in results["comparisons"]]


def test_compare_generates_judges_both_orders_and_writes_results(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        res = run_cli("compare", "sft", "dpo", "simpo", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "2000", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        stats = srv.stats()
        assert stats["by_model"] == {"sft": N_Q * 2, "dpo": N_Q * 2, "simpo": N_Q * 2, "judge": JUDGE_CALLS}
        results = _results(tmp_path / "run")
        by_model = {c["model"]: c for c in results["comparisons"]}
        for c in by_model.values():
            assert c["baseline"] == "sft"
            assert c["n"] + c["errors"] == N_Q * 2
            assert c["wins"] + c["ties"] + c["losses"] == c["n"]
            assert c["win_rate"] == round((c["wins"] + 0.5 * c["ties"]) / c["n"], 6)
            assert c["ci_low"] <= c["win_rate"] <= c["ci_high"]
        # the fake judge prefers the stronger model: dpo beats sft, simpo loses
        assert by_model["dpo"]["win_rate"] > 0.5 > by_model["simpo"]["win_rate"]
        assert "dpo" in (tmp_path / "run" / "leaderboard.md").read_text()
        assert "win rate" in res.stdout

        # a finished run re-run makes zero model calls and gives the same numbers
        srv.reset_stats()
        again = run_cli("compare", "sft", "dpo", "simpo", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "2000", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert srv.stats()["total_requests"] == 0
        assert _core(_results(tmp_path / "run")) == _core(results)


def test_turn_two_is_asked_with_turn_one_in_context(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        assert run_cli("generate", "sft", "--config", str(cfg), "--run-dir", "run", "--quiet", cwd=tmp_path).returncode == 0
    db = sqlite3.connect(tmp_path / "run" / "evalsuite.sqlite")
    rows = db.execute("SELECT question_id, turn, text, settings FROM answer_turns WHERE model='sft' ORDER BY question_id, turn").fetchall()
    assert len(rows) == N_Q * 2
    settings = {(r[0], r[1]): json.loads(r[3]) for r in rows}
    # MT-Bench temperatures: writing 0.7, math 0.0, stem 0.1
    assert settings[("q000", 1)]["temperature"] == 0.7
    assert settings[("q001", 1)]["temperature"] == 0.0
    assert settings[("q002", 1)]["temperature"] == 0.1
    texts = {(r[0], r[1]): r[2] for r in rows}
    assert texts[("q000", 1)] != texts[("q000", 2)]


def test_faults_change_nothing_but_time(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = write_config(tmp_path / "clean.toml", srv.base_url, STRENGTHS, questions)
        assert run_cli("compare", "sft", "dpo", "simpo", "--config", str(cfg), "--run-dir", "clean", "--quiet", "--resamples", "2000", cwd=tmp_path).returncode == 0
    faults = FaultPlan(rate_429=0.15, rate_500=0.1, rate_slow=0.05, slow_seconds=3.0, retry_after=0.01)
    with FakeOpenAIServer(strengths=STRENGTHS, faults=faults) as srv:
        cfg = write_config(tmp_path / "faulty.toml", srv.base_url, STRENGTHS, questions, timeout=1.0, max_retries=4)
        res = run_cli("compare", "sft", "dpo", "simpo", "--config", str(cfg), "--run-dir", "faulty", "--quiet", "--resamples", "2000", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        by_fault = srv.stats()["by_fault"]
        assert by_fault.get("429", 0) > 0 and by_fault.get("500", 0) > 0 and by_fault.get("slow", 0) > 0, by_fault
    assert _core(_results(tmp_path / "faulty")) == _core(_results(tmp_path / "clean"))


def test_api_errors_after_retries_are_errors_and_the_run_goes_on(tmp_path: Path, questions: Path) -> None:
    faults = FaultPlan(rate_500=0.2, faulty_attempts=10)
    with FakeOpenAIServer(strengths=STRENGTHS, faults=faults) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions, max_retries=0, model_opts={"max_retries": 0})
        res = run_cli("compare", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "500", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    results = _results(tmp_path / "run")
    assert sum(g["errors"] for g in results["generation"]) > 0  # failed generation calls are reported, not stored
    c = results["comparisons"][0]
    assert c["errors"] > 0
    db = sqlite3.connect(tmp_path / "run" / "evalsuite.sqlite")
    reasons = {r[0] for r in db.execute("SELECT reason FROM judgments WHERE verdict='error'")}
    assert reasons == {"api"}


def test_verdictless_replies_are_parse_errors_and_retry_errors_reasks_only_them(tmp_path: Path, questions: Path) -> None:
    faults = FaultPlan(rate_no_verdict=0.2)
    with FakeOpenAIServer(strengths=STRENGTHS, faults=faults) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        args = ("compare", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "500")
        assert run_cli(*args, cwd=tmp_path).returncode == 0
        db = sqlite3.connect(tmp_path / "run" / "evalsuite.sqlite")
        n_err = db.execute("SELECT COUNT(*) FROM judgments WHERE verdict='error' AND reason='parse'").fetchone()[0]
        assert n_err > 0
        first = _results(tmp_path / "run")["comparisons"][0]
        assert first["errors"] > 0  # never silently a tie
        srv.reset_stats()
        assert run_cli(*args, cwd=tmp_path).returncode == 0
        assert srv.stats()["total_requests"] == 0  # errors are kept, not re-asked, without the flag
        assert run_cli(*args, "--retry-errors", cwd=tmp_path).returncode == 0
        assert srv.stats()["by_model"] == {"judge": n_err}
    assert db.execute("SELECT COUNT(*) FROM judgments WHERE verdict='error'").fetchone()[0] == 0
    assert _results(tmp_path / "run")["comparisons"][0]["errors"] == 0


def test_pairs_all_judges_candidates_head_to_head_and_fits_bradley_terry(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        res = run_cli("compare", "sft", "dpo", "simpo", "--pairs", "all", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "500", "--bt-rounds", "200", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert srv.stats()["by_model"]["judge"] == 3 * N_Q * 2 * 2
    results = _results(tmp_path / "run")
    pair = results["variant_pairs"][0]
    assert (pair["model_1"], pair["model_2"]) == ("dpo", "simpo")
    assert pair["direct"]["n"] > 0 and pair["direct"]["win_rate"] > 0.5
    ratings = {r["model"]: r for r in results["ratings"]}
    assert ratings["sft"]["rating"] == 1000.0
    assert ratings["dpo"]["rating"] > 1000.0 > ratings["simpo"]["rating"]
