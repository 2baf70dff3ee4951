"""Anytime-valid confidence sequences for a win rate, and the gate decisions they settle (DESIGN.md, "Sequential
judging").

The observation is one QUESTION's score in [0, 1]: the mean match score over its turns, both orders judged, so every
finished question is a complete cluster and questions (drawn in a seeded random order from an i.i.d. sample) are
i.i.d. observations of the win rate. No maintained library installs on Python 3.11 (``confseq``'s pybind11 is too
old, ``expectation`` 0.6 does not install), so the betting confidence sequence of Waudby-Smith and Ramdas
("Estimating means of bounded random variables by betting", JRSS-B 2024) is written out here.

Rules:
- For each candidate mean m on a grid over (0, 1) (plus the gate thresholds, so a decision at a threshold is exact),
  two capital processes bet on the next question's score X_t with bets fixed before X_t is seen:
  K+_t(m) = prod (1 + l+_i (X_i - m)) (bets that the mean is above m) and K-_t(m) = prod (1 - l-_i (X_i - m)),
  0 <= l+ <= c/m and 0 <= l- <= c/(1 - m), c < 1, so each factor stays positive. Under mean m both are nonnegative
  martingales starting at 1.
- Hedged capital: K_t(m) = max(K+_t(m) / 2, K-_t(m) / 2); m is rejected at time t when K_t(m) >= 1/alpha. By
  Ville's inequality each side errs (rejects the true mean from its side) with probability <= alpha/2 over all
  times together, however often it is looked at: the lower bound exceeds the true mean with probability <= alpha/2.
- The sequence at time t is the set of grid points not rejected; ``lower``/``upper`` are its smallest and largest
  point, intersected with every earlier time's (the running intersection is valid because the guarantee is uniform
  over time). Grid spacing is 1/1000, so bounds are exact to 0.001 and decisions at a threshold are exact.
- Bets (``BETTING``): ``agrapa`` (approximate growth-rate-adaptive: l = (mu - m) / (var + (mu - m)^2), the Kelly bet
  to second order, from regularised running mean and variance), ``prpl`` (predictable plug-in, the empirical-
  Bernstein-like bet sqrt(2 log(2/alpha) / (var t log(1 + t))), the same for every m), ``ons`` (online Newton step
  on the log-wealth) and ``dkelly`` (the average of capital processes of 20 constant bets, i.e. a mixture).
  ``scripts/sim_sequential.py`` compares them: ``dkelly`` saved the most calls and agreed most often with the
  full run in both of its judge models, so it is the default (``DEFAULT_BETTING``).

Family of candidates: each candidate's sequence runs at alpha / K (Bonferroni). Chosen over e-value Holm because
(1) a betting sequence's width grows only with sqrt(log(1/alpha)), so splitting alpha costs little (K = 4 turns
log(40) into log(160)); (2) candidates stop at different times, and with Bonferroni each one's decision depends only
on its own questions, so a candidate can stop and be reported alone; e-Holm's closure would tie each candidate's
decision to the others' e-values and their stopping. Bonferroni is valid under any dependence between candidates
(they share the baseline's answers and the judge).

Gate decisions (``decide``):
- ``lower-bound`` (pass = evidence of improvement): pass once lower > threshold; fail once upper <= threshold (a pass
  can no longer happen); with every question judged and neither settled: fail (no evidence), as the full-run rule.
- ``not-worse`` (fail = evidence of regression): fail once upper < threshold; pass once lower >= threshold (a fail
  can no longer happen); with every question judged and neither settled: pass (no evidence of regression).
- ``point`` compares the point estimate with the threshold: no sequence can settle it early, so it is refused.

Pure numpy: arrays in, dataclasses out, vectorised over the grid and over leading batch dimensions (the simulation
runs hundreds of seeds at once); the only Python loop is over observations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Sequence

import numpy as np

from evalsuite.errors import InputError

Betting = Literal["agrapa", "prpl", "ons", "dkelly"]
Decision = Literal["pass", "fail"]
SEQUENTIAL_RULES = ("lower-bound", "not-worse")
DEFAULT_BETTING: Betting = "dkelly"

GRID_STEPS = 1000
_TRUNCATION = 0.5  # c: at most half the capital at stake on one question (Waudby-Smith & Ramdas' default)
_DKELLY_BETS = 20
_ONS_RATE = 2.0 / (2.0 - np.log(3.0))  # Cutkosky & Orabona's ONS step for bets on outcomes in [-1, 1]


@dataclass(frozen=True)
class SequenceBounds:
    """The confidence sequence after ``n`` questions: the running mean and the (running-intersected) bounds."""

    n: int
    mean: float
    lower: float
    upper: float
    alpha: float


@dataclass(frozen=True)
class SequencePath:
    """Bounds after each observation: arrays of shape (..., T), with ``n`` = 1..T questions seen."""

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    alpha: float


def family_alpha(alpha: float, n_candidates: int) -> float:
    """Each candidate's level for family-wise error ``alpha`` over ``n_candidates`` (Bonferroni; see module doc)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
    return alpha / n_candidates


def grid_points(thresholds: Sequence[float] = ()) -> np.ndarray:
    """Candidate means: k / GRID_STEPS for k = 1..GRID_STEPS-1, plus any threshold in (0, 1), sorted."""
    base = np.arange(1, GRID_STEPS) / GRID_STEPS
    extra = np.array([t for t in thresholds if 0.0 < t < 1.0], dtype=np.float64)
    return np.union1d(base, extra)


def confidence_path(
    scores: np.ndarray,
    *,
    alpha: float = 0.05,
    betting: Betting = DEFAULT_BETTING,
    thresholds: Sequence[float] = (),
) -> SequencePath:
    """The hedged betting confidence sequence after each of ``scores[..., t]`` (question scores in [0, 1], in the
    order they were judged); leading dimensions are independent sequences (e.g. simulation seeds)."""
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError("scores must have at least one observation along the last axis")
    if not np.all(np.isfinite(x)) or x.min() < 0.0 or x.max() > 1.0:
        raise ValueError("scores must be finite and in [0, 1] (one score per finished question)")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if betting not in BETTING:
        raise ValueError(f"betting must be one of {sorted(BETTING)}, got {betting!r}")
    m = grid_points(thresholds)
    log_threshold = np.log(1.0 / alpha)
    steps = BETTING[betting](x, m, alpha)
    n_obs = x.shape[-1]
    batch = x.shape[:-1]
    lower = np.empty(batch + (n_obs,))
    upper = np.empty(batch + (n_obs,))
    run_lo = np.zeros(batch)
    run_hi = np.ones(batch)
    for t, (log_plus, log_minus) in enumerate(steps):
        log_hedged = np.maximum(log_plus, log_minus) + np.log(0.5)
        kept = log_hedged < log_threshold  # (..., G): points still in the sequence
        lo, hi = _bounds(kept, m, log_hedged)
        run_lo = np.maximum(run_lo, lo)
        run_hi = np.minimum(run_hi, hi)
        # An empty intersection (probability <= alpha) is reported as a point where the two bounds met.
        crossed = run_lo > run_hi
        if np.any(crossed):
            mid = (run_lo + run_hi) / 2.0
            run_lo = np.where(crossed, mid, run_lo)
            run_hi = np.where(crossed, mid, run_hi)
        lower[..., t] = run_lo
        upper[..., t] = run_hi
    mean = np.cumsum(x, axis=-1) / np.arange(1, n_obs + 1)
    return SequencePath(mean=mean, lower=lower, upper=upper, alpha=alpha)


def sequence_bounds(
    scores: Sequence[float] | np.ndarray,
    *,
    alpha: float = 0.05,
    betting: Betting = DEFAULT_BETTING,
    thresholds: Sequence[float] = (),
) -> SequenceBounds:
    """The sequence after every question judged so far, in judging order: call after each wave with all scores.

    Recomputing from the ordered history is the same as updating a running state (the bets are predictable), keeps
    the function pure, and costs microseconds for a benchmark's tens of questions.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError("scores must be a 1-D array of question scores in judging order")
    if x.size == 0:
        return SequenceBounds(n=0, mean=float("nan"), lower=0.0, upper=1.0, alpha=alpha)
    path = confidence_path(x, alpha=alpha, betting=betting, thresholds=thresholds)
    return SequenceBounds(
        n=int(x.size), mean=float(path.mean[-1]), lower=float(path.lower[-1]), upper=float(path.upper[-1]), alpha=alpha
    )


def check_rule(rule: str) -> None:
    """Refuse a gate rule that a sequence cannot settle early (``point``) with a one-line input error."""
    if rule not in SEQUENTIAL_RULES:
        raise InputError(
            f"gate rule {rule!r} cannot be settled sequentially (it compares the point estimate, which no "
            "confidence sequence settles before every question is judged)",
            where="--rule",
            fix="use --rule lower-bound or --rule not-worse with --sequential, or drop --sequential",
        )


def decide(lower: float, upper: float, threshold: float, rule: str, *, exhausted: bool = False) -> Decision | None:
    """The gate decision the bounds settle, or None while it is open; with ``exhausted`` (no question left) it is
    never None: an unsettled ``lower-bound`` fails and an unsettled ``not-worse`` passes (module doc)."""
    check_rule(rule)
    if rule == "lower-bound":
        if lower > threshold:
            return "pass"
        if upper <= threshold or exhausted:
            return "fail"
        return None
    if upper < threshold:
        return "fail"
    if lower >= threshold or exhausted:
        return "pass"
    return None


def decide_path(
    path: SequencePath, threshold: float, rule: str, *, checkpoints: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised ``decide`` over a batch of paths looked at after ``checkpoints`` observations (wave ends; default:
    every observation): (passed, n_used) per sequence, where n_used is how many observations it took to settle."""
    check_rule(rule)
    n_obs = path.lower.shape[-1]
    looks = np.arange(1, n_obs + 1) if checkpoints is None else np.asarray(sorted(set(checkpoints)))
    if looks.size == 0 or looks.min() < 1 or looks.max() > n_obs:
        raise ValueError(f"checkpoints must lie in 1..{n_obs}")
    lo = path.lower[..., looks - 1]
    hi = path.upper[..., looks - 1]
    if rule == "lower-bound":
        win, lose = lo > threshold, hi <= threshold
    else:
        lose, win = hi < threshold, lo >= threshold
    settled = win | lose
    settled[..., -1] = True  # the last look: questions ran out
    first = np.argmax(settled, axis=-1)
    won = np.take_along_axis(win, first[..., None], axis=-1)[..., 0]
    lost = np.take_along_axis(lose, first[..., None], axis=-1)[..., 0]
    unsettled_pass = rule == "not-worse"
    passed = np.where(won, True, np.where(lost, False, unsettled_pass))
    return passed, looks[first]


def _bounds(kept: np.ndarray, m: np.ndarray, log_hedged: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest kept grid point per sequence; 0 / 1 when the grid's end point is kept (the sequence runs
    past it); the least-rejected point when nothing is kept."""
    any_kept = kept.any(axis=-1)
    first = np.argmax(kept, axis=-1)
    last = kept.shape[-1] - 1 - np.argmax(kept[..., ::-1], axis=-1)
    lo = np.where(first == 0, 0.0, m[first])
    hi = np.where(last == m.size - 1, 1.0, m[last])
    if not np.all(any_kept):
        best = m[np.argmin(log_hedged, axis=-1)]
        lo = np.where(any_kept, lo, best)
        hi = np.where(any_kept, hi, best)
    return lo, hi


def _running_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Regularised running mean and variance *before* each observation (predictable): mu_0 = 1/2, var_0 = 1/4,
    mu_t = (1/2 + sum X) / (t + 1), var_t = (1/4 + sum (X_i - mu_i)^2) / (t + 1) (Waudby-Smith & Ramdas, eq. 26)."""
    n = x.shape[-1]
    counts = np.arange(1, n + 1)
    mu_after = (0.5 + np.cumsum(x, axis=-1)) / (counts + 1)
    var_after = (0.25 + np.cumsum((x - mu_after) ** 2, axis=-1)) / (counts + 1)
    pad = [(0, 0)] * (x.ndim - 1) + [(1, 0)]
    mu_before = np.pad(mu_after[..., :-1], pad, constant_values=0.5)
    var_before = np.pad(var_after[..., :-1], pad, constant_values=0.25)
    return mu_before, var_before


def _caps(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _TRUNCATION / m, _TRUNCATION / (1.0 - m)


def _agrapa_steps(x: np.ndarray, m: np.ndarray, alpha: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    mu, var = _running_moments(x)
    cap_plus, cap_minus = _caps(m)
    log_plus = np.zeros(x.shape[:-1] + m.shape)
    log_minus = np.zeros_like(log_plus)
    for t in range(x.shape[-1]):
        gap = mu[..., t, None] - m
        bet = gap / (var[..., t, None] + gap**2)
        lp = np.minimum(np.maximum(bet, 0.0), cap_plus)
        lm = np.minimum(np.maximum(-bet, 0.0), cap_minus)
        d = x[..., t, None] - m
        log_plus += np.log1p(lp * d)
        log_minus += np.log1p(-lm * d)
        yield log_plus, log_minus


def _prpl_steps(x: np.ndarray, m: np.ndarray, alpha: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    _, var = _running_moments(x)
    cap_plus, cap_minus = _caps(m)
    log_plus = np.zeros(x.shape[:-1] + m.shape)
    log_minus = np.zeros_like(log_plus)
    for t in range(x.shape[-1]):
        i = t + 1
        bet = np.sqrt(2.0 * np.log(2.0 / alpha) / (var[..., t, None] * i * np.log1p(i)))
        d = x[..., t, None] - m
        log_plus += np.log1p(np.minimum(bet, cap_plus) * d)
        log_minus += np.log1p(-np.minimum(bet, cap_minus) * d)
        yield log_plus, log_minus


def _ons_steps(x: np.ndarray, m: np.ndarray, alpha: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    cap_plus, cap_minus = _caps(m)
    shape = x.shape[:-1] + m.shape
    log_plus, log_minus = np.zeros(shape), np.zeros(shape)
    bet_plus, bet_minus = np.zeros(shape), np.zeros(shape)
    a_plus, a_minus = np.ones(shape), np.ones(shape)
    for t in range(x.shape[-1]):
        d = x[..., t, None] - m
        log_plus += np.log1p(bet_plus * d)
        log_minus += np.log1p(-bet_minus * d)
        yield log_plus, log_minus
        # Gradient of the log-wealth in the bet, then a Newton step preconditioned by the summed squared gradients.
        g_plus = d / (1.0 + bet_plus * d)
        g_minus = -d / (1.0 - bet_minus * d)
        a_plus += g_plus**2
        a_minus += g_minus**2
        bet_plus = np.clip(bet_plus + _ONS_RATE * g_plus / a_plus, 0.0, cap_plus)
        bet_minus = np.clip(bet_minus + _ONS_RATE * g_minus / a_minus, 0.0, cap_minus)


def _dkelly_steps(x: np.ndarray, m: np.ndarray, alpha: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    fractions = np.arange(1, _DKELLY_BETS + 1) / (_DKELLY_BETS + 1)  # constant bets, as shares of 1/m or 1/(1-m)
    bets_plus = fractions / m[:, None]  # (G, D)
    bets_minus = fractions / (1.0 - m)[:, None]
    shape = x.shape[:-1] + m.shape + (_DKELLY_BETS,)
    # Capital in linear scale (a log-sum-exp per step is 30x slower), rescaled every 16 questions by its largest bet's
    # value (carried as a log offset): a factor lies in [1/21, 1000], so 16 of them stay within float64's range.
    cap_plus, cap_minus = np.ones(shape), np.ones(shape)
    offset_plus, offset_minus = np.zeros(shape[:-1]), np.zeros(shape[:-1])
    for t in range(x.shape[-1]):
        d = (x[..., t, None] - m)[..., None]
        cap_plus *= 1.0 + bets_plus * d
        cap_minus *= 1.0 - bets_minus * d
        if t % 16 == 15:
            top_plus, top_minus = cap_plus.max(axis=-1), cap_minus.max(axis=-1)
            cap_plus /= top_plus[..., None]
            cap_minus /= top_minus[..., None]
            offset_plus += np.log(top_plus)
            offset_minus += np.log(top_minus)
        # The mixture's capital is the mean of the constant-bet capitals (a mean of martingales is one).
        yield offset_plus + np.log(cap_plus.mean(axis=-1)), offset_minus + np.log(cap_minus.mean(axis=-1))


# name -> generator of (log K+, log K-) over the grid after each observation
BETTING: dict[str, Callable[[np.ndarray, np.ndarray, float], Iterator[tuple[np.ndarray, np.ndarray]]]] = {
    "agrapa": _agrapa_steps,
    "prpl": _prpl_steps,
    "ons": _ons_steps,
    "dkelly": _dkelly_steps,
}
