"""Betting confidence sequences and the sequential gate decisions: coverage, shrinkage, a hand-computed capital,
validity under peeking at a small scale, and the decision table of each rule."""

from __future__ import annotations

import numpy as np
import pytest

from evalsuite.errors import InputError
from evalsuite.stats._sequential import (
    BETTING,
    _dkelly_steps,
    confidence_path,
    decide,
    decide_path,
    family_alpha,
    grid_points,
    sequence_bounds,
)


def _scores(p: float, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Question scores in {0, .25, .5, .75, 1}: the mean of two turns, each a tie (0.3) or a win with chance mu."""
    rng = np.random.default_rng(seed)
    mu = (p - 0.15) / 0.7
    turns = np.where(rng.random(shape + (2,)) < 0.3, 0.5, (rng.random(shape + (2,)) < mu).astype(float))
    return turns.mean(axis=-1)


@pytest.mark.parametrize("betting", sorted(BETTING))
def test_sequence_contains_true_mean_at_every_time_and_shrinks(betting: str) -> None:
    x = _scores(0.6, (300,), seed=3)
    path = confidence_path(x, betting=betting)  # type: ignore[arg-type]
    assert np.all(path.lower <= 0.6) and np.all(path.upper >= 0.6)
    width = path.upper - path.lower
    assert np.all(np.diff(path.lower) >= 0) and np.all(np.diff(path.upper) <= 0)  # running intersection
    assert width[299] < width[99] < width[19] < 1.0
    assert width[299] < 0.2


def test_sequence_bounds_is_the_last_point_of_the_path() -> None:
    x = _scores(0.65, (40,), seed=5)
    path = confidence_path(x, thresholds=[0.5])
    b = sequence_bounds(x, thresholds=[0.5])
    assert (b.n, b.lower, b.upper) == (40, path.lower[-1], path.upper[-1])
    assert b.mean == pytest.approx(x.mean())
    # Recomputing after each wave from the ordered history gives the same bounds as the path at the wave's end.
    assert sequence_bounds(x[:16], thresholds=[0.5]).lower == path.lower[15]
    empty = sequence_bounds(np.array([]))
    assert (empty.n, empty.lower, empty.upper) == (0, 0.0, 1.0)


def test_dkelly_capital_matches_a_hand_computation() -> None:
    x = np.array([1.0, 0.5, 0.75])
    m = np.array([0.5])
    steps = list(_dkelly_steps(x, m, 0.05))
    fractions = np.arange(1, 21) / 21
    lam = fractions / 0.5
    plus = np.mean(np.prod([1 + lam * (xi - 0.5) for xi in x], axis=0))
    minus = np.mean(np.prod([1 - lam * (xi - 0.5) for xi in x], axis=0))
    assert steps[-1][0][0] == pytest.approx(np.log(plus))
    assert steps[-1][1][0] == pytest.approx(np.log(minus))


def test_all_wins_push_the_lower_bound_up() -> None:
    path = confidence_path(np.ones(30))
    # One win only rules out tiny means (Markov: P(X = 1) <= mean, so a mean below ~alpha/2 is implausible).
    assert 0.0 < path.lower[0] < 0.025 and path.upper[0] == 1.0
    assert path.lower[-1] > 0.8 and path.upper[-1] == 1.0


def test_threshold_is_on_the_grid_so_decisions_there_are_exact() -> None:
    g = grid_points([0.6234])
    assert 0.6234 in g and g.min() > 0 and g.max() < 1 and np.all(np.diff(g) > 0)


def test_peeking_after_every_wave_keeps_false_passes_below_alpha_half() -> None:
    # 200 seeds at true win rate = threshold; a false pass is lower > 0.5 at any wave end (alpha/2 = 2.5%).
    x = _scores(0.5, (200, 40), seed=11)
    looks = range(8, 41, 8)
    passed, used = decide_path(confidence_path(x, thresholds=[0.5]), 0.5, "lower-bound", checkpoints=looks)
    assert passed.mean() <= 0.025 + 0.033  # 2.5% plus three standard errors of 200 seeds
    assert set(np.unique(used)) <= set(looks)
    # The same waves with a sequence at a useless level (alpha 0.9) pass far more often: the check can fail.
    loose, _ = decide_path(confidence_path(x, alpha=0.9, betting="agrapa", thresholds=[0.5]), 0.5, "lower-bound",
                           checkpoints=looks)
    assert loose.mean() > 0.1


def test_a_clear_improvement_stops_early_and_passes() -> None:
    x = _scores(0.8, (40, 80), seed=2)
    passed, used = decide_path(confidence_path(x, thresholds=[0.5]), 0.5, "lower-bound", checkpoints=range(8, 81, 8))
    assert passed.mean() > 0.95 and used.mean() < 40


@pytest.mark.parametrize(
    ("rule", "lower", "upper", "exhausted", "expected"),
    [
        ("lower-bound", 0.52, 0.9, False, "pass"),
        ("lower-bound", 0.50, 0.9, False, None),  # lower must exceed the threshold
        ("lower-bound", 0.40, 0.9, False, None),
        ("lower-bound", 0.20, 0.50, False, "fail"),  # a pass can no longer happen
        ("lower-bound", 0.40, 0.9, True, "fail"),  # questions ran out without evidence of improvement
        ("not-worse", 0.20, 0.49, False, "fail"),
        ("not-worse", 0.20, 0.50, False, None),
        ("not-worse", 0.50, 0.90, False, "pass"),  # a fail can no longer happen
        ("not-worse", 0.40, 0.60, True, "pass"),  # no evidence of regression
    ],
)
def test_decision_rules(rule: str, lower: float, upper: float, exhausted: bool, expected: str | None) -> None:
    assert decide(lower, upper, 0.5, rule, exhausted=exhausted) == expected


def test_decide_path_agrees_with_decide_at_each_look() -> None:
    x = _scores(0.58, (30, 48), seed=4)
    path = confidence_path(x, thresholds=[0.5])
    looks = list(range(8, 49, 8))
    for rule in ("lower-bound", "not-worse"):
        passed, used = decide_path(path, 0.5, rule, checkpoints=looks)
        for s in range(30):
            for k, n in enumerate(looks):
                d = decide(path.lower[s, n - 1], path.upper[s, n - 1], 0.5, rule, exhausted=k == len(looks) - 1)
                if d is not None:
                    assert (used[s], passed[s]) == (n, d == "pass")
                    break


def test_point_rule_cannot_be_settled_sequentially() -> None:
    with pytest.raises(InputError, match="point"):
        decide(0.6, 0.7, 0.5, "point")


def test_family_alpha_is_bonferroni_and_inputs_are_checked() -> None:
    assert family_alpha(0.05, 4) == pytest.approx(0.0125)
    with pytest.raises(ValueError):
        family_alpha(0.05, 0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        confidence_path(np.array([0.5, 1.2]))
    with pytest.raises(ValueError, match="betting"):
        confidence_path(np.array([0.5]), betting="martingale")  # type: ignore[arg-type]
