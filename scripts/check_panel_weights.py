"""A judge panel on real verdicts: GPT-4's 80 MT-Bench pair judgments (both orders) beside judges with known faults.

The panel: ``gpt-4`` (the real judgments, ../shared/data), ``gpt-4-noisy`` (the same judgments, each order's verdict
replaced by a coin flip with probability 0.3: a sound but noisier second opinion), ``first-slot`` (always picks the
answer shown first: a position-biased judge) and ``coin`` (a coin flip per order: a noisy judge). Prints each
judge's weight as ``build_panel_results`` computes it (mean kappa with each other judge times position
consistency), its own win rate, and the panel's; with ``--human``, GPT-4's verdicts serve as the human labels.

    .venv/bin/python scripts/check_panel_weights.py [--data ../shared/data] [--human]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import replace
from pathlib import Path

from evalsuite.interop.fastchat import read_fastchat_pair_judgments
from evalsuite.judge.swap import build_matches
from evalsuite.records import Judgment, Verdict
from evalsuite.report.build import orient_to
from evalsuite.report.panel import PanelJudge, build_panel_results
from evalsuite.report.results import StatsOptions

FILE = "mt_bench/gpt4_pair_judgments/gpt-4_pair.jsonl"


def _coin(*parts: object) -> float:
    return int.from_bytes(hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()[:8], "big") / 2**64


def _flip(j: Judgment, name: str) -> Verdict:
    u = _coin(name, j.question_id, j.turn, j.model_a, j.model_b)
    return "A" if u < 0.4 else "B" if u < 0.8 else "tie"


def faulty(judgments: list[Judgment], name: str) -> list[Judgment]:
    """``judgments`` as a judge with a known fault would have given them."""
    out = []
    for j in judgments:
        if name == "first-slot":
            v: Verdict = "A"
        elif name == "coin":
            v = _flip(j, name)
        elif name == "gpt-4-noisy":
            v = _flip(j, name) if _coin("noise", j.question_id, j.turn, j.model_a) < 0.3 else j.verdict
        else:
            v = j.verdict
        out.append(replace(j, judge=name, verdict=v))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--human", action="store_true", help="weigh by agreement with GPT-4's verdicts as human labels")
    args = ap.parse_args(argv)
    path = Path(args.data) / FILE
    if not path.is_file():
        print(f"no {path}: pass --data", file=sys.stderr)
        return 2
    real = [j for j in read_fastchat_pair_judgments(path) if j.verdict != "error"]
    baseline = sorted({j.model_a for j in real})[0]
    candidate = next(m for m in sorted({j.model_a for j in real} | {j.model_b for j in real}) if m != baseline)
    orient = orient_to(baseline, [candidate])
    panel = []
    for name in ("gpt-4", "gpt-4-noisy", "first-slot", "coin"):
        matches = build_matches(faulty(real, name), {j.question_id: "mt-bench" for j in real}, "strict", orient)
        panel.append(PanelJudge(name, name, tuple(matches)))
    human = None
    if args.human:
        human = {(m.question_id, m.turn, m.model_x, m.model_y): m.score for m in panel[0].matches
                 if m.score is not None}
    results = build_panel_results(panel, baseline=baseline, candidates=[candidate], lengths={},
                                  options=StatsOptions(n_resamples=2000, bt_rounds=100), human=human)
    c = results.comparisons[0]
    print(f"{candidate} vs {baseline}: {c.n} matches (GPT-4's pair judgments, both orders, strict reconciliation)")
    print(f"{'judge':<12} {'weight':>7} {'from':<10} {'consistency':>11} {'kappa(rest)':>11} {'own win rate':>22}")
    for j in results.judges:
        r = c.per_judge[j.name]
        own = "–" if r.win_rate is None else f"{100 * r.win_rate:.1f}% [{100 * (r.ci_low or 0):.1f}, {100 * (r.ci_high or 0):.1f}]"
        cons = "–" if j.consistency is None else f"{100 * j.consistency:.1f}%"
        kappa = "–" if j.agreement is None else f"{j.agreement:.3f}"
        print(f"{j.name:<12} {j.weight or 0:>7.3f} {j.weight_source:<10} {cons:>11} {kappa:>11} {own:>22}")
    print(f"panel: {100 * (c.win_rate or 0):.1f}% [{100 * (c.ci_low or 0):.1f}, {100 * (c.ci_high or 0):.1f}]")
    if results.judge_agreement is not None:
        print(f"Fleiss' kappa {results.judge_agreement.fleiss_kappa} on {results.judge_agreement.n_items} matches")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
