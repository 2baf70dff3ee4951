"""Prediction-powered win rates: hand-computed estimates, lambda = 0 is the classical estimate, the power tuning is
ppi_py's, the bias correction works, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

ppi_py = pytest.importorskip("ppi_py")

from evalsuite.stats._ppi import power_tuned_lambda, ppi_win_rate, question_means  # noqa: E402


def _run(n_questions: int, labelled: int, seed: int, *, bias: float = 0.0) -> tuple[dict, dict]:
    """Judge scores on every item and human scores on the first ``labelled`` questions; the judge copies the human
    verdict with probability 0.7 and otherwise says 'model wins' with probability 0.5 + bias."""
    rng = np.random.default_rng(seed)
    human_all = rng.choice([0.0, 0.5, 1.0], p=[0.4, 0.2, 0.4], size=(n_questions, 2))
    own = np.where(rng.random((n_questions, 2)) < 0.5 + bias, 1.0, 0.0)
    judge_all = np.where(rng.random((n_questions, 2)) < 0.7, human_all, own)
    judge = {(f"q{i}", t + 1): float(judge_all[i, t]) for i in range(n_questions) for t in range(2)}
    human = {(f"q{i}", t + 1): float(human_all[i, t]) for i in range(labelled) for t in range(2)}
    return judge, human


def test_question_means_average_turns() -> None:
    assert question_means({("a", 1): 1.0, ("a", 2): 0.0, ("b", 1): 0.5}) == {"a": 0.5, "b": 0.5}


def test_hand_computed_estimates_with_plain_ppi() -> None:
    # 4 questions, 2 turns; humans labelled q0 and q1.
    judge = {("q0", 1): 1.0, ("q0", 2): 1.0, ("q1", 1): 1.0, ("q1", 2): 0.0,
             ("q2", 1): 1.0, ("q2", 2): 0.5, ("q3", 1): 0.0, ("q3", 2): 1.0}
    human = {("q0", 1): 0.5, ("q0", 2): 1.0, ("q1", 1): 0.0, ("q1", 2): 0.0}
    r = ppi_win_rate(judge, human, lam=1.0)
    # judge per question: 1 .5 .75 .5 ; human: .75 0 ; judge on the labelled items: 1 .5
    assert r.judge.win_rate == pytest.approx(0.6875)
    assert r.human.win_rate == pytest.approx(0.375)
    # lam = 1: judge mean on the unlabelled questions (.75 + .5)/2 + mean(human - judge) ((.75-1) + (0-.5))/2
    assert r.ppi.win_rate == pytest.approx(0.625 - 0.375)
    assert (r.judge.n, r.judge.n_questions, r.human.n, r.human.n_questions) == (8, 4, 4, 2)


def test_lambda_zero_is_the_classical_human_estimate() -> None:
    judge, human = _run(60, 20, seed=1, bias=0.2)
    r = ppi_win_rate(judge, human, lam=0.0)
    assert r.ppi.win_rate == pytest.approx(r.human.win_rate)
    assert r.human.win_rate == pytest.approx(np.mean(list(human.values())))
    # lam = 0 leaves only the labelled sample's variance: the same interval as human-only
    assert (r.ppi.ci_low, r.ppi.ci_high) == pytest.approx((r.human.ci_low, r.human.ci_high))


def test_power_tuning_is_ppi_pys_rule() -> None:
    judge, human = _run(80, 25, seed=2)
    jq, hq = question_means(judge), question_means(human)
    jl = question_means({k: judge[k] for k in human})
    y = np.array([hq[q] for q in sorted(hq)])
    yhat = np.array([jl[q] for q in sorted(hq)])
    yunl = np.array([jq[q] for q in sorted(jq) if q not in hq])
    lam = power_tuned_lambda(y, yhat, yunl)
    assert 0.0 < lam < 1.0
    ours = np.ravel(ppi_py.ppi_mean_ci(y, yhat, yunl, alpha=0.05, lam=lam))
    theirs = np.ravel(ppi_py.ppi_mean_ci(y, yhat, yunl, alpha=0.05))
    assert ours == pytest.approx(theirs)
    r = ppi_win_rate(judge, human)
    assert r.lam == pytest.approx(lam)
    assert r.ppi.win_rate == pytest.approx(float(ppi_py.ppi_mean_pointestimate(y, yhat, yunl, lam=lam).squeeze()))


def test_an_informative_judge_narrows_the_interval_and_a_constant_one_does_not() -> None:
    judge, human = _run(200, 30, seed=3)
    r = ppi_win_rate(judge, human)
    assert r.ppi.ci_high - r.ppi.ci_low < r.human.ci_high - r.human.ci_low
    constant = {k: 0.5 for k in judge}
    assert ppi_win_rate(constant, human).lam == 0.0


def test_ppi_corrects_a_biased_judge_on_average() -> None:
    est_ppi, est_judge, truth = [], [], 0.5
    for seed in range(60):
        judge, human = _run(200, 50, seed=100 + seed, bias=0.4)
        r = ppi_win_rate(judge, human)
        est_ppi.append(r.ppi.win_rate)
        est_judge.append(r.judge.win_rate)
    # judge: 0.7 * 0.5 + 0.3 * 0.9 = 0.62; PPI: unbiased for the human 0.5 (sd of the mean of 60 seeds ~ 0.006)
    assert np.mean(est_judge) == pytest.approx(0.62, abs=0.02)
    assert np.mean(est_ppi) == pytest.approx(truth, abs=0.02)


def test_every_question_labelled_gives_the_human_estimate() -> None:
    judge, human = _run(20, 20, seed=4)
    r = ppi_win_rate(judge, human)
    assert r.ppi == r.human and r.lam == 0.0


def test_bad_input_is_refused() -> None:
    judge, human = _run(20, 5, seed=5)
    with pytest.raises(ValueError, match="no judge score"):
        ppi_win_rate(judge, {**human, ("q99", 1): 1.0})
    with pytest.raises(ValueError, match="at least 2 questions"):
        ppi_win_rate(judge, {("q0", 1): 1.0, ("q0", 2): 0.0})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ppi_win_rate({**judge, ("q0", 1): 2.0}, human)
