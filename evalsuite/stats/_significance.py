"""Classical tests beside the bootstrap: the exact sign test on wins vs losses and Holm-Bonferroni adjustment."""

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


def holm(p_values: Sequence[float]) -> np.ndarray:
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
