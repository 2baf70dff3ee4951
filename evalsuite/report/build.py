"""Computing a results document from matches: ``build_results`` (pure: matches in, a typed ``Results`` out).

What each figure means is written on the records in ``evalsuite.report.results`` (the contract); this module only
computes them: per candidate vs the baseline, counts, win rate, question-clustered bootstrap CIs (percentile and BCa),
bootstrap and sign-test p-values, Holm over the family, length-controlled win rate, per-category and per-turn win
rates (with a paired test of turn 2 minus turn 1); across candidates, paired differences (variant vs variant), direct
head-to-head win rates when judged, Bradley-Terry ratings (on games in ``games`` mode), beta-sweep tables, and judge
health per judge x template x turn. A new statistic is computed here and given a field there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from evalsuite.errors import InputError
from evalsuite.judge.swap import judge_health, judge_health_by_group, match_games
from evalsuite.records import Match
from evalsuite.report.health import worst
from evalsuite.report.results import (
    SWEEP_NAME,
    CategoryResult,
    Comparison,
    DirectResult,
    Health,
    HealthGroup,
    Item,
    Rating,
    Results,
    RunInfo,
    StatsOptions,
    StyleCoefficientResult,
    StyleInfo,
    Sweep,
    SweepOther,
    SweepRow,
    TurnDifference,
    TurnResult,
    VariantPair,
)

if TYPE_CHECKING:
    from evalsuite.stats import StyleFeatures, StyleReference


@dataclass(frozen=True)
class StyleInput:
    """What style control needs besides the matches: each answer turn's style features (model -> (question id, turn)
    -> features), the frozen normalisation to use (None: this run's battles set it), where that came from, and the
    unit answer length is counted in."""

    features: Mapping[str, Mapping[tuple[str, int], StyleFeatures]]
    reference: StyleReference | None = None
    reference_source: str = "run"
    length_unit: str = ""

# what answer length is counted in when no local tokenizer is at hand (evalsuite.stats.approximate_token_count)
APPROXIMATE_LENGTH_UNIT = "tokens, approximated offline (o200k-like count, evalsuite.stats.approximate_token_count)"


def style_input(
    texts: Mapping[str, Mapping[tuple[str, int], str]],
    *,
    count_tokens: Callable[[str], int] | None = None,
    length_unit: str | None = None,
    reference: StyleReference | None = None,
    reference_source: str = "run",
) -> StyleInput:
    """Style features of every answer turn in ``texts`` (model -> (question id, turn) -> text). ``count_tokens``
    counts length (a local tokenizer, named in ``length_unit``); None: the stated offline approximation."""
    from evalsuite import stats

    features = {m: {k: stats.style_features(t, count_tokens) for k, t in by.items()} for m, by in texts.items()}
    unit = length_unit or (APPROXIMATE_LENGTH_UNIT if count_tokens is None else "tokens")
    return StyleInput(features, reference, reference_source, unit)


def load_style_reference(path: str | Path) -> StyleReference:
    """The style normalisation and coefficients an earlier run fitted (its results.json's ``style`` and
    ``style_coefficients``), to freeze them for this one: only the model terms are fitted, so adding a model to the
    leaderboard moves no other model's style-controlled win rate."""
    from evalsuite import stats
    from evalsuite.report.results import load_results

    results = load_results(path)
    style = results.style
    if style is None or not style.reference_mean:
        raise InputError("this results.json has no style normalisation to freeze", where=str(path),
                         fix="pass a results.json that `evalsuite compare` wrote on answers with text")
    # the coefficients too: they are shared by every model, so a new model's battles would move them (and the others)
    coefficients = tuple(float(k.estimate or 0.0) for k in results.style_coefficients)
    return stats.StyleReference(mean=tuple(style.reference_mean), std=tuple(style.reference_std),
                                coefficients=coefficients if len(coefficients) == len(style.reference_mean) else None)


def distinct_bigrams(texts: Sequence[str]) -> float | None:
    """Share of word bigrams that are distinct across a model's answers (distinct-2): falls when answers collapse
    into repeated phrasing, a sign of over-training."""
    total = 0
    seen: set[tuple[str, str]] = set()
    for t in texts:
        words = t.lower().split()
        pairs = list(zip(words, words[1:]))
        total += len(pairs)
        seen.update(pairs)
    return len(seen) / total if total else None


def diagnose(c: Comparison, options: StatsOptions, diversity: Mapping[str, float | None]) -> list[str]:
    """Plain-language hints tying the evaluation outcome to the usual training causes.

    A judge that failed its health check gets the blame instead of the training: its verdicts say nothing about the
    beta, the steps or the data.
    """
    if c.unreliable and not options.allow_unhealthy_judge:
        return [f"the judge failed its health check ({'; '.join(c.health_verdict.reasons)}): its verdicts follow the "
                "answer's position, not its content, so they say nothing about this checkpoint's training; judge "
                "again with a stronger judge, or one that passes the check (docs/judge-health.md)"]
    hints = []
    if c.win_rate is not None and c.p_holm is not None:
        if c.significant and c.win_rate < 0.5:
            hints.append("quality dropped vs the baseline: beta too small or learning rate too high")
        elif c.p_holm < options.alpha and not c.significant:
            hints.append(f"a difference of {100 * abs(c.win_rate - 0.5):.1f} pts, below the smallest relevant effect "
                         f"({100 * options.min_effect:g} pts): the judge's verdicts barely move (soft verdicts near 50%); "
                         "no measurable effect")
        elif not c.significant:
            hints.append("no measurable effect: beta too large, too few steps, or weak preference data (evalsuite data check)")
    d_c, d_b = diversity.get(c.model), diversity.get(c.baseline)
    if d_c is not None and d_b is not None and d_b > 0 and d_c < 0.8 * d_b:
        hints.append(f"answers less diverse than the baseline (distinct-2 {d_c:.2f} vs {d_b:.2f}): too many epochs")
    return hints


def orient_to(baseline: str, order: Sequence[str]) -> Callable[[str, str], tuple[str, str]]:
    """An ``orient`` for build_matches: the baseline is always Y; between two candidates, the earlier-listed is X."""
    rank = {m: i for i, m in enumerate(order)}

    def orient(a: str, b: str) -> tuple[str, str]:
        if a == baseline:
            return b, a
        if b == baseline:
            return a, b
        return (a, b) if rank.get(a, len(rank)) <= rank.get(b, len(rank)) else (b, a)

    return orient


def _items(matches: Sequence[Match], x: str, y: str) -> list[Match]:
    return [m for m in matches if m.model_x == x and m.model_y == y]


def _scored(ms: Sequence[Match]) -> list[Match]:
    return [m for m in ms if not m.error and m.score is not None]


def _wtl(ok: Sequence[Match]) -> tuple[int, int, int]:
    return (sum(m.score is not None and m.score > 0.5 for m in ok), sum(m.score == 0.5 for m in ok),
            sum(m.score is not None and m.score < 0.5 for m in ok))


def _round(x: float | None, nd: int = 6) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else round(float(x), nd)


def _direct(ms: Sequence[Match], first: str) -> DirectResult:
    ok = _scored(ms)
    wins, ties, losses = _wtl(ok)
    firsts = [m.score if m.model_x == first else 1 - m.score for m in ok if m.score is not None]
    return DirectResult(n=len(ok), wins=wins, ties=ties, losses=losses, errors=sum(m.error for m in ms),
                        inconsistent=sum(m.inconsistent for m in ok),
                        win_rate=_round(float(np.mean(firsts))) if firsts else None)


def per_turn_results(ok: Sequence[Match], options: StatsOptions) -> tuple[tuple[TurnResult, ...], TurnDifference | None]:
    """Win rate and CI per turn, and turn 2 minus turn 1 with a paired bootstrap over questions.

    On one turn each question is one item, so the question-clustered bootstrap is a plain bootstrap over questions.
    The difference uses the questions scored on both turns; resampling questions keeps each question's two turns
    together, which is what makes it paired.
    """
    from evalsuite import stats

    rows = []
    for turn in sorted({m.turn for m in ok}):
        mine = [m for m in ok if m.turn == turn]
        scores = np.array([m.score for m in mine], dtype=float)
        r = stats.cluster_bootstrap(scores, np.array([m.question_id for m in mine]), n_resamples=options.n_resamples,
                                    confidence=options.confidence, seed=options.seed)
        wins, ties, losses = _wtl(mine)
        rows.append(TurnResult(turn=turn, n=len(mine), wins=wins, ties=ties, losses=losses, win_rate=_round(r.estimate),
                               ci_low=_round(r.ci_low), ci_high=_round(r.ci_high), p_value=_round(r.p_value),
                               p_value_bound=r.p_value_bound))
    by_turn: dict[int, dict[str, float]] = {}
    for m in ok:
        by_turn.setdefault(m.turn, {})[m.question_id] = float(m.score)  # type: ignore[arg-type]
    if 1 not in by_turn or 2 not in by_turn:
        return tuple(rows), None
    both = sorted(set(by_turn[1]) & set(by_turn[2]))
    if not both:
        return tuple(rows), TurnDifference(0, None, None, None, None)
    d = stats.paired_difference(np.array([by_turn[2][q] for q in both]), np.array([by_turn[1][q] for q in both]),
                                np.array(both), n_resamples=options.n_resamples, confidence=options.confidence,
                                seed=options.seed)
    return tuple(rows), TurnDifference(len(both), _round(d.estimate), _round(d.ci_low), _round(d.ci_high),
                                       _round(d.p_value), d.p_value_bound)


def comparison(
    ms: Sequence[Match],
    model: str,
    baseline: str,
    lengths: Mapping[str, Mapping[tuple[str, int], int]],
    options: StatsOptions,
) -> Comparison:
    """One candidate vs the baseline (``ms`` oriented with the candidate as X), before Holm and diagnosis."""
    from evalsuite import stats

    ok = _scored(ms)
    wins, ties, losses = _wtl(ok)
    base = Comparison(model=model, baseline=baseline, n=len(ok), wins=wins, ties=ties, losses=losses,
                      errors=sum(m.error for m in ms), inconsistent=sum(m.inconsistent for m in ok),
                      health=Health.of(judge_health(ms)))
    if not ok:
        return base
    scores = np.array([m.score for m in ok], dtype=float)
    clusters = np.array([m.question_id for m in ok])
    pct = stats.cluster_bootstrap(scores, clusters, method="percentile", n_resamples=options.n_resamples,
                                  confidence=options.confidence, seed=options.seed)
    bca = stats.cluster_bootstrap(scores, clusters, method="bca", n_resamples=options.n_resamples,
                                  confidence=options.confidence, seed=options.seed)
    # Lengths unknown (an import without the answers): no length-controlled rate and no average length, never a
    # copy of the raw rate in their place.
    len_c_known = [lengths.get(model, {}).get((m.question_id, m.turn)) for m in ok]
    len_b_known = [lengths.get(baseline, {}).get((m.question_id, m.turn)) for m in ok]
    lengths_known = all(x is not None for x in len_c_known + len_b_known)
    len_c = np.array([x or 0 for x in len_c_known], dtype=float)
    len_b = np.array([x or 0 for x in len_b_known], dtype=float)
    per_cat = {}
    for cat in sorted({m.category for m in ok}):
        s = [float(m.score) for m in ok if m.category == cat and m.score is not None]
        per_cat[cat] = CategoryResult(n=len(s), win_rate=_round(float(np.mean(s))))
    per_turn, turn_diff = per_turn_results(ok, options)
    return replace(
        base,
        win_rate=_round(pct.estimate),
        ci_low=_round(pct.ci_low),
        ci_high=_round(pct.ci_high),
        ci_bca_low=_round(bca.ci_low),
        ci_bca_high=_round(bca.ci_high),
        se=_round(pct.se),
        p_bootstrap=_round(pct.p_value),
        p_bootstrap_bound=pct.p_value_bound,
        p_sign=_round(stats.sign_test(wins, losses)),
        lc_win_rate=_round(stats.length_controlled_win_rate(scores, len_c, len_b)) if lengths_known else None,
        avg_length=_round(float(len_c.mean()), 1) if lengths_known else None,
        avg_length_baseline=_round(float(len_b.mean()), 1) if lengths_known else None,
        n_questions=int(len(set(clusters.tolist()))),
        per_category=per_cat,
        per_turn=per_turn,
        turn_difference=turn_diff,
        # per-item scores, so a later run can be gated against this one on the same items (gate --against)
        items=tuple(Item(m.question_id, m.turn, float(m.score)) for m in ok if m.score is not None),
    )


def _aligned(a: Sequence[Match], b: Sequence[Match]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sa = {(m.question_id, m.turn): m.score for m in _scored(a)}
    sb = {(m.question_id, m.turn): m.score for m in _scored(b)}
    keys = sorted(set(sa) & set(sb))
    return (
        np.array([sa[k] for k in keys], dtype=float),
        np.array([sb[k] for k in keys], dtype=float),
        np.array([k[0] for k in keys]),
    )


def significant(c: Comparison, options: StatsOptions) -> bool:
    """Whether ``c`` earns a significance mark: Holm-adjusted p below alpha, an effect of at least
    ``options.min_effect``, and a judge that passed its health check (or the user's override)."""
    if c.p_holm is None or c.win_rate is None or c.p_holm >= options.alpha:
        return False
    if abs(c.win_rate - 0.5) < options.min_effect:
        return False
    return not c.unreliable or options.allow_unhealthy_judge


def _with_holm(comps: list[Comparison], options: StatsOptions) -> list[Comparison]:
    """Holm over the family of comparisons vs the baseline (bootstrap and sign-test p-values), then each
    comparison's significance mark."""
    from evalsuite import stats

    tested = [i for i, c in enumerate(comps) if c.p_bootstrap is not None and c.p_sign is not None]
    if not tested:
        return comps
    adj, adj_bound = stats.holm_bounded([comps[i].p_bootstrap or 0.0 for i in tested],
                                        [comps[i].p_bootstrap_bound for i in tested])
    adj_sign = stats.holm([comps[i].p_sign or 0.0 for i in tested])
    out = list(comps)
    for k, i in enumerate(tested):
        out[i] = replace(comps[i], p_holm=_round(adj[k]), p_holm_bound=bool(adj_bound[k]),
                         p_sign_holm=_round(adj_sign[k]))
        out[i] = replace(out[i], significant=significant(out[i], options))
    return out


def _effect(c: Comparison, options: StatsOptions) -> Comparison:
    """The win rate's distance from 50%, and the smallest one this many questions can show (a decisive judge, 80%
    power, the run's alpha)."""
    from evalsuite import stats

    if c.win_rate is None or not c.n_questions:
        return c
    per_question = max(1, round(c.n / c.n_questions))
    mde = stats.min_detectable_difference(c.n_questions, items_per_cluster=per_question, alpha=options.alpha)
    return replace(c, effect=_round(c.win_rate - 0.5), mde=_round(mde, 4))


def _variant_pairs(matches: Sequence[Match], by_candidate: Mapping[str, Sequence[Match]], candidates: Sequence[str],
                   options: StatsOptions) -> list[VariantPair]:
    """Variant vs variant: paired difference of win rates against the same baseline on the same items, Holm over the
    pairs, and the direct win rate where the two were judged head to head."""
    from evalsuite import stats

    pairs: list[VariantPair] = []
    for c1, c2 in combinations(candidates, 2):
        s1, s2, cl = _aligned(by_candidate[c1], by_candidate[c2])
        pair = VariantPair(model_1=c1, model_2=c2, n=int(len(s1)))
        if len(s1):
            d = stats.paired_difference(s1, s2, cl, n_resamples=options.n_resamples, confidence=options.confidence,
                                        seed=options.seed)
            pair = replace(pair, diff=_round(d.estimate), ci_low=_round(d.ci_low), ci_high=_round(d.ci_high),
                           p_value=_round(d.p_value), p_value_bound=d.p_value_bound)
        direct = [m for m in matches if {m.model_x, m.model_y} == {c1, c2}]
        if direct:
            pair = replace(pair, direct=_direct(direct, c1))
        pairs.append(pair)
    tested = [i for i, p in enumerate(pairs) if p.p_value is not None]
    if tested:
        adj, bound = stats.holm_bounded([pairs[i].p_value or 0.0 for i in tested], [pairs[i].p_value_bound for i in tested])
        for k, i in enumerate(tested):
            pairs[i] = replace(pairs[i], p_holm=_round(adj[k]), p_holm_bound=bool(bound[k]))
    return pairs


def _ratings(matches: Sequence[Match], baseline: str, mode: str, options: StatsOptions) -> list[Rating]:
    """Bradley-Terry over every scored match of the run, ties as half wins; in ``games`` mode over every game (each
    order of a match is its own game), resampled by question either way."""
    from evalsuite import stats

    rows: list[tuple[str, str, float, str]] = []
    for m in matches:
        if mode == "games":
            rows += [(m.model_x, m.model_y, g, m.question_id) for g in match_games(m)]
        elif not m.error and m.score is not None:
            rows.append((m.model_x, m.model_y, m.score, m.question_id))
    if not rows:
        return []
    fitted = stats.bradley_terry(
        [r[0] for r in rows], [r[1] for r in rows], np.array([r[2] for r in rows], dtype=float),
        np.array([r[3] for r in rows]), anchor=baseline, n_rounds=options.bt_rounds, confidence=options.confidence,
        seed=options.seed,
    )
    return [Rating(r.model, _round(r.rating, 1), _round(r.ci_low, 1), _round(r.ci_high, 1), r.rank) for r in fitted]


def build_results(
    matches: Sequence[Match],
    *,
    baseline: str,
    candidates: Sequence[str],
    lengths: Mapping[str, Mapping[tuple[str, int], int]],
    options: StatsOptions = StatsOptions(),
    info: RunInfo | None = None,
    meta: Mapping[str, Any] | None = None,
    diversity: Mapping[str, float | None] | None = None,
    style: StyleInput | None = None,
    health_source: Sequence[Match] | None = None,
) -> Results:
    """The whole results document. ``matches`` must be oriented with ``orient_to(baseline, candidates)``.

    ``info`` says where the numbers come from (its ``mode`` picks how Bradley-Terry counts a match: one game, or
    in ``games`` mode one per order). ``meta`` is the same as a JSON mapping (the keys of ``RunInfo``), for callers
    that build it as one; ``info`` wins when both are given. ``style``: the answers' style features, for style
    control (None: none computed). ``health_source``: the matches whose two judgments measure the judge's health
    when ``matches`` carry none (a panel's pooled verdicts; default: ``matches``).
    """
    run_info = info if info is not None else RunInfo.from_json(meta or {})
    by_candidate = {c: _items(matches, c, baseline) for c in candidates}
    judged = matches if health_source is None else health_source
    run_health = Health.of(judge_health(judged))
    run_verdict = run_health.verdict()
    comps = [comparison(by_candidate[c], c, baseline, lengths, options) for c in candidates]
    if health_source is not None:
        comps = [replace(c, health=Health.of(judge_health(_items(health_source, c.model, baseline)))) for c in comps]
    style_info, coefficients, comps = _style_control(matches, baseline, comps, style, options, run_info.mode)
    # the same judge read every match of the run: its run-wide health counts against each comparison too
    comps = [replace(_effect(c, options), health_verdict=worst(c.health.verdict(), run_verdict)) for c in comps]
    comps = _with_holm(comps, options)
    div = diversity or {}
    comps = [replace(c, diversity=_round(div.get(c.model), 4)) for c in comps]
    comps = [replace(c, diagnosis=tuple(diagnose(c, options, div))) for c in comps]
    pairs = _variant_pairs(matches, by_candidate, candidates, options)
    return Results(
        baseline=baseline,
        candidates=tuple(candidates),
        stats=options,
        comparisons=tuple(comps),
        variant_pairs=tuple(pairs),
        ratings=tuple(_ratings(matches, baseline, run_info.mode, options)),
        sweeps=tuple(beta_sweeps(comps, pairs, options.alpha, options.allow_unhealthy_judge)),
        health=run_health,
        health_verdict=run_verdict,
        health_by_group=tuple(HealthGroup(judge, template, template_hash, turn, Health.of(h))
                              for (judge, template, template_hash, turn), h in judge_health_by_group(judged)),
        info=run_info,
        style=style_info,
        style_coefficients=coefficients,
    )


def _style_control(matches: Sequence[Match], baseline: str, comps: list[Comparison], style: StyleInput | None,
                   options: StatsOptions, mode: str,
                   ) -> tuple[StyleInfo | None, tuple[StyleCoefficientResult, ...], list[Comparison]]:
    """Style-controlled win rates (Bradley-Terry with the style terms fitted beside the model terms) on every scored
    match whose two answers have features; battles laid out as Arena-Hard lays them (the baseline as model A), one
    per match, or one per order in ``games`` mode. No features at all (an import without answer text): a stated
    fallback, no figures."""
    from evalsuite import stats

    if style is None:
        return None, (), comps
    rows: list[tuple[str, str, float, str, StyleFeatures, StyleFeatures]] = []
    missing = 0
    for m in matches:
        scores = match_games(m) if mode == "games" else ([] if m.error or m.score is None else [m.score])
        if not scores:
            continue
        fx = style.features.get(m.model_x, {}).get((m.question_id, m.turn))
        fy = style.features.get(m.model_y, {}).get((m.question_id, m.turn))
        if fx is None or fy is None:
            missing += 1
            continue
        for g in scores:
            if m.model_y == baseline:  # baseline first, as Arena-Hard's battles: the "mean style difference" is theirs
                rows.append((m.model_y, m.model_x, 1.0 - g, m.question_id, fy, fx))
            else:
                rows.append((m.model_x, m.model_y, g, m.question_id, fx, fy))
    note = f"{missing} matches without answer text left out" if missing else None
    base_info = StyleInfo(features=tuple(stats.STYLE_FEATURES), length_unit=style.length_unit,
                          reference_source=style.reference_source)
    if not rows or len({r[1] for r in rows if r[0] == baseline}) == 0:
        return replace(base_info, note="no answer text to measure style on: no style-controlled win rates"), (), comps
    fit = stats.style_controlled_win_rates(
        [r[0] for r in rows], [r[1] for r in rows], np.array([r[2] for r in rows], dtype=float),
        [r[4] for r in rows], [r[5] for r in rows], np.array([r[3] for r in rows]), baseline=baseline,
        reference=style.reference, n_rounds=options.bt_rounds, confidence=options.confidence, seed=options.seed,
    )
    by_model = {w.model: w for w in fit.win_rates}
    out = []
    for c in comps:
        w = by_model.get(c.model)
        if w is None:
            out.append(c)
            continue
        out.append(replace(
            c, style_win_rate=_round(w.win_rate_at_zero), style_ci_low=_round(w.ci_low_at_zero),
            style_ci_high=_round(w.ci_high_at_zero), style_win_rate_at_mean=_round(w.win_rate_at_mean),
            style_ci_low_at_mean=_round(w.ci_low_at_mean), style_ci_high_at_mean=_round(w.ci_high_at_mean)))
    info = replace(base_info, reference_mean=tuple(float(x) for x in fit.reference.mean),
                   reference_std=tuple(float(x) for x in fit.reference.std), n_battles=fit.n_battles, note=note)
    coefficients = tuple(StyleCoefficientResult(k.name, _round(k.estimate), _round(k.ci_low), _round(k.ci_high))
                         for k in fit.coefficients)
    return info, coefficients, out


def beta_sweeps(comps: Sequence[Comparison], pairs: Sequence[VariantPair], alpha: float,
                allow_unhealthy_judge: bool = False) -> list[Sweep]:
    """Group ``<variant>-b<beta>`` candidates per variant; find the highest-rate beta and whether it beats every other.

    "Significantly better" uses the paired-difference p-values, Holm-corrected within the variant's own family. The
    sweep names no best beta (``Sweep.has_best``) when the highest-rate beta is not significantly better than every
    other, or when the judge failed its health check on any beta of the variant.
    """
    from evalsuite import stats

    groups: dict[str, list[tuple[float, Comparison]]] = {}
    for c in comps:
        m = SWEEP_NAME.match(c.model)
        if m and c.win_rate is not None:
            groups.setdefault(m["variant"], []).append((float(m["beta"]), c))
    pair_index = {(p.model_1, p.model_2): p for p in pairs}
    sweeps = []
    for variant, rows in sorted(groups.items()):
        rows.sort(key=lambda r: r[0])
        best_beta, best = max(rows, key=lambda r: r[1].win_rate or 0.0)
        others: list[SweepOther] = []
        for beta, c in rows:
            if c is best:
                continue
            p = pair_index.get((best.model, c.model)) or pair_index.get((c.model, best.model))
            if p is None or p.p_value is None or p.diff is None:
                continue
            sign = 1.0 if p.model_1 == best.model else -1.0
            others.append(SweepOther(c.model, beta, _round(sign * p.diff), p.p_value, p.p_value_bound))
        if others:
            adj, bound = stats.holm_bounded([o.p_value or 0.0 for o in others], [o.p_value_bound for o in others])
            others = [replace(o, p_holm=_round(a), p_holm_bound=bool(b)) for o, a, b in zip(others, adj, bound)]
        sweeps.append(
            Sweep(
                variant=variant,
                rows=tuple(SweepRow(c.model, beta, c.win_rate, c.ci_low, c.ci_high, c.p_holm, c.p_holm_bound)
                           for beta, c in rows),
                best=best.model,
                best_beta=best_beta,
                vs_others=tuple(others),
                best_significant=bool(others) and all(o.p_holm is not None and o.p_holm < alpha for o in others),
                judge_unreliable=not allow_unhealthy_judge and any(c.unreliable for _, c in rows),
            )
        )
    return sweeps
