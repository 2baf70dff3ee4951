"""The markdown leaderboard (GitHub-flavoured), rendered from a typed ``Results`` alone."""

from __future__ import annotations

from typing import Sequence

from evalsuite.report.health import UNRELIABLE_CONSISTENCY, UNRELIABLE_FIRST_POSITION, WEAK_CONSISTENCY
from evalsuite.report.results import Comparison, Results, StatsOptions, format_p

__all__ = ["format_p", "render_markdown"]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, nd: int = 0) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def _pts(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:+.1f}"


def _mark(c: Comparison, stats: StatsOptions) -> str:
    if c.unreliable and not stats.allow_unhealthy_judge:
        return "unreliable"  # the judge failed its health check: no conclusion either way
    if c.p_holm is None or c.win_rate is None:
        return ""
    if not c.significant:
        return "·"  # not significant, or an effect below the smallest relevant one
    return "▲" if c.win_rate > 0.5 else "▼"


def _effect(c: Comparison) -> str:
    if c.effect is None:
        return "–"
    return f"{_pts(c.effect)}" + ("" if c.mde is None else f" (MDE {100 * c.mde:.1f})")


def _import_lc_lines(comps: Sequence[Comparison]) -> list[str]:
    """What an import's length-controlled figures are: evalsuite's LC always, AlpacaEval's LC v1 when computed."""
    lines = ["LC (evalsuite): evalsuite's length-controlled win rate (a logistic fit on the length difference alone), "
             "not the LC of AlpacaEval's leaderboard, which also models each instruction's difficulty."]
    with_ae = [c for c in comps if c.alpaca_eval_lc_win_rate is not None]
    if not with_ae:
        return lines + ["Pass AlpacaEval's instruction_difficulty.csv or df_gamed.csv with --instruction-difficulty "
                        "for AlpacaEval's own LC v1.", ""]
    lines += ["LC (AlpacaEval v1): AlpacaEval's length-controlled win rate, with the instruction difficulties of the "
              "file given to the import.", ""]
    rows = [[f"`{c.model}`", _pct(c.win_rate), _pct(c.lc_win_rate), _pct(c.alpaca_eval_lc_win_rate)] for c in with_ae]
    return lines + _table(["Model", "Win rate", "LC (evalsuite)", "LC (AlpacaEval v1)"], rows, "lrrr") + [""]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    aligns = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else ":---" for a in aligns]
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(sep) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


_MODE_NOTE = {
    "games": "each order is one game (Bradley-Terry fits the games; a win rate is the mean over a pair's games)",
}


def render_markdown(results: Results) -> str:
    st = results.stats
    alpha, conf, b = st.alpha, st.confidence, st.n_resamples
    info = results.info
    baseline = results.baseline
    comps = results.comparisons
    training = info.training
    lines: list[str] = [f"# Leaderboard: candidates vs `{baseline}`", ""]
    if info.note:
        lines += [f"> **Note.** {info.note}", ""]
    bench = info.benchmark
    mode = info.mode
    lines.append(
        f"Judge `{info.judge or '?'}` compared each candidate with `{baseline}` on "
        f"{bench.n_questions if bench.n_questions is not None else '?'} questions of `{bench.name or '?'}`, both turns, "
        f"both answer orders (`{mode}` reconciliation{': ' + _MODE_NOTE[mode] if mode in _MODE_NOTE else ''}). "
        f"Win rate counts ties as half; CI = {int(conf * 100)}% question-clustered bootstrap ({b} resamples); "
        f"p = bootstrap test of win rate = 50%, Holm-adjusted over the {len(comps)} comparisons "
        f"(`<{1 / b:.2g}`: no resample on the far side). "
        f"▲/▼ significantly better/worse at α = {alpha}"
        + (f" by at least {100 * st.min_effect:g} pts" if st.min_effect else "")
        + ", · not significant; unreliable: the judge failed its health check, no conclusion. "
        "Effect: win rate − 50% in points (MDE: the smallest effect a decisive judge detects with 80% power on this "
        "many questions)."
    )
    lines.append("")
    unreliable = [c for c in comps if c.unreliable]
    if unreliable:
        verdict = results.health_verdict if results.health_verdict.unreliable else unreliable[0].health_verdict
        if st.allow_unhealthy_judge:
            lines += [f"> **Judge health.** The judge failed its health check ({'; '.join(verdict.reasons)}); the "
                      "marks below are shown anyway because the run was told to allow an unhealthy judge.", ""]
        else:
            lines += [f"> **Judge health.** The judge failed its health check ({'; '.join(verdict.reasons)}): its "
                      "verdicts follow the answers' position, not their content, so the comparisons marked unreliable "
                      "carry no conclusion (no significance marks, no best beta; `evalsuite gate` fails on them). "
                      "See docs/judge-health.md.", ""]

    order = sorted(comps, key=lambda c: -1 if c.win_rate is None else c.win_rate, reverse=True)
    external = any(c.external_se is not None for c in comps)  # an import that publishes its own standard error
    rows = []
    for c in order:
        r = results.rating(c.model)
        flags = training.get(c.model, ())
        rows.append(
            [
                "–" if r is None or r.rank is None else str(r.rank),
                f"`{c.model}`" + (" ⚠" if flags else ""),
                _pct(c.win_rate),
                f"[{_pct(c.ci_low)}, {_pct(c.ci_high)}]",
                *([f"± {_pct(c.external_se)}" if c.external_se is not None else "–"] if external else []),
                f"{c.wins}/{c.ties}/{c.losses}",
                format_p(c.p_holm, c.p_holm_bound, b),
                _mark(c, st),
                _effect(c),
                _num(None if r is None else r.rating),
                "–" if r is None else f"[{_num(r.ci_low)}, {_num(r.ci_high)}]",
                _pct(c.lc_win_rate),
                _num(c.avg_length),
                str(c.errors),
                str(c.inconsistent),
            ]
        )
    rb = results.rating(baseline)
    rows.append(
        ["–" if rb is None or rb.rank is None else str(rb.rank), f"`{baseline}` (baseline)", "50.0%", "–",
         *(["–"] if external else []), "–", "–", "", "–",
         _num(1000.0 if rb is None else rb.rating), "–", "–", _num(comps[0].avg_length_baseline) if comps else "–", "–", "–"]
    )
    lines += _table(
        ["Rank", "Model", "Win rate", "CI", *(["Source SE"] if external else []), "W/T/L", "p (Holm)", "", "Effect (pts)",
         "BT rating", "BT CI", "LC (evalsuite)" if external else "LC win rate", "Avg len", "Errors", "Inconsistent"],
        rows,
        "llrr" + ("r" if external else "") + "rrlrrrrrrr",
    )
    lines.append("")
    if external:
        lines += ["Source SE: the imported file's own standard error of the win rate (e.g. AlpacaEval's SE of the mean "
                  "preference), to check the import against the published leaderboard; CI: our question-clustered "
                  "bootstrap.", ""]
        lines += _import_lc_lines(comps)
    # a sequential run and human calibration add their sections (owned by evalsuite.sequential / evalsuite.calibrate)
    from evalsuite.calibrate import calibration_markdown
    from evalsuite.sequential import sequential_markdown

    lines += [s for s in (sequential_markdown(results.extra), calibration_markdown(results.extra)) if s]

    turned = [c for c in comps if c.per_turn]
    turns = sorted({t.turn for c in turned for t in c.per_turn})
    if turned:
        lines += ["## Win rate by turn", "",
                  f"Each turn on its own ({int(conf * 100)}% bootstrap CI over questions, one item per question); "
                  "turn 2 − turn 1: paired bootstrap over the questions scored on both turns, two-sided p against no "
                  "difference (not Holm-adjusted). Preference optimisation can help one turn and hurt the other.", ""]
        trows = []
        for c in turned:
            row = [f"`{c.model}`"]
            for turn in turns:
                t = c.turn(turn)
                row.append("–" if t is None else f"{_pct(t.win_rate)} [{_pct(t.ci_low)}, {_pct(t.ci_high)}]")
            d = c.turn_difference
            if d is None or d.diff is None:
                row += ["–", "–"]
            else:
                row += [f"{_pts(d.diff)} pts [{_pts(d.ci_low)}, {_pts(d.ci_high)}]", format_p(d.p_value, d.p_value_bound, b)]
            trows.append(row)
        lines += _table(["Model", *(f"Turn {t}" for t in turns), "Turn 2 − turn 1", "p"], trows)
        lines.append("")

    if results.sweeps:
        lines += ["## Beta sweeps", ""]
        for s in results.sweeps:
            if s.judge_unreliable:
                lines.append(f"**{s.variant}** — no best beta: the judge failed its health check on this variant's "
                             "comparisons, so its verdicts cannot rank the betas.")
            elif s.best_significant:
                lines.append(f"**{s.variant}** — best beta {s.best_beta:g} (`{s.best}`): significantly better than "
                             "every other beta.")
            else:
                lines.append(f"**{s.variant}** — no best beta: the highest win rate (beta {s.best_beta:g}, `{s.best}`) "
                             "is not significantly better than every other beta (paired bootstrap, Holm within the variant).")
            lines.append("")
            vs = {o.model: o for o in s.vs_others}
            srows = []
            for sr in s.rows:
                o = vs.get(sr.model)
                srows.append([
                    f"{sr.beta:g}", f"`{sr.model}`" + (" ★" if s.has_best and sr.model == s.best else ""), _pct(sr.win_rate),
                    f"[{_pct(sr.ci_low)}, {_pct(sr.ci_high)}]", format_p(sr.p_holm, sr.p_holm_bound, b),
                    "–" if o is None else f"{_pts(o.diff)} pts", "–" if o is None else format_p(o.p_holm, o.p_holm_bound, b),
                ])
            lines += _table(["Beta", "Model", "Win rate", "CI", "p vs 50% (Holm)", "Highest minus this", "p (Holm, in sweep)"], srows, "rlrrrrr")
            lines.append("")

    pairs = [p for p in results.variant_pairs if p.diff is not None]
    if pairs:
        lines += ["## Variant vs variant", "", "Difference of win rates against the same baseline on the same questions (paired question-clustered bootstrap); direct win rate where the two were judged head to head.", ""]
        prow = []
        for p in pairs:
            direct = p.direct
            prow.append([
                f"`{p.model_1}` − `{p.model_2}`", f"{_pts(p.diff)} pts",
                f"[{_pts(p.ci_low)}, {_pts(p.ci_high)}]", format_p(p.p_value, p.p_value_bound, b),
                format_p(p.p_holm, p.p_holm_bound, b),
                "–" if not direct else f"{_pct(direct.win_rate)} ({direct.wins}/{direct.ties}/{direct.losses})",
            ])
        lines += _table(["Comparison", "Difference", "CI", "p", "p (Holm)", "Direct win rate of the first (W/T/L)"], prow, "lrrrrr")
        lines.append("")

    lines += ["## Judge health", ""]
    hrows = []
    # a template edited during a run has two content hashes under one name: show the hash only then
    hashes: dict[str, set[str]] = {}
    for g in results.health_by_group:
        hashes.setdefault(g.template, set()).add(g.template_hash)
    groups = [(f"`{g.judge}`", f"`{g.template}`" + (f" ({g.template_hash[:8]})" if len(hashes[g.template]) > 1 else ""),
               str(g.turn), g.health) for g in results.health_by_group]
    if not groups:  # a file written before health was reported per judge x template x turn
        groups = [(f"`{info.judge or '?'}`", f"all (`{c.model}` vs `{baseline}`)", "all", c.health) for c in comps]
    for judge_cell, template_cell, turn_cell, h in groups + [("all", "all", "all", results.health)]:
        hrows.append([
            judge_cell, template_cell, turn_cell, str(h.n_judgments), _pct(h.consistency), _pct(h.first_position_win_share),
            _pct(h.tie_share), _pct(h.error_share), h.verdict().status,
        ])
    lines += _table(["Judge", "Template", "Turn", "Judgments", "Position consistency", "First-position win share",
                     "Tie share", "Error share", "Verdict"], hrows, "lllrrrrrl")
    lines += ["", "Per judge, template and turn (a judge can be biased under one template or on one turn only). "
              "Position consistency: share of matches judged in both orders whose two orders agree. First-position "
              "win share: share of decisive judgments that picked the answer shown first (50% = no position bias). "
              f"Verdict: unreliable below {100 * UNRELIABLE_CONSISTENCY:g}% consistency or outside "
              f"{100 * (1 - UNRELIABLE_FIRST_POSITION):g}–{100 * UNRELIABLE_FIRST_POSITION:g}% first-position share; "
              f"weak below {100 * WEAK_CONSISTENCY:g}% consistency (docs/judge-health.md).", ""]

    cats = sorted({cat for c in comps for cat in c.per_category})
    if cats:
        lines += ["## Win rate by category", ""]
        crows = []
        for c in comps:
            crows.append([f"`{c.model}`"] + [_pct(c.per_category[cat].win_rate) if cat in c.per_category else "–" for cat in cats])
        lines += _table(["Model", *cats], crows)
        lines.append("")

    diagnosed = [c for c in comps if c.diagnosis]
    if diagnosed:
        lines += ["## Diagnosis", "", "What the outcome suggests about each checkpoint's training (hints, not verdicts).", ""]
        drows = [[f"`{c.model}`", _pct(c.win_rate), _num(c.diversity, 2), "; ".join(c.diagnosis)] for c in diagnosed]
        lines += _table(["Model", "Win rate", "Distinct-2", "Likely cause"], drows, "lrrl")
        lines.append("")

    if training:
        lines += ["## Training health", ""]
        trows = [[f"`{m}`", f.code, f.message, f.fix] for m, fl in training.items() for f in fl]
        lines += _table(["Checkpoint", "Flag", "What was seen", "Likely fix"], trows, "llll")
        lines.append("")

    usage = info.usage
    judge_usage = usage.judge if usage is not None else None
    lines += [
        "---",
        "",
        f"Judge `{info.judge}`; templates {', '.join(f'`{t}`' for t in info.templates) or '–'}; "
        f"benchmark `{bench.name}` ({bench.n_questions} questions: {', '.join(bench.categories)}); "
        f"seed {st.seed}; BT rounds {st.bt_rounds}; "
        f"judge tokens {judge_usage.prompt_tokens if judge_usage else 0} in / {judge_usage.completion_tokens if judge_usage else 0} out"
        + (f" (${judge_usage.cost_usd:.4f})" if judge_usage is not None and judge_usage.cost_usd is not None else "")
        + f"; evalsuite {info.evalsuite_version}; {info.created or ''}.",
        "",
    ]
    return "\n".join(lines)
