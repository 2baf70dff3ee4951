"""No conclusion from a judge that fails its own health (issue 14, item 0).

The issue's case: a judge that always names slot A, with soft probabilities a hair off 0.51, read in ``average`` mode.
Its reconciled scores sit at 50.9% with almost no spread, so before the health verdict the leaderboard called the
candidate significantly better and ``gate --rule lower-bound`` passed it.
"""

from __future__ import annotations

import doctest
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from conftest import run_cli

import evalsuite.report.health
from evalsuite.judge.swap import build_matches
from evalsuite.records import Judgment, Match
from evalsuite.report.build import build_results, orient_to
from evalsuite.report.gate import GateOptions, run_gate
from evalsuite.report.health import HealthVerdict, judge_health_verdict
from evalsuite.report.markdown import render_markdown
from evalsuite.report.results import Results, StatsOptions
from evalsuite.report.tables import results_csv

N_QUESTIONS = 32


def _judgment(q: int, first: str, second: str, verdict: str, p_first: float) -> Judgment:
    return Judgment(judge="smollm2", template="pairwise", template_hash="h", question_id=f"q{q}", turn=1,
                    model_a=first, model_b=second, raw=f"[[{verdict}]]", verdict=verdict,  # type: ignore[arg-type]
                    p_first=p_first)


def _slot_judge(candidates: dict[str, float], seed: int = 0) -> list[Judgment]:
    """A judge that picks A in every order, P(A) about 0.51, moved by ``lean`` (the candidate's nudge) and noise."""
    rng = np.random.default_rng(seed)
    out = []
    for model, lean in candidates.items():
        for q in range(N_QUESTIONS):
            nudge = lean + rng.normal(0.0, 0.01)
            out.append(_judgment(q, model, "sft", "A", 0.51 + nudge))  # candidate shown first
            out.append(_judgment(q, "sft", model, "A", 0.51 - nudge))  # baseline shown first
    return out


def _consistent_judge(candidates: dict[str, float], seed: int = 0) -> list[Judgment]:
    """A judge that agrees with itself across orders (half A, half B) but whose soft verdicts barely leave 0.5."""
    rng = np.random.default_rng(seed)
    out = []
    for model, lean in candidates.items():
        for q in range(N_QUESTIONS):
            p = 0.5 + lean + rng.normal(0.0, 0.004)  # P(candidate better)
            v = "A" if p > 0.5 else "B"
            out.append(_judgment(q, model, "sft", v, p))
            out.append(_judgment(q, "sft", model, "B" if v == "A" else "A", 1 - p))
    return out


def _matches(judgments: list[Judgment], candidates: list[str]) -> list[Match]:
    return build_matches(judgments, {f"q{q}": "writing" for q in range(N_QUESTIONS)}, "average",
                         orient_to("sft", candidates))


def _results(judgments: list[Judgment], candidates: list[str], **stats: object) -> Results:
    options = replace(StatsOptions(n_resamples=2000, bt_rounds=20, seed=0), **stats)  # type: ignore[arg-type]
    return build_results(_matches(judgments, candidates), baseline="sft", candidates=candidates, lengths={},
                         options=options)


def test_thresholds_are_doctested() -> None:
    assert doctest.testmod(evalsuite.report.health).failed == 0


def test_the_issue_case_was_significant_before_the_health_verdict() -> None:
    # the same numbers as issue 14: a candidate "significantly better" at 50.9% from a judge that only reads position
    res = _results(_slot_judge({"hot": 0.009}), ["hot"], allow_unhealthy_judge=True, min_effect=0.0)
    hot = res.comparison("hot")
    assert hot is not None and hot.win_rate is not None and hot.ci_low is not None
    assert 0.505 < hot.win_rate < 0.512 and hot.ci_low > 0.5 and hot.significant
    assert hot.health.consistency == 0.0 and hot.health.first_position_win_share == 1.0
    assert (hot.health.n_swapped, hot.health.n_decisive) == (N_QUESTIONS, 2 * N_QUESTIONS)


def test_a_slot_judge_makes_every_comparison_unreliable() -> None:
    res = _results(_slot_judge({"hot": 0.009}), ["hot"])
    hot = res.comparison("hot")
    assert hot is not None and hot.unreliable and not hot.significant
    assert res.health_verdict.status == "unreliable"
    assert "position consistency 0.0% < 20%" in hot.health_verdict.reasons
    assert "first-position share 100.0% > 90%" in hot.health_verdict.reasons
    md = render_markdown(res)
    row = next(line for line in md.splitlines() if line.startswith("| ") and "`hot`" in line)
    assert "unreliable" in row and "▲" not in row
    assert "**Judge health.** The judge failed its health check" in md
    # the diagnosis blames the judge, never the training
    assert "judge failed its health check" in hot.diagnosis[0] and "beta" not in " ".join(hot.diagnosis)


def test_the_health_verdict_travels_in_results_json() -> None:
    res = _results(_slot_judge({"hot": 0.009}), ["hot"])
    data = json.loads(res.dumps())
    assert data["health_verdict"]["status"] == "unreliable"
    assert data["comparisons"][0]["health_verdict"]["status"] == "unreliable"
    assert Results.from_json(data) == res
    csv_header, csv_row = results_csv(res).splitlines()
    assert csv_header.endswith(",effect,mde,judge_health") and csv_row.endswith(",unreliable")
    # a file written before verdicts were stored gets the verdict its health figures give
    for c in data["comparisons"]:
        del c["health_verdict"]
    del data["health_verdict"]
    old = Results.from_json(data)
    assert old.health_verdict.status == "unreliable" and old.comparisons[0].unreliable


def test_gate_fails_closed_on_an_unhealthy_judge_and_passes_with_the_override(tmp_path: Path) -> None:
    res = _results(_slot_judge({"hot": 0.009}), ["hot"])
    for rule in ("lower-bound", "not-worse", "point"):
        [check] = run_gate(res, GateOptions("sft", ["hot"], 0.5, rule))
        assert not check.passed and "health check" in check.message
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(res.dumps())
    summary = tmp_path / "summary.md"
    args = ("gate", "--run-dir", str(run), "--baseline", "sft", "--candidate", "hot", "--min-win-rate", "0.5",
            "--rule", "lower-bound")
    failed = run_cli(*args, cwd=tmp_path, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert failed.returncode == 1, failed.stderr
    assert failed.stdout.startswith("FAIL hot: the judge failed its health check")
    assert "first-position share 100.0% > 90%" in failed.stdout and "FAILED" in summary.read_text()
    allowed = run_cli(*args, "--allow-unhealthy-judge", cwd=tmp_path)
    assert allowed.returncode == 0 and allowed.stdout.startswith("PASS hot"), allowed.stdout + allowed.stderr


def test_a_healthy_judge_whose_soft_verdicts_barely_move_earns_no_mark() -> None:
    res = _results(_consistent_judge({"dpo": 0.006}), ["dpo"])
    dpo = res.comparison("dpo")
    assert dpo is not None and dpo.health_verdict.status == "ok"
    assert dpo.p_holm is not None and dpo.p_holm < 0.05 and dpo.ci_low is not None and dpo.ci_low > 0.5
    assert dpo.effect is not None and abs(dpo.effect) < 0.01 and not dpo.significant
    # the effect the design supports: 32 questions, a decisive judge, 80% power -> about 25 points
    assert dpo.mde is not None and 0.24 < dpo.mde < 0.25
    assert "below the smallest relevant effect" in dpo.diagnosis[0]
    row = next(line for line in render_markdown(res).splitlines() if line.startswith("| ") and "`dpo`" in line)
    assert "| · |" in row and "+0.5 (MDE 24.8)" in row
    # a clear difference from the same healthy judge keeps its mark
    clear = _results(_consistent_judge({"dpo": 0.08}), ["dpo"]).comparison("dpo")
    assert clear is not None and clear.significant


def test_the_sweep_names_no_best_beta_from_an_unhealthy_judge_or_when_nothing_differs() -> None:
    unhealthy = _results(_slot_judge({"dpo-b0.1": 0.009, "dpo-b0.5": 0.0}), ["dpo-b0.1", "dpo-b0.5"])
    [sweep] = unhealthy.sweeps
    assert sweep.judge_unreliable and not sweep.has_best
    md = render_markdown(unhealthy)
    assert "**dpo** — no best beta: the judge failed its health check" in md and "★" not in md
    same = _results(_consistent_judge({"dpo-b0.1": 0.08, "dpo-b0.5": 0.08}), ["dpo-b0.1", "dpo-b0.5"])
    [sweep] = same.sweeps
    assert not sweep.judge_unreliable and not sweep.best_significant and not sweep.has_best
    md = render_markdown(same)
    assert "**dpo** — no best beta: the highest win rate" in md and "★" not in md


def test_verdict_thresholds() -> None:
    assert judge_health_verdict(0.19, 0.5).status == "unreliable"
    assert judge_health_verdict(0.20, 0.5).status == "weak"
    assert judge_health_verdict(0.45, 0.5).status == "ok"
    assert judge_health_verdict(0.9, 0.91, n_decisive=10).status == "unreliable"
    assert judge_health_verdict(0.9, 0.91, n_decisive=9).status == "ok"
    assert judge_health_verdict(0.9, 0.09).status == "unreliable"
    assert judge_health_verdict(0.1, 0.5, n_swapped=10).status == "unreliable"
    assert judge_health_verdict(0.1, 0.5, n_swapped=9).status == "ok"  # too few matches to read consistency
    # a small run of a judge that agreed with itself in none of its four swapped matches is not called unreliable
    small = _results(_slot_judge({"hot": 0.009})[:8], ["hot"]).comparison("hot")
    assert small is not None and small.health.n_swapped == 4 and small.health_verdict.status == "unknown"
    assert HealthVerdict.from_json(HealthVerdict("weak", ("x",)).to_json()) == HealthVerdict("weak", ("x",))


def test_compare_over_an_api_marks_a_slot_judge_unreliable_unless_told_otherwise(tmp_path: Path) -> None:
    from conftest import write_config, write_questions

    from evalsuite.testing.fake_server import FakeOpenAIServer

    strengths = {"sft": 0.0, "dpo": 2.0}
    write_questions(tmp_path / "questions.jsonl", n=12)
    # position bias 8 on the logit: the judge names slot A whatever the answers (P(A) > 0.99 even against dpo)
    with FakeOpenAIServer(strengths=strengths, position_bias=8.0) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, strengths, tmp_path / "questions.jsonl")
        args = ("compare", "sft", "dpo", "--config", str(cfg), "--quiet", "--resamples", "500", "--no-viewer")
        plain = run_cli(*args, "--run-dir", "plain", cwd=tmp_path)
        allowed = run_cli(*args, "--run-dir", "allowed", "--allow-unhealthy-judge", cwd=tmp_path)
    assert plain.returncode == 0 and allowed.returncode == 0, plain.stderr + allowed.stderr
    assert "the judge failed its health check" in plain.stdout
    res = json.loads((tmp_path / "plain" / "results.json").read_text())
    assert res["health_verdict"]["status"] == "unreliable" and not res["stats"]["allow_unhealthy_judge"]
    def dpo_row(run: str) -> str:
        board = (tmp_path / run / "leaderboard.md").read_text()
        return next(line for line in board.splitlines() if line.startswith("| ") and "| `dpo` |" in line)

    assert "| unreliable |" in dpo_row("plain")
    res = json.loads((tmp_path / "allowed" / "results.json").read_text())
    assert res["stats"]["allow_unhealthy_judge"] and res["health_verdict"]["status"] == "unreliable"
    assert "| unreliable |" not in dpo_row("allowed")
    assert "shown anyway" in (tmp_path / "allowed" / "leaderboard.md").read_text()
