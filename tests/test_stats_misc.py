"""Sign test, Holm, length-controlled win rate, judge agreement and power, each against an independent computation."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import binomtest

from evalsuite.stats import (
    AgreementRow,
    Vote,
    agreement,
    holm,
    holm_bounded,
    length_controlled_win_rate,
    min_detectable_difference,
    sign_test,
)

# --- sign test -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wins,losses", [(0, 1), (1, 0), (5, 5), (12, 3), (3, 12), (30, 18), (0, 20), (77, 81), (1, 2)])
def test_sign_test_matches_scipy_binomtest(wins: int, losses: int) -> None:
    expected = binomtest(wins, wins + losses, 0.5, alternative="two-sided").pvalue
    assert sign_test(wins, losses) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_sign_test_without_decisive_matches_is_one() -> None:
    assert sign_test(0, 0) == 1.0
    with pytest.raises(ValueError):
        sign_test(-1, 3)


# --- Holm ----------------------------------------------------------------------------------------------------------


def test_holm_bounded_marks_adjusted_values_that_come_from_a_bound() -> None:
    # p = [1e-4 (bound), 0.03, 0.5]: ascending times (3, 2, 1) = 3e-4 (bound), 0.06, 0.5: only the first is a bound
    adjusted, bound = holm_bounded([0.5, 1e-4, 0.03], [False, True, False])
    np.testing.assert_allclose(adjusted, holm([0.5, 1e-4, 0.03]))
    assert bound.tolist() == [False, True, False]
    # a bound that the running maximum carries forward stays a bound: [1e-4 (bound) x 2, 1e-4 x 1] -> 2e-4, 2e-4
    adjusted, bound = holm_bounded([1e-4, 1e-4], [True, False])
    np.testing.assert_allclose(adjusted, [2e-4, 2e-4])
    assert bound.tolist() == [True, True]
    # capped at 1: exact, whatever the raw p was
    assert holm_bounded([0.6, 0.6], [True, True])[1].tolist() == [False, False]
    with pytest.raises(ValueError, match="one flag per p-value"):
        holm_bounded([0.1], [True, False])



def test_holm_hand_worked() -> None:
    # p = [0.01, 0.04, 0.03, 0.005], m = 4. Ascending: 0.005, 0.01, 0.03, 0.04
    # times (4, 3, 2, 1):                              0.020, 0.03, 0.06, 0.04
    # running max:                                      0.020, 0.03, 0.06, 0.06
    # back in the original order: [0.03, 0.06, 0.06, 0.02]
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # p = [0.6, 0.7, 0.01]: ascending 0.01, 0.6, 0.7 times (3, 2, 1) = 0.03, 1.2, 0.7
    # -> capped 0.03, 1.0, 0.7 -> running max 0.03, 1.0, 1.0 -> original order [1.0, 1.0, 0.03]
    np.testing.assert_allclose(holm([0.6, 0.7, 0.01]), [1.0, 1.0, 0.03])


def test_holm_edge_cases() -> None:
    assert holm([]).size == 0
    np.testing.assert_allclose(holm([0.2]), [0.2])
    adjusted = holm(np.random.default_rng(0).random(12))
    assert np.all(adjusted <= 1.0)
    with pytest.raises(ValueError):
        holm([0.5, 1.2])


# --- length-controlled win rate -----------------------------------------------------------------------------------


def test_lc_equals_raw_when_scores_ignore_length() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    len_c = rng.normal(600, 200, n)
    len_b = rng.normal(400, 150, n)
    scores = rng.choice([0.0, 0.5, 1.0], size=n, p=[0.25, 0.1, 0.65])
    assert length_controlled_win_rate(scores, len_c, len_b) == pytest.approx(scores.mean(), abs=0.02)


def test_lc_pulls_a_length_driven_win_rate_toward_one_half() -> None:
    # Wins depend only on the length difference, and equal lengths would be a coin flip; the candidate is
    # usually longer, so its raw win rate is well above 0.5 while the length-controlled one is ~0.5.
    rng = np.random.default_rng(1)
    n = 4000
    len_b = rng.normal(400, 100, n)
    len_c = len_b + rng.normal(150, 200, n)
    delta = len_c - len_b
    p_win = 1 / (1 + np.exp(-2.5 * np.tanh(delta / delta.std(ddof=1))))
    scores = (rng.random(n) < p_win).astype(float)
    raw = scores.mean()
    lc = length_controlled_win_rate(scores, len_c, len_b)
    assert raw > 0.65
    assert lc == pytest.approx(0.5, abs=0.04)


def test_lc_matches_an_independent_logistic_fit() -> None:
    # The same model written out directly and fitted by a derivative-free optimizer.
    rng = np.random.default_rng(2)
    n = 300
    len_c, len_b = rng.normal(500, 150, n), rng.normal(450, 100, n)
    scores = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=n)
    delta = len_c - len_b
    x = np.tanh(delta / np.std(delta, ddof=1))

    def nll(beta: np.ndarray) -> float:
        p = 1.0 / (1.0 + np.exp(-(beta[0] + beta[1] * x)))
        return -float(np.sum(scores * np.log(p) + (1.0 - scores) * np.log(1.0 - p)))

    fit = minimize(nll, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 4000})
    expected = 1.0 / (1.0 + math.exp(-fit.x[0]))
    assert length_controlled_win_rate(scores, len_c, len_b) == pytest.approx(expected, abs=1e-6)


def test_lc_degenerate_inputs() -> None:
    lengths = np.arange(10.0)
    assert length_controlled_win_rate(np.ones(10), lengths, np.zeros(10)) == 1.0  # all the same score
    scores = np.array([1.0, 0.0, 0.5, 1.0])
    same = np.full(4, 100.0)
    assert length_controlled_win_rate(scores, same, same) == pytest.approx(scores.mean())  # no length signal
    # Length separates wins from losses exactly: still finite, and at zero difference a coin flip.
    delta = np.linspace(-50, 50, 20)
    separated = length_controlled_win_rate((delta > 0).astype(float), 300 + delta, np.full(20, 300.0))
    assert separated == pytest.approx(0.5, abs=0.05)


# --- agreement -----------------------------------------------------------------------------------------------------


def _vote(q: str, turn: int, a: str, b: str, winner: str, judge: str) -> Vote:
    return Vote(question_id=q, turn=turn, model_a=a, model_b=b, winner=winner, judge=judge)


def test_agreement_hand_worked() -> None:
    judge = [
        _vote("q1", 1, "beta", "alpha", "model_a", "gpt-4"),  # picks beta (shown first)
        _vote("q2", 1, "alpha", "beta", "tie (inconsistent)", "gpt-4"),  # a tie
        _vote("q1", 2, "alpha", "beta", "model_a", "gpt-4"),  # picks alpha
        _vote("q3", 2, "alpha", "beta", "model_b", "gpt-4"),  # no human vote on q3: never compared
    ]
    human = [
        _vote("q1", 1, "alpha", "beta", "model_b", "h1"),  # beta, other order: agrees with the judge
        _vote("q1", 1, "alpha", "beta", "tie", "h2"),  # tie vs beta: disagrees (S1), dropped (S2)
        _vote("q2", 1, "beta", "alpha", "tie", "h1"),  # tie vs tie: agrees (S1), dropped (S2)
        _vote("q2", 1, "beta", "alpha", "model_b", "h2"),  # alpha vs tie: disagrees (S1), dropped (S2)
        _vote("q1", 2, "beta", "alpha", "model_a", "h1"),  # beta vs alpha: disagrees (S1 and S2)
    ]
    result = agreement(judge, human)
    # turn 1: S1 2 of 4, S2 1 of 1; turn 2: S1 0 of 1, S2 0 of 1; all turns: S1 2 of 5, S2 1 of 2.
    assert result.rows == [
        AgreementRow(turn=1, setup="S1", agree=2, total=4, ratio=0.5),
        AgreementRow(turn=1, setup="S2", agree=1, total=1, ratio=1.0),
        AgreementRow(turn=2, setup="S1", agree=0, total=1, ratio=0.0),
        AgreementRow(turn=2, setup="S2", agree=0, total=1, ratio=0.0),
        AgreementRow(turn=None, setup="S1", agree=2, total=5, ratio=0.4),
        AgreementRow(turn=None, setup="S2", agree=1, total=2, ratio=0.5),
    ]
    assert result.n_groups == 3
    # Labels (alpha = first by name): pairs (judge, human) = (beta, beta), (beta, tie), (tie, tie), (tie, alpha),
    # (alpha, beta). p_o = 2/5. Judge marginals alpha 1, beta 2, tie 2; human marginals alpha 1, beta 2, tie 2.
    # p_e = (1*1 + 2*2 + 2*2) / 25 = 9/25. kappa = (0.4 - 0.36) / (1 - 0.36) = 0.0625.
    assert result.kappa == pytest.approx(0.0625)


def test_agreement_of_a_set_with_itself_compares_each_pair_once() -> None:
    humans = [
        _vote("q1", 1, "alpha", "beta", "model_b", "h1"),
        _vote("q1", 1, "beta", "alpha", "model_a", "h2"),
        _vote("q1", 1, "alpha", "beta", "tie (bothbad)", "h3"),
        _vote("q2", 1, "alpha", "beta", "model_a", "h1"),  # alone in its group: nothing to compare
    ]
    result = agreement(humans)
    # Pairs: (h1, h2) beta = beta, (h1, h3) beta vs tie, (h2, h3) beta vs tie -> S1 1 of 3, S2 1 of 1.
    overall = {row.setup: row for row in result.rows if row.turn is None}
    assert (overall["S1"].agree, overall["S1"].total) == (1, 3)
    assert (overall["S2"].agree, overall["S2"].total) == (1, 1)
    assert result.n_groups == 1


def test_agreement_kappa_matches_direct_formula() -> None:
    rng = np.random.default_rng(5)
    winners = ["model_a", "model_b", "tie"]
    judge, human = [], []
    for q in range(60):
        for turn in (1, 2):
            truth = rng.choice(winners)
            judge.append(_vote(f"q{q}", turn, "x", "y", truth if rng.random() < 0.7 else rng.choice(winners), "j"))
            for h in range(2):
                flipped = rng.random() < 0.5  # humans saw the pair in either order
                said = truth if rng.random() < 0.6 else rng.choice(winners)
                if flipped and said != "tie":
                    said = "model_b" if said == "model_a" else "model_a"
                human.append(_vote(f"q{q}", turn, "y" if flipped else "x", "x" if flipped else "y", said, f"h{h}"))
    result = agreement(judge, human)

    # Direct: label each vote by the model name it picked; every judge vote meets the 2 human votes of its group.
    def picked(v: Vote) -> str:
        return "tie" if v.winner.startswith("tie") else (v.model_a if v.winner == "model_a" else v.model_b)

    pairs = [(picked(j), picked(h)) for j in judge for h in human if (j.question_id, j.turn) == (h.question_id, h.turn)]
    n = len(pairs)
    p_o = sum(a == b for a, b in pairs) / n
    labels = ["x", "y", "tie"]
    p_e = sum((sum(a == lab for a, _ in pairs) / n) * (sum(b == lab for _, b in pairs) / n) for lab in labels)
    overall_s1 = next(r for r in result.rows if r.turn is None and r.setup == "S1")
    assert overall_s1.total == n == 240
    assert overall_s1.agree == round(p_o * n)
    assert result.kappa == pytest.approx((p_o - p_e) / (1 - p_e))


def test_agreement_rejects_error_votes() -> None:
    with pytest.raises(ValueError, match="error"):
        agreement([_vote("q1", 1, "a", "b", "error", "j")])


# --- power ---------------------------------------------------------------------------------------------------------


def test_min_detectable_difference_formula_and_scaling() -> None:
    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)
    assert min_detectable_difference(80) == pytest.approx(z * 0.5 / math.sqrt(80))
    # 1 / sqrt(n): four times the questions, half the detectable difference.
    assert min_detectable_difference(320) == pytest.approx(min_detectable_difference(80) / 2)
    # Two turns per question with correlation 0.4: deff 1.4 over 160 items.
    assert min_detectable_difference(80, items_per_cluster=2, icc=0.4) == pytest.approx(
        z * 0.5 * math.sqrt(1.4 / 160)
    )
    # Perfectly correlated turns add nothing over one turn.
    assert min_detectable_difference(80, items_per_cluster=2, icc=1.0) == pytest.approx(min_detectable_difference(80))
    assert min_detectable_difference(80, alpha=0.01, power=0.9) > min_detectable_difference(80)
