"""The markdown leaderboard (GitHub-flavoured), rendered from a ``results.json`` document alone."""

from __future__ import annotations

from typing import Any, Mapping, Sequence


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def format_p(x: float | None) -> str:
    if x is None:
        return "–"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _num(x: float | None, nd: int = 0) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def _mark(c: Mapping[str, Any], alpha: float) -> str:
    p = c.get("p_holm")
    if p is None or c.get("win_rate") is None:
        return ""
    if p >= alpha:
        return "·"  # not significant
    return "▲" if c["win_rate"] > 0.5 else "▼"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    aligns = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else ":---" for a in aligns]
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(sep) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def render_markdown(results: Mapping[str, Any]) -> str:
    alpha = results.get("stats", {}).get("alpha", 0.05)
    conf = results.get("stats", {}).get("confidence", 0.95)
    baseline = results["baseline"]
    comps = results.get("comparisons", [])
    ratings = {r["model"]: r for r in results.get("ratings", [])}
    training = results.get("training", {})
    lines: list[str] = [f"# Leaderboard: candidates vs `{baseline}`", ""]
    if results.get("note"):
        lines += [f"> **Note.** {results['note']}", ""]
    bench = results.get("benchmark", {})
    lines.append(
        f"Judge `{results.get('judge', '?')}` compared each candidate with `{baseline}` on "
        f"{bench.get('n_questions', '?')} questions of `{bench.get('name', '?')}`, both turns, both answer orders "
        f"(`{results.get('mode', 'strict')}` reconciliation). Win rate counts ties as half; CI = {int(conf * 100)}% "
        f"question-clustered bootstrap ({results.get('stats', {}).get('n_resamples', '?')} resamples); "
        f"p = bootstrap test of win rate = 50%, Holm-adjusted over the {len(comps)} comparisons. "
        f"▲/▼ significantly better/worse at α = {alpha}, · not significant."
    )
    lines.append("")

    order = sorted(comps, key=lambda c: -1 if c.get("win_rate") is None else c["win_rate"], reverse=True)
    rows = []
    for c in order:
        r = ratings.get(c["model"], {})
        flags = training.get(c["model"], [])
        rows.append(
            [
                str(r.get("rank", "–")),
                f"`{c['model']}`" + (" ⚠" if flags else ""),
                _pct(c.get("win_rate")),
                f"[{_pct(c.get('ci_low'))}, {_pct(c.get('ci_high'))}]",
                f"{c['wins']}/{c['ties']}/{c['losses']}",
                format_p(c.get("p_holm")),
                _mark(c, alpha),
                _num(r.get("rating")),
                f"[{_num(r.get('ci_low'))}, {_num(r.get('ci_high'))}]" if r else "–",
                _pct(c.get("lc_win_rate")),
                _num(c.get("avg_length")),
                str(c.get("errors", 0)),
                str(c.get("inconsistent", 0)),
            ]
        )
    b = ratings.get(baseline, {})
    rows.append(
        [str(b.get("rank", "–")), f"`{baseline}` (baseline)", "50.0%", "–", "–", "–", "", _num(b.get("rating", 1000.0)), "–", "–",
         _num(comps[0].get("avg_length_baseline")) if comps else "–", "–", "–"]
    )
    lines += _table(
        ["Rank", "Model", "Win rate", "CI", "W/T/L", "p (Holm)", "", "BT rating", "BT CI", "LC win rate", "Avg len", "Errors", "Inconsistent"],
        rows,
        "llrrrrlrrrrrr",
    )
    lines.append("")

    sweeps = results.get("sweeps", [])
    if sweeps:
        lines += ["## Beta sweeps", ""]
        for s in sweeps:
            lines.append(f"**{s['variant']}** — best beta {s['best_beta']:g} (`{s['best']}`): " + (
                "significantly better than every other beta." if s["best_significant"] else
                "not significantly better than every other beta (paired bootstrap, Holm within the variant)."
            ))
            lines.append("")
            vs = {o["model"]: o for o in s.get("vs_others", [])}
            srows = []
            for r in s["rows"]:
                o = vs.get(r["model"])
                srows.append([
                    f"{r['beta']:g}", f"`{r['model']}`" + (" ★" if r["model"] == s["best"] else ""), _pct(r["win_rate"]),
                    f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]", format_p(r.get("p_holm")),
                    "–" if o is None else f"{100 * o['diff']:+.1f} pts", "–" if o is None else format_p(o.get("p_holm")),
                ])
            lines += _table(["Beta", "Model", "Win rate", "CI", "p vs 50% (Holm)", "Best minus this", "p (Holm, in sweep)"], srows, "rlrrrrr")
            lines.append("")

    pairs = [p for p in results.get("variant_pairs", []) if p.get("diff") is not None]
    if pairs:
        lines += ["## Variant vs variant", "", "Difference of win rates against the same baseline on the same questions (paired question-clustered bootstrap); direct win rate where the two were judged head to head.", ""]
        prow = []
        for p in pairs:
            d = p.get("direct")
            prow.append([
                f"`{p['model_1']}` − `{p['model_2']}`", f"{100 * p['diff']:+.1f} pts",
                f"[{100 * p['ci_low']:+.1f}, {100 * p['ci_high']:+.1f}]", format_p(p.get("p_value")), format_p(p.get("p_holm")),
                "–" if not d else f"{_pct(d.get('win_rate'))} ({d['wins']}/{d['ties']}/{d['losses']})",
            ])
        lines += _table(["Comparison", "Difference", "CI", "p", "p (Holm)", "Direct win rate of the first (W/T/L)"], prow, "lrrrrr")
        lines.append("")

    lines += ["## Judge health", ""]
    hrows = []
    for label, h in [(f"`{c['model']}` vs `{baseline}`", c.get("health", {})) for c in comps] + [("all matches", results.get("health", {}))]:
        hrows.append([
            label, str(h.get("n_judgments", 0)), _pct(h.get("consistency")), _pct(h.get("first_position_win_share")),
            _pct(h.get("tie_share")), _pct(h.get("error_share")),
        ])
    lines += _table(["Matches", "Judgments", "Position consistency", "First-position win share", "Tie share", "Error share"], hrows)
    lines += ["", "Position consistency: share of matches whose two orders agree. First-position win share: share of decisive judgments that picked the answer shown first (50% = no position bias).", ""]

    cats = sorted({cat for c in comps for cat in c.get("per_category", {})})
    if cats:
        lines += ["## Win rate by category", ""]
        crows = [[f"`{c['model']}`"] + [_pct(c.get("per_category", {}).get(cat, {}).get("win_rate")) for cat in cats] for c in comps]
        lines += _table(["Model", *cats], crows)
        lines.append("")

    diagnosed = [c for c in comps if c.get("diagnosis")]
    if diagnosed:
        lines += ["## Diagnosis", "", "What the outcome suggests about each checkpoint's training (hints, not verdicts).", ""]
        drows = [[f"`{c['model']}`", _pct(c.get("win_rate")), _num(c.get("diversity"), 2), "; ".join(c["diagnosis"])] for c in diagnosed]
        lines += _table(["Model", "Win rate", "Distinct-2", "Likely cause"], drows, "lrrl")
        lines.append("")

    if training:
        lines += ["## Training health", ""]
        trows = [[f"`{m}`", f["code"], f["message"], f["fix"]] for m, fl in training.items() for f in fl]
        lines += _table(["Checkpoint", "Flag", "What was seen", "Likely fix"], trows, "llll")
        lines.append("")

    usage = results.get("usage", {})
    judge_cost = usage.get("judge", {}).get("cost_usd")
    lines += [
        "---",
        "",
        f"Judge `{results.get('judge')}`; templates {', '.join(f'`{t}`' for t in results.get('templates', [])) or '–'}; "
        f"benchmark `{bench.get('name')}` ({bench.get('n_questions')} questions: {', '.join(bench.get('categories', []))}); "
        f"seed {results.get('stats', {}).get('seed', 0)}; BT rounds {results.get('stats', {}).get('bt_rounds')}; "
        f"judge tokens {usage.get('judge', {}).get('prompt_tokens', 0)} in / {usage.get('judge', {}).get('completion_tokens', 0)} out"
        + (f" (${judge_cost:.4f})" if judge_cost is not None else "")
        + f"; evalsuite {results.get('evalsuite_version')}; {results.get('created', '')}.",
        "",
    ]
    return "\n".join(lines)
