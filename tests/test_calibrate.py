"""`evalsuite calibrate` through the CLI: a run judged by the fake server, human votes this test makes, the three win
rates per pair, the results.json / leaderboard section, and bad input (one line, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli, write_config, write_questions

from evalsuite.interop.votes import read_votes
from evalsuite.stats import Vote
from evalsuite.testing.fake_server import FakeOpenAIServer

pytest.importorskip("ppi_py")

STRENGTHS = {"sft": 0.0, "dpo": 1.0}
N_Q = 16


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished compare of dpo vs sft on 16 questions (32 items), judged by the fake server."""
    root = tmp_path_factory.mktemp("calibrate")
    questions = write_questions(root / "questions.jsonl", n=N_Q)
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = write_config(root / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        res = run_cli("compare", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "500", cwd=root)
        assert res.returncode == 0, res.stderr
    return root / "run"


def _human_votes(path: Path, judge_votes: list[Vote], n_questions: int, *, flip_every: int = 3) -> list[dict]:
    """Human votes on the first ``n_questions`` questions (both turns): the judge's verdict, except every
    ``flip_every``-th item, where the human prefers sft (a judge biased towards dpo); written in the MT-Bench
    human-judgment shape with sft shown first, so orientation is exercised."""
    rows = []
    keep = sorted({v.question_id for v in judge_votes})[:n_questions]
    for i, v in enumerate(sorted((v for v in judge_votes if v.question_id in keep), key=lambda v: (v.question_id, v.turn))):
        dpo_won = (v.winner == "model_a") == (v.model_a == "dpo") and not v.winner.startswith("tie")
        tie = v.winner.startswith("tie")
        if i % flip_every == 0:
            winner = "model_a"  # sft
        else:
            winner = "tie" if tie else ("model_b" if dpo_won else "model_a")
        rows.append({"question_id": v.question_id, "model_a": "sft", "model_b": "dpo", "winner": winner,
                     "judge": f"author_{i % 3}", "turn": v.turn})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


def _dpo_score(row: dict) -> float:
    return {"model_a": 0.0, "model_b": 1.0, "tie": 0.5}[row["winner"]]


def test_calibrate_a_run_prints_three_win_rates_and_stores_them(run: Path, tmp_path: Path) -> None:
    judge_votes = read_votes(run)
    human = _human_votes(tmp_path / "human.jsonl", judge_votes, n_questions=8)
    res = run_cli("calibrate", "--human", str(tmp_path / "human.jsonl"), "--run-dir", str(run), "--format", "json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [(r["model"], r["opponent"]) for r in rows] == [("dpo", "sft")]
    row = rows[0]
    assert set(row) >= {"model", "opponent", "judge", "human", "ppi"}
    for block in ("judge", "human", "ppi"):
        assert set(row[block]) == {"win_rate", "ci_low", "ci_high", "n", "n_questions"}
        assert 0.0 <= row[block]["ci_low"] <= row[block]["win_rate"] <= row[block]["ci_high"] <= 1.0
    # judge-only: the run's own strict win rate of dpo vs sft over all 32 items
    results = json.loads((run / "results.json").read_text())
    comp = next(c for c in results["comparisons"] if c["model"] == "dpo")
    assert row["judge"]["n"] == comp["n"] == 2 * N_Q
    assert row["judge"]["win_rate"] == pytest.approx(comp["win_rate"], abs=1e-6)
    # human-only: the mean of the votes this test wrote (one vote per item)
    assert row["human"]["n"] == len(human) == 16
    assert row["human"]["win_rate"] == pytest.approx(sum(map(_dpo_score, human)) / len(human))
    # the humans disagree with the judge in dpo's disfavour, so PPI pulls the judge's win rate down
    assert row["ppi"]["win_rate"] < row["judge"]["win_rate"]
    assert row["ppi"]["n"] == 2 * N_Q

    stored = json.loads((run / "results.json").read_text())["calibration"]
    assert stored == rows
    assert "Human-calibrated win rates" in (run / "leaderboard.md").read_text()

    table = run_cli("calibrate", "--human", str(tmp_path / "human.jsonl"), "--run-dir", str(run), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "dpo" in table.stdout and "PPI" in table.stdout


def test_calibrate_against_a_judge_vote_file(run: Path, tmp_path: Path) -> None:
    # The judge's votes exported as a plain vote file give the same rows as the run directory.
    judge_votes = read_votes(run)
    (tmp_path / "judge.jsonl").write_text("".join(
        json.dumps({"question_id": v.question_id, "model_a": v.model_a, "model_b": v.model_b, "winner": v.winner,
                    "judge": v.judge, "turn": v.turn}) + "\n" for v in judge_votes), encoding="utf-8")
    _human_votes(tmp_path / "human.jsonl", judge_votes, n_questions=6)
    a = run_cli("calibrate", "--human", "human.jsonl", "--judge", "judge.jsonl", "--format", "json", cwd=tmp_path)
    b = run_cli("calibrate", "--human", "human.jsonl", "--run-dir", str(run), "--format", "json", cwd=tmp_path)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    rows_a, rows_b = json.loads(a.stdout), json.loads(b.stdout)
    # without results.json the pair is oriented as the judge's first vote shows it; flip to compare
    ra, rb = rows_a[0], rows_b[0]
    if ra["model"] != rb["model"]:
        for block in ("judge", "human", "ppi"):
            lo, hi = ra[block]["ci_low"], ra[block]["ci_high"]
            ra[block] = {**ra[block], "win_rate": 1 - ra[block]["win_rate"], "ci_low": 1 - hi, "ci_high": 1 - lo}
    for block in ("judge", "human", "ppi"):
        assert ra[block]["win_rate"] == pytest.approx(rb[block]["win_rate"])
        assert ra[block]["ci_high"] - ra[block]["ci_low"] == pytest.approx(rb[block]["ci_high"] - rb[block]["ci_low"])


def _one_line_error(res, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_human_votes_are_one_line_errors(run: Path, tmp_path: Path) -> None:
    judge_votes = read_votes(run)
    rows = _human_votes(tmp_path / "ok.jsonl", judge_votes, n_questions=8)

    def write(name: str, data: list[dict]) -> str:
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
        return name

    missing = write("missing.jsonl", rows + [{**rows[0], "question_id": "q999"}])
    _one_line_error(run_cli("calibrate", "--human", missing, "--run-dir", str(run), cwd=tmp_path), "missing.jsonl", "q999")

    unknown = write("unknown.jsonl", rows + [{**rows[0], "model_b": "kto"}])
    _one_line_error(run_cli("calibrate", "--human", unknown, "--run-dir", str(run), cwd=tmp_path), "unknown.jsonl", "kto")

    few = write("few.jsonl", rows[:9])
    _one_line_error(run_cli("calibrate", "--human", few, "--run-dir", str(run), cwd=tmp_path), "few.jsonl", "9 labelled", "10")

    bad = write("bad.jsonl", [{**rows[0], "winner": "both"}] + rows[1:])
    _one_line_error(run_cli("calibrate", "--human", bad, "--run-dir", str(run), cwd=tmp_path), "bad.jsonl", "'both'")

    _one_line_error(run_cli("calibrate", "--human", "ok.jsonl", cwd=tmp_path), "--run-dir")
    _one_line_error(run_cli("calibrate", "--human", "nope.jsonl", "--run-dir", str(run), cwd=tmp_path), "nope.jsonl")
