"""Power planning: the smallest win-rate effect a benchmark of this size can detect (DESIGN.md, "Power")."""

from __future__ import annotations

import math

from scipy.special import ndtri


def min_detectable_difference(
    n_clusters: int,
    *,
    items_per_cluster: int = 1,
    icc: float = 0.0,
    sd: float = 0.5,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """Smallest |W - 0.5| that a two-sided level-``alpha`` test detects with probability ``power``.

    Normal approximation for a mean of n_items = n_clusters * items_per_cluster item scores with per-item standard
    deviation ``sd`` (0.5 is the worst case: a judge with no ties), inflated by the design effect of clustering,
    deff = 1 + (items_per_cluster - 1) * icc, where ``icc`` is the correlation of scores within a question
    (e.g. between the two MT-Bench turns):

        MDD = (z_{1 - alpha/2} + z_{power}) * sd * sqrt(deff / n_items).

    With the defaults (80 single-item questions) this is 2.80 * 0.5 / sqrt(80) = 0.157. Because deff / n_items =
    (1 + (k - 1) icc) / (n k), more items per question help only as much as they are uncorrelated; with icc = 1 the
    extra turns add nothing.
    """
    if n_clusters < 1 or items_per_cluster < 1:
        raise ValueError("n_clusters and items_per_cluster must be >= 1")
    if not 0.0 <= icc <= 1.0:
        raise ValueError(f"icc must be in [0, 1], got {icc}")
    if not sd > 0.0:
        raise ValueError(f"sd must be > 0, got {sd}")
    if not (0.0 < alpha < 1.0 and 0.0 < power < 1.0):
        raise ValueError("alpha and power must be in (0, 1)")
    design_effect = 1.0 + (items_per_cluster - 1) * icc
    n_items = n_clusters * items_per_cluster
    z = float(ndtri(1.0 - alpha / 2.0)) + float(ndtri(power))
    return z * sd * math.sqrt(design_effect / n_items)
