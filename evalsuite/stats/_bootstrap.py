"""Question-clustered bootstrap of a win rate and of a paired win-rate difference (DESIGN.md, "Statistics").

The resampling unit is the cluster (a question): both turns of a question move together, because a judge's verdicts on
the two turns of one conversation are correlated and resampling turns separately would understate the spread.
The statistic is the mean over the resampled *items*: sum of the drawn clusters' score sums divided by the sum of
their sizes, so clusters of unequal size weigh by their item count exactly as in the point estimate.

All resamples are drawn at once as an (n_resamples, n_clusters) matrix of cluster counts (in blocks that bound memory
for very many clusters), and each resampled statistic is one row of a matrix-vector product; no Python loop runs per
resample.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterator, Literal

import numpy as np
from scipy.special import ndtr, ndtri

Method = Literal["percentile", "bca"]

# Elements per block of the resample count matrix (float64): 16 MiB, whatever the number of clusters.
_BLOCK_ELEMENTS = 1 << 21
# Draws of up to this many counts (10,000 resamples x 3,355 questions) are memoised as small integers (one byte per
# count in practice, so at most 32 MiB each); two at most are kept.
_CACHE_BYTES = 1 << 25


@dataclass(frozen=True)
class BootstrapResult:
    """A point estimate with its bootstrap confidence interval and two-sided p-value against ``null``.

    ``se`` is the standard deviation (ddof=1) of the resampled statistic; ``method`` is "percentile" or "bca".
    ``p_value_bound``: no resample fell on the far side of the null, so the p-value is only known to be below
    1 / ``n_resamples``; ``p_value`` then holds that bound (never 0), and reports print it as ``<1/B``.
    """

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    se: float
    n_resamples: int
    method: str
    p_value_bound: bool = False


def cluster_bootstrap(
    scores: np.ndarray,
    clusters: np.ndarray,
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    method: Method = "percentile",
    null: float = 0.5,
    seed: int = 0,
) -> BootstrapResult:
    """Win rate W = mean(scores) with a cluster-bootstrap CI and a two-sided bootstrap test of H0: W = ``null``.

    ``scores`` are item scores in [0, 1] (an item is one (question, turn)); ``clusters`` holds the question of each
    item (any hashable values, compared with ``np.unique``).

    p-value rule: p = min(1, 2 * min(share of resampled W <= null, share of resampled W >= null)), i.e. the share of
    the bootstrap distribution on the far side of ``null``, doubled (DESIGN.md). Resamples exactly at ``null`` count on
    both sides, which keeps the test conservative for the discrete statistics ties produce. With no resample on the
    far side the p-value is below 1 / ``n_resamples`` and is returned as that bound with ``p_value_bound`` set (a
    bootstrap cannot say p = 0; doubling an empty share would). 1/B cannot arise otherwise: an observed share
    doubles to at least 2/B. This is the dual of the percentile interval: the 95% percentile CI excludes ``null`` exactly
    when p < 0.05 (up to quantile interpolation), so the CI and the test never contradict each other in a report.

    BCa: bias correction z0 = Phi^-1(share of resampled W below the estimate, ties counted half — scipy's rule), and
    acceleration from the leave-one-cluster-out jackknife. A bootstrap distribution without spread (one question, or
    every question scoring alike) gives a zero-width interval at the estimate.
    """
    values = _as_scores(scores, "scores")
    return _bootstrap(values, clusters, n_resamples, confidence, method, null, seed)


def paired_difference(
    scores_1: np.ndarray,
    scores_2: np.ndarray,
    clusters: np.ndarray,
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    method: Method = "percentile",
    null: float = 0.0,
    seed: int = 0,
) -> BootstrapResult:
    """W1 - W2 for two candidates scored on the same items (item i of both arrays is the same (question, turn)).

    Both win rates are recomputed on the *same* resampled clusters, which is what makes the test paired: the
    question-level difficulty both candidates share cancels. Because both means have the same resampled denominator,
    W1* - W2* equals the resampled mean of the per-item differences, so this is ``cluster_bootstrap`` of
    ``scores_1 - scores_2`` (with the same p-value rule, against ``null`` = 0 by default).
    """
    s1 = _as_scores(scores_1, "scores_1")
    s2 = _as_scores(scores_2, "scores_2")
    if s1.shape != s2.shape:
        raise ValueError(f"scores_1 and scores_2 must be aligned item by item; got {s1.size} and {s2.size} items")
    return _bootstrap(s1 - s2, clusters, n_resamples, confidence, method, null, seed)


def _as_scores(values: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array")
    if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(f"{name} must be finite scores in [0, 1] (drop error matches first)")
    return arr


def _bootstrap(
    values: np.ndarray,
    clusters: np.ndarray,
    n_resamples: int,
    confidence: float,
    method: Method,
    null: float,
    seed: int,
) -> BootstrapResult:
    cluster_ids = np.asarray(clusters)
    if cluster_ids.shape != values.shape:
        raise ValueError(f"clusters must give one cluster per item; got {cluster_ids.size} for {values.size} items")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if method not in ("percentile", "bca"):
        raise ValueError(f"method must be 'percentile' or 'bca', got {method!r}")

    _, inverse = np.unique(cluster_ids, return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    sizes = np.bincount(inverse).astype(np.float64)
    estimate = float(sums.sum() / sizes.sum())

    resampled = _resample_means(sums, sizes, n_resamples, seed)
    se = float(resampled.std(ddof=1)) if n_resamples > 1 else 0.0
    far_side = int(min(np.count_nonzero(resampled <= null), np.count_nonzero(resampled >= null)))
    p_value_bound = far_side == 0
    p_value = 1.0 / n_resamples if p_value_bound else float(min(1.0, 2.0 * far_side / n_resamples))

    if np.ptp(resampled) == 0.0:
        # No spread: every quantile is the same value; BCa's z0 would be infinite.
        ci_low = ci_high = float(resampled[0])
    else:
        alpha = (1.0 - confidence) / 2.0
        if method == "bca":
            levels = _bca_levels(resampled, estimate, sums, sizes, alpha)
        else:
            levels = np.array([alpha, 1.0 - alpha])
        ci_low, ci_high = (float(q) for q in np.quantile(resampled, levels))
    return BootstrapResult(
        estimate=estimate,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        se=se,
        n_resamples=n_resamples,
        method=method,
        p_value_bound=p_value_bound,
    )


def _resample_means(sums: np.ndarray, sizes: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Item means of ``n_resamples`` with-replacement draws of all clusters, vectorised over resamples."""
    equal_sizes = bool(np.all(sizes == sizes[0]))
    out = np.empty(n_resamples)
    start = 0
    for counts in _resample_counts(seed, n_resamples, sums.size):
        stop = start + counts.shape[0]
        # einsum, not BLAS matmul: multithreaded BLAS stalls on small products when the cores are busy.
        drawn = np.einsum("rk,k->r", counts, sums)
        # Equal cluster sizes (every question has the same number of turns) make the denominator a constant.
        denominator = sizes[0] * sums.size if equal_sizes else np.einsum("rk,k->r", counts, sizes)
        out[start:stop] = drawn / denominator
        start = stop
    return out


def _resample_counts(seed: int, n_resamples: int, n_clusters: int) -> Iterator[np.ndarray]:
    """How often each cluster is drawn in each resample, as blocks of rows (counts[r, c], float64).

    A pure function of its arguments. A report calls the bootstrap dozens of times with the same seed, resample
    count and question count (every candidate, every turn, every pair) and drawing is the dominant cost, so draws
    whose counts fit in ``_CACHE_BYTES`` as small integers are memoised in that compact form and widened block by
    block; larger ones are drawn block by block and never held whole (10,000 resamples of 100,000 questions would
    be 8 GB of float64).
    """
    if n_resamples * n_clusters <= _CACHE_BYTES:
        for compact in _compact_counts(seed, n_resamples, n_clusters):
            yield compact.astype(np.float64)
        return
    yield from _draw_counts(seed, n_resamples, n_clusters)


def _draw_counts(seed: int, n_resamples: int, n_clusters: int) -> Iterator[np.ndarray]:
    """The count blocks of one seeded draw, one at a time (the same stream of draws whatever is kept)."""
    rng = np.random.default_rng(seed)
    rows_per_block = max(1, _BLOCK_ELEMENTS // n_clusters)
    for start in range(0, n_resamples, rows_per_block):  # blocks of resamples bound memory; not one per resample
        rows = min(rows_per_block, n_resamples - start)
        index = rng.integers(0, n_clusters, size=(rows, n_clusters))
        flat = (index + n_clusters * np.arange(rows)[:, None]).ravel()
        yield np.bincount(flat, minlength=rows * n_clusters).reshape(rows, n_clusters).astype(np.float64)


@functools.lru_cache(maxsize=2)
def _compact_counts(seed: int, n_resamples: int, n_clusters: int) -> tuple[np.ndarray, ...]:
    """:func:`_draw_counts` kept as the smallest unsigned integers that hold every count exactly (a count is at most
    the number of clusters, and in practice a few units: one byte each)."""
    blocks = []
    for counts in _draw_counts(seed, n_resamples, n_clusters):
        compact = counts.astype(np.min_scalar_type(int(counts.max())))
        compact.flags.writeable = False  # shared through the memo
        blocks.append(compact)
    return tuple(blocks)


def _bca_levels(
    resampled: np.ndarray, estimate: float, sums: np.ndarray, sizes: np.ndarray, alpha: float
) -> np.ndarray:
    """The two quantile levels of the BCa interval (Efron & Tibshirani 1993, eq. 14.10 and 14.15)."""
    n = resampled.size
    # Mid-rank share below the estimate, so a discrete statistic sitting on the estimate is not biased downwards.
    share_below = float(np.count_nonzero(resampled < estimate) + np.count_nonzero(resampled <= estimate)) / (2.0 * n)
    share_below = min(max(share_below, 0.5 / n), 1.0 - 0.5 / n)  # keep z0 finite
    z0 = float(ndtri(share_below))

    if sums.size > 1:
        # Leave-one-cluster-out jackknife of the item mean.
        jack = (sums.sum() - sums) / (sizes.sum() - sizes)
        dev = jack.mean() - jack
        denom = 6.0 * float(np.sum(dev**2)) ** 1.5
        accel = float(np.sum(dev**3)) / denom if denom > 0.0 else 0.0
    else:
        accel = 0.0

    z = ndtri(np.array([alpha, 1.0 - alpha]))
    return np.asarray(ndtr(z0 + (z0 + z) / (1.0 - accel * (z0 + z))))
