"""The leaderboard as a document model, built from a typed ``Results`` alone: one model, two renderers.

``build_leaderboard(results)`` returns a ``Leaderboard``: a title, the blocks above the sections (notes, the
description, the main table), the sections (``## Win rate by turn``, ``## Beta sweeps``, ...) and a footer. Each
section comes from one small function over the typed results. ``evalsuite.report.markdown`` renders the model as
GitHub markdown (``leaderboard.md``); ``evalsuite.report.html`` renders the same model as the viewer's HTML, so the
two can never show different figures and neither reads the other back.

Text in blocks and cells uses two inline forms, and only these: ```code``` (model, judge and template names) and
``**bold**``. Each renderer turns them into its own markup (and escapes everything else).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

from evalsuite.report.health import UNRELIABLE_CONSISTENCY, UNRELIABLE_FIRST_POSITION, WEAK_CONSISTENCY
from evalsuite.report.results import (
    CalibratedRate,
    Comparison,
    Health,
    Results,
    StatsOptions,
    Sweep,
    format_p,
)

__all__ = ["Block", "Leaderboard", "Note", "Paragraph", "Section", "Table", "build_leaderboard"]


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Note:
    """A call-out (a quote in markdown): ``label`` in bold, then ``text``."""

    label: str
    text: str


@dataclass(frozen=True)
class Table:
    """A table; ``align`` holds one letter per column, ``l`` or ``r``."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: str

    @classmethod
    def of(cls, header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> Table:
        """A table with ``align`` defaulting to a left first column and right-aligned figures."""
        return cls(tuple(header), tuple(tuple(r) for r in rows), align or "l" + "r" * (len(header) - 1))


Block = Union[Paragraph, Note, Table]


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Leaderboard:
    title: str
    intro: tuple[Block, ...]
    sections: tuple[Section, ...]
    footer: str


# --- cell formats ---------------------------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    """A share as a percentage with one decimal; ``–`` when unknown.

    >>> pct(0.5074), pct(None)
    ('50.7%', '–')
    """
    return "–" if x is None else f"{100 * x:.1f}%"


def num(x: float | None, nd: int = 0) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def pts(x: float | None) -> str:
    """A difference of shares in signed percentage points.

    >>> pts(0.0074), pts(-0.25)
    ('+0.7', '-25.0')
    """
    return "–" if x is None else f"{100 * x:+.1f}"


def mark(c: Comparison, stats: StatsOptions) -> str:
    """▲/▼ significantly better/worse, · not, ``unreliable`` when the judge failed its health check."""
    if c.unreliable and not stats.allow_unhealthy_judge:
        return "unreliable"  # no conclusion either way
    if c.p_holm is None or c.win_rate is None:
        return ""
    if not c.significant:
        return "·"  # not significant, or an effect below the smallest relevant one
    return "▲" if c.win_rate > 0.5 else "▼"


def effect(c: Comparison) -> str:
    if c.effect is None:
        return "–"
    return pts(c.effect) + ("" if c.mde is None else f" (MDE {100 * c.mde:.1f})")


def _interval(w: CalibratedRate) -> str:
    return f"{100 * w.win_rate:.1f}% [{100 * w.ci_low:.1f}, {100 * w.ci_high:.1f}] (n={w.n})"


_MODE_NOTE = {
    "games": "each order is one game (Bradley-Terry fits the games; a win rate is the mean over a pair's games)",
}


# --- the blocks above the sections ----------------------------------------------------------------------------------


def _description(results: Results) -> Paragraph:
    st, info = results.stats, results.info
    bench, mode, b = info.benchmark, info.mode, st.n_resamples
    judged_turns = {t.turn for c in results.comparisons for t in c.per_turn if t.n}
    turns = "turn 1 only" if judged_turns == {1} else "turn 2 only" if judged_turns == {2} else "both turns"
    who = (f"A panel of {len(results.judges)} judges ({', '.join(f'`{j.name}`' for j in results.judges)}; "
           "weights under Judge panel)" if results.judges else f"Judge `{info.judge or '?'}`")
    return Paragraph(
        f"{who} compared each candidate with `{results.baseline}` on "
        f"{bench.n_questions if bench.n_questions is not None else '?'} questions of `{bench.name or '?'}`, {turns}, "
        f"both answer orders (`{mode}` reconciliation{': ' + _MODE_NOTE[mode] if mode in _MODE_NOTE else ''}). "
        f"Win rate counts ties as half; CI = {int(st.confidence * 100)}% question-clustered bootstrap ({b} resamples); "
        f"p = bootstrap test of win rate = 50%, Holm-adjusted over the {len(results.comparisons)} comparisons "
        f"(`<{1 / b:.2g}`: no resample on the far side). "
        f"▲/▼ significantly better/worse at α = {st.alpha}"
        + (f" by at least {100 * st.min_effect:g} pts" if st.min_effect else "")
        + ", · not significant; unreliable: the judge failed its health check, no conclusion. "
        "Effect: win rate − 50% in points (MDE: the smallest effect a decisive judge detects with 80% power on this "
        "many questions)."
    )


def _health_note(results: Results) -> list[Block]:
    unreliable = [c for c in results.comparisons if c.unreliable]
    if not unreliable:
        return []
    verdict = results.health_verdict if results.health_verdict.unreliable else unreliable[0].health_verdict
    reasons = "; ".join(verdict.reasons)
    if results.stats.allow_unhealthy_judge:
        return [Note("Judge health", f"The judge failed its health check ({reasons}); the marks below are shown anyway "
                                     "because the run was told to allow an unhealthy judge.")]
    return [Note("Judge health", f"The judge failed its health check ({reasons}): its verdicts follow the answers' "
                                 "position, not their content, so the comparisons marked unreliable carry no conclusion "
                                 "(no significance marks, no best beta; `evalsuite gate` fails on them). "
                                 "See docs/judge-health.md.")]


def _main_table(results: Results) -> Table:
    st, comps, baseline = results.stats, results.comparisons, results.baseline
    b = st.n_resamples
    external = any(c.external_se is not None for c in comps)  # an import that publishes its own standard error
    styled = any(c.style_win_rate is not None for c in comps)  # style control ran (answers with text)
    rows = []
    for c in sorted(comps, key=lambda c: -1 if c.win_rate is None else c.win_rate, reverse=True):
        r = results.rating(c.model)
        rows.append([
            "–" if r is None or r.rank is None else str(r.rank),
            f"`{c.model}`" + (" ⚠" if results.info.training.get(c.model) else ""),
            pct(c.win_rate),
            f"[{pct(c.ci_low)}, {pct(c.ci_high)}]",
            *([f"± {pct(c.external_se)}" if c.external_se is not None else "–"] if external else []),
            f"{c.wins}/{c.ties}/{c.losses}",
            format_p(c.p_holm, c.p_holm_bound, b),
            mark(c, st),
            effect(c),
            num(None if r is None else r.rating),
            "–" if r is None else f"[{num(r.ci_low)}, {num(r.ci_high)}]",
            pct(c.lc_win_rate),
            *([pct(c.style_win_rate)] if styled else []),
            num(c.avg_length),
            str(c.errors),
            str(c.inconsistent),
        ])
    rb = results.rating(baseline)
    rows.append(["–" if rb is None or rb.rank is None else str(rb.rank), f"`{baseline}` (baseline)", "50.0%", "–",
                 *(["–"] if external else []), "–", "–", "", "–", num(1000.0 if rb is None else rb.rating), "–", "–",
                 *(["–"] if styled else []), num(comps[0].avg_length_baseline) if comps else "–", "–", "–"])
    return Table.of(
        ["Rank", "Model", "Win rate", "CI", *(["Source SE"] if external else []), "W/T/L", "p (Holm)", "", "Effect (pts)",
         "BT rating", "BT CI", "LC (evalsuite)" if external else "LC win rate", *(["SC win rate"] if styled else []),
         "Avg len", "Errors", "Inconsistent"],
        rows, "llrr" + ("r" if external else "") + "rrlrrrrr" + ("r" if styled else "") + "rr")


def _import_notes(comps: Sequence[Comparison]) -> list[Block]:
    """What an import's own figures are: the source's SE, evalsuite's LC always, AlpacaEval's LC v1 when computed."""
    if not any(c.external_se is not None for c in comps):
        return []
    blocks: list[Block] = [
        Paragraph("Source SE: the imported file's own standard error of the win rate (e.g. AlpacaEval's SE of the "
                  "mean preference), to check the import against the published leaderboard; CI: our "
                  "question-clustered bootstrap."),
        Paragraph("LC (evalsuite): evalsuite's length-controlled win rate (a logistic fit on the length difference "
                  "alone), not the LC of AlpacaEval's leaderboard, which also models each instruction's difficulty."),
    ]
    with_ae = [c for c in comps if c.alpaca_eval_lc_win_rate is not None]
    if not with_ae:
        return blocks + [Paragraph("Pass AlpacaEval's instruction_difficulty.csv or df_gamed.csv with "
                                   "--instruction-difficulty for AlpacaEval's own LC v1.")]
    rows = [[f"`{c.model}`", pct(c.win_rate), pct(c.lc_win_rate), pct(c.alpaca_eval_lc_win_rate)] for c in with_ae]
    return blocks + [
        Paragraph("LC (AlpacaEval v1): AlpacaEval's length-controlled win rate, with the instruction difficulties of "
                  "the file given to the import."),
        Table.of(["Model", "Win rate", "LC (evalsuite)", "LC (AlpacaEval v1)"], rows, "lrrr"),
    ]


# --- the sections ---------------------------------------------------------------------------------------------------


def sequential_section(results: Results) -> Section | None:
    run = results.sequential
    if run is None:
        return None
    o, k = run.options, len(run.candidates)
    rows = [[f"`{c.model}`", c.decision + ("" if c.settled else " (questions ran out)"),
             f"{c.questions_used} / {c.questions_total}", f"{c.calls_used} / {c.calls_full}", f"{100 * c.calls_saved:.0f}%",
             f"[{100 * c.lower:.1f}%, {100 * c.upper:.1f}%] at {100 * (1 - c.alpha):g}%",
             "-" if c.mean is None else f"{100 * c.mean:.1f}%"] for c in run.candidates]
    return Section("Sequential judging", (
        Paragraph(f"Questions judged in a seeded random order (seed {o.seed}) in waves of {o.wave}; each candidate "
                  f"stopped once its `{o.rule}` decision at {100 * o.threshold:.1f}% was settled by an anytime-valid "
                  f"confidence sequence ({o.betting} betting), family-wise error {o.alpha:g} over {k} "
                  f"candidate{'s' if k != 1 else ''} (Bonferroni). Each decision rests on the questions its candidate used; the "
                  f"win rates above are over the {results.info.benchmark.n_questions} questions this document covers."),
        Table.of(["Model", "Decision", "Questions used", "Judge calls", "Calls saved", "Sequence at stopping", "Mean"],
                 rows, "llrrrlr"),
    ))


def calibration_section(results: Results) -> Section | None:
    if not results.calibration:
        return None
    rows = [[f"`{r.model}`", f"`{r.opponent}`", _interval(r.judge), _interval(r.human), _interval(r.ppi), f"{r.lam:.2f}"]
            for r in results.calibration]
    return Section("Human-calibrated win rates", (
        Paragraph("Prediction-powered inference (PPI++, clustered by question): the judge's verdicts on every item "
                  "corrected by human votes on a subset. Judge-only CIs are centred on the judge's win rate; PPI's on "
                  "the human one."),
        Table.of(["Model", "vs", "Judge only", "Human only", "PPI (human scale)", "lambda"], rows, "lllllr"),
    ))


def turn_section(results: Results) -> Section | None:
    turned = [c for c in results.comparisons if c.per_turn]
    if not turned:
        return None
    b = results.stats.n_resamples
    turns = sorted({t.turn for c in turned for t in c.per_turn})
    rows = []
    for c in turned:
        row = [f"`{c.model}`"]
        for turn in turns:
            t = c.turn(turn)
            row.append("–" if t is None else f"{pct(t.win_rate)} [{pct(t.ci_low)}, {pct(t.ci_high)}]")
        d = c.turn_difference
        if d is None or d.diff is None:
            row += ["–", "–"]
        else:
            row += [f"{pts(d.diff)} pts [{pts(d.ci_low)}, {pts(d.ci_high)}]", format_p(d.p_value, d.p_value_bound, b)]
        rows.append(row)
    return Section("Win rate by turn", (
        Paragraph(f"Each turn on its own ({int(results.stats.confidence * 100)}% bootstrap CI over questions, one item "
                  "per question); turn 2 − turn 1: paired bootstrap over the questions scored on both turns, two-sided "
                  "p against no difference (not Holm-adjusted). Preference optimisation can help one turn and hurt "
                  "the other."),
        Table.of(["Model", *(f"Turn {t}" for t in turns), "Turn 2 − turn 1", "p"], rows),
    ))


def _sweep_headline(s: Sweep) -> str:
    if s.judge_unreliable:
        return (f"**{s.variant}** — no best beta: the judge failed its health check on this variant's comparisons, so "
                "its verdicts cannot rank the betas.")
    if s.best_significant:
        return f"**{s.variant}** — best beta {s.best_beta:g} (`{s.best}`): significantly better than every other beta."
    return (f"**{s.variant}** — no best beta: the highest win rate (beta {s.best_beta:g}, `{s.best}`) is not "
            "significantly better than every other beta (paired bootstrap, Holm within the variant).")


def sweep_section(results: Results) -> Section | None:
    if not results.sweeps:
        return None
    b = results.stats.n_resamples
    blocks: list[Block] = []
    for s in results.sweeps:
        vs = {o.model: o for o in s.vs_others}
        rows = []
        for sr in s.rows:
            o = vs.get(sr.model)
            rows.append([
                f"{sr.beta:g}", f"`{sr.model}`" + (" ★" if s.has_best and sr.model == s.best else ""), pct(sr.win_rate),
                f"[{pct(sr.ci_low)}, {pct(sr.ci_high)}]", format_p(sr.p_holm, sr.p_holm_bound, b),
                "–" if o is None else f"{pts(o.diff)} pts", "–" if o is None else format_p(o.p_holm, o.p_holm_bound, b),
            ])
        blocks += [Paragraph(_sweep_headline(s)),
                   Table.of(["Beta", "Model", "Win rate", "CI", "p vs 50% (Holm)", "Highest minus this",
                             "p (Holm, in sweep)"], rows, "rlrrrrr")]
    return Section("Beta sweeps", tuple(blocks))


def variant_pairs_section(results: Results) -> Section | None:
    pairs = [p for p in results.variant_pairs if p.diff is not None]
    if not pairs:
        return None
    b = results.stats.n_resamples
    rows = [[
        f"`{p.model_1}` − `{p.model_2}`", f"{pts(p.diff)} pts", f"[{pts(p.ci_low)}, {pts(p.ci_high)}]",
        format_p(p.p_value, p.p_value_bound, b), format_p(p.p_holm, p.p_holm_bound, b),
        "–" if not p.direct else f"{pct(p.direct.win_rate)} ({p.direct.wins}/{p.direct.ties}/{p.direct.losses})",
    ] for p in pairs]
    return Section("Variant vs variant", (
        Paragraph("Difference of win rates against the same baseline on the same questions (paired question-clustered "
                  "bootstrap); direct win rate where the two were judged head to head."),
        Table.of(["Comparison", "Difference", "CI", "p", "p (Holm)", "Direct win rate of the first (W/T/L)"], rows,
                 "lrrrrr"),
    ))


def health_section(results: Results) -> Section:
    # a template edited during a run has two content hashes under one name: show the hash only then
    hashes: dict[str, set[str]] = {}
    for g in results.health_by_group:
        hashes.setdefault(g.template, set()).add(g.template_hash)
    groups: list[tuple[str, str, str, Health]] = [
        (f"`{g.judge}`", f"`{g.template}`" + (f" ({g.template_hash[:8]})" if len(hashes[g.template]) > 1 else ""),
         str(g.turn), g.health) for g in results.health_by_group]
    if not groups:  # a file written before health was reported per judge x template x turn
        groups = [(f"`{results.info.judge or '?'}`", f"all (`{c.model}` vs `{results.baseline}`)", "all", c.health)
                  for c in results.comparisons]
    rows = [[judge, template, turn, str(h.n_judgments), pct(h.consistency), pct(h.first_position_win_share),
             pct(h.tie_share), pct(h.error_share), h.verdict().status]
            for judge, template, turn, h in groups + [("all", "all", "all", results.health)]]
    return Section("Judge health", (
        Table.of(["Judge", "Template", "Turn", "Judgments", "Position consistency", "First-position win share",
                  "Tie share", "Error share", "Verdict"], rows, "lllrrrrrl"),
        Paragraph("Per judge, template and turn (a judge can be biased under one template or on one turn only). "
                  "Position consistency: share of matches judged in both orders whose two orders agree. First-position "
                  "win share: share of decisive judgments that picked the answer shown first (50% = no position "
                  f"bias). Verdict: unreliable below {100 * UNRELIABLE_CONSISTENCY:g}% consistency or outside "
                  f"{100 * (1 - UNRELIABLE_FIRST_POSITION):g}–{100 * UNRELIABLE_FIRST_POSITION:g}% first-position "
                  f"share; weak below {100 * WEAK_CONSISTENCY:g}% consistency (docs/judge-health.md)."),
    ))


def style_section(results: Results) -> Section | None:
    """Style control: each candidate's raw, length-controlled and style-controlled win rates, and what the judge pays
    per style feature."""
    info = results.style
    if info is None:
        return None
    if not results.style_coefficients:
        return Section("Style control", (Paragraph(f"Not computed: {info.note or 'no style features'}."),))
    rows = [[f"`{c.model}`", pct(c.win_rate), pct(c.lc_win_rate), pct(c.style_win_rate),
             f"[{pct(c.style_ci_low)}, {pct(c.style_ci_high)}]", pct(c.style_win_rate_at_mean),
             f"[{pct(c.style_ci_low_at_mean)}, {pct(c.style_ci_high_at_mean)}]"] for c in results.comparisons]
    coef = [[k.name, num(k.estimate, 3), f"[{num(k.ci_low, 3)}, {num(k.ci_high, 3)}]"] for k in results.style_coefficients]
    source = ("this run's battles" if info.reference_source == "run"
              else f"frozen from `{info.reference_source}`, so adding a model moves no other")
    return Section("Style control", (
        Table.of(["Model", "Win rate", "LC win rate", "SC win rate", "SC CI", "SC at mean style", "CI at mean style"],
                 rows, "lrrrrrr"),
        Paragraph("SC: Bradley-Terry with the answers' style differences (length, markdown headers, list items, bold; "
                  "Arena-Hard v2's features) fitted beside the models. SC win rate: predicted with the two answers "
                  "equally long and formatted, what is left when style is paid for; at mean style: with the battles' "
                  "mean style difference (Arena-Hard's convention). CIs: question-clustered bootstrap "
                  f"({results.stats.bt_rounds} rounds). Length counted in {info.length_unit or '?'}; normalisation "
                  f"from {source}; {info.n_battles} battles" + (f"; {info.note}" if info.note else "") + "."),
        Table.of(["Style feature", "Coefficient", "CI"], coef, "lrr"),
        Paragraph("What the judge pays for style: the change in log-odds of winning per standard deviation of the "
                  "feature's difference (0 = the judge ignores it; a feature no answer varied in is left out, 0)."),
    ))


def panel_section(results: Results) -> Section | None:
    """A judge panel: the members' weights, health, agreement and cost; each member's own win rates; kappas."""
    if not results.judges:
        return None
    members = [[f"`{j.name}`", f"`{j.label}`" if j.label and j.label != j.name else "", num(j.weight, 3),
                j.weight_source, pct(j.consistency), pct(j.first_position_share), num(j.agreement, 3),
                str(j.n_matches), str(j.errors), "–" if j.cost_usd is None else f"${j.cost_usd:.4f}"]
               for j in results.judges]
    names = [j.name for j in results.judges]
    rates = [[f"`{c.model}`", pct(c.win_rate)] + [
        (f"{pct(r.win_rate)} [{pct(r.ci_low)}, {pct(r.ci_high)}]" if (r := c.per_judge.get(n)) and r.win_rate is not None
         else "–") for n in names] for c in results.comparisons]
    blocks: list[Block] = [
        Table.of(["Judge", "Label", "Weight", "Weight from", "Position consistency", "First-position win share",
                  "Mean κ with the others", "Matches", "Errors", "Cost"], members, "llrlrrrrrr"),
        Paragraph("Each judge judged every match in both orders; the panel's verdict on a match is the weighted mean "
                  "of the judges' match scores. Weight from agreement: the mean of the judge's Cohen's κ with each other "
                  "judge (a κ counts when it clears chance) times its position consistency, normalised, so a judge that reads position or flips "
                  "coins weighs about nothing; human: κ with human labels; fixed: set in the config; consistency: no judge "
                  "agreed with the rest beyond chance, so position consistency alone sets the weights; equal: "
                  "nothing tells the judges apart."),
        Table.of(["Model", "Panel", *[f"`{n}`" for n in names]], rates, "l" + "r" * (1 + len(names))),
    ]
    agreement = results.judge_agreement
    if agreement is not None:
        kappas = [[f"`{p.judge_1}`", f"`{p.judge_2}`", num(p.kappa, 3), str(p.n)] for p in agreement.pairs]
        blocks += [Table.of(["Judge", "Judge", "Cohen's κ", "Matches"], kappas, "llrr"),
                   Paragraph(f"Fleiss' κ of the panel: {num(agreement.fleiss_kappa, 3)} on the {agreement.n_items} "
                             "matches every judge scored (labels: win, tie, loss).")]
    return Section("Judge panel", tuple(blocks))


def category_section(results: Results) -> Section | None:
    comps = results.comparisons
    cats = sorted({cat for c in comps for cat in c.per_category})
    if not cats:
        return None
    rows = [[f"`{c.model}`"] + [pct(c.per_category[cat].win_rate) if cat in c.per_category else "–" for cat in cats]
            for c in comps]
    return Section("Win rate by category", (Table.of(["Model", *cats], rows),))


def diagnosis_section(results: Results) -> Section | None:
    diagnosed = [c for c in results.comparisons if c.diagnosis]
    if not diagnosed:
        return None
    rows = [[f"`{c.model}`", pct(c.win_rate), num(c.diversity, 2), "; ".join(c.diagnosis)] for c in diagnosed]
    return Section("Diagnosis", (
        Paragraph("What the outcome suggests about each checkpoint's training (hints, not verdicts)."),
        Table.of(["Model", "Win rate", "Distinct-2", "Likely cause"], rows, "lrrl"),
    ))


def training_section(results: Results) -> Section | None:
    training = results.info.training
    if not training:
        return None
    rows = [[f"`{m}`", f.code, f.message, f.fix] for m, fl in training.items() for f in fl]
    return Section("Training health", (Table.of(["Checkpoint", "Flag", "What was seen", "Likely fix"], rows, "llll"),))


def footer(results: Results) -> str:
    info, st = results.info, results.stats
    bench = info.benchmark
    ju = info.usage.judge if info.usage is not None else None
    return (
        f"Judge `{info.judge}`; templates {', '.join(f'`{t}`' for t in info.templates) or '–'}; "
        f"benchmark `{bench.name}` ({bench.n_questions} questions: {', '.join(bench.categories)}); "
        f"seed {st.seed}; BT rounds {st.bt_rounds}; "
        f"judge tokens {ju.prompt_tokens if ju else 0} in / {ju.completion_tokens if ju else 0} out"
        + (f" (${ju.cost_usd:.4f})" if ju is not None and ju.cost_usd is not None else "")
        + f"; evalsuite {info.evalsuite_version}; {info.created or ''}."
    )


# in reading order; each returns None when the results have nothing for it
SECTIONS = (sequential_section, calibration_section, turn_section, sweep_section, variant_pairs_section, style_section,
            panel_section, health_section, category_section, diagnosis_section, training_section)


def build_leaderboard(results: Results) -> Leaderboard:
    """The leaderboard of ``results``: what both renderers show."""
    intro: list[Block] = []
    if results.info.note:
        intro.append(Note("Note", results.info.note))
    intro += [_description(results), *_health_note(results), _main_table(results), *_import_notes(results.comparisons)]
    sections = tuple(s for make in SECTIONS if (s := make(results)) is not None)
    return Leaderboard(f"Leaderboard: candidates vs `{results.baseline}`", tuple(intro), sections, footer(results))
