"""The CI gate: rules, alpha, --against, exit codes, GitHub step summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from evalsuite.errors import InputError
from evalsuite.records import Match
from evalsuite.report.gate import GateOptions, run_gate
from evalsuite.report.results import Results, StatsOptions, load_results
from evalsuite.report.build import build_results

DATA = Path(__file__).parent / "data" / "results"


def _matches(scores_by_model: dict[str, np.ndarray]) -> list[Match]:
    out = []
    for model, scores in scores_by_model.items():
        for i, s in enumerate(scores):
            out.append(Match(f"q{i // 2}", "writing", 1 + i % 2, model, "sft", float(s), False, False))
    return out


def _results(scores_by_model: dict[str, np.ndarray], seed: int = 0, n_resamples: int = 2000) -> Results:
    return build_results(_matches(scores_by_model), baseline="sft", candidates=list(scores_by_model), lengths={},
                         options=StatsOptions(n_resamples=n_resamples, bt_rounds=50, seed=seed))


STRONG = np.array([1.0] * 120 + [0.5] * 20 + [0.0] * 20)  # 80 questions x 2 turns, win rate 0.81
EVEN = np.array([1.0, 1.0, 0.0, 0.0] * 40)  # win rate 0.5 (whole questions won or lost), wide CI
WEAK = 1.0 - STRONG


@pytest.mark.parametrize(
    ("scores", "rule", "threshold", "expected"),
    [
        (STRONG, "lower-bound", 0.5, True),
        (EVEN, "lower-bound", 0.5, False),  # no evidence of improvement
        (EVEN, "not-worse", 0.5, True),  # no evidence of regression either
        (WEAK, "not-worse", 0.5, False),  # evidence of regression
        (EVEN, "point", 0.5, True),
        (STRONG, "point", 0.9, False),
    ],
)
def test_rules(scores: np.ndarray, rule: str, threshold: float, expected: bool) -> None:
    checks = run_gate(_results({"dpo": scores}), GateOptions("sft", ["dpo"], threshold, rule))
    assert [c.passed for c in checks] == [expected]
    assert checks[0].message.startswith("dpo: win rate")


def test_variant_name_checks_every_beta_and_unknown_names_are_input_errors() -> None:
    res = _results({"dpo-b0.1": STRONG, "dpo-b0.5": EVEN})
    checks = run_gate(res, GateOptions("sft", ["dpo"], 0.5, "lower-bound"))
    assert [(c.model, c.passed) for c in checks] == [("dpo-b0.1", True), ("dpo-b0.5", False)]
    with pytest.raises(InputError, match="not in this run"):
        run_gate(res, GateOptions("sft", ["kto"]))
    with pytest.raises(InputError, match="baseline"):
        run_gate(res, GateOptions("base", ["dpo"]))


def test_other_alpha_recomputes_a_wider_or_narrower_interval() -> None:
    res = _results({"dpo": EVEN})
    (c95,) = run_gate(res, GateOptions("sft", ["dpo"], 0.5, "point", alpha=0.05))
    (c80,) = run_gate(res, GateOptions("sft", ["dpo"], 0.5, "point", alpha=0.20))
    assert c80.ci_low > c95.ci_low and c80.ci_high < c95.ci_high


def test_against_flags_a_significant_drop_on_the_same_items() -> None:
    old = _results({"dpo": STRONG})
    same = run_gate(_results({"dpo": STRONG}), GateOptions("sft", ["dpo"], 0.5, "not-worse"), old)
    assert [c.passed for c in same] == [True, True]
    dropped = run_gate(_results({"dpo": EVEN}), GateOptions("sft", ["dpo"], 0.5, "not-worse"), old)
    assert [c.passed for c in dropped] == [True, False]
    assert "significant drop" in dropped[1].message


def test_fair_coin_judge_passes_the_lower_bound_gate_about_2_5_percent_of_the_time() -> None:
    passes = 0
    n_seeds = 300
    for seed in range(n_seeds):
        rng = np.random.default_rng(10_000 + seed)
        scores = rng.choice([0.0, 0.5, 1.0], size=160, p=[0.45, 0.1, 0.45])
        res = _results({"dpo": scores}, seed=seed, n_resamples=1000)
        passes += run_gate(res, GateOptions("sft", ["dpo"], 0.5, "lower-bound"))[0].passed
    assert 0.003 <= passes / n_seeds <= 0.06, passes


def test_cli_exit_codes_and_step_summary(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(_results({"dpo": STRONG, "simpo": WEAK}).dumps())
    summary = tmp_path / "summary.md"
    ok = run_cli("gate", "--run-dir", str(run), "--baseline", "sft", "--candidate", "dpo", cwd=tmp_path, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert ok.returncode == 0 and ok.stdout.startswith("PASS dpo")
    assert "evalsuite gate: passed" in summary.read_text()
    bad = run_cli("gate", "--run-dir", str(run), "--baseline", "sft", "--candidate", "dpo", "--candidate", "simpo", cwd=tmp_path)
    assert bad.returncode == 1 and "FAIL simpo" in bad.stdout
    missing = run_cli("gate", "--run-dir", str(tmp_path / "nope"), "--baseline", "sft", "--candidate", "dpo", cwd=tmp_path)
    assert missing.returncode == 2 and "no results file" in missing.stderr
    (tmp_path / "old.json").write_text(_results({"dpo": STRONG}).dumps())
    against = run_cli("gate", "--run-dir", str(run), "--baseline", "sft", "--candidate", "dpo", "--against", str(tmp_path / "old.json"), cwd=tmp_path)
    assert against.returncode == 0 and "no significant drop" in against.stdout


def test_report_formats(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(_results({"dpo-b0.1": STRONG, "dpo-b0.5": EVEN}).dumps())
    md = run_cli("report", "--run-dir", str(run), cwd=tmp_path)
    assert md.returncode == 0
    assert "| Rank | Model | Win rate" in md.stdout and "## Beta sweeps" in md.stdout and "best beta 0.1" in md.stdout
    csv = run_cli("report", "--run-dir", str(run), "--format", "csv", cwd=tmp_path)
    assert csv.stdout.splitlines()[0].startswith("model,baseline,n,wins") and len(csv.stdout.splitlines()) == 3
    js = run_cli("report", "--run-dir", str(run), "--format", "json", "--plots", str(tmp_path / "plots"), cwd=tmp_path)
    assert json.loads(js.stdout)["baseline"] == "sft"
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"forest.png", "beta_sweep.png", "categories.png"}


def test_diagnosis_ties_the_outcome_to_training_causes() -> None:
    from evalsuite.report.build import distinct_bigrams

    assert distinct_bigrams(["a b c", "a b c"]) == 0.5 and distinct_bigrams([""]) is None
    res = build_results(_matches({"dpo": WEAK, "simpo": EVEN}), baseline="sft", candidates=["dpo", "simpo"], lengths={},
                        options=StatsOptions(n_resamples=1000, bt_rounds=20), diversity={"sft": 0.9, "dpo": 0.85, "simpo": 0.5})
    diag = {c.model: " ".join(c.diagnosis) for c in res.comparisons}
    assert "quality dropped" in diag["dpo"] and "diverse" not in diag["dpo"]
    assert "no measurable effect" in diag["simpo"] and "too many epochs" in diag["simpo"]


def test_against_reads_results_written_by_earlier_releases(tmp_path: Path) -> None:
    """``gate --against`` on files written before typed results: the current release's compare and an older one
    (no diversity/diagnosis, p-values of 0.0). Same models, same items: no significant drop."""
    new = load_results(DATA / "compare_ae10c14.json")
    for old_file in ("compare_ae10c14.json", "compare_1d5c495.json"):
        checks = run_gate(new, GateOptions("sft", ["dpo"], 0.5, "lower-bound"), load_results(DATA / old_file))
        assert [c.model for c in checks] == ["dpo-b0.1", "dpo-b0.1", "dpo-b0.5", "dpo-b0.5"]
        assert "no significant drop" in checks[1].message and "on 24 shared items" in checks[1].message
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text((DATA / "compare_ae10c14.json").read_text())
    res = run_cli("gate", "--run-dir", str(run), "--baseline", "sft", "--candidate", "dpo-b0.1", "--against",
                  str(DATA / "compare_1d5c495.json"), "--alpha", "0.1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("PASS dpo-b0.1: win rate 75.0% vs sft, 90% CI") and "no significant drop" in res.stdout
