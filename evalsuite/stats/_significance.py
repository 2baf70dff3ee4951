"""Significance beside the bootstrap: the exact sign test on wins vs losses, and Holm-Bonferroni adjustment of a family
of p-values (including p-values that are only known as an upper bound, such as a bootstrap p below 1/B)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import bdtr  # binomial CDF; scipy.stats would add ~1 s to CLI start-up


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial test of H0: P(win) = P(loss), ties excluded (DESIGN.md, "Significance").

    Under H0 the count of wins is Binomial(wins + losses, 1/2), which is symmetric, so the two-sided p-value (the
    probability of an outcome at most as likely as the observed one) is 2 * P(X <= min(wins, losses)), capped at 1.
    No decisive match at all gives 1.0.
    """
    if int(wins) != wins or int(losses) != losses or wins < 0 or losses < 0:
        raise ValueError(f"wins and losses must be non-negative integers, got {wins!r} and {losses!r}")
    n = int(wins) + int(losses)
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * bdtr(min(int(wins), int(losses)), n, 0.5)))


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values for one family of comparisons, in the order given.

    With p sorted ascending p_(1) <= ... <= p_(m), the adjusted value is max over j <= i of min(1, (m - j + 1) p_(j)):
    the running maximum keeps the adjusted values monotone in the raw ones, so rejecting at level alpha by adjusted
    p < alpha is exactly Holm's step-down procedure.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError("p_values must be a flat sequence")
    if p.size and (not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0):
        raise ValueError("p_values must be finite probabilities in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    multipliers = m - np.arange(m)  # m, m-1, ..., 1
    stepped = np.minimum(1.0, np.maximum.accumulate(multipliers * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted


def holm_bounded(
    p_values: Sequence[float] | np.ndarray, bounds: Sequence[bool] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Holm-adjusted p-values, and which of them are upper bounds rather than values.

    ``bounds[i]`` says p_values[i] is only known to be at most its value (a bootstrap p with no resample on the far
    side is stored as 1/B). Holm is monotone in every raw p, so an adjusted value computed from a bound is a bound
    too: it is marked when the running maximum that produced it came from a bounded term (or the cap at 1 did not
    apply and a bounded term tied it). A value capped at 1 is exact.

    >>> adjusted, bound = holm_bounded([0.0001, 0.2], [True, False])
    >>> [round(float(a), 6) for a in adjusted], bound.tolist()
    ([0.0002, 0.2], [True, False])
    """
    p = np.asarray(p_values, dtype=np.float64)
    b = np.asarray(bounds, dtype=bool)
    if b.shape != p.shape:
        raise ValueError(f"bounds must give one flag per p-value; got {b.size} for {p.size}")
    adjusted = holm(p)
    m = p.size
    order = np.argsort(p, kind="stable")
    terms = np.minimum(1.0, (m - np.arange(m)) * p[order])
    stepped_bound = np.zeros(m, dtype=bool)
    running, running_bound = -1.0, False
    for k in range(m):  # m is a family size (a handful of comparisons): a loop is clearer than a vectorised argmax
        term, term_bound = float(terms[k]), bool(b[order[k]])
        if term > running:
            running, running_bound = term, term_bound
        elif term == running:
            running_bound = running_bound or term_bound
        stepped_bound[k] = running_bound and running < 1.0
    out_bound = np.empty(m, dtype=bool)
    out_bound[order] = stepped_bound
    return adjusted, out_bound
