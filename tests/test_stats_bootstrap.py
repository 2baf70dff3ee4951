"""Cluster bootstrap and paired difference: pinned against scipy.stats.bootstrap, an exact distribution, coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import binom as binom_coef

from evalsuite.stats import BootstrapResult, cluster_bootstrap, paired_difference


def _quantile_mc_sd(level: float, n_resamples: int, se: float) -> float:
    """Monte Carlo sd of a bootstrap quantile: sqrt(q(1-q)/B) / density, density of a normal with this se."""
    density = stats.norm.pdf(stats.norm.ppf(level)) / se
    return float(np.sqrt(level * (1.0 - level) / n_resamples) / density)


def _skewed_scores() -> np.ndarray:
    # Continuous and strongly right-skewed (like "average"-mode scores of a weak candidate): BCa moves away from
    # the percentile interval by much more than Monte Carlo noise, so the comparison with scipy is sharp.
    return np.random.default_rng(7).beta(0.3, 3.0, size=30)


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_singleton_clusters_match_scipy_item_bootstrap(method: str) -> None:
    scores = _skewed_scores()
    n_resamples = 60_000
    ours = cluster_bootstrap(
        scores, np.arange(scores.size), n_resamples=n_resamples, method=method, seed=1  # type: ignore[arg-type]
    )
    ref = stats.bootstrap(
        (scores,), np.mean, n_resamples=n_resamples, method="BCa" if method == "bca" else "percentile", rng=2
    )
    # Two independent Monte Carlo estimates of the same quantile differ by sqrt(2) * (one estimate's sd); the BCa
    # levels themselves move with the Monte Carlo error of z0 (sd sqrt(1/4B)/phi(0) in z units), added on top.
    se = ref.standard_error
    tol_low = 5 * np.sqrt(2) * _quantile_mc_sd(0.025, n_resamples, se)
    tol_high = 5 * np.sqrt(2) * _quantile_mc_sd(0.975, n_resamples, se)
    if method == "bca":
        z0_shift = 5 * np.sqrt(2) * np.sqrt(0.25 / n_resamples) / stats.norm.pdf(0.0) * se
        tol_low, tol_high = tol_low + z0_shift, tol_high + z0_shift
    assert ours.estimate == pytest.approx(scores.mean(), abs=1e-12)
    assert ours.ci_low == pytest.approx(ref.confidence_interval.low, abs=tol_low)
    assert ours.ci_high == pytest.approx(ref.confidence_interval.high, abs=tol_high)
    assert ours.se == pytest.approx(se, rel=0.02)
    assert ours.method == method and ours.n_resamples == n_resamples


def test_bca_differs_from_percentile_on_skewed_data() -> None:
    # Guards the test above: if BCa collapsed to the percentile interval, the scipy comparison would notice.
    scores = _skewed_scores()
    clusters = np.arange(scores.size)
    pct = cluster_bootstrap(scores, clusters, n_resamples=60_000, method="percentile", seed=1)
    bca = cluster_bootstrap(scores, clusters, n_resamples=60_000, method="bca", seed=1)
    assert bca.ci_high - pct.ci_high > 10 * _quantile_mc_sd(0.975, 60_000, pct.se)


def test_unequal_cluster_sizes_resample_whole_clusters_and_weigh_by_items() -> None:
    # One question with 50 items all won, 49 questions with one item each all lost. A resample draws the big
    # cluster K ~ Binomial(50, 1/50) times, and the item mean is 50K / (50K + 50 - K) (not the mean of cluster means).
    # Exact CDF of K: 0.364, 0.736, 0.922, 0.982, ...: the 2.5% quantile is K = 0, the 97.5% quantile K = 3.
    scores = np.concatenate([np.ones(50), np.zeros(49)])
    clusters = np.concatenate([np.zeros(50, dtype=int), np.arange(1, 50)])
    res = cluster_bootstrap(scores, clusters, n_resamples=20_000, seed=3)
    k = np.arange(51)
    pmf = binom_coef(50, k) * 0.02**k * 0.98 ** (50 - k)
    ratio = 50 * k / (50 * k + 50 - k)
    cdf = np.cumsum(pmf)
    assert cdf[2] < 0.975 < cdf[3]
    assert res.estimate == pytest.approx(50 / 99)
    assert res.ci_low == 0.0
    assert res.ci_high == pytest.approx(ratio[3])
    exact_sd = np.sqrt(pmf @ ratio**2 - (pmf @ ratio) ** 2)
    assert res.se == pytest.approx(exact_sd, rel=0.03)


def test_correlated_turns_widen_the_interval_versus_item_bootstrap() -> None:
    rng = np.random.default_rng(11)
    n_questions = 80
    # Both turns of a question share a verdict 90% of the time: positive within-question correlation.
    first = rng.choice([0.0, 0.5, 1.0], size=n_questions)
    second = np.where(rng.random(n_questions) < 0.9, first, rng.choice([0.0, 0.5, 1.0], size=n_questions))
    scores = np.column_stack([first, second]).ravel()
    by_question = np.repeat(np.arange(n_questions), 2)
    clustered = cluster_bootstrap(scores, by_question, n_resamples=10_000)
    per_item = cluster_bootstrap(scores, np.arange(scores.size), n_resamples=10_000)
    assert clustered.estimate == per_item.estimate
    # Design effect 1 + rho ~ 1.9 -> width ratio ~ sqrt(1.9) ~ 1.38.
    assert (clustered.ci_high - clustered.ci_low) > 1.2 * (per_item.ci_high - per_item.ci_low)


def test_coin_flip_judge_is_calibrated() -> None:
    # A judge with no preference: scores 0 / 0.5 / 1 at random, 80 questions x 2 turns. The 95% CI must cover
    # the true 0.5 about 95% of the time and claim "better than baseline" (lower bound > 0.5) about 2.5%.
    n_seeds, n_questions = 400, 80
    clusters = np.repeat(np.arange(n_questions), 2)
    covered = above = significant = 0
    for seed in range(n_seeds):
        scores = np.random.default_rng(10_000 + seed).choice([0.0, 0.5, 1.0], size=2 * n_questions)
        res = cluster_bootstrap(scores, clusters, n_resamples=2_000, seed=seed)
        covered += res.ci_low <= 0.5 <= res.ci_high
        above += res.ci_low > 0.5
        significant += res.p_value < 0.05
    assert 0.92 <= covered / n_seeds <= 0.98
    assert 0.005 <= above / n_seeds <= 0.06
    assert 0.02 <= significant / n_seeds <= 0.08


def test_p_value_agrees_with_the_percentile_interval() -> None:
    rng = np.random.default_rng(5)
    clusters = np.repeat(np.arange(80), 2)
    for shift in (0.0, 0.05, 0.1, 0.15, 0.2):
        scores = np.clip(rng.choice([0.0, 0.5, 1.0], size=160) + shift, 0, 1)
        res = cluster_bootstrap(scores, clusters, n_resamples=5_000)
        excludes = not (res.ci_low <= 0.5 <= res.ci_high)
        if abs(res.p_value - 0.05) > 0.01:  # away from the boundary, where quantile interpolation can differ
            assert excludes == (res.p_value < 0.05)
        # In the tail the bootstrap p-value is close to the normal-theory one from the same se. (Near 0.5 it is
        # larger: resamples exactly at 0.5, common for 0 / 0.5 / 1 scores, count on both sides by design.)
        normal_p = 2 * stats.norm.sf(abs(res.estimate - 0.5) / res.se)
        if normal_p < 0.2:
            assert res.p_value == pytest.approx(normal_p, abs=0.02)


def test_no_spread_gives_a_point_interval() -> None:
    ties = np.full(20, 0.5)
    res = cluster_bootstrap(ties, np.arange(20), method="bca")
    assert (res.estimate, res.ci_low, res.ci_high, res.se) == (0.5, 0.5, 0.5, 0.0)
    assert res.p_value == 1.0
    wins = cluster_bootstrap(np.ones(10), np.arange(10))
    assert (wins.ci_low, wins.ci_high) == (1.0, 1.0)
    assert (wins.p_value, wins.p_value_bound) == (1 / 10_000, True)  # below 1/B, never 0


def test_a_p_value_with_no_resample_on_the_far_side_is_the_bound_one_over_b() -> None:
    # 40 questions, 36 wins and 4 ties: with 2,000 resamples none reaches 50%, so p is only known to be < 1/2000
    scores = np.r_[np.ones(36), np.full(4, 0.5)]
    res = cluster_bootstrap(scores, np.arange(40), n_resamples=2000)
    assert res.p_value == 1 / 2000 and res.p_value_bound
    # one resample on the far side is an observed share: doubled, 2/B, and not a bound
    close = cluster_bootstrap(np.r_[np.ones(3), np.zeros(2)], np.arange(5), n_resamples=2000)
    assert not close.p_value_bound and close.p_value >= 2 / 2000
    # the paired difference follows the same rule
    d = paired_difference(np.ones(30), np.zeros(30), np.arange(30), n_resamples=500)
    assert (d.p_value, d.p_value_bound) == (1 / 500, True)


def test_seeded_and_string_clusters() -> None:
    rng = np.random.default_rng(0)
    scores = rng.choice([0.0, 0.5, 1.0], size=40)
    clusters = np.repeat([f"q{i}" for i in range(20)], 2)
    a = cluster_bootstrap(scores, clusters, n_resamples=1_000, seed=4)
    assert a == cluster_bootstrap(scores, clusters, n_resamples=1_000, seed=4)
    assert a != cluster_bootstrap(scores, clusters, n_resamples=1_000, seed=5)
    assert isinstance(a, BootstrapResult)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cluster_bootstrap(np.array([0.5, 1.5]), np.array([0, 1]))
    with pytest.raises(ValueError, match="one cluster per item"):
        cluster_bootstrap(np.array([0.5, 1.0]), np.array([0]))
    with pytest.raises(ValueError, match="method"):
        cluster_bootstrap(np.array([0.5, 1.0]), np.array([0, 1]), method="basic")  # type: ignore[arg-type]


def test_paired_difference_of_identical_candidates_is_zero() -> None:
    scores = np.random.default_rng(2).choice([0.0, 0.5, 1.0], size=160)
    clusters = np.repeat(np.arange(80), 2)
    res = paired_difference(scores, scores.copy(), clusters, method="bca")
    assert (res.estimate, res.ci_low, res.ci_high) == (0.0, 0.0, 0.0)
    assert res.p_value == 1.0


def test_paired_difference_detects_a_shifted_candidate() -> None:
    rng = np.random.default_rng(3)
    clusters = np.repeat(np.arange(80), 2)
    base = rng.choice([0.0, 0.5, 1.0], size=160)
    # The second candidate is the first one, upgraded by half a point on a third of the items.
    better = np.clip(base + 0.5 * (rng.random(160) < 1 / 3), 0.0, 1.0)
    res = paired_difference(better, base, clusters, n_resamples=10_000)
    assert res.estimate == pytest.approx(better.mean() - base.mean())
    assert res.ci_low > 0.0 and res.p_value < 0.001
    # Pairing removes the shared question effect: much narrower than either win rate's own interval.
    alone = cluster_bootstrap(better, clusters, n_resamples=10_000)
    assert res.ci_high - res.ci_low < 0.7 * (alone.ci_high - alone.ci_low)


def test_paired_difference_requires_aligned_items() -> None:
    with pytest.raises(ValueError, match="aligned"):
        paired_difference(np.array([0.5, 1.0]), np.array([0.5]), np.array([0, 1]))


def test_memoised_and_streamed_draws_give_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    # A large run's draws are too big to keep and are streamed block by block; they must be the very same draws.
    import evalsuite.stats._bootstrap as bootstrap

    scores = np.random.default_rng(3).beta(0.5, 0.5, size=400)
    clusters = np.repeat(np.arange(200), 2)
    bootstrap._compact_counts.cache_clear()
    memoised = cluster_bootstrap(scores, clusters, n_resamples=3_000, method="bca", seed=5)
    assert bootstrap._compact_counts.cache_info().currsize == 1
    monkeypatch.setattr(bootstrap, "_CACHE_BYTES", 0)
    monkeypatch.setattr(bootstrap, "_BLOCK_ELEMENTS", 200 * 7)  # 7 resamples per block, one block held at a time
    streamed = cluster_bootstrap(scores, clusters, n_resamples=3_000, method="bca", seed=5)
    assert streamed == memoised
    assert bootstrap._compact_counts.cache_info().currsize == 1  # nothing more was kept
