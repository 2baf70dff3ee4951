"""The CI gate: checks on a typed ``Results``, each with a one-line reason. Pure except for recomputing a CI at a
non-default alpha from the per-item scores that results.json carries. ``--against`` takes an older ``Results``,
read by ``load_results`` from a file any release wrote."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evalsuite.errors import InputError
from evalsuite.report.results import SWEEP_NAME, Comparison, Results, SequentialRun


@dataclass(frozen=True)
class GateOptions:
    baseline: str
    candidates: Sequence[str]
    min_win_rate: float = 0.5
    rule: str = "lower-bound"  # lower-bound | not-worse | point
    alpha: float = 0.05
    # decide on comparisons whose judge failed its health check (evalsuite.report.health) instead of failing them
    allow_unhealthy_judge: bool = False
    # "win-rate": the judge's win rate; "style": the style-controlled win rate and its CI (Bradley-Terry with the
    # answers' style differences, at zero difference), so style alone cannot pass the gate
    metric: str = "win-rate"


@dataclass(frozen=True)
class GateCheck:
    model: str
    passed: bool
    message: str
    win_rate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


def _select(results: Results, names: Sequence[str]) -> list[Comparison]:
    comps = {c.model: c for c in results.comparisons}
    out = []
    for name in names:
        if name in comps:
            out.append(comps[name])
            continue
        swept = [c for m, c in comps.items() if (s := SWEEP_NAME.match(m)) and s["variant"] == name]
        if not swept:
            raise InputError(
                f"candidate {name!r} is not in this run's results",
                fix=f"choose from {sorted(comps)} (or a variant name that expands to them)",
            )
        out.extend(swept)
    return out


def _interval(c: Comparison, alpha: float, results: Results) -> tuple[float, float]:
    conf = results.stats.confidence
    if abs((1 - alpha) - conf) < 1e-12 and c.ci_low is not None and c.ci_high is not None:
        return c.ci_low, c.ci_high
    from evalsuite.stats import cluster_bootstrap

    if not c.items:
        raise InputError(
            f"results.json has no per-item scores for {c.model} to recompute a {100 * (1 - alpha):g}% CI",
            fix=f"use --alpha {1 - conf:g} (the stored CI) or re-run compare to rewrite results.json",
        )
    scores = np.array([i.score for i in c.items], dtype=float)
    clusters = np.array([i.question_id for i in c.items])
    r = cluster_bootstrap(scores, clusters, n_resamples=results.stats.n_resamples, confidence=1 - alpha,
                          seed=results.stats.seed)
    return r.ci_low, r.ci_high


def _style_interval(c: Comparison, alpha: float, results: Results) -> tuple[float, float, float]:
    """The style-controlled win rate and its stored CI (computed at the run's confidence, so only that alpha)."""
    if c.style_win_rate is None or c.style_ci_low is None or c.style_ci_high is None:
        why = results.style.note if results.style is not None and results.style.note else "computed by an older release"
        raise InputError(f"results.json has no style-controlled win rate for {c.model} ({why})",
                         fix="re-run compare on answers with text to compute it, or gate with --metric win-rate")
    conf = results.stats.confidence
    if abs((1 - alpha) - conf) > 1e-12:
        raise InputError(f"the style-controlled CI is stored at {100 * conf:g}%, not {100 * (1 - alpha):g}%",
                         fix=f"use --alpha {1 - conf:g} (the stored CI), or gate with --metric win-rate")
    return c.style_win_rate, c.style_ci_low, c.style_ci_high


def run_gate(results: Results, opts: GateOptions, old: Results | None = None) -> list[GateCheck]:
    if results.baseline != opts.baseline:
        raise InputError(
            f"this run's baseline is {results.baseline!r}, not {opts.baseline!r}",
            fix=f"pass --baseline {results.baseline} or the run directory that compared with {opts.baseline}",
        )
    if not 0 < opts.alpha < 1:
        raise InputError(f"--alpha {opts.alpha} is not in (0, 1)", fix="e.g. --alpha 0.05")
    level = f"{100 * (1 - opts.alpha):g}% CI"
    checks: list[GateCheck] = []
    for c in _select(results, opts.candidates):
        name, wr = c.model, c.win_rate
        if wr is None:
            checks.append(GateCheck(name, False, f"{name}: no judged matches vs {opts.baseline} ({c.errors} errors)"))
            continue
        if opts.metric == "style":
            wr, lo, hi = _style_interval(c, opts.alpha, results)
        else:
            lo, hi = _interval(c, opts.alpha, results)
        if c.unreliable and not opts.allow_unhealthy_judge:
            # Fails closed, under every rule, as a failed check (exit 1), not as bad input (exit 2): the inputs are
            # valid and the run finished; what is missing is evidence, and "no evidence" is what a gate fails on (the
            # lower-bound rule fails an uninformative CI the same way). Exit 2 would let a pipeline that treats
            # input errors as "fix the config and retry" read a judge that cannot tell answers apart as a typo.
            checks.append(GateCheck(
                name, False, f"{name}: the judge failed its health check on these matches "
                f"({'; '.join(c.health_verdict.reasons)}): its verdicts follow the answers' position, not their "
                "content, so they decide nothing (--allow-unhealthy-judge to gate on them anyway)", wr, lo, hi))
            if old is not None:
                checks.append(_against(c, old, opts))
            continue
        t = opts.min_win_rate
        what = "style-controlled win rate" if opts.metric == "style" else "win rate"
        head = f"{name}: {what} {100 * wr:.1f}% vs {opts.baseline}, {level} [{100 * lo:.1f}%, {100 * hi:.1f}%]"
        if opts.rule == "lower-bound":
            ok = lo > t
            why = f"lower bound {'clears' if ok else 'does not clear'} {100 * t:.1f}%" + ("" if ok else " (no evidence of improvement)")
        elif opts.rule == "not-worse":
            ok = hi >= t
            why = f"upper bound {'reaches' if ok else 'is below'} {100 * t:.1f}%" + ("" if ok else " (evidence of regression)")
        else:
            ok = wr >= t
            why = f"win rate {'meets' if ok else 'is below'} {100 * t:.1f}%"
        checks.append(GateCheck(name, ok, f"{head}: {why}", wr, lo, hi))
        if old is not None:
            checks.append(_against(c, old, opts))
    return checks


def _against(c: Comparison, old: Results, opts: GateOptions) -> GateCheck:
    from evalsuite.stats import paired_difference

    name = c.model
    prev = next((o for o in old.comparisons if o.model == name and o.baseline == opts.baseline), None)
    if prev is None or not prev.items:
        return GateCheck(name, False, f"{name}: the older results have no per-item scores for {name} vs {opts.baseline} to compare with")
    new_items = {(i.question_id, i.turn): i.score for i in c.items}
    old_items = {(i.question_id, i.turn): i.score for i in prev.items}
    keys = sorted(set(new_items) & set(old_items))
    if not keys:
        return GateCheck(name, False, f"{name}: no questions in common with the older run")
    d = paired_difference(
        np.array([new_items[k] for k in keys]), np.array([old_items[k] for k in keys]), np.array([k[0] for k in keys]),
        confidence=1 - opts.alpha, n_resamples=old.stats.n_resamples, seed=old.stats.seed,
    )
    dropped = d.ci_high < 0
    msg = (
        f"{name}: win rate change vs the older run {100 * d.estimate:+.1f} pts on {len(keys)} shared items, "
        f"{100 * (1 - opts.alpha):g}% CI [{100 * d.ci_low:+.1f}, {100 * d.ci_high:+.1f}]: "
        + ("significant drop" if dropped else "no significant drop")
    )
    return GateCheck(name, not dropped, msg)


def sequential_checks(run: SequentialRun, results: Results, allow_unhealthy_judge: bool = False) -> list[GateCheck]:
    """The gate checks of a sequential run (``gate --sequential``): each candidate's decision, with the judge calls it
    took and its confidence sequence at stopping; a candidate whose judge failed its health check fails, as in
    ``run_gate``, unless ``allow_unhealthy_judge``."""
    o = run.options
    checks = []
    for c in run.candidates:
        how = "settled" if c.settled else "questions ran out"
        if o.rule == "lower-bound":
            bound = f"lower bound {'clears' if c.lower > o.threshold else 'does not clear'} {100 * o.threshold:.1f}%"
        else:
            bound = f"upper bound {'is below' if c.upper < o.threshold else 'reaches'} {100 * o.threshold:.1f}%"
        message = (
            f"{c.model} vs {results.baseline}: decided after {c.questions_used} of {c.questions_total} questions "
            f"({c.calls_used} of {c.calls_full} judge calls, {100 * c.calls_saved:.0f}% saved; {how}); "
            f"{100 * (1 - c.alpha):g}% confidence sequence [{100 * c.lower:.1f}%, {100 * c.upper:.1f}%]: {bound} "
            f"(rule {o.rule})"
        )
        passed = c.decision == "pass"
        comp = results.comparison(c.model)
        if comp is not None and comp.unreliable and not allow_unhealthy_judge:
            passed = False
            message += (f"; the judge failed its health check ({'; '.join(comp.health_verdict.reasons)}): no "
                        "conclusion (--allow-unhealthy-judge to gate on it anyway)")
        checks.append(GateCheck(c.model, passed, message, c.mean, c.lower, c.upper))
    return checks


def gate_markdown(checks: Sequence[GateCheck], rule: str, threshold: float, alpha: float) -> str:
    lines = [
        f"### evalsuite gate: {'passed' if all(c.passed for c in checks) else 'FAILED'}",
        "",
        f"Rule `{rule}`, threshold {100 * threshold:.1f}%, {100 * (1 - alpha):g}% CI.",
        "",
        "| Check | Result |",
        "| :--- | :--- |",
        *(f"| {c.message} | {'✅ pass' if c.passed else '❌ fail'} |" for c in checks),
        "",
    ]
    return "\n".join(lines)
