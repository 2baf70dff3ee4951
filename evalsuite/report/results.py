"""Results: matches in, the ``results.json`` document out (pure; the report and the gate read only this and the store).

Per candidate vs the baseline: counts, win rate, question-clustered bootstrap CIs (percentile and BCa), bootstrap
and sign-test p-values, Holm over the family, length-controlled win rate, per-category win rates and judge health.
Across candidates: paired differences (variant vs variant), direct head-to-head win rates when judged, Bradley-Terry
ratings, and beta-sweep tables.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any, Mapping, Sequence

import numpy as np

from evalsuite.judge.swap import judge_health
from evalsuite.records import Match

SWEEP_NAME = re.compile(r"^(?P<variant>.+)-b(?P<beta>\d+(?:\.\d+)?(?:e-?\d+)?)$")


@dataclass(frozen=True)
class StatsOptions:
    n_resamples: int = 10_000
    bt_rounds: int = 1_000
    confidence: float = 0.95
    alpha: float = 0.05
    seed: int = 0


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


def diagnose(c: Mapping[str, Any], alpha: float, diversity: Mapping[str, float | None]) -> list[str]:
    """Plain-language hints tying the evaluation outcome to the usual training causes."""
    hints = []
    wr, p = c.get("win_rate"), c.get("p_holm")
    if wr is not None and p is not None:
        if p < alpha and wr < 0.5:
            hints.append("quality dropped vs the baseline: beta too small or learning rate too high")
        elif p >= alpha:
            hints.append("no measurable effect: beta too large, too few steps, or weak preference data (evalsuite data check)")
    d_c, d_b = diversity.get(c["model"]), diversity.get(c["baseline"])
    if d_c is not None and d_b is not None and d_b > 0 and d_c < 0.8 * d_b:
        hints.append(f"answers less diverse than the baseline (distinct-2 {d_c:.2f} vs {d_b:.2f}): too many epochs")
    return hints


def orient_to(baseline: str, order: Sequence[str]):  # type: ignore[no-untyped-def]
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


def _counts(ms: Sequence[Match]) -> dict[str, int]:
    ok = [m for m in ms if not m.error]
    return {
        "n": len(ok),
        "wins": sum(m.score is not None and m.score > 0.5 for m in ok),
        "ties": sum(m.score == 0.5 for m in ok),
        "losses": sum(m.score is not None and m.score < 0.5 for m in ok),
        "errors": sum(m.error for m in ms),
        "inconsistent": sum(m.inconsistent for m in ok),
    }


def _health_dict(ms: Sequence[Match]) -> dict[str, Any]:
    return asdict(judge_health(ms))


def _round(x: float | None, nd: int = 6) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else round(float(x), nd)


def comparison(
    ms: Sequence[Match],
    model: str,
    baseline: str,
    lengths: Mapping[str, Mapping[tuple[str, int], int]],
    options: StatsOptions,
) -> dict[str, Any]:
    """One candidate vs the baseline (``ms`` oriented with the candidate as X)."""
    from evalsuite import stats

    ok = [m for m in ms if not m.error]
    row: dict[str, Any] = {"model": model, "baseline": baseline, **_counts(ms)}
    if not ok:
        row.update(win_rate=None, ci_low=None, ci_high=None, p_bootstrap=None, p_sign=None, lc_win_rate=None)
        row["health"] = _health_dict(ms)
        return row
    scores = np.array([m.score for m in ok], dtype=float)
    clusters = np.array([m.question_id for m in ok])
    pct = stats.cluster_bootstrap(scores, clusters, method="percentile", n_resamples=options.n_resamples,
                                  confidence=options.confidence, seed=options.seed)
    bca = stats.cluster_bootstrap(scores, clusters, method="bca", n_resamples=options.n_resamples,
                                  confidence=options.confidence, seed=options.seed)
    len_c = np.array([lengths.get(model, {}).get((m.question_id, m.turn), 0) for m in ok], dtype=float)
    len_b = np.array([lengths.get(baseline, {}).get((m.question_id, m.turn), 0) for m in ok], dtype=float)
    per_cat: dict[str, dict[str, Any]] = {}
    for cat in sorted({m.category for m in ok}):
        s = [m.score for m in ok if m.category == cat]
        per_cat[cat] = {"n": len(s), "win_rate": _round(float(np.mean(s)))}
    row.update(
        win_rate=_round(pct.estimate),
        ci_low=_round(pct.ci_low),
        ci_high=_round(pct.ci_high),
        ci_bca_low=_round(bca.ci_low),
        ci_bca_high=_round(bca.ci_high),
        se=_round(pct.se),
        p_bootstrap=_round(pct.p_value),
        p_sign=_round(stats.sign_test(row["wins"], row["losses"])),
        lc_win_rate=_round(stats.length_controlled_win_rate(scores, len_c, len_b)),
        avg_length=_round(float(len_c.mean()), 1),
        avg_length_baseline=_round(float(len_b.mean()), 1),
        n_questions=int(len(set(clusters.tolist()))),
        per_category=per_cat,
        health=_health_dict(ms),
        # per-item scores, so a later run can be gated against this one on the same items (gate --against)
        items=[[m.question_id, m.turn, m.score] for m in ok],
    )
    return row


def _aligned(a: Sequence[Match], b: Sequence[Match]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sa = {(m.question_id, m.turn): m.score for m in a if not m.error}
    sb = {(m.question_id, m.turn): m.score for m in b if not m.error}
    keys = sorted(set(sa) & set(sb))
    return (
        np.array([sa[k] for k in keys], dtype=float),
        np.array([sb[k] for k in keys], dtype=float),
        np.array([k[0] for k in keys]),
    )


def build_results(
    matches: Sequence[Match],
    *,
    baseline: str,
    candidates: Sequence[str],
    lengths: Mapping[str, Mapping[tuple[str, int], int]],
    options: StatsOptions = StatsOptions(),
    meta: Mapping[str, Any] | None = None,
    diversity: Mapping[str, float | None] | None = None,
) -> dict[str, Any]:
    """The whole results document. ``matches`` must be oriented with ``orient_to(baseline, candidates)``."""
    from evalsuite import stats

    by_candidate = {c: _items(matches, c, baseline) for c in candidates}
    comps = [comparison(by_candidate[c], c, baseline, lengths, options) for c in candidates]
    tested = [c for c in comps if c.get("p_bootstrap") is not None]
    if tested:
        adj = stats.holm([c["p_bootstrap"] for c in tested])
        adj_sign = stats.holm([c["p_sign"] for c in tested])
        for c, p, ps in zip(tested, adj, adj_sign):
            c["p_holm"] = _round(p)
            c["p_sign_holm"] = _round(ps)
            c["significant"] = bool(p < options.alpha)
    for c in comps:
        c.setdefault("p_holm", None)
        c.setdefault("p_sign_holm", None)
        c.setdefault("significant", False)
        c["diversity"] = _round((diversity or {}).get(c["model"]), 4)
        c["diagnosis"] = diagnose(c, options.alpha, diversity or {})

    # Variant vs variant: paired difference of win rates against the same baseline on the same items.
    pairs: list[dict[str, Any]] = []
    for c1, c2 in combinations(candidates, 2):
        s1, s2, cl = _aligned(by_candidate[c1], by_candidate[c2])
        entry: dict[str, Any] = {"model_1": c1, "model_2": c2, "n": int(len(s1))}
        if len(s1):
            d = stats.paired_difference(s1, s2, cl, n_resamples=options.n_resamples, confidence=options.confidence,
                                        seed=options.seed)
            entry.update(diff=_round(d.estimate), ci_low=_round(d.ci_low), ci_high=_round(d.ci_high), p_value=_round(d.p_value))
        else:
            entry.update(diff=None, ci_low=None, ci_high=None, p_value=None)
        direct = [m for m in matches if {m.model_x, m.model_y} == {c1, c2}]
        if direct:
            counts = _counts(direct)
            firsts = [m.score if m.model_x == c1 else 1 - m.score for m in direct if not m.error and m.score is not None]
            entry["direct"] = {**counts, "win_rate": _round(float(np.mean(firsts))) if firsts else None}
        pairs.append(entry)
    tested_pairs = [p for p in pairs if p["p_value"] is not None]
    if tested_pairs:
        for p, adj in zip(tested_pairs, stats.holm([p["p_value"] for p in tested_pairs])):
            p["p_holm"] = _round(adj)

    # Bradley-Terry over every non-error match of the run, ties as half wins.
    scored = [m for m in matches if not m.error and m.score is not None]
    ratings: list[dict[str, Any]] = []
    if scored:
        fitted = stats.bradley_terry(
            [m.model_x for m in scored],
            [m.model_y for m in scored],
            np.array([m.score for m in scored], dtype=float),
            np.array([m.question_id for m in scored]),
            anchor=baseline,
            n_rounds=options.bt_rounds,
            confidence=options.confidence,
            seed=options.seed,
        )
        ratings = [
            {"model": r.model, "rating": _round(r.rating, 1), "ci_low": _round(r.ci_low, 1), "ci_high": _round(r.ci_high, 1), "rank": r.rank}
            for r in fitted
        ]

    return {
        **(dict(meta) if meta else {}),
        "baseline": baseline,
        "candidates": list(candidates),
        "stats": asdict(options),
        "comparisons": comps,
        "variant_pairs": pairs,
        "ratings": ratings,
        "sweeps": beta_sweeps(comps, pairs, options.alpha),
        "health": _health_dict(matches),
    }


def beta_sweeps(comps: Sequence[Mapping[str, Any]], pairs: Sequence[Mapping[str, Any]], alpha: float) -> list[dict[str, Any]]:
    """Group ``<variant>-b<beta>`` candidates per variant; mark the best beta and whether it beats every other beta.

    "Significantly better" uses the paired-difference p-values, Holm-corrected within the variant's own family.
    """
    from evalsuite import stats

    groups: dict[str, list[tuple[float, Mapping[str, Any]]]] = {}
    for c in comps:
        m = SWEEP_NAME.match(c["model"])
        if m and c.get("win_rate") is not None:
            groups.setdefault(m["variant"], []).append((float(m["beta"]), c))
    pair_index = {(p["model_1"], p["model_2"]): p for p in pairs}
    sweeps = []
    for variant, rows in sorted(groups.items()):
        rows.sort(key=lambda r: r[0])
        best_beta, best = max(rows, key=lambda r: r[1]["win_rate"])
        others = []
        for beta, c in rows:
            if c is best:
                continue
            p = pair_index.get((best["model"], c["model"])) or pair_index.get((c["model"], best["model"]))
            if p is None or p.get("p_value") is None:
                continue
            sign = 1.0 if p["model_1"] == best["model"] else -1.0
            others.append({"model": c["model"], "beta": beta, "diff": _round(sign * p["diff"]), "p_value": p["p_value"]})
        if others:
            for o, adj in zip(others, stats.holm([o["p_value"] for o in others])):
                o["p_holm"] = _round(adj)
        sweeps.append(
            {
                "variant": variant,
                "rows": [
                    {"model": c["model"], "beta": beta, "win_rate": c["win_rate"], "ci_low": c["ci_low"], "ci_high": c["ci_high"], "p_holm": c.get("p_holm")}
                    for beta, c in rows
                ],
                "best": best["model"],
                "best_beta": best_beta,
                "vs_others": others,
                "best_significant": bool(others) and all(o["p_holm"] < alpha for o in others),
            }
        )
    return sweeps
