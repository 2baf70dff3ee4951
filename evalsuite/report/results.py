"""The results contract: what ``results.json`` holds, as typed records.

This module owns the document every reader of a run's outcome uses (markdown, CSV, plots, the gate, the terminal
table, the Python API). Nothing outside it looks up a results field by string key:

- ``Results`` and its parts (``Comparison``, ``TurnResult``, ``TurnDifference``, ``VariantPair``, ``Rating``,
  ``Sweep``, ``Health`` and its ``HealthVerdict``, ``HealthGroup``, ``RunInfo``, the ``sequential`` section
  ``SequentialRun`` and the ``calibration`` section's ``CalibrationRow``) are frozen dataclasses with ``to_json()`` /
  ``from_json()``. ``from_json`` reads every results.json this project has written (fields added since get their
  defaults; keys it does not know are kept in ``extra`` and written back), ``load_results(path)`` reads a file.
- ``with_kept_sections(results, path)``: what a later run writes in place of an earlier results.json keeps the
  sections it did not recompute (sequential, calibration, unknown keys), for the same baseline.
- How a ``Results`` is computed from matches lives in ``evalsuite.report.build`` (``build_results``, pure). Per candidate vs the baseline: counts, win rate,
  question-clustered bootstrap CIs (percentile and BCa), bootstrap and sign-test p-values, Holm over the family,
  length-controlled win rate, per-category and per-turn win rates (with a paired test of turn 2 minus turn 1).
  Across candidates: paired differences (variant vs variant), direct head-to-head win rates when judged,
  Bradley-Terry ratings (on games in ``games`` mode), beta-sweep tables, and judge health per judge x template x turn.

p-values: a bootstrap p with no resample on the far side is stored as its bound 1/B with ``*_bound = True`` (the
number stays numeric); ``format_p`` prints it as ``<0.0001`` for B = 10,000. Files written before that stored 0.0,
which reads as a bound too.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from evalsuite.errors import InputError
from evalsuite.judge.swap import JudgeHealth
from evalsuite.report.health import HealthVerdict, judge_health_verdict, worst

SWEEP_NAME = re.compile(r"^(?P<variant>.+)-b(?P<beta>\d+(?:\.\d+)?(?:e-?\d+)?)$")

Json = dict[str, Any]


# --- reading helpers ------------------------------------------------------------------------------------------------


def _opt_float(d: Mapping[str, Any], key: str) -> float | None:
    v = d.get(key)
    return None if v is None else float(v)


def _int(d: Mapping[str, Any], key: str, default: int = 0) -> int:
    v = d.get(key)
    return default if v is None else int(v)


def _extra(d: Mapping[str, Any], known: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in known}


def _p_bound(d: Mapping[str, Any], key: str) -> bool:
    """Whether the p-value under ``key`` is an upper bound: flagged, or 0.0 as written before bounds were stored."""
    if f"{key}_bound" in d:
        return bool(d[f"{key}_bound"])
    return d.get(key) == 0.0


def format_p(p: float | None, bound: bool = False, n_resamples: int | None = None) -> str:
    """A p-value for people: ``<0.0001`` for a bound (never ``0``), ``<0.001`` below 0.001, else three decimals.

    >>> format_p(0.0001, bound=True), format_p(0.0, bound=True, n_resamples=2000), format_p(0.0004), format_p(0.0312)
    ('<0.0001', '<0.0005', '<0.001', '0.031')
    """
    if p is None:
        return "–"
    if bound:
        # a bound of 0.0 comes from a file written before bounds were stored: the resolution was 1/B
        limit = p if p > 0 else (1.0 / n_resamples if n_resamples else 0.0)
        return f"<{limit:.2g}" if limit > 0 else "<1/B"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# --- the records ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatsOptions:
    """The statistics settings a results document was computed with (its ``stats`` block)."""

    n_resamples: int = 10_000
    bt_rounds: int = 1_000
    confidence: float = 0.95
    alpha: float = 0.05
    seed: int = 0
    # The smallest |win rate - 50%| that earns a significance mark. Soft verdicts (logprob, ``average`` mode) of a
    # judge that barely moves have almost no spread, so a CI can exclude 50% at 50.9%; a decisive judge cannot reach
    # significance below one point on fewer than 9,604 questions (1.96 * 0.5 / sqrt(n) = 0.01), so this floor only
    # ever removes marks that rest on a judge's low variance, not on a difference between the answers.
    min_effect: float = 0.01
    # Significance marks, best betas and gate decisions on comparisons whose judge failed its health check
    # (evalsuite.report.health): off unless the user says they know better.
    allow_unhealthy_judge: bool = False

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> StatsOptions:
        default = cls()
        return cls(
            n_resamples=_int(d, "n_resamples", default.n_resamples),
            bt_rounds=_int(d, "bt_rounds", default.bt_rounds),
            confidence=float(d.get("confidence", default.confidence)),
            alpha=float(d.get("alpha", default.alpha)),
            seed=_int(d, "seed", default.seed),
            # files written before the floor existed had none: reading them must not add marks' conditions they lack
            min_effect=float(d.get("min_effect", 0.0)),
            allow_unhealthy_judge=bool(d.get("allow_unhealthy_judge", False)),
        )


@dataclass(frozen=True)
class Health:
    """Judge health over a set of matches (see ``evalsuite.judge.swap.JudgeHealth`` for each figure's rule)."""

    n_judgments: int = 0
    n_matches: int = 0
    consistency: float | None = None
    first_position_win_share: float | None = None
    tie_share: float | None = None
    error_share: float | None = None
    n_errors: int = 0
    n_inconsistent: int = 0
    n_error_matches: int = 0

    @classmethod
    def of(cls, health: JudgeHealth) -> Health:
        return cls(**asdict(health))

    @property
    def n_decisive(self) -> int | None:
        """Decisive (A or B) judgments: the denominator of ``first_position_win_share``."""
        if self.tie_share is None:
            return None
        return round((self.n_judgments - self.n_errors) * (1.0 - self.tie_share))

    @property
    def n_swapped(self) -> int | None:
        """Matches judged in both orders with a verdict each: the denominator of ``consistency``."""
        if self.consistency is None:
            return None
        if self.consistency >= 1.0:
            return self.n_matches - self.n_error_matches
        return round(self.n_inconsistent / (1.0 - self.consistency))

    def verdict(self) -> HealthVerdict:
        """What these figures say about the judge (``evalsuite.report.health.judge_health_verdict``)."""
        return judge_health_verdict(self.consistency, self.first_position_win_share, self.n_decisive, self.n_swapped)

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Health:
        return cls(
            n_judgments=_int(d, "n_judgments"),
            n_matches=_int(d, "n_matches"),
            consistency=_opt_float(d, "consistency"),
            first_position_win_share=_opt_float(d, "first_position_win_share"),
            tie_share=_opt_float(d, "tie_share"),
            error_share=_opt_float(d, "error_share"),
            n_errors=_int(d, "n_errors"),
            n_inconsistent=_int(d, "n_inconsistent"),
            n_error_matches=_int(d, "n_error_matches"),
        )


@dataclass(frozen=True)
class HealthGroup:
    """Judge health of one judge under one template on one turn (DESIGN.md: health per judge x template x turn)."""

    judge: str
    template: str
    template_hash: str
    turn: int
    health: Health

    def to_json(self) -> Json:
        return {"judge": self.judge, "template": self.template, "template_hash": self.template_hash, "turn": self.turn,
                **self.health.to_json()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> HealthGroup:
        return cls(str(d.get("judge", "")), str(d.get("template", "")), str(d.get("template_hash", "")),
                   _int(d, "turn"), Health.from_json(d))


@dataclass(frozen=True)
class CategoryResult:
    """Win rate on one category's items."""

    n: int
    win_rate: float | None

    def to_json(self) -> Json:
        return {"n": self.n, "win_rate": self.win_rate}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CategoryResult:
        return cls(_int(d, "n"), _opt_float(d, "win_rate"))


@dataclass(frozen=True)
class TurnResult:
    """Win rate on one turn's items, with a bootstrap CI over questions (one item per question on a turn) and the
    bootstrap p-value against 50%."""

    turn: int
    n: int
    wins: int
    ties: int
    losses: int
    win_rate: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    p_value_bound: bool = False

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TurnResult:
        return cls(
            turn=_int(d, "turn"), n=_int(d, "n"), wins=_int(d, "wins"), ties=_int(d, "ties"), losses=_int(d, "losses"),
            win_rate=_opt_float(d, "win_rate"), ci_low=_opt_float(d, "ci_low"), ci_high=_opt_float(d, "ci_high"),
            p_value=_opt_float(d, "p_value"), p_value_bound=_p_bound(d, "p_value"),
        )


@dataclass(frozen=True)
class TurnDifference:
    """Turn 2 win rate minus turn 1 win rate on the questions scored on both turns (paired bootstrap over
    questions), with its two-sided p-value against no difference."""

    n_questions: int
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    p_value_bound: bool = False

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TurnDifference:
        return cls(_int(d, "n_questions"), _opt_float(d, "diff"), _opt_float(d, "ci_low"), _opt_float(d, "ci_high"),
                   _opt_float(d, "p_value"), _p_bound(d, "p_value"))


@dataclass(frozen=True)
class Item:
    """One scored (question, turn) of a comparison, kept so a later run can be gated against this one."""

    question_id: str
    turn: int
    score: float

    def to_json(self) -> list[Any]:
        return [self.question_id, self.turn, self.score]

    @classmethod
    def from_json(cls, row: Sequence[Any]) -> Item:
        return cls(str(row[0]), int(row[1]), float(row[2]))


@dataclass(frozen=True)
class JudgeRate:
    """One panel member's own win rate of a comparison, with its question-clustered CI (``per_judge``)."""

    win_rate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> JudgeRate:
        return cls(_opt_float(d, "win_rate"), _opt_float(d, "ci_low"), _opt_float(d, "ci_high"), _int(d, "n"))


_COMPARISON_KEYS = (
    "model", "baseline", "n", "wins", "ties", "losses", "errors", "inconsistent", "win_rate", "ci_low", "ci_high",
    "ci_bca_low", "ci_bca_high", "se", "p_bootstrap", "p_bootstrap_bound", "p_sign", "lc_win_rate", "avg_length",
    "avg_length_baseline", "external_se", "alpaca_eval_lc_win_rate", "n_questions", "per_category", "per_turn", "turn_difference", "health", "items", "p_holm",
    "p_holm_bound", "p_sign_holm", "significant", "diversity", "diagnosis", "effect", "mde", "health_verdict",
    "style_win_rate", "style_ci_low", "style_ci_high", "style_win_rate_at_mean", "style_ci_low_at_mean",
    "style_ci_high_at_mean", "per_judge",
)


@dataclass(frozen=True)
class Comparison:
    """One candidate against the baseline."""

    model: str
    baseline: str
    n: int = 0
    wins: int = 0
    ties: int = 0
    losses: int = 0
    errors: int = 0
    inconsistent: int = 0
    win_rate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_bca_low: float | None = None
    ci_bca_high: float | None = None
    se: float | None = None
    p_bootstrap: float | None = None
    p_bootstrap_bound: bool = False
    p_sign: float | None = None
    lc_win_rate: float | None = None
    avg_length: float | None = None
    avg_length_baseline: float | None = None
    # the source's own standard error of the win rate, for imports that publish one (AlpacaEval: SE of the mean
    # preference), shown beside the clustered CI so an import can be checked against the published leaderboard
    external_se: float | None = None
    # AlpacaEval's own length-controlled win rate (LC v1: length and per-instruction difficulty), for an AlpacaEval
    # import given AlpacaEval's difficulty file; lc_win_rate is evalsuite's LC, which does not use the difficulty
    alpaca_eval_lc_win_rate: float | None = None
    n_questions: int | None = None
    per_category: Mapping[str, CategoryResult] = field(default_factory=dict)
    per_turn: tuple[TurnResult, ...] = ()
    turn_difference: TurnDifference | None = None
    health: Health = field(default_factory=Health)
    items: tuple[Item, ...] = ()
    p_holm: float | None = None
    p_holm_bound: bool = False
    p_sign_holm: float | None = None
    significant: bool = False
    diversity: float | None = None
    diagnosis: tuple[str, ...] = ()
    # win rate - 50%, and the smallest such effect a decisive judge (no ties, item SD 0.5) detects with 80% power on
    # this many questions at the run's alpha (evalsuite.stats.min_detectable_difference): the effect the design supports
    effect: float | None = None
    mde: float | None = None
    # what the judge's health says about these verdicts (its own matches and the run as a whole, the worse of the two)
    health_verdict: HealthVerdict = field(default_factory=HealthVerdict)
    # Style control (evalsuite.stats.style_controlled_win_rates): the win rate Bradley-Terry predicts with the style
    # terms fitted beside the model terms, at zero style difference (the two answers equally long and formatted: what
    # is left when style is paid for) and, as Arena-Hard reports it, at the mean style difference of the battles
    style_win_rate: float | None = None
    style_ci_low: float | None = None
    style_ci_high: float | None = None
    style_win_rate_at_mean: float | None = None
    style_ci_low_at_mean: float | None = None
    style_ci_high_at_mean: float | None = None
    # a judge panel: each member's own win rate of this comparison (the comparison's own figures are the panel's)
    per_judge: Mapping[str, JudgeRate] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def unreliable(self) -> bool:
        """The judge failed its health check on this comparison: no conclusion (unless the user overrides it)."""
        return self.health_verdict.unreliable

    def turn(self, turn: int) -> TurnResult | None:
        return next((t for t in self.per_turn if t.turn == turn), None)

    def to_json(self) -> Json:
        out: Json = {
            "model": self.model, "baseline": self.baseline, "n": self.n, "wins": self.wins, "ties": self.ties,
            "losses": self.losses, "errors": self.errors, "inconsistent": self.inconsistent, "win_rate": self.win_rate,
            "ci_low": self.ci_low, "ci_high": self.ci_high, "ci_bca_low": self.ci_bca_low, "ci_bca_high": self.ci_bca_high,
            "se": self.se, "p_bootstrap": self.p_bootstrap, "p_bootstrap_bound": self.p_bootstrap_bound,
            "p_sign": self.p_sign, "lc_win_rate": self.lc_win_rate, "avg_length": self.avg_length,
            "avg_length_baseline": self.avg_length_baseline, "external_se": self.external_se,
            "alpaca_eval_lc_win_rate": self.alpaca_eval_lc_win_rate,
            "n_questions": self.n_questions,
            "per_category": {k: v.to_json() for k, v in self.per_category.items()},
            "per_turn": [t.to_json() for t in self.per_turn],
            "turn_difference": None if self.turn_difference is None else self.turn_difference.to_json(),
            "health": self.health.to_json(), "items": [i.to_json() for i in self.items], "p_holm": self.p_holm,
            "p_holm_bound": self.p_holm_bound, "p_sign_holm": self.p_sign_holm, "significant": self.significant,
            "diversity": self.diversity, "diagnosis": list(self.diagnosis), "effect": self.effect, "mde": self.mde,
            "health_verdict": self.health_verdict.to_json(),
            "style_win_rate": self.style_win_rate, "style_ci_low": self.style_ci_low,
            "style_ci_high": self.style_ci_high, "style_win_rate_at_mean": self.style_win_rate_at_mean,
            "style_ci_low_at_mean": self.style_ci_low_at_mean, "style_ci_high_at_mean": self.style_ci_high_at_mean,
        }
        if self.per_judge:
            out["per_judge"] = {k: v.to_json() for k, v in self.per_judge.items()}
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Comparison:
        td = d.get("turn_difference")
        health = Health.from_json(d.get("health") or {})
        verdict = d.get("health_verdict")
        win_rate = _opt_float(d, "win_rate")
        return cls(
            model=str(d["model"]), baseline=str(d.get("baseline", "")), n=_int(d, "n"), wins=_int(d, "wins"),
            ties=_int(d, "ties"), losses=_int(d, "losses"), errors=_int(d, "errors"), inconsistent=_int(d, "inconsistent"),
            win_rate=win_rate, ci_low=_opt_float(d, "ci_low"), ci_high=_opt_float(d, "ci_high"),
            ci_bca_low=_opt_float(d, "ci_bca_low"), ci_bca_high=_opt_float(d, "ci_bca_high"), se=_opt_float(d, "se"),
            p_bootstrap=_opt_float(d, "p_bootstrap"), p_bootstrap_bound=_p_bound(d, "p_bootstrap"),
            p_sign=_opt_float(d, "p_sign"), lc_win_rate=_opt_float(d, "lc_win_rate"),
            avg_length=_opt_float(d, "avg_length"), avg_length_baseline=_opt_float(d, "avg_length_baseline"),
            external_se=_opt_float(d, "external_se"), alpaca_eval_lc_win_rate=_opt_float(d, "alpaca_eval_lc_win_rate"),
            n_questions=None if d.get("n_questions") is None else int(d["n_questions"]),
            per_category={str(k): CategoryResult.from_json(v) for k, v in (d.get("per_category") or {}).items()},
            per_turn=tuple(TurnResult.from_json(t) for t in d.get("per_turn") or []),
            turn_difference=None if td is None else TurnDifference.from_json(td),
            health=health,
            items=tuple(Item.from_json(i) for i in d.get("items") or []),
            p_holm=_opt_float(d, "p_holm"), p_holm_bound=_p_bound(d, "p_holm"), p_sign_holm=_opt_float(d, "p_sign_holm"),
            significant=bool(d.get("significant", False)), diversity=_opt_float(d, "diversity"),
            diagnosis=tuple(str(x) for x in d.get("diagnosis") or []),
            effect=_opt_float(d, "effect") if "effect" in d else (None if win_rate is None else round(win_rate - 0.5, 6)),
            mde=_opt_float(d, "mde"),
            # a file written before verdicts were stored: the verdict its own health figures give
            health_verdict=health.verdict() if verdict is None else HealthVerdict.from_json(verdict),
            style_win_rate=_opt_float(d, "style_win_rate"), style_ci_low=_opt_float(d, "style_ci_low"),
            style_ci_high=_opt_float(d, "style_ci_high"), style_win_rate_at_mean=_opt_float(d, "style_win_rate_at_mean"),
            style_ci_low_at_mean=_opt_float(d, "style_ci_low_at_mean"),
            style_ci_high_at_mean=_opt_float(d, "style_ci_high_at_mean"),
            per_judge={str(k): JudgeRate.from_json(v) for k, v in (d.get("per_judge") or {}).items()},
            extra=_extra(d, _COMPARISON_KEYS),
        )


@dataclass(frozen=True)
class DirectResult:
    """Two candidates judged head to head: counts and the first-named candidate's win rate."""

    n: int
    wins: int
    ties: int
    losses: int
    errors: int
    inconsistent: int
    win_rate: float | None

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DirectResult:
        return cls(_int(d, "n"), _int(d, "wins"), _int(d, "ties"), _int(d, "losses"), _int(d, "errors"),
                   _int(d, "inconsistent"), _opt_float(d, "win_rate"))


@dataclass(frozen=True)
class VariantPair:
    """Variant vs variant: W(model_1) - W(model_2) against the same baseline on the same items (paired bootstrap)."""

    model_1: str
    model_2: str
    n: int = 0
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_value_bound: bool = False
    p_holm: float | None = None
    p_holm_bound: bool = False
    direct: DirectResult | None = None

    def to_json(self) -> Json:
        out: Json = {k: v for k, v in asdict(self).items() if k != "direct"}
        if self.direct is not None:
            out["direct"] = self.direct.to_json()
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> VariantPair:
        direct = d.get("direct")
        return cls(
            model_1=str(d["model_1"]), model_2=str(d["model_2"]), n=_int(d, "n"), diff=_opt_float(d, "diff"),
            ci_low=_opt_float(d, "ci_low"), ci_high=_opt_float(d, "ci_high"), p_value=_opt_float(d, "p_value"),
            p_value_bound=_p_bound(d, "p_value"), p_holm=_opt_float(d, "p_holm"), p_holm_bound=_p_bound(d, "p_holm"),
            direct=None if direct is None else DirectResult.from_json(direct),
        )


@dataclass(frozen=True)
class Rating:
    """A Bradley-Terry rating (Elo scale, the baseline anchored at 1000) with its bootstrap CI and rank."""

    model: str
    rating: float | None
    ci_low: float | None
    ci_high: float | None
    rank: int | None

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Rating:
        return cls(str(d["model"]), _opt_float(d, "rating"), _opt_float(d, "ci_low"), _opt_float(d, "ci_high"),
                   None if d.get("rank") is None else int(d["rank"]))


@dataclass(frozen=True)
class SweepRow:
    """One beta of a variant: its win rate vs the baseline."""

    model: str
    beta: float
    win_rate: float | None
    ci_low: float | None
    ci_high: float | None
    p_holm: float | None
    p_holm_bound: bool = False

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SweepRow:
        return cls(str(d["model"]), float(d["beta"]), _opt_float(d, "win_rate"), _opt_float(d, "ci_low"),
                   _opt_float(d, "ci_high"), _opt_float(d, "p_holm"), _p_bound(d, "p_holm"))


@dataclass(frozen=True)
class SweepOther:
    """The best beta minus another beta of the same variant (paired bootstrap, Holm within the variant)."""

    model: str
    beta: float
    diff: float | None
    p_value: float | None
    p_value_bound: bool = False
    p_holm: float | None = None
    p_holm_bound: bool = False

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SweepOther:
        return cls(str(d["model"]), float(d["beta"]), _opt_float(d, "diff"), _opt_float(d, "p_value"),
                   _p_bound(d, "p_value"), _opt_float(d, "p_holm"), _p_bound(d, "p_holm"))


@dataclass(frozen=True)
class Sweep:
    """The betas of one variant (``<variant>-b<beta>`` candidates), the best one, and whether it beats every other."""

    variant: str
    rows: tuple[SweepRow, ...]
    best: str
    best_beta: float
    vs_others: tuple[SweepOther, ...] = ()
    # the highest-rate beta is "the best beta" only when it beats every other significantly and the judge is healthy
    best_significant: bool = False
    judge_unreliable: bool = False

    @property
    def has_best(self) -> bool:
        """Whether the sweep names a best beta (``best`` is otherwise only the highest win rate)."""
        return self.best_significant and not self.judge_unreliable

    def to_json(self) -> Json:
        return {"variant": self.variant, "rows": [r.to_json() for r in self.rows], "best": self.best,
                "best_beta": self.best_beta, "vs_others": [o.to_json() for o in self.vs_others],
                "best_significant": self.best_significant, "judge_unreliable": self.judge_unreliable}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Sweep:
        return cls(str(d["variant"]), tuple(SweepRow.from_json(r) for r in d.get("rows") or []), str(d["best"]),
                   float(d["best_beta"]), tuple(SweepOther.from_json(o) for o in d.get("vs_others") or []),
                   bool(d.get("best_significant", False)), bool(d.get("judge_unreliable", False)))


@dataclass(frozen=True)
class Benchmark:
    """Which questions the run used."""

    name: str | None = None
    n_questions: int | None = None
    categories: tuple[str, ...] = ()
    question_ids: tuple[str, ...] | None = None

    def to_json(self) -> Json:
        out: Json = {"name": self.name, "n_questions": self.n_questions, "categories": list(self.categories)}
        if self.question_ids is not None:
            out["question_ids"] = list(self.question_ids)
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Benchmark:
        ids = d.get("question_ids")
        return cls(None if d.get("name") is None else str(d["name"]),
                   None if d.get("n_questions") is None else int(d["n_questions"]),
                   tuple(str(c) for c in d.get("categories") or []), None if ids is None else tuple(str(i) for i in ids))


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TokenUsage:
        return cls(_int(d, "prompt_tokens"), _int(d, "completion_tokens"), _opt_float(d, "cost_usd"))


@dataclass(frozen=True)
class Usage:
    """Tokens (and cost where prices are configured) per answer model and for the judge."""

    models: Mapping[str, TokenUsage] = field(default_factory=dict)
    judge: TokenUsage = field(default_factory=TokenUsage)

    def to_json(self) -> Json:
        return {"models": {k: v.to_json() for k, v in self.models.items()}, "judge": self.judge.to_json()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Usage:
        return cls({str(k): TokenUsage.from_json(v) for k, v in (d.get("models") or {}).items()},
                   TokenUsage.from_json(d.get("judge") or {}))


@dataclass(frozen=True)
class TrainingFlag:
    """A training-health flag a checkpoint's manifest carries (trainers/health.py)."""

    code: str
    message: str
    fix: str

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TrainingFlag:
        return cls(str(d.get("code", "")), str(d.get("message", "")), str(d.get("fix", "")))


@dataclass(frozen=True)
class GenerationRecord:
    """What generation did for one model in this run (``evalsuite.generate.GenerationSummary`` as written)."""

    model: str
    requested: int
    cached: int
    errors: int
    first_error: str | None = None

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> GenerationRecord:
        first = d.get("first_error")
        return cls(str(d.get("model", "")), _int(d, "requested"), _int(d, "cached"), _int(d, "errors"),
                   None if first is None else str(first))


@dataclass(frozen=True)
class JudgingRecord:
    """What judging did in this run (``evalsuite.judge.JudgeSummary`` as written)."""

    judge: str
    requested: int
    cached: int
    errors: int
    skipped_missing: int = 0

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> JudgingRecord:
        return cls(str(d.get("judge", "")), _int(d, "requested"), _int(d, "cached"), _int(d, "errors"),
                   _int(d, "skipped_missing"))


# --- sections added by other workflows (sequential judging, human calibration) ----------------------------------------


@dataclass(frozen=True)
class SequentialSettings:
    """The settings of a sequential run as written: the gate rule settled, its threshold, the family-wise alpha, the
    wave size, the seed of the question order and the betting strategy of the confidence sequences."""

    rule: str = "lower-bound"
    threshold: float = 0.5
    alpha: float = 0.05
    wave: int = 8
    seed: int = 0
    betting: str = "dkelly"  # what a file without the key was written with (evalsuite.stats' default then)

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SequentialSettings:
        default = cls()
        return cls(str(d.get("rule", default.rule)), float(d.get("threshold", default.threshold)),
                   float(d.get("alpha", default.alpha)), _int(d, "wave", default.wave), _int(d, "seed", default.seed),
                   str(d.get("betting", default.betting)))


@dataclass(frozen=True)
class WaveLook:
    """A candidate's sequence after a wave: questions scored so far, their mean and the bounds."""

    questions: int
    mean: float | None
    lower: float
    upper: float

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> WaveLook:
        return cls(_int(d, "questions"), _opt_float(d, "mean"), float(d["lower"]), float(d["upper"]))


@dataclass(frozen=True)
class CandidateSequence:
    """One candidate's sequential decision: how many questions and judge calls it took, and the sequence then."""

    model: str
    decision: str  # pass | fail
    settled: bool  # the sequence settled it (False: the questions ran out and the rule's default applied)
    questions_used: int
    questions_total: int
    calls_used: int
    calls_full: int
    alpha: float  # this candidate's level: the family's alpha / K
    mean: float | None
    lower: float
    upper: float
    history: tuple[WaveLook, ...] = ()

    @property
    def calls_saved(self) -> float:
        return 1.0 - self.calls_used / self.calls_full if self.calls_full else 0.0

    def to_json(self) -> Json:
        out = {k: v for k, v in asdict(self).items() if k != "history"}
        out["history"] = [h.to_json() for h in self.history]
        out["calls_saved"] = round(self.calls_saved, 6)
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CandidateSequence:
        return cls(
            model=str(d["model"]), decision=str(d["decision"]), settled=bool(d.get("settled", False)),
            questions_used=_int(d, "questions_used"), questions_total=_int(d, "questions_total"),
            calls_used=_int(d, "calls_used"), calls_full=_int(d, "calls_full"), alpha=float(d["alpha"]),
            mean=_opt_float(d, "mean"), lower=float(d["lower"]), upper=float(d["upper"]),
            history=tuple(WaveLook.from_json(h) for h in d.get("history") or []),
        )


@dataclass(frozen=True)
class SequentialRun:
    """The ``sequential`` section: the settings, the question order and each candidate's decision
    (``compare --sequential`` / ``gate --sequential``)."""

    options: SequentialSettings
    order: tuple[str, ...]
    candidates: tuple[CandidateSequence, ...]

    @property
    def passed(self) -> bool:
        return all(c.decision == "pass" for c in self.candidates)

    def to_json(self) -> Json:
        return {**self.options.to_json(), "order": list(self.order), "candidates": [c.to_json() for c in self.candidates]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SequentialRun:
        return cls(SequentialSettings.from_json(d), tuple(str(q) for q in d.get("order") or ()),
                   tuple(CandidateSequence.from_json(c) for c in d.get("candidates") or []))


@dataclass(frozen=True)
class CalibratedRate:
    """A win rate with its CI; ``n`` counts the items it rests on, ``n_questions`` the questions (resampling unit;
    None where the writer did not record it)."""

    win_rate: float
    ci_low: float
    ci_high: float
    n: int
    n_questions: int | None = None

    def to_json(self) -> Json:
        out: Json = {"win_rate": self.win_rate, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n}
        if self.n_questions is not None:
            out["n_questions"] = self.n_questions
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CalibratedRate:
        nq = d.get("n_questions")
        return cls(float(d["win_rate"]), float(d["ci_low"]), float(d["ci_high"]), _int(d, "n"),
                   None if nq is None else int(nq))


@dataclass(frozen=True)
class CalibrationRow:
    """One model pair of the ``calibration`` section (``evalsuite calibrate``): the win rate of ``model`` against
    ``opponent`` by the judge, by humans, and prediction-powered (PPI++, weight ``lam``)."""

    model: str
    opponent: str
    judge: CalibratedRate
    human: CalibratedRate
    ppi: CalibratedRate
    lam: float

    def to_json(self) -> Json:
        return {"model": self.model, "opponent": self.opponent, "judge": self.judge.to_json(),
                "human": self.human.to_json(), "ppi": self.ppi.to_json(), "ppi_lambda": self.lam}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CalibrationRow:
        return cls(str(d["model"]), str(d["opponent"]), CalibratedRate.from_json(d["judge"]),
                   CalibratedRate.from_json(d["human"]), CalibratedRate.from_json(d["ppi"]),
                   float(d.get("ppi_lambda", 0.0)))


_INFO_KEYS = ("evalsuite_version", "created", "run_dir", "benchmark", "judge", "templates", "mode", "pairs", "training",
              "usage", "note", "generation", "judging")


@dataclass(frozen=True)
class RunInfo:
    """Where the numbers come from: release, time, run directory, benchmark, judge, templates, reconciliation mode,
    usage, training flags of the checkpoints, and what generation and judging did. Optional everywhere: an import
    knows less than a compare."""

    evalsuite_version: str | None = None
    created: str | None = None
    run_dir: str | None = None
    benchmark: Benchmark = field(default_factory=Benchmark)
    judge: str | None = None
    templates: tuple[str, ...] = ()
    mode: str = "strict"
    pairs: str | None = None
    training: Mapping[str, tuple[TrainingFlag, ...]] = field(default_factory=dict)
    usage: Usage | None = None
    note: str | None = None
    generation: tuple[GenerationRecord, ...] | None = None
    judging: JudgingRecord | None = None

    def to_json(self) -> Json:
        out: Json = {
            "evalsuite_version": self.evalsuite_version, "created": self.created, "run_dir": self.run_dir,
            "benchmark": self.benchmark.to_json(), "judge": self.judge, "templates": list(self.templates),
            "mode": self.mode, "pairs": self.pairs,
            "training": {m: [f.to_json() for f in fl] for m, fl in self.training.items()},
        }
        if self.usage is not None:
            out["usage"] = self.usage.to_json()
        if self.note is not None:
            out["note"] = self.note
        if self.generation is not None:
            out["generation"] = [g.to_json() for g in self.generation]
        if self.judging is not None:
            out["judging"] = self.judging.to_json()
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RunInfo:
        usage, gen, judging = d.get("usage"), d.get("generation"), d.get("judging")
        return cls(
            evalsuite_version=None if d.get("evalsuite_version") is None else str(d["evalsuite_version"]),
            created=None if d.get("created") is None else str(d["created"]),
            run_dir=None if d.get("run_dir") is None else str(d["run_dir"]),
            benchmark=Benchmark.from_json(d.get("benchmark") or {}),
            judge=None if d.get("judge") is None else str(d["judge"]),
            templates=tuple(str(t) for t in d.get("templates") or []),
            mode=str(d.get("mode") or "strict"),
            pairs=None if d.get("pairs") is None else str(d["pairs"]),
            training={str(m): tuple(TrainingFlag.from_json(f) for f in fl) for m, fl in (d.get("training") or {}).items()},
            usage=None if usage is None else Usage.from_json(usage),
            note=None if d.get("note") is None else str(d["note"]),
            generation=None if gen is None else tuple(GenerationRecord.from_json(g) for g in gen),
            judging=None if judging is None else JudgingRecord.from_json(judging),
        )


@dataclass(frozen=True)
class StyleCoefficientResult:
    """How much the judge pays for one style feature: its Bradley-Terry coefficient on the standardised difference
    (logit per standard deviation; 0 with a [0, 0] CI when the feature had no spread and was left out of the fit)."""

    name: str
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None

    def to_json(self) -> Json:
        return {"estimate": self.estimate, "ci_low": self.ci_low, "ci_high": self.ci_high}

    @classmethod
    def from_json(cls, name: str, d: Mapping[str, Any]) -> StyleCoefficientResult:
        return cls(name, _opt_float(d, "estimate"), _opt_float(d, "ci_low"), _opt_float(d, "ci_high"))


@dataclass(frozen=True)
class StyleInfo:
    """How style control was computed (``style``): the normalisation of the style differences (``reference_mean`` and
    ``reference_std`` per feature, from this run's battles or frozen from an earlier run so adding a model moves no
    other), the unit answer length was counted in, the battles fitted, and, when it could not run, why."""

    features: tuple[str, ...] = ()
    reference_mean: tuple[float, ...] = ()
    reference_std: tuple[float, ...] = ()
    reference_source: str = "run"
    length_unit: str = ""
    n_battles: int = 0
    note: str | None = None

    def to_json(self) -> Json:
        return {"features": list(self.features), "reference_mean": list(self.reference_mean),
                "reference_std": list(self.reference_std), "reference_source": self.reference_source,
                "length_unit": self.length_unit, "n_battles": self.n_battles, "note": self.note}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> StyleInfo:
        return cls(
            features=tuple(str(x) for x in d.get("features") or []),
            reference_mean=tuple(float(x) for x in d.get("reference_mean") or []),
            reference_std=tuple(float(x) for x in d.get("reference_std") or []),
            reference_source=str(d.get("reference_source") or "run"), length_unit=str(d.get("length_unit") or ""),
            n_battles=_int(d, "n_battles"), note=None if d.get("note") is None else str(d["note"]),
        )


@dataclass(frozen=True)
class PanelMember:
    """One judge of a panel (``judges``): its weight in the panel's verdicts and where the weight comes from
    (``agreement``: its mean kappa with each other member times its position consistency; ``human``:
    agreement with human labels; ``fixed``: the config's; ``consistency``: position consistency alone, when no kappa
    cleared chance; ``equal``: when nothing tells the members apart),
    its health, its chance-corrected agreement with the rest of the panel, and what it cost."""

    name: str
    label: str = ""
    weight: float | None = None
    weight_source: str = "agreement"
    consistency: float | None = None
    first_position_share: float | None = None
    agreement: float | None = None  # the mean of its Cohen's kappas with each other member (with the humans: theirs)
    n_matches: int = 0
    errors: int = 0
    cost_usd: float | None = None

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PanelMember:
        return cls(
            name=str(d["name"]), label=str(d.get("label") or ""), weight=_opt_float(d, "weight"),
            weight_source=str(d.get("weight_source") or "agreement"), consistency=_opt_float(d, "consistency"),
            first_position_share=_opt_float(d, "first_position_share"), agreement=_opt_float(d, "agreement"),
            n_matches=_int(d, "n_matches"), errors=_int(d, "errors"), cost_usd=_opt_float(d, "cost_usd"),
        )


@dataclass(frozen=True)
class KappaPair:
    """Cohen's kappa between two panel members on the matches both scored (win / tie / loss)."""

    judge_1: str
    judge_2: str
    kappa: float | None = None
    n: int = 0

    def to_json(self) -> Json:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> KappaPair:
        return cls(str(d["judge_1"]), str(d["judge_2"]), _opt_float(d, "kappa"), _int(d, "n"))


@dataclass(frozen=True)
class PanelAgreement:
    """Inter-judge agreement of a panel (``judge_agreement``): Cohen's kappa per pair, Fleiss' kappa over the matches
    every member scored."""

    pairs: tuple[KappaPair, ...] = ()
    fleiss_kappa: float | None = None
    n_items: int = 0

    def to_json(self) -> Json:
        return {"pairs": [p.to_json() for p in self.pairs], "fleiss_kappa": self.fleiss_kappa, "n_items": self.n_items}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PanelAgreement:
        return cls(tuple(KappaPair.from_json(p) for p in d.get("pairs") or []), _opt_float(d, "fleiss_kappa"),
                   _int(d, "n_items"))


# sections a workflow other than compare adds; a later compare that does not recompute them keeps them
KEPT_SECTIONS = ("sequential", "calibration")
_RESULTS_KEYS = ("baseline", "candidates", "stats", "comparisons", "variant_pairs", "ratings", "sweeps", "health",
                 "health_verdict", "health_by_group", "style", "style_coefficients", "judges", "judge_agreement",
                 *KEPT_SECTIONS, *_INFO_KEYS)


@dataclass(frozen=True)
class Results:
    """The whole results document of a run (``results.json``)."""

    baseline: str
    candidates: tuple[str, ...]
    stats: StatsOptions = field(default_factory=StatsOptions)
    comparisons: tuple[Comparison, ...] = ()
    variant_pairs: tuple[VariantPair, ...] = ()
    ratings: tuple[Rating, ...] = ()
    sweeps: tuple[Sweep, ...] = ()
    health: Health = field(default_factory=Health)
    health_verdict: HealthVerdict = field(default_factory=HealthVerdict)
    health_by_group: tuple[HealthGroup, ...] = ()
    info: RunInfo = field(default_factory=RunInfo)
    sequential: SequentialRun | None = None
    calibration: tuple[CalibrationRow, ...] = ()
    # style control: how it was computed, and what the judge pays per style feature (one per feature, in order)
    style: StyleInfo | None = None
    style_coefficients: tuple[StyleCoefficientResult, ...] = ()
    # a judge panel: its members and their agreement (empty / None for one judge)
    judges: tuple[PanelMember, ...] = ()
    judge_agreement: PanelAgreement | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def comparison(self, model: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.model == model), None)

    def rating(self, model: str) -> Rating | None:
        return next((r for r in self.ratings if r.model == model), None)

    def to_json(self) -> Json:
        out: Json = {
            **self.info.to_json(),
            "baseline": self.baseline,
            "candidates": list(self.candidates),
            "stats": self.stats.to_json(),
            "comparisons": [c.to_json() for c in self.comparisons],
            "variant_pairs": [p.to_json() for p in self.variant_pairs],
            "ratings": [r.to_json() for r in self.ratings],
            "sweeps": [s.to_json() for s in self.sweeps],
            "health": self.health.to_json(),
            "health_verdict": self.health_verdict.to_json(),
            "health_by_group": [g.to_json() for g in self.health_by_group],
        }
        if self.sequential is not None:
            out["sequential"] = self.sequential.to_json()
        if self.calibration:
            out["calibration"] = [r.to_json() for r in self.calibration]
        if self.style is not None:
            out["style"] = self.style.to_json()
            out["style_coefficients"] = {c.name: c.to_json() for c in self.style_coefficients}
        if self.judges:
            out["judges"] = [j.to_json() for j in self.judges]
        if self.judge_agreement is not None:
            out["judge_agreement"] = self.judge_agreement.to_json()
        out.update(self.extra)
        return out

    def keeping_sections_of(self, previous: Results) -> Results:
        """These results with the sections of ``previous`` that they lack (sequential, calibration, and keys this
        release does not know), so rewriting results.json after a plain ``compare`` loses nothing it did not
        recompute."""
        if previous.baseline != self.baseline:  # its sections compared other pairs: nothing to keep
            return self
        extra = {**{k: v for k, v in previous.extra.items() if k not in self.extra}, **self.extra}
        return replace(self, sequential=self.sequential or previous.sequential,
                       calibration=self.calibration or previous.calibration, extra=extra)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Results:
        if not isinstance(d, Mapping) or "baseline" not in d:
            raise ValueError("not a results document: no 'baseline'")
        health = Health.from_json(d.get("health") or {})
        verdict = d.get("health_verdict")
        run_verdict = health.verdict() if verdict is None else HealthVerdict.from_json(verdict)
        comps = [Comparison.from_json(c) for c in d.get("comparisons") or []]
        # a file written before verdicts were stored: a comparison is judged by the worse of its own and the run's
        comps = [c if "health_verdict" in raw else replace(c, health_verdict=worst(c.health_verdict, run_verdict))
                 for c, raw in zip(comps, d.get("comparisons") or [])]
        return cls(
            baseline=str(d["baseline"]),
            candidates=tuple(str(c) for c in d.get("candidates") or [c["model"] for c in d.get("comparisons") or []]),
            stats=StatsOptions.from_json(d.get("stats") or {}),
            comparisons=tuple(comps),
            variant_pairs=tuple(VariantPair.from_json(p) for p in d.get("variant_pairs") or []),
            ratings=tuple(Rating.from_json(r) for r in d.get("ratings") or []),
            sweeps=tuple(Sweep.from_json(s) for s in d.get("sweeps") or []),
            health=health,
            health_verdict=run_verdict,
            health_by_group=tuple(HealthGroup.from_json(g) for g in d.get("health_by_group") or []),
            info=RunInfo.from_json(d),
            sequential=None if d.get("sequential") is None else SequentialRun.from_json(d["sequential"]),
            calibration=tuple(CalibrationRow.from_json(r) for r in d.get("calibration") or []),
            style=None if d.get("style") is None else StyleInfo.from_json(d["style"]),
            style_coefficients=tuple(StyleCoefficientResult.from_json(str(k), v)
                                     for k, v in (d.get("style_coefficients") or {}).items()),
            judges=tuple(PanelMember.from_json(j) for j in d.get("judges") or []),
            judge_agreement=None if d.get("judge_agreement") is None else PanelAgreement.from_json(d["judge_agreement"]),
            extra=_extra(d, _RESULTS_KEYS),
        )


def load_results(path: str | Path) -> Results:
    """Read a results.json written by any release of evalsuite; a one-line ``InputError`` when it is missing or broken."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no results file {str(p)!r}",
                         fix="run `evalsuite compare ...` (or import-judgments) first, or pass --run-dir")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise InputError(f"results.json is not valid JSON ({msg})", where=str(p), fix="re-run compare to rewrite it") from None
    try:
        return Results.from_json(data)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError(f"not a results document ({type(exc).__name__}: {exc})", where=str(p),
                         fix="pass a results.json written by `evalsuite compare` or `import-judgments`") from None


def write_results(results: Results, path: Path) -> Path:
    """Write ``results.json`` atomically (a reader never sees half a file)."""
    from evalsuite.store.atomic import atomic_write_text

    return atomic_write_text(path, results.dumps())


def with_kept_sections(results: Results, path: Path) -> Results:
    """``results`` with the sections of the results.json at ``path`` that it lacks (``Results.keeping_sections_of``):
    what a workflow writes in place of an earlier results document. An unreadable or absent file keeps nothing."""
    if not path.is_file():
        return results
    try:
        previous = load_results(path)
    except InputError:
        return results  # a broken file is overwritten, as before: there is nothing in it to keep
    return results.keeping_sections_of(previous)
