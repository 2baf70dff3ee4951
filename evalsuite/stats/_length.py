"""Length-controlled win rates: evalsuite's own, and AlpacaEval's LC v1 for imports that bring its data.

Judges favour longer answers. Both figures are reported beside the raw win rate, never instead of it.

``length_controlled_win_rate`` (DESIGN.md, "Length control"; evalsuite's LC, what ``compare`` reports): we fit
P(candidate wins) = sigmoid(b0 + b1 * tanh((len_c - len_b) / sd)) on the fractional match scores and report
sigmoid(b0), the win rate the model predicts when both answers have the same length. It needs nothing but the
matches and the answers' lengths.

``alpaca_eval_lc_win_rate`` (AlpacaEval's "length_controlled_v1", Dubois et al. 2024, "Length-Controlled AlpacaEval:
A Simple Way to Debias Automatic Evaluators", arXiv:2404.04475, as their ``metrics/glm_winrate.py`` computes it)
adds a per-instruction difficulty, a number per instruction that AlpacaEval estimated across many models and
publishes as a file: P(candidate wins on instruction i) = sigmoid(t * tanh(z_i) + d * difficulty_i + m), with z_i the
baseline-minus-candidate length difference divided by its standard deviation, all three coefficients L1-penalised
(no free intercept: m is the coefficient of a column of ones), the penalty chosen by 5-fold cross-validation, and,
when AlpacaEval's annotations of the length-gamed baselines are given, those rows added at weight lambda / 2 = 0.1
each with a 0 in the ones column ("regularise to baseline"), which pulls t and d towards the baseline's. The LC win
rate is the mean over instructions of sigmoid(d * difficulty_i + m): the length term at zero difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

# Ridge on (b0, b1) per unit of weight: keeps the fit finite when length separates wins from losses exactly.
_RIDGE = 1e-6
_MAX_ITER = 200


def length_controlled_win_rate(scores: np.ndarray, len_candidate: np.ndarray, len_baseline: np.ndarray) -> float:
    """The win rate (in [0, 1]) predicted at zero length difference.

    ``scores`` are the candidate's match scores in [0, 1]; the lengths (any unit: tokens, characters) are per match.
    The length difference is standardised by its sample standard deviation (ddof=1) and squashed by tanh, so a few
    extreme lengths cannot dominate the fit. Degenerate inputs fall back to the raw win rate: when every score is the
    same (the fit has nothing to explain) or every length difference is the same (the length term carries no
    information and is not identifiable from the intercept).
    """
    s = np.asarray(scores, dtype=np.float64)
    len_c = np.asarray(len_candidate, dtype=np.float64)
    len_b = np.asarray(len_baseline, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError("scores must be a non-empty 1-D array")
    if len_c.shape != s.shape or len_b.shape != s.shape:
        raise ValueError("len_candidate and len_baseline must give one length per match")
    if not np.all(np.isfinite(s)) or s.min() < 0.0 or s.max() > 1.0:
        raise ValueError("scores must be finite scores in [0, 1] (drop error matches first)")
    if not (np.all(np.isfinite(len_c)) and np.all(np.isfinite(len_b))):
        raise ValueError("lengths must be finite")

    raw = float(s.mean())
    delta = len_c - len_b
    sd = float(delta.std(ddof=1)) if s.size > 1 else 0.0
    # Rounding can leave a constant difference with a tiny non-zero sd; that is no length signal either.
    if s.min() == s.max() or not sd > 1e-12 * max(1.0, float(np.abs(delta).max())):
        return raw
    x = np.tanh(delta / sd)
    b0, _ = _fit_logistic(s, x, start_b0=float(np.log((raw + 1e-3) / (1.0 - raw + 1e-3))))
    return float(expit(b0))


def _fit_logistic(y: np.ndarray, x: np.ndarray, *, start_b0: float) -> tuple[float, float]:
    """Maximum-likelihood (b0, b1) of a one-covariate logistic model with fractional outcomes.

    Damped Newton on the two parameters with closed-form 2x2 steps: a few microseconds per iteration, no optimizer
    import (scipy.optimize costs ~1 s of CLI start-up) and no threaded BLAS call (those stall on a busy machine).
    """
    n = y.size
    beta = np.array([start_b0, 0.0])

    def objective(b: np.ndarray) -> float:
        z = b[0] + b[1] * x
        # -[y log sigmoid(z) + (1 - y) log sigmoid(-z)] = softplus(z) - y z, overflow-free.
        return float(np.sum(np.logaddexp(0.0, z) - y * z)) / n + 0.5 * _RIDGE * float(b[0] ** 2 + b[1] ** 2)

    value = objective(beta)
    for _ in range(_MAX_ITER):
        p = expit(beta[0] + beta[1] * x)
        r, w = p - y, p * (1.0 - p)
        g0, g1 = r.sum() / n + _RIDGE * beta[0], float(r @ x) / n + _RIDGE * beta[1]
        h00, h01, h11 = w.sum() / n + _RIDGE, float(w @ x) / n, float(w @ (x * x)) / n + _RIDGE
        det = h00 * h11 - h01 * h01
        step = np.array([h11 * g0 - h01 * g1, h00 * g1 - h01 * g0]) / det
        t = 1.0
        while True:  # backtracking keeps the separated case (coefficients heading to infinity) monotone
            candidate = beta - t * step
            new_value = objective(candidate)
            if new_value <= value - 1e-4 * t * float(step @ [g0, g1]) + 1e-15 or t < 1e-10:
                break
            t *= 0.5
        beta, value = candidate, new_value
        if np.max(np.abs(t * step)) < 1e-10:
            break
    return float(beta[0]), float(beta[1])


# ---------------------------------------------------------------------------------------------------------------------
# AlpacaEval's LC v1

# The facts of AlpacaEval's "length_controlled_v1" GLM: the weight of the gamed-baseline rows (lambda, halved because
# there are two gamed baselines), the folds and the grid of inverse penalties its cross-validation picks from
# (scikit-learn's LogisticRegressionCV default, 10 values from 1e-4 to 1e4).
ALPACA_EVAL_REGULARIZE_TO_BASELINE_LAMBDA = 0.2
ALPACA_EVAL_CV_SPLITS = 5
ALPACA_EVAL_CS = np.logspace(-4, 4, 10)
_LOG_CLIP = 1e-15  # the probability clip of the cross-validation log loss


@dataclass(frozen=True)
class GamedBaselineRows:
    """AlpacaEval's annotations of its length-gamed baselines (``df_gamed.csv``): one row per annotation.

    ``scores`` are the gamed model's preferences in [0, 1] (NaN: none), ``std_delta_len`` its length difference as the
    file gives it (already standardised), ``difficulty`` the instruction's difficulty.
    """

    scores: np.ndarray
    std_delta_len: np.ndarray
    difficulty: np.ndarray


@dataclass(frozen=True)
class AlpacaEvalLC:
    """AlpacaEval's LC v1 for one candidate: the win rate in [0, 1] and the fitted GLM behind it."""

    win_rate: float
    length_coef: float  # on tanh(std_delta_len), baseline minus candidate: negative when the longer answer wins
    difficulty_coef: float
    model_coef: float  # the candidate's own term (the coefficient of the column of ones)
    inverse_penalty: float  # C, picked by cross-validation
    regularized_to_baseline: bool  # whether the gamed-baseline rows were in the fit


def alpaca_eval_lc_win_rate(
    scores: np.ndarray,
    len_candidate: np.ndarray,
    len_baseline: np.ndarray,
    difficulty: np.ndarray,
    *,
    gamed: GamedBaselineRows | None = None,
    regularize_to_baseline_lambda: float = ALPACA_EVAL_REGULARIZE_TO_BASELINE_LAMBDA,
    n_splits: int = ALPACA_EVAL_CV_SPLITS,
) -> AlpacaEvalLC:
    """AlpacaEval's length-controlled win rate (LC v1) of one candidate against its baseline.

    One entry per instruction: ``scores`` the candidate's preference in [0, 1] (draw 0.5; NaN where the annotator gave
    none: left out of the fit, kept in the average, as AlpacaEval does), the answers' lengths in characters, and the
    instruction's difficulty from AlpacaEval's file. ``gamed`` adds the gamed-baseline rows (without them the fit is
    AlpacaEval's GLM with ``regularize_to_baseline_lambda=None``). The length difference is standardised with its
    sample standard deviation (ddof=1) over all instructions.
    """
    s = np.asarray(scores, dtype=np.float64)
    len_c = np.asarray(len_candidate, dtype=np.float64)
    len_b = np.asarray(len_baseline, dtype=np.float64)
    diff = np.asarray(difficulty, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError("scores must be a non-empty 1-D array")
    if len_c.shape != s.shape or len_b.shape != s.shape or diff.shape != s.shape:
        raise ValueError("lengths and difficulties must give one value per instruction")
    scored = ~np.isnan(s)
    if np.any((s[scored] < 0.0) | (s[scored] > 1.0)):
        raise ValueError("scores must lie in [0, 1] (NaN where there is no preference)")
    if not (np.all(np.isfinite(len_c)) and np.all(np.isfinite(len_b)) and np.all(np.isfinite(diff))):
        raise ValueError("lengths and difficulties must be finite")
    delta = len_b - len_c  # AlpacaEval's sign: output_1 (the baseline) minus output_2 (the candidate)
    sd = float(delta.std(ddof=1)) if s.size > 1 else 0.0
    if not sd > 0.0:
        raise ValueError("every length difference is the same: the length term cannot be fitted")

    features = [np.column_stack([np.tanh(delta / sd), diff, np.ones_like(diff)])[scored]]
    targets, weights = [s[scored]], [np.ones(int(scored.sum()))]
    if gamed is not None:
        g_scores = np.asarray(gamed.scores, dtype=np.float64)
        keep = ~np.isnan(g_scores)
        g_x = np.column_stack([np.tanh(np.asarray(gamed.std_delta_len, dtype=np.float64)),
                               np.asarray(gamed.difficulty, dtype=np.float64), np.zeros(g_scores.size)])
        if not np.all(np.isfinite(g_x[keep])) or np.any((g_scores[keep] < 0.0) | (g_scores[keep] > 1.0)):
            raise ValueError("gamed-baseline rows must have finite features and scores in [0, 1]")
        # before the candidate's rows, as AlpacaEval concatenates them (it matters only for the folds)
        features.insert(0, g_x[keep])
        targets.insert(0, g_scores[keep])
        weights.insert(0, np.full(int(keep.sum()), regularize_to_baseline_lambda / 2.0))
    x, y, w = np.concatenate(features), np.concatenate(targets), np.concatenate(weights)
    if y.size < n_splits:
        raise ValueError(f"{y.size} scored rows: the {n_splits}-fold cross-validation needs at least {n_splits}")

    c_best = _cross_validated_inverse_penalty(x, y, w, n_splits)
    beta = _l1_logistic(x, y, w, c_best)
    win_rate = float(np.mean(expit(beta[1] * diff + beta[2])))
    return AlpacaEvalLC(win_rate=win_rate, length_coef=float(beta[0]), difficulty_coef=float(beta[1]),
                        model_coef=float(beta[2]), inverse_penalty=float(c_best), regularized_to_baseline=gamed is not None)


def _cross_validated_inverse_penalty(x: np.ndarray, y: np.ndarray, w: np.ndarray, n_splits: int) -> float:
    """The C of ``ALPACA_EVAL_CS`` with the best summed validation score, the score being minus the mean weighted
    log loss on the fold (the first C on a tie). Row i is in fold i mod n_splits."""
    fold = np.arange(y.size) % n_splits
    totals = np.zeros(ALPACA_EVAL_CS.size)
    for k in range(n_splits):
        train, val = fold != k, fold == k
        for j, c in enumerate(ALPACA_EVAL_CS):
            beta = _l1_logistic(x[train], y[train], w[train], float(c))
            q = np.clip(expit(x[val] @ beta), _LOG_CLIP, 1.0 - _LOG_CLIP)
            loss = -(y[val] * np.log(q) + (1.0 - y[val]) * np.log(1.0 - q)) * w[val]
            totals[j] -= float(loss.mean())
    return float(ALPACA_EVAL_CS[int(np.argmax(totals))])


def _l1_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, c: float, *, tol: float = 1e-10) -> np.ndarray:
    """argmin over beta of ||beta||_1 + c * sum_i w_i * CE(y_i, sigmoid(x_i beta)), fractional y (no intercept).

    This is liblinear's L1-penalised logistic objective (what AlpacaEval fits, with its fractional targets written as
    two weighted rows). Proximal Newton: a quadratic model of the smooth part, minimised with the L1 term by cyclic
    coordinate descent (exact soft-thresholding per coordinate), then a backtracking step on the true objective.
    A handful of columns, so every step is a few small matrix products.
    """
    dim = x.shape[1]
    beta = np.zeros(dim)

    def objective(b: np.ndarray) -> float:
        z = x @ b
        return c * float(w @ (np.logaddexp(0.0, z) - y * z)) + float(np.abs(b).sum())

    value = objective(beta)
    for _ in range(_MAX_ITER):
        p = expit(x @ beta)
        g = c * (x.T @ (w * (p - y)))
        h = c * (x.T @ (x * (w * p * (1.0 - p))[:, None])) + 1e-12 * np.eye(dim)
        d = np.zeros(dim)
        for _sweep in range(100):
            largest = 0.0
            for j in range(dim):
                # the quadratic model's slope along j, without the j-th term of d
                b_j = g[j] + float(h[j] @ d) - h[j, j] * d[j]
                u = beta[j] - b_j / h[j, j]
                u = np.sign(u) * max(abs(u) - 1.0 / h[j, j], 0.0)
                new = u - beta[j]
                largest = max(largest, abs(new - d[j]))
                d[j] = new
            if largest < 1e-13:
                break
        decrease = float(g @ d) + float(np.abs(beta + d).sum() - np.abs(beta).sum())
        if decrease > -tol * max(1.0, abs(value)):
            break
        t = 1.0
        while True:
            candidate = beta + t * d
            new_value = objective(candidate)
            if new_value <= value + 1e-4 * t * decrease or t < 1e-10:
                break
            t *= 0.5
        beta, value = candidate, new_value
        if np.max(np.abs(t * d)) < tol:
            break
    return beta
