"""Bradley-Terry ratings on the Elo scale with question-clustered bootstrap CIs (DESIGN.md, "Bradley-Terry").

Model: P(a beats b) = sigmoid(theta_a - theta_b); a match scores y in [0, 1] for its first model (a tie is y = 0.5,
i.e. half a win each side) and contributes y log sigmoid(d) + (1 - y) log sigmoid(-d). Ratings are
``anchor_rating + scale / ln(10) * theta`` with the anchor's theta fixed at 0, so the anchor is exactly
``anchor_rating`` in the estimate and in every bootstrap round.

Cost grows with *matchups*, not matches (FastChat's rating_systems.py approach): matches collapse to unique
(a, b, outcome) rows, stored per question as counts. A bootstrap round draws questions with replacement; its row
weights are its question counts times the per-question row counts, one matrix product for all rounds. All rounds are
then fitted together by batched damped Newton on (rounds, m-1, m-1) Hessians — no optimizer call per round. The
point estimate is fitted by L-BFGS with the analytic gradient.

The objective is the weight-normalised negative log-likelihood plus a tiny ridge (``_RIDGE``/2 * |theta|^2). The
ridge only matters where the MLE does not exist: a model that wins (or loses) every one of its matches gets a large
finite rating (thousands of Elo points) instead of a divergent one. A model absent from a round is left out of that
round's ratings rather than fitted; a model with no chain of matches to the anchor in the full data is an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

# Ridge on theta (per unit of match weight): identifies ratings under complete separation, ~1e-6 logit bias otherwise.
_RIDGE = 1e-6
_NEWTON_MAX_ITER = 100
_NEWTON_TOL = 1e-10  # largest parameter step (logits) at which a round counts as converged
_MAX_HALVINGS = 40


@dataclass(frozen=True)
class Rating:
    """One model's Bradley-Terry rating (Elo scale) with its bootstrap CI and LMSYS-style rank."""

    model: str
    rating: float
    ci_low: float
    ci_high: float
    rank: int


@dataclass(frozen=True)
class _Design:
    """Unique canonical matchup rows (first < second by model index) and their per-question counts."""

    models: list[str]
    first: np.ndarray  # (U,) model index
    second: np.ndarray  # (U,)
    outcome: np.ndarray  # (U,) score of ``first`` in [0, 1]
    cluster_counts: np.ndarray  # (n_clusters, U) matches of each row per question


def bradley_terry(
    model_a: Sequence[str],
    model_b: Sequence[str],
    score_a: np.ndarray,
    clusters: np.ndarray,
    *,
    anchor: str,
    anchor_rating: float = 1000.0,
    scale: float = 400.0,
    n_rounds: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[Rating]:
    """Fit Bradley-Terry on all matches; CIs from ``n_rounds`` question-clustered bootstrap rounds.

    ``score_a`` is model_a's score per match in [0, 1]; ``clusters`` the question of each match. Returns one
    ``Rating`` per model, sorted by rating (highest first). CIs are the (1 - confidence)/2 and (1 + confidence)/2
    quantiles of the round ratings (rounds in which a model played no match are left out for that model).
    ``rank`` = 1 + the number of models whose ci_low exceeds this model's ci_high.
    """
    if n_rounds < 1:
        raise ValueError(f"n_rounds must be >= 1, got {n_rounds}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    design = _build_design(model_a, model_b, score_a, clusters)
    if anchor not in design.models:
        raise ValueError(f"anchor {anchor!r} played no match; models are {design.models}")
    anchor_index = design.models.index(anchor)
    unreachable = _not_connected_to(anchor_index, design)
    if unreachable:
        # Their ratings relative to the anchor are not identified by any chain of matches.
        raise ValueError(f"models {unreachable} have no chain of matches to the anchor {anchor!r}")
    free = np.array([k for k in range(len(design.models)) if k != anchor_index], dtype=np.intp)

    # Signed incidence restricted to the free parameters: d_row = theta_first - theta_second, anchor theta = 0.
    n_rows = design.outcome.size
    incidence = np.zeros((n_rows, len(design.models)))
    incidence[np.arange(n_rows), design.first] = 1.0
    incidence[np.arange(n_rows), design.second] = -1.0
    signed = incidence[:, free]

    counts = design.cluster_counts.sum(axis=0).astype(np.float64)
    # Polished by the Newton iteration the rounds use, so estimate and rounds share one convergence criterion.
    theta_hat = _fit_batched(signed, design.outcome, counts[None, :], _fit_point(signed, design.outcome, counts))[0]

    rng = np.random.default_rng(seed)
    n_clusters = design.cluster_counts.shape[0]
    draws = rng.integers(0, n_clusters, size=(n_rounds, n_clusters))
    offsets = (draws + n_clusters * np.arange(n_rounds)[:, None]).ravel()
    cluster_weights = np.bincount(offsets, minlength=n_rounds * n_clusters).reshape(n_rounds, n_clusters)
    row_weights = (cluster_weights @ design.cluster_counts).astype(np.float64)  # (rounds, U)
    theta_rounds = _fit_batched(signed, design.outcome, row_weights, theta_hat)

    per_logit = scale / math.log(10.0)
    full_hat = np.zeros(len(design.models))
    full_hat[free] = theta_hat
    full_rounds = np.zeros((n_rounds, len(design.models)))
    full_rounds[:, free] = theta_rounds
    played = (row_weights @ np.abs(incidence)) > 0  # (rounds, m)
    full_rounds[~played] = np.nan
    full_rounds[:, anchor_index] = 0.0  # fixed by construction, even in a round the anchor sat out

    ratings = anchor_rating + per_logit * full_hat
    alpha = (1.0 - confidence) / 2.0
    ci = anchor_rating + per_logit * np.nanquantile(full_rounds, [alpha, 1.0 - alpha], axis=0)
    ci_low, ci_high = ci[0], ci[1]
    ranks = 1 + (ci_low[None, :] > ci_high[:, None]).sum(axis=1)

    order = sorted(range(len(design.models)), key=lambda k: (-ratings[k], design.models[k]))
    return [
        Rating(
            model=design.models[k],
            rating=float(ratings[k]),
            ci_low=float(ci_low[k]),
            ci_high=float(ci_high[k]),
            rank=int(ranks[k]),
        )
        for k in order
    ]


def _build_design(
    model_a: Sequence[str], model_b: Sequence[str], score_a: np.ndarray, clusters: np.ndarray
) -> _Design:
    names_a = np.asarray(model_a, dtype=object)
    names_b = np.asarray(model_b, dtype=object)
    scores = np.asarray(score_a, dtype=np.float64)
    cluster_ids = np.asarray(clusters)
    n = scores.size
    if n == 0 or scores.ndim != 1:
        raise ValueError("score_a must be a non-empty 1-D array")
    if not (names_a.shape == names_b.shape == cluster_ids.shape == scores.shape):
        raise ValueError("model_a, model_b, score_a and clusters must have one entry per match")
    if not np.all(np.isfinite(scores)) or scores.min() < 0.0 or scores.max() > 1.0:
        raise ValueError("score_a must be finite scores in [0, 1] (drop error matches first)")
    if np.any(names_a == names_b):
        raise ValueError("a model cannot play itself")

    models, model_index = np.unique(np.concatenate([names_a, names_b]).astype(str), return_inverse=True)
    ia, ib = model_index[:n], model_index[n:]
    # Canonical orientation: (b, a, 1 - y) is the same likelihood term as (a, b, y), so it shares a row.
    swap = ia > ib
    first = np.where(swap, ib, ia)
    second = np.where(swap, ia, ib)
    outcome = np.where(swap, 1.0 - scores, scores)
    rows, row_index = np.unique(np.column_stack([first, second, outcome]), axis=0, return_inverse=True)
    row_index = row_index.ravel()
    _, cluster_index = np.unique(cluster_ids, return_inverse=True)
    n_rows, n_clusters = rows.shape[0], int(cluster_index.max()) + 1
    counts = np.bincount(cluster_index * n_rows + row_index, minlength=n_clusters * n_rows)
    return _Design(
        models=[str(m) for m in models],
        first=rows[:, 0].astype(np.intp),
        second=rows[:, 1].astype(np.intp),
        outcome=rows[:, 2].copy(),
        cluster_counts=counts.reshape(n_clusters, n_rows),
    )


def _not_connected_to(anchor_index: int, design: _Design) -> list[str]:
    """Models with no path of matches to the anchor (union-find over the few unique matchup rows)."""
    parent = list(range(len(design.models)))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for i, j in zip(design.first.tolist(), design.second.tolist()):
        parent[root(i)] = root(j)
    anchor_root = root(anchor_index)
    return [name for k, name in enumerate(design.models) if root(k) != anchor_root]


def _objective(theta: np.ndarray, signed: np.ndarray, outcome: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weight-normalised negative log-likelihood + ridge; ``theta`` (..., f), ``weights`` (..., U)."""
    d = np.einsum("...f,uf->...u", theta, signed)
    # -[y log sigmoid(d) + (1 - y) log sigmoid(-d)] = softplus(d) - y d: one overflow-free transcendental per entry.
    nll = np.logaddexp(0.0, d) - outcome * d
    total = weights.sum(axis=-1)
    return (weights * nll).sum(axis=-1) / total + 0.5 * _RIDGE * (theta**2).sum(axis=-1)


def _fit_point(signed: np.ndarray, outcome: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Full-data MLE by L-BFGS with the analytic gradient."""
    from scipy.optimize import minimize  # imported here: scipy.optimize costs ~1 s of start-up for every CLI verb

    total = weights.sum()

    def value_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        d = signed @ theta
        residual = weights * (expit(d) - outcome) / total
        grad = residual @ signed + _RIDGE * theta
        return float(_objective(theta, signed, outcome, weights)), grad

    start = np.zeros(signed.shape[1])
    result = minimize(
        value_and_grad,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 10_000, "ftol": 1e-15, "gtol": 1e-12},
    )
    return np.asarray(result.x)


def _fit_batched(signed: np.ndarray, outcome: np.ndarray, weights: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Minimise the objective for every round (row of ``weights``) at once by damped Newton.

    Warm-started at the full-data estimate, which every round is near. Each step solves all rounds' (f, f) Newton
    systems in one batched call; a vectorised backtracking (Armijo) line search halves the step only for the rounds
    whose objective did not fall enough, which keeps rounds with separated data (ratings heading to infinity) stable.
    """
    n_rounds, n_free = weights.shape[0], signed.shape[1]
    total = weights.sum(axis=1, keepdims=True)
    # Per-row outer products (e_first - e_second)(e_first - e_second)^T on the free parameters, flattened.
    outer = (signed[:, :, None] * signed[:, None, :]).reshape(signed.shape[0], n_free * n_free)
    ridge = _RIDGE * np.eye(n_free)
    theta = np.tile(start, (n_rounds, 1))
    value = _objective(theta, signed, outcome, weights)
    for _ in range(_NEWTON_MAX_ITER):
        # einsum rather than BLAS matmul: multithreaded BLAS stalls on products this small when the cores are busy.
        p = expit(np.einsum("rf,uf->ru", theta, signed))  # (rounds, U)
        grad = np.einsum("ru,uf->rf", weights * (p - outcome) / total, signed) + _RIDGE * theta
        curvature = weights * p * (1.0 - p) / total
        hess = np.einsum("ru,uk->rk", curvature, outer).reshape(n_rounds, n_free, n_free) + ridge
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        decrement = (grad * step).sum(axis=1)  # g^T H^-1 g >= 0
        t = np.ones(n_rounds)
        for _ in range(_MAX_HALVINGS):
            candidate = theta - t[:, None] * step
            new_value = _objective(candidate, signed, outcome, weights)
            # Armijo, with slack for rounding once the decrement is at machine precision.
            slack = 1e-14 * np.maximum(1.0, np.abs(value))
            short = new_value > value - 1e-4 * t * decrement + slack
            if not short.any():
                break
            t = np.where(short, 0.5 * t, t)
        theta, value = candidate, new_value
        if np.max(np.abs(t[:, None] * step)) < _NEWTON_TOL:
            break
    return theta
