"""Whether a judge's verdicts can carry a conclusion: the health verdict and the thresholds it applies.

``judge_health_verdict`` reads two figures of a judge's health (``evalsuite.judge.swap.JudgeHealth``) and says
``ok``, ``weak``, ``unreliable`` or ``unknown``. An ``unreliable`` judge names a slot, not an answer: the leaderboard
marks its comparisons unreliable (no significance mark, no best beta) and ``evalsuite gate`` fails closed on them,
unless the user passes the override (``--allow-unhealthy-judge``, ``StatsOptions.allow_unhealthy_judge``).

The thresholds, and why (docs/judge-health.md says the same for users). MT-Bench (Zheng et al. 2023, Table 2)
measured pairwise position consistency of 65.0% for GPT-4, 46.2% for GPT-3.5 and 23.8% for Claude-v1, the last
favouring the first position in 75% of its pairs; all three are judges whose verdicts still track the answers.

- ``UNRELIABLE_CONSISTENCY = 0.20``: below the weakest judge MT-Bench still reports (23.8%). A judge that agrees
  with itself across the two orders in fewer than one match in five decides by position almost always.
- ``UNRELIABLE_FIRST_POSITION = 0.90`` (and its mirror ``1 - 0.90``): among decisive verdicts, a judge that picks the
  first-shown answer more than 90% (or less than 10%) of the time names a slot. Claude-v1, the most biased judge in
  MT-Bench, sat at 75%; an unbiased judge sits at 50%.
- ``WEAK_CONSISTENCY = 0.45``: below GPT-3.5's 46.2%, a warning only (the verdicts count; read them with care).
- ``MIN_DECISIVE = 10`` decisive verdicts before the first-position share is read, ``MIN_SWAPPED = 10`` matches
  judged in both orders before consistency is: below ten, one verdict moves a share by more than ten points, and a
  judge as good as GPT-3.5 (46% consistent) agrees with itself in at most one of ten matches with probability 2%. A
  figure from fewer is not used, so a small run is never ``unreliable`` by chance (``unknown`` when neither is used).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

UNRELIABLE_CONSISTENCY = 0.20
UNRELIABLE_FIRST_POSITION = 0.90
WEAK_CONSISTENCY = 0.45
MIN_DECISIVE = 10
MIN_SWAPPED = 10

HealthStatus = Literal["ok", "weak", "unreliable", "unknown"]
_STATUSES: tuple[HealthStatus, ...] = ("ok", "weak", "unreliable", "unknown")


@dataclass(frozen=True)
class HealthVerdict:
    """What a judge's health says about its verdicts: ``status`` and the reasons for it, one line each."""

    status: HealthStatus = "unknown"
    reasons: tuple[str, ...] = ()

    @property
    def unreliable(self) -> bool:
        return self.status == "unreliable"

    def describe(self) -> str:
        """One line: the status and its reasons."""
        return self.status + (f" ({'; '.join(self.reasons)})" if self.reasons else "")

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "reasons": list(self.reasons)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> HealthVerdict:
        status = str(d.get("status", "unknown"))
        known: HealthStatus = next((s for s in _STATUSES if s == status), "unknown")
        return cls(known, tuple(str(r) for r in d.get("reasons") or []))


def judge_health_verdict(consistency: float | None, first_position_share: float | None,
                         n_decisive: int | None = None, n_swapped: int | None = None) -> HealthVerdict:
    """The health verdict of a judge from its position consistency and first-position share of decisive verdicts.

    ``n_decisive`` (decisive judgments behind ``first_position_share``) and ``n_swapped`` (matches judged in both
    orders, behind ``consistency``) guard the figures against small samples; ``None`` means not known, and the figure
    is taken as it is.

    >>> judge_health_verdict(0.65, 0.52).status          # GPT-4 in MT-Bench
    'ok'
    >>> judge_health_verdict(0.238, 0.75).describe()     # Claude-v1 in MT-Bench: biased, still answers-driven
    'weak (position consistency 23.8% < 45%)'
    >>> judge_health_verdict(0.031, 0.976).describe()    # the collapsed-model run of issue 14
    'unreliable (position consistency 3.1% < 20%; first-position share 97.6% > 90%)'
    >>> judge_health_verdict(None, 0.04, n_decisive=50).describe()
    'unreliable (first-position share 4.0% < 10%)'
    >>> judge_health_verdict(None, 1.0, n_decisive=6).status   # six verdicts cannot tell bias from chance
    'unknown'
    >>> judge_health_verdict(0.0, 0.5, n_decisive=8, n_swapped=4).status
    'unknown'
    >>> judge_health_verdict(None, None).status
    'unknown'
    """
    reasons: list[str] = []
    unreliable = False
    if n_swapped is not None and n_swapped < MIN_SWAPPED:
        consistency = None
    if consistency is not None and consistency < UNRELIABLE_CONSISTENCY:
        reasons.append(f"position consistency {100 * consistency:.1f}% < {100 * UNRELIABLE_CONSISTENCY:g}%")
        unreliable = True
    share_known = first_position_share is not None and (n_decisive is None or n_decisive >= MIN_DECISIVE)
    if share_known and first_position_share is not None:
        if first_position_share > UNRELIABLE_FIRST_POSITION:
            reasons.append(f"first-position share {100 * first_position_share:.1f}% > {100 * UNRELIABLE_FIRST_POSITION:g}%")
            unreliable = True
        elif first_position_share < 1 - UNRELIABLE_FIRST_POSITION:
            reasons.append(f"first-position share {100 * first_position_share:.1f}% < {100 * (1 - UNRELIABLE_FIRST_POSITION):g}%")
            unreliable = True
    if unreliable:
        return HealthVerdict("unreliable", tuple(reasons))
    if consistency is not None and consistency < WEAK_CONSISTENCY:
        return HealthVerdict("weak", (f"position consistency {100 * consistency:.1f}% < {100 * WEAK_CONSISTENCY:g}%",))
    if consistency is None and not share_known:
        return HealthVerdict("unknown", ())
    return HealthVerdict("ok", ())


def worst(*verdicts: HealthVerdict) -> HealthVerdict:
    """The most severe of ``verdicts`` (unreliable > weak > ok > unknown), reasons of that severity merged.

    >>> worst(HealthVerdict("ok"), HealthVerdict("unreliable", ("x",)), HealthVerdict("unreliable", ("y",))).describe()
    'unreliable (x; y)'
    """
    rank: dict[HealthStatus, int] = {"unknown": 0, "ok": 1, "weak": 2, "unreliable": 3}
    top: HealthStatus = max((v.status for v in verdicts), key=lambda s: rank[s], default="unknown")
    reasons = tuple(dict.fromkeys(r for v in verdicts if v.status == top for r in v.reasons))
    return HealthVerdict(top, reasons)
