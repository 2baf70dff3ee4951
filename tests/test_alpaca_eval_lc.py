"""AlpacaEval's length-controlled win rate (LC v1): the L1 GLM on tanh(std_delta_len) + instruction difficulty, its
cross-validated penalty and its regularisation to the baseline, pinned against scikit-learn's liblinear; and an
AlpacaEval import that says which LC it shows."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from evalsuite.interop.alpaca_eval import alpaca_eval_length_controlled, read_instruction_difficulty
from evalsuite.stats import GamedBaselineRows, alpaca_eval_lc_win_rate
from evalsuite.stats._length import ALPACA_EVAL_CS, _l1_logistic


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A candidate that wins mostly by writing longer answers, on instructions of varying difficulty."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0.0, 1.0, n)
    len_b = rng.integers(200, 1500, n).astype(float)
    len_c = len_b + rng.normal(300.0, 400.0, n).round()
    z = (len_b - len_c) / np.std(len_b - len_c, ddof=1)
    p = 1.0 / (1.0 + np.exp(-(-2.0 * np.tanh(z) + 0.8 * difficulty - 0.6)))
    scores = (rng.random(n) < p).astype(float)
    scores[rng.random(n) < 0.05] = 0.5  # a few draws
    return scores, len_c, len_b, difficulty


def _liblinear(x: np.ndarray, y: np.ndarray, w: np.ndarray, c: float) -> np.ndarray:
    """scikit-learn's liblinear L1 logistic fit with fractional targets written as two weighted rows (AlpacaEval's way)."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    model = sklearn.LogisticRegression(solver="liblinear", l1_ratio=1.0, C=c, fit_intercept=False, tol=1e-12,
                                       max_iter=100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(np.vstack([x, x]), np.r_[np.ones(len(y)), np.zeros(len(y))], sample_weight=np.r_[y * w, (1 - y) * w])
    return np.asarray(model.coef_[0])


@pytest.mark.parametrize("c", [1e-3, 0.05, 0.5, 10.0, 1e4])
def test_the_l1_fit_is_liblinears(c: float) -> None:
    scores, len_c, len_b, difficulty = _synthetic(300, seed=0)
    z = np.tanh((len_b - len_c) / np.std(len_b - len_c, ddof=1))
    x = np.column_stack([z, difficulty, np.ones_like(z)])
    w = np.where(np.arange(300) < 100, 0.1, 1.0)
    np.testing.assert_allclose(_l1_logistic(x, scores, w, c), _liblinear(x, scores, w, c), atol=1e-5)


def _reference_lc(scores: np.ndarray, len_c: np.ndarray, len_b: np.ndarray, difficulty: np.ndarray,
                  gamed: GamedBaselineRows | None) -> float:
    """AlpacaEval's procedure written with scikit-learn: gamed rows first at weight 0.1, the candidate's at 1; pick C
    from the grid by summed minus-mean weighted log loss over 5 folds (row i in fold i mod 5); refit; average the
    prediction at zero length difference over the candidate's instructions."""
    z = np.tanh((len_b - len_c) / np.std(len_b - len_c, ddof=1))
    x = np.column_stack([z, difficulty, np.ones_like(z)])
    y, w = scores, np.ones_like(scores)
    if gamed is not None:
        gx = np.column_stack([np.tanh(gamed.std_delta_len), gamed.difficulty, np.zeros_like(gamed.scores)])
        x, y, w = np.vstack([gx, x]), np.r_[gamed.scores, y], np.r_[np.full(gamed.scores.size, 0.1), w]
    fold = np.arange(y.size) % 5
    totals = []
    for c in ALPACA_EVAL_CS:
        total = 0.0
        for k in range(5):
            beta = _liblinear(x[fold != k], y[fold != k], w[fold != k], float(c))
            q = np.clip(1 / (1 + np.exp(-x[fold == k] @ beta)), 1e-15, 1 - 1e-15)
            yk = y[fold == k]
            total -= float(np.mean(-(yk * np.log(q) + (1 - yk) * np.log(1 - q)) * w[fold == k]))
        totals.append(total)
    beta = _liblinear(x, y, w, float(ALPACA_EVAL_CS[int(np.argmax(totals))]))
    return float(np.mean(1 / (1 + np.exp(-(beta[1] * difficulty + beta[2])))))


@pytest.mark.parametrize("with_gamed", [False, True])
def test_lc_v1_matches_alpaca_evals_procedure_written_with_sklearn(with_gamed: bool) -> None:
    scores, len_c, len_b, difficulty = _synthetic(200, seed=1)
    gamed = None
    if with_gamed:
        g_scores, g_len_c, g_len_b, _ = _synthetic(400, seed=2)
        g_sdl = (g_len_b - g_len_c) / np.std(g_len_b - g_len_c, ddof=1)
        gamed = GamedBaselineRows(scores=g_scores, std_delta_len=g_sdl, difficulty=np.r_[difficulty, difficulty])
    lc = alpaca_eval_lc_win_rate(scores, len_c, len_b, difficulty, gamed=gamed)
    assert lc.regularized_to_baseline is with_gamed
    assert lc.win_rate == pytest.approx(_reference_lc(scores, len_c, len_b, difficulty, gamed), abs=1e-5)


def test_a_win_by_length_is_discounted_and_length_neutral_play_is_not() -> None:
    scores, len_c, len_b, difficulty = _synthetic(805, seed=3)
    lc = alpaca_eval_lc_win_rate(scores, len_c, len_b, difficulty)
    assert lc.length_coef < 0  # baseline-minus-candidate length: the longer candidate answer wins more
    assert lc.win_rate < scores.mean() - 0.1
    # the same preferences with lengths that carry no signal: LC stays near the raw rate
    rng = np.random.default_rng(4)
    shuffled = rng.permutation(805)
    neutral = alpaca_eval_lc_win_rate(scores, len_c[shuffled], len_b[shuffled], difficulty)
    assert abs(neutral.win_rate - scores.mean()) < 0.03


def test_missing_preferences_stay_in_the_average_but_out_of_the_fit() -> None:
    scores, len_c, len_b, difficulty = _synthetic(200, seed=5)
    with_nan = scores.copy()
    with_nan[:10] = np.nan
    lc = alpaca_eval_lc_win_rate(with_nan, len_c, len_b, difficulty)
    refit = alpaca_eval_lc_win_rate(scores[10:], len_c[10:], len_b[10:], difficulty[10:])
    assert lc.win_rate != pytest.approx(refit.win_rate, abs=1e-9)  # the 10 instructions are still averaged over
    with pytest.raises(ValueError, match="same"):
        alpaca_eval_lc_win_rate(scores, len_b + 5, len_b, difficulty)


# ------------------------------------------------------------------------------------------------ the import


def _annotations(tmp_path: Path, n: int = 60) -> tuple[Path, list[dict]]:
    scores, len_c, len_b, _ = _synthetic(n, seed=6)
    recs = [{"instruction": f"Instruction {i}.", "output_1": "b" * int(len_b[i]), "output_2": "c" * int(len_c[i]),
             "generator_1": "base", "generator_2": "cand", "preference": {1.0: 2, 0.0: 1, 0.5: 0}[float(scores[i])]}
            for i in range(n)]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(recs), encoding="utf-8")
    return path, recs


def _difficulty_csv(tmp_path: Path, n: int, name: str = "instruction_difficulty.csv") -> Path:
    rng = np.random.default_rng(7)
    path = tmp_path / name
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["", "instruction_difficulty"])  # pandas' to_csv of a Series: an unnamed index column
        writer.writerows([i, f"{v:.6f}"] for i, v in enumerate(rng.normal(0, 1, n)))
    return path


def test_import_shows_evalsuites_lc_labelled_and_alpaca_evals_when_given_the_difficulty(tmp_path: Path) -> None:
    ann, recs = _annotations(tmp_path)
    diff = _difficulty_csv(tmp_path, len(recs))
    plain = run_cli("import-judgments", str(ann), "--format", "alpaca-eval", "--run-dir", "plain", "--resamples", "200",
                    cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    board = (tmp_path / "plain" / "leaderboard.md").read_text(encoding="utf-8")
    assert "LC (evalsuite)" in board and "--instruction-difficulty" in board
    assert "evalsuite's LC, not AlpacaEval's" in plain.stderr

    res = run_cli("import-judgments", str(ann), "--format", "alpaca-eval", "--run-dir", "ae", "--resamples", "200",
                  "--instruction-difficulty", str(diff), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (c,) = json.loads((tmp_path / "ae" / "results.json").read_text(encoding="utf-8"))["comparisons"]
    expected = alpaca_eval_lc_win_rate(
        np.array([{2: 1.0, 1: 0.0, 0: 0.5}[r["preference"]] for r in recs]),
        np.array([len(r["output_2"]) for r in recs]), np.array([len(r["output_1"]) for r in recs]),
        np.array(list(read_instruction_difficulty(diff).by_key.values())))
    assert c["alpaca_eval_lc_win_rate"] == pytest.approx(expected.win_rate, abs=1e-6)
    assert c["lc_win_rate"] is not None and c["lc_win_rate"] != c["alpaca_eval_lc_win_rate"]
    board = (tmp_path / "ae" / "leaderboard.md").read_text(encoding="utf-8")
    assert "LC (AlpacaEval v1)" in board and f"{100 * c['alpaca_eval_lc_win_rate']:.1f}%" in board
    assert "AlpacaEval's LC v1" in res.stderr
    csv_out = run_cli("report", "--run-dir", "ae", "--format", "csv", cwd=tmp_path).stdout
    assert "alpaca_eval_lc_win_rate" in csv_out.splitlines()[0]


def test_df_gamed_rows_regularise_the_fit(tmp_path: Path) -> None:
    ann, recs = _annotations(tmp_path)
    rng = np.random.default_rng(8)
    gamed = tmp_path / "df_gamed.csv"
    with open(gamed, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "index", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline"])
        difficulty = rng.normal(0, 1, len(recs))
        for model in ("base_verbose", "base_concise"):
            for i, d in enumerate(difficulty):
                writer.writerow([model, i, rng.choice([0.0, 0.5, 1.0]), f"{rng.normal():.4f}", f"{d:.6f}", False])
    read = read_instruction_difficulty(gamed)
    assert read.keyed_by == "index" and read.gamed is not None and read.gamed.scores.size == 2 * len(recs)
    lc = alpaca_eval_length_controlled(ann, "base", read)["cand"]
    assert lc.regularized_to_baseline
    unregularised = alpaca_eval_length_controlled(ann, "base", read_instruction_difficulty(gamed).__class__(
        source=read.source, by_key=read.by_key, keyed_by=read.keyed_by))["cand"]
    assert not unregularised.regularized_to_baseline and lc.win_rate != pytest.approx(unregularised.win_rate, abs=1e-6)


def test_bad_difficulty_files_are_one_line_and_exit_2(tmp_path: Path) -> None:
    ann, recs = _annotations(tmp_path)
    short = _difficulty_csv(tmp_path, len(recs) - 1, "short.csv")
    res = run_cli("import-judgments", str(ann), "--format", "alpaca-eval", "--run-dir", "x",
                  "--instruction-difficulty", str(short), cwd=tmp_path)
    assert res.returncode == 2 and "short.csv has no difficulty for index 59" in res.stderr
    assert "record 59" in res.stderr and "Traceback" not in res.stderr
    no_col = tmp_path / "nocol.csv"
    no_col.write_text("index,difficulty\n0,1.0\n", encoding="utf-8")
    res = run_cli("import-judgments", str(ann), "--format", "alpaca-eval", "--run-dir", "x",
                  "--instruction-difficulty", str(no_col), cwd=tmp_path)
    assert res.returncode == 2 and "no instruction_difficulty column" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("import-judgments", str(ann), "--format", "fastchat", "--baseline", "base", "--run-dir", "x",
                  "--instruction-difficulty", str(short), cwd=tmp_path)
    assert res.returncode == 2 and "AlpacaEval annotations only" in res.stderr
