"""Bradley-Terry: pinned against a direct per-match maximum-likelihood fit, the closed-form two-model case, and its
invariances (anchor, duplication, side swap); the batched bootstrap fit against one-at-a-time fits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from evalsuite.stats import Rating, bradley_terry
from evalsuite.stats._bradley_terry import _fit_batched, _fit_point

ELO_PER_LOGIT = 400 / math.log(10)


def _four_model_matches(seed: int = 0) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    strength = {"sft": 0.0, "dpo": 0.6, "simpo": 0.3, "kto": -0.4}
    names = list(strength)
    model_a: list[str] = []
    model_b: list[str] = []
    scores: list[float] = []
    questions: list[int] = []
    for q in range(40):
        for _ in range(6):
            a, b = rng.choice(names, size=2, replace=False)
            p = 1 / (1 + math.exp(-(strength[a] - strength[b])))
            u = rng.random()
            # 20% ties; otherwise a wins with the BT probability.
            scores.append(0.5 if u < 0.2 else float(rng.random() < p))
            model_a.append(str(a))
            model_b.append(str(b))
            questions.append(q)
    return model_a, model_b, np.array(scores), np.array(questions)


def _direct_mle(model_a: list[str], model_b: list[str], scores: np.ndarray, anchor: str) -> dict[str, float]:
    """Per-match likelihood, written out independently: anchor fixed at 1000, the others free (Elo units)."""
    others = sorted(set(model_a) | set(model_b) - {anchor})

    def rating_of(params: np.ndarray, name: str) -> float:
        return 1000.0 if name == anchor else float(params[others.index(name)])

    def nll(params: np.ndarray) -> float:
        total = 0.0
        for a, b, s in zip(model_a, model_b, scores):
            p_a = 1.0 / (1.0 + 10.0 ** ((rating_of(params, b) - rating_of(params, a)) / 400.0))
            total -= s * math.log(p_a) + (1.0 - s) * math.log(1.0 - p_a)
        return total

    result = minimize(nll, np.full(len(others), 1000.0), method="BFGS", options={"gtol": 1e-8})
    out = {name: float(result.x[i]) for i, name in enumerate(others)}
    out[anchor] = 1000.0
    return out


def test_matches_direct_per_match_maximum_likelihood() -> None:
    model_a, model_b, scores, questions = _four_model_matches()
    ratings = bradley_terry(model_a, model_b, scores, questions, anchor="sft", n_rounds=200)
    expected = _direct_mle(model_a, model_b, scores, anchor="sft")
    assert {r.model for r in ratings} == set(expected)
    for r in ratings:
        assert r.rating == pytest.approx(expected[r.model], abs=0.05)


def test_two_models_closed_form() -> None:
    # A wins 3 of 4 (ties as half: 2 wins + 2 ties of 4 = 3/4 too) -> odds 3 -> 400 log10(3) Elo above the anchor.
    ratings = bradley_terry(
        ["a", "a", "a", "a"], ["base"] * 4, np.array([1.0, 1.0, 0.5, 0.5]), np.arange(4), anchor="base"
    )
    by_model = {r.model: r for r in ratings}
    assert by_model["base"].rating == 1000.0
    # Tolerance: the 1e-6 ridge biases the logit by ~1e-6 * 1.1 / 0.1875 ~ 6e-6, i.e. ~0.001 Elo.
    assert by_model["a"].rating == pytest.approx(1000 + 400 * math.log10(3), abs=0.01)
    custom = bradley_terry(
        ["a", "a", "a", "a"], ["base"] * 4, np.array([1.0, 1.0, 0.5, 0.5]), np.arange(4),
        anchor="base", anchor_rating=1500.0, scale=200.0,
    )
    assert {r.model: r.rating for r in custom}["a"] == pytest.approx(1500 + 200 * math.log10(3), abs=0.01)


def test_anchor_exact_sorted_and_ci_contains_estimate() -> None:
    model_a, model_b, scores, questions = _four_model_matches()
    ratings = bradley_terry(model_a, model_b, scores, questions, anchor="sft", n_rounds=500, seed=3)
    anchor = next(r for r in ratings if r.model == "sft")
    assert (anchor.rating, anchor.ci_low, anchor.ci_high) == (1000.0, 1000.0, 1000.0)
    assert [r.rating for r in ratings] == sorted((r.rating for r in ratings), reverse=True)
    for r in ratings:
        assert r.ci_low <= r.rating <= r.ci_high
        assert isinstance(r, Rating)
    for r in ratings:  # LMSYS rank: 1 + number of models certainly better
        assert r.rank == 1 + sum(o.ci_low > r.ci_high for o in ratings)
    assert ratings[0].model == "dpo" and ratings[0].rank == 1


def test_invariant_to_duplicating_every_match_and_to_swapping_sides() -> None:
    model_a, model_b, scores, questions = _four_model_matches()
    base = {r.model: r.rating for r in bradley_terry(model_a, model_b, scores, questions, anchor="sft", n_rounds=50)}
    doubled = bradley_terry(
        model_a * 2, model_b * 2, np.concatenate([scores, scores]), np.concatenate([questions, questions]),
        anchor="sft", n_rounds=50,
    )
    swapped = bradley_terry(model_b, model_a, 1.0 - scores, questions, anchor="sft", n_rounds=50)
    for r in doubled:
        assert r.rating == pytest.approx(base[r.model], abs=1e-4)
    for r in swapped:
        assert r.rating == pytest.approx(base[r.model], abs=1e-4)


def test_ci_narrows_with_more_questions_and_is_seeded() -> None:
    small = _four_model_matches(seed=1)
    ratings = bradley_terry(*small, anchor="sft", n_rounds=300, seed=9)
    assert ratings == bradley_terry(*small, anchor="sft", n_rounds=300, seed=9)
    model_a, model_b, scores, questions = small
    # The same matches counted on 4x as many questions (new ids): question-level resampling sees 4x the data.
    big = bradley_terry(
        model_a * 4, model_b * 4, np.tile(scores, 4),
        np.concatenate([questions + 1000 * k for k in range(4)]), anchor="sft", n_rounds=300, seed=9,
    )
    width = {r.model: r.ci_high - r.ci_low for r in ratings}
    for r in big:
        if r.model != "sft":
            assert r.ci_high - r.ci_low == pytest.approx(width[r.model] / 2, rel=0.25)


def test_batched_newton_matches_one_optimizer_call_per_round() -> None:
    # The vectorised bootstrap fit agrees with L-BFGS run round by round, including a round with complete
    # separation (one model wins everything) where the tiny ridge keeps the rating finite.
    rng = np.random.default_rng(4)
    # Rows among 4 models (anchor = index 0 removed): pairs (0,1),(0,2),(1,2),(2,3),(1,3) x outcomes {0, 0.5, 1}.
    pairs = [(0, 1), (0, 2), (1, 2), (2, 3), (1, 3)]
    first = np.repeat([p[0] for p in pairs], 3)
    second = np.repeat([p[1] for p in pairs], 3)
    outcome = np.tile([0.0, 0.5, 1.0], len(pairs))
    incidence = np.zeros((first.size, 4))
    incidence[np.arange(first.size), first] = 1.0
    incidence[np.arange(first.size), second] = -1.0
    signed = incidence[:, 1:]
    weights = rng.integers(0, 6, size=(8, first.size)).astype(float)
    weights[0, (second == 3) & (outcome < 1.0)] = 0.0  # round 0: model 3 loses every match it plays
    weights[0, (second == 3) & (outcome == 1.0)] = 4.0
    start = _fit_point(signed, outcome, weights.sum(axis=0))
    batched = _fit_batched(signed, outcome, weights, start)
    for r in range(weights.shape[0]):
        single = _fit_point(signed, outcome, weights[r])
        assert np.all(np.isfinite(batched[r]))
        assert batched[r] == pytest.approx(single, abs=1e-3 if r == 0 else 1e-6)
    assert batched[0, 2] < -10  # model 3's logit runs far below, but stays finite


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="anchor"):
        bradley_terry(["a"], ["b"], np.array([1.0]), np.array([0]), anchor="c")
    with pytest.raises(ValueError, match="itself"):
        bradley_terry(["a"], ["a"], np.array([1.0]), np.array([0]), anchor="a")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bradley_terry(["a"], ["b"], np.array([2.0]), np.array([0]), anchor="a")
    with pytest.raises(ValueError, match="no chain of matches"):
        bradley_terry(["a", "c"], ["base", "d"], np.array([1.0, 0.0]), np.array([0, 1]), anchor="base")


def test_a_model_that_wins_everything_gets_a_finite_rating_inside_its_interval() -> None:
    model_a = ["a", "a", "b", "c", "a"]
    model_b = ["base", "base", "base", "base", "b"]
    ratings = bradley_terry(model_a, model_b, np.array([1.0, 0.0, 0.5, 1.0, 1.0]), np.array([0, 1, 2, 0, 3]),
                            anchor="base", n_rounds=200)
    for r in ratings:
        assert math.isfinite(r.rating) and math.isfinite(r.ci_low) and math.isfinite(r.ci_high)
        assert r.ci_low <= r.rating <= r.ci_high
    assert ratings[0].model == "c"  # unbeaten: on top, far above, but finite thanks to the tiny ridge
