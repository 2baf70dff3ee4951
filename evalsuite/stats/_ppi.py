"""Human-calibrated win rates by prediction-powered inference (DESIGN.md, "Human calibration").

The judge scored every item (question, turn) of a model pair; humans scored a subset. Three win rates of ``model``
against ``opponent`` on the human scale (1 = model wins, 0.5 = tie, 0 = opponent wins), each with a 95% CI:

- judge-only: the judge's mean over every question. Its CI is honest about sampling but centred on the *judge's*
  win rate, so when the judge is biased it misses the human win rate however many questions there are;
- human-only: the human mean over the labelled questions (unbiased, wide: few labels);
- prediction-powered (PPI++, Angelopoulos, Duchi & Zrnic 2023): lam * (judge mean on the unlabelled questions) +
  mean over the labelled questions of (human - lam * judge). Unbiased for any lam (the correction removes the judge's
  bias in expectation); lam is power-tuned, lam = cov(human, judge) / ((1 + n/N) var(judge)) clipped to [0, 1],
  which makes the interval no wider than the human-only one asymptotically (lam = 0 is the human-only estimate).

Clustering by question: items are first averaged per question (a question's turns share a conversation, so their
verdicts are correlated); every estimate and CLT interval below treats questions as the i.i.d. unit. A labelled
question contributes its human mean and the judge's mean over the *same* labelled items; the unlabelled set is the
questions without any human label, so the two samples are disjoint, as PPI assumes. Assumption: which questions got
human labels does not depend on the answers (a random subset).

Intervals: the point estimates and standard errors are ``ppi_py``'s (``ppi_mean_pointestimate`` / ``ppi_mean_ci``
for PPI++, ``classical_mean_ci`` for the two baselines: the same CLT machinery, so widths compare like for like), with
one change: the normal quantile is replaced by Student's t with (questions - 1) degrees of freedom, counting the
labelled questions for PPI and human-only (their variance is dominated by, or is, the labelled sample's). With 8
labelled questions the normal interval covered the human win rate in 82% of simulated seeds
(``scripts/sim_ppi.py``); t's wider quantile is the standard small-sample repair and vanishes as labels grow.
``ppi_py`` is imported when a function here is called (it pulls in numba and statsmodels), from the ``calibrate``
extra.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from evalsuite.errors import InputError

ItemKey = tuple[str, int]  # (question_id, turn)


@dataclass(frozen=True)
class WinRateInterval:
    """A win rate with its confidence interval; ``n`` counts the items (question, turn) it rests on and
    ``n_questions`` the questions (the resampling unit)."""

    win_rate: float
    ci_low: float
    ci_high: float
    n: int
    n_questions: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CalibratedWinRate:
    """Judge-only, human-only and prediction-powered win rates of one model pair; ``lam`` is PPI++'s tuned weight."""

    judge: WinRateInterval
    human: WinRateInterval
    ppi: WinRateInterval
    lam: float


def _ppi_py() -> Any:
    try:
        import ppi_py
    except ImportError:  # pragma: no cover - the extra is installed by `make install`
        raise InputError(
            "human calibration needs the ppi-python package", fix="pip install 'evalsuite[calibrate]'"
        ) from None
    return ppi_py


def question_means(items: Mapping[ItemKey, float]) -> dict[str, float]:
    """Mean item score per question."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for (qid, _turn), score in items.items():
        sums[qid] = sums.get(qid, 0.0) + score
        counts[qid] = counts.get(qid, 0) + 1
    return {q: sums[q] / counts[q] for q in sums}


def power_tuned_lambda(human: np.ndarray, judge_labelled: np.ndarray, judge_unlabelled: np.ndarray) -> float:
    """PPI++'s variance-minimising weight for a mean: cov(Y, Yhat) / ((1 + n/N) var(Yhat on all)), clipped to [0, 1]
    (``ppi_py``'s rule for ``lam=None``, with the covariance and variance centred at their sample means)."""
    n, big_n = human.size, judge_unlabelled.size
    if n < 2 or big_n == 0:
        return 0.0
    cov = float(np.mean((human - human.mean()) * (judge_labelled - judge_labelled.mean())))
    var = float(np.var(np.concatenate([judge_labelled, judge_unlabelled]), ddof=1))
    if var <= 0.0:
        return 0.0  # a constant judge carries no information
    return float(np.clip(cov / ((1.0 + n / big_n) * var), 0.0, 1.0))


def ppi_win_rate(
    judge: Mapping[ItemKey, float],
    human: Mapping[ItemKey, float],
    *,
    alpha: float = 0.05,
    lam: float | None = None,
) -> CalibratedWinRate:
    """Judge-only, human-only and PPI++ win rates from item scores in [0, 1] (module doc).

    ``judge`` holds the judge's score of every item, ``human`` the human score (mean over annotators) of the labelled
    items; every human item must have a judge score. ``lam`` fixes PPI's weight (0: human-only; 1: plain PPI);
    None tunes it. Raises ValueError for fewer than 2 labelled questions or a human item without a judge score.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    missing = [k for k in human if k not in judge]
    if missing:
        raise ValueError(f"{len(missing)} human-labelled items have no judge score, e.g. {missing[0]}")
    for name, scores in (("judge", judge), ("human", human)):
        values = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
        if values.size and (not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > 1.0):
            raise ValueError(f"{name} scores must be finite and in [0, 1]")
    ppi = _ppi_py()

    human_q = question_means(human)
    labelled_ids = sorted(human_q)
    if len(labelled_ids) < 2:
        raise ValueError(f"need human labels on at least 2 questions, got {len(labelled_ids)}")
    judge_on_labelled = question_means({k: judge[k] for k in human})
    judge_q = question_means(judge)
    unlabelled_ids = sorted(q for q in judge_q if q not in human_q)

    y = np.array([human_q[q] for q in labelled_ids])
    y_hat = np.array([judge_on_labelled[q] for q in labelled_ids])
    y_hat_unl = np.array([judge_q[q] for q in unlabelled_ids])
    all_judge = np.array([judge_q[q] for q in sorted(judge_q)])

    judge_ci = _classical(ppi, all_judge, alpha, n=len(judge))
    human_ci = _classical(ppi, y, alpha, n=len(human))
    tuned = power_tuned_lambda(y, y_hat, y_hat_unl) if lam is None else float(lam)
    if y_hat_unl.size == 0:
        # Every question is labelled: nothing for the judge to add; PPI is the human-only estimate.
        return CalibratedWinRate(judge_ci, human_ci, human_ci, 0.0)
    estimate = float(np.asarray(ppi.ppi_mean_pointestimate(y, y_hat, y_hat_unl, lam=tuned)).squeeze())
    low, high = ppi.ppi_mean_ci(y, y_hat, y_hat_unl, alpha=alpha, lam=tuned)
    ppi_ci = _interval(estimate, low, high, alpha, df=y.size - 1, n=len(judge), n_questions=len(judge_q))
    return CalibratedWinRate(judge_ci, human_ci, ppi_ci, tuned)


def _classical(ppi: Any, per_question: np.ndarray, alpha: float, *, n: int) -> WinRateInterval:
    low, high = ppi.classical_mean_ci(per_question, alpha=alpha)
    size = int(per_question.size)
    return _interval(float(per_question.mean()), low, high, alpha, df=size - 1, n=n, n_questions=size)


def _interval(estimate: float, low: Any, high: Any, alpha: float, *, df: int, n: int, n_questions: int) -> WinRateInterval:
    """Re-centre ppi_py's normal interval on Student's t quantile with ``df`` degrees of freedom (module doc); a win
    rate cannot leave [0, 1], so neither can its interval."""
    from scipy.stats import norm, t

    half = (float(np.asarray(high).squeeze()) - float(np.asarray(low).squeeze())) / 2.0
    half *= float(t.ppf(1.0 - alpha / 2.0, max(df, 1)) / norm.ppf(1.0 - alpha / 2.0))
    return WinRateInterval(estimate, max(0.0, estimate - half), min(1.0, estimate + half), n, n_questions)
