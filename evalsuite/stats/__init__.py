"""Statistics over match scores (DESIGN.md, "Statistics"): pure functions, arrays and records in, dataclasses out.

- ``cluster_bootstrap`` / ``paired_difference``: win rate (or a paired difference) with a question-clustered
  bootstrap CI (percentile or BCa) and a two-sided bootstrap p-value.
- ``sign_test``, ``holm``, ``holm_bounded``: exact sign test on wins vs losses; Holm-Bonferroni for a family of
  comparisons (``holm_bounded`` carries which p-values are upper bounds, e.g. a bootstrap p below 1/B).
- ``bradley_terry``: Elo-scale ratings, anchored, with question-clustered bootstrap CIs and ranks.
- ``length_controlled_win_rate``: win rate predicted at zero answer-length difference (evalsuite's LC);
  ``alpaca_eval_lc_win_rate``: AlpacaEval's LC v1 (length and per-instruction difficulty, L1 GLM).
- ``agreement``: MT-Bench S1/S2 agreement and Cohen's kappa between two sets of votes.
- ``min_detectable_difference``: power planning.
- ``panel_weights`` / ``panel_scores`` / ``cohen_kappa`` / ``fleiss_kappa`` / ``match_label``: a judge panel's
  weights (leave-one-out agreement x position consistency, or agreement with humans) and pooled scores.
- ``confidence_path`` / ``sequence_bounds`` / ``decide``: anytime-valid betting confidence sequences for a win rate
  and the gate decisions they settle (sequential judging).
- ``ppi_win_rate``: judge-only, human-only and prediction-powered (PPI++) win rates with CIs (human calibration).
- ``style_controlled_win_rates``: Arena-Hard v2 style control (length and markdown terms fitted with Bradley-Terry),
  win rates at the mean and at zero style difference; ``style_features`` measures an answer's style.

Every random quantity is seeded and vectorised over resamples; nothing here does I/O or imports a backend.
"""

from evalsuite.stats._agreement import AgreementResult, AgreementRow, Vote, agreement
from evalsuite.stats._bootstrap import BootstrapResult, cluster_bootstrap, paired_difference
from evalsuite.stats._bradley_terry import Rating, bradley_terry
from evalsuite.stats._length import AlpacaEvalLC, GamedBaselineRows, alpaca_eval_lc_win_rate, length_controlled_win_rate
from evalsuite.stats._panel import PanelWeight, cohen_kappa, fleiss_kappa, match_label, panel_scores, panel_weights
from evalsuite.stats._power import min_detectable_difference
from evalsuite.stats._ppi import CalibratedWinRate, WinRateInterval, ppi_win_rate
from evalsuite.stats._sequential import (
    BETTING,
    DEFAULT_BETTING,
    SequenceBounds,
    check_rule,
    confidence_path,
    decide,
    decide_path,
    family_alpha,
    sequence_bounds,
)
from evalsuite.stats._significance import holm, holm_bounded, sign_test
from evalsuite.stats._style import (
    STYLE_FEATURES,
    StyleCoefficient,
    StyleControl,
    StyleFeatures,
    StyleReference,
    StyleWinRate,
    approximate_token_count,
    strip_fenced_code,
    style_controlled_win_rates,
    style_differences,
    style_features,
)

__all__ = [
    "AlpacaEvalLC",
    "GamedBaselineRows",
    "alpaca_eval_lc_win_rate",
    "BETTING",
    "DEFAULT_BETTING",
    "check_rule",
    "decide_path",
    "family_alpha",
    "CalibratedWinRate",
    "SequenceBounds",
    "WinRateInterval",
    "confidence_path",
    "decide",
    "ppi_win_rate",
    "sequence_bounds",
    "AgreementResult",
    "AgreementRow",
    "BootstrapResult",
    "Rating",
    "Vote",
    "agreement",
    "bradley_terry",
    "cluster_bootstrap",
    "holm",
    "holm_bounded",
    "length_controlled_win_rate",
    "min_detectable_difference",
    "paired_difference",
    "sign_test",
    # judge panels
    "PanelWeight",
    "cohen_kappa",
    "fleiss_kappa",
    "match_label",
    "panel_scores",
    "panel_weights",
]
