"""A judge panel's results: several judges' matches in, one results document out (``build_panel_results``, pure).

Every member judges every match in both orders; its matches are reconciled on their own (its position consistency
is its own). The panel's verdict on a match is the weighted mean of the members' match scores
(``evalsuite.stats.panel_scores``), with weights that mean something (``evalsuite.stats.panel_weights``): by default
each member's mean chance-corrected agreement (Cohen's kappa) with each other member times its position consistency, so
a judge that reads position or flips coins weighs about nothing; from agreement with human labels when given; fixed
when the config sets them. Every figure of the results document (win rate, CIs, Holm, Bradley-Terry, style control)
is then computed on the panel's verdicts exactly as for one judge, resampling questions, so the members'
disagreement on a question widens the CI instead of vanishing into a pooled count. Beside it: each member's own win
rate and CI per comparison (``per_judge``), the members with their weights, health, agreement and cost (``judges``),
and Cohen's kappa per pair of members with Fleiss' kappa for the panel (``judge_agreement``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np

from evalsuite.judge.swap import judge_health
from evalsuite.records import Match
from evalsuite.report.build import StyleInput, build_results
from evalsuite.report.results import (
    Comparison,
    Health,
    JudgeRate,
    KappaPair,
    PanelAgreement,
    PanelMember,
    Results,
    RunInfo,
    StatsOptions,
)

ItemKey = tuple[str, int, str, str]  # (question id, turn, model X, model Y) of an oriented match


@dataclass(frozen=True)
class PanelJudge:
    """One member of a panel: its name (the config table's), its label (the store's key for its judgments), its
    matches (oriented like the run's), what it cost in USD, and the config's fixed weight (None: computed)."""

    name: str
    label: str
    matches: tuple[Match, ...]
    cost: float | None = None
    weight: float | None = None


def _key(m: Match) -> ItemKey:
    return (m.question_id, m.turn, m.model_x, m.model_y)


def _scored(matches: Sequence[Match]) -> dict[ItemKey, float]:
    return {_key(m): float(m.score) for m in matches if not m.error and m.score is not None}


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(float(x), nd)


def panel_matches(panel: Sequence[PanelJudge], merged: Mapping[ItemKey, float]) -> list[Match]:
    """One match per item any member judged: the panel's score (None and an error when no member scored it),
    inconsistent when a member's own two orders disagreed on it."""
    first: dict[ItemKey, Match] = {}
    flipped: set[ItemKey] = set()
    for j in panel:
        for m in j.matches:
            first.setdefault(_key(m), m)
            if m.inconsistent:
                flipped.add(_key(m))
    out = []
    for key, m in first.items():
        score = merged.get(key)
        out.append(Match(m.question_id, m.category, m.turn, m.model_x, m.model_y,
                         None if score is None else float(score), key in flipped, score is None))
    return out


def _per_judge(c: Comparison, baseline: str, panel: Sequence[PanelJudge], options: StatsOptions) -> dict[str, JudgeRate]:
    from evalsuite import stats

    out = {}
    for j in panel:
        ms = [m for m in j.matches if m.model_x == c.model and m.model_y == baseline and not m.error
              and m.score is not None]
        if not ms:
            out[j.name] = JudgeRate()
            continue
        r = stats.cluster_bootstrap(np.array([m.score for m in ms], dtype=float), np.array([m.question_id for m in ms]),
                                    n_resamples=options.n_resamples, confidence=options.confidence, seed=options.seed)
        out[j.name] = JudgeRate(_r(r.estimate), _r(r.ci_low), _r(r.ci_high), len(ms))
    return out


def panel_agreement(scores: Mapping[str, Mapping[ItemKey, float]]) -> PanelAgreement:
    """Cohen's kappa per pair of members on the matches both scored, Fleiss' kappa on those every member scored
    (labels: X wins, tie, Y wins)."""
    from evalsuite import stats

    names = list(scores)
    pairs = []
    for a, b in combinations(names, 2):
        common = sorted(set(scores[a]) & set(scores[b]))
        kappa = stats.cohen_kappa([stats.match_label(scores[a][k]) for k in common],
                                  [stats.match_label(scores[b][k]) for k in common]) if common else None
        pairs.append(KappaPair(a, b, _r(kappa, 4), len(common)))
    shared = set.intersection(*(set(s) for s in scores.values())) if scores else set()
    fleiss = None
    if len(names) >= 2 and shared:
        counts = np.zeros((len(shared), 3))
        for i, k in enumerate(sorted(shared)):
            for n in names:
                counts[i, stats.match_label(scores[n][k])] += 1
        fleiss = stats.fleiss_kappa(counts)
    return PanelAgreement(tuple(pairs), _r(fleiss, 4), len(shared))


def build_panel_results(
    panel: Sequence[PanelJudge],
    *,
    baseline: str,
    candidates: Sequence[str],
    lengths: Mapping[str, Mapping[tuple[str, int], int]],
    options: StatsOptions = StatsOptions(),
    info: RunInfo | None = None,
    diversity: Mapping[str, float | None] | None = None,
    style: StyleInput | None = None,
    human: Mapping[ItemKey, float] | None = None,
) -> Results:
    """The results document of a panel (see the module's docstring). ``human``: human scores of some matches
    (item -> score in [0, 1]); when given, the weights come from each member's agreement with them."""
    from evalsuite import stats

    if not panel:
        raise ValueError("a panel needs at least one judge")
    scores = {j.name: _scored(j.matches) for j in panel}
    health = {j.name: Health.of(judge_health(j.matches)) for j in panel}
    fixed = {j.name: float(j.weight) for j in panel if j.weight is not None}
    weights = stats.panel_weights(scores, {n: h.consistency for n, h in health.items()}, fixed=fixed or None,
                                  human=dict(human) if human else None)
    w = {pw.name: pw.weight for pw in weights}
    merged = stats.panel_scores(scores, w)
    heard = [j for j in panel if w.get(j.name, 0.0) > 0] or list(panel)
    results = build_results(
        panel_matches(panel, merged), baseline=baseline, candidates=candidates, lengths=lengths, options=options,
        info=info, diversity=diversity, style=style, health_source=[m for j in heard for m in j.matches],
    )
    by_name = {pw.name: pw for pw in weights}
    members = tuple(
        PanelMember(
            name=j.name, label=j.label, weight=_r(by_name[j.name].weight, 4), weight_source=by_name[j.name].source,
            consistency=health[j.name].consistency, first_position_share=health[j.name].first_position_win_share,
            agreement=_r(by_name[j.name].kappa, 4), n_matches=len(j.matches), errors=sum(m.error for m in j.matches),
            cost_usd=j.cost,
        )
        for j in panel
    )
    comps = tuple(replace(c, per_judge=_per_judge(c, baseline, panel, options)) for c in results.comparisons)
    return replace(results, comparisons=comps, judges=members, judge_agreement=panel_agreement(scores))


__all__ = ["ItemKey", "PanelJudge", "build_panel_results", "panel_agreement", "panel_matches"]
