"""Style control and judge panels, measured end to end through ``compare`` on the test endpoint (loopback).

1. Style: a judge that gives ``--style-share`` of its verdicts to the more formatted, then the longer answer (the
   issue's test endpoint). Candidates against ``sft`` (strength 0, plain, 40 words): ``styled`` (strength 0:
   exactly as good, but half its answers in markdown and, independently, half of them 60 words) and ``better``
   (strength ``--better``, the same styling: better and styled). Prints the
   raw, length-controlled and style-controlled win rates (at zero style difference, and at the mean as Arena-Hard
   reports it) and the judge's style coefficients.
2. Panels: ``sound`` (reads strength), ``slot`` (position bias 4: nearly always A) and ``coin`` (noise 1: a coin flip
   per order); then the same with a second sound judge. Prints each member's weight and where it came from.

    .venv/bin/python scripts/check_style_and_panel.py [--style-share 0.35] [--better 0.6]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from evalsuite.api import compare
from evalsuite.report.results import Results, StatsOptions
from evalsuite.testing.fake_server import FakeOpenAIServer, JudgeProfile


def _config(base_url: str, run_dir: Path, judges: dict[str, str], models: list[str]) -> str:
    lines = ['[bench]', 'name = "mtb-style"', "", "[run]", f'dir = "{run_dir}"', "", "[judging]", 'mode = "strict"', ""]
    for m in models:
        lines += [f"[models.{m}]", f'base_url = "{base_url}"', "max_tokens = 256", ""]
    for name, model in judges.items():
        table = "judge" if len(judges) == 1 else f"judges.{name}"
        lines += [f"[{table}]", f'model = "{model}"', f'base_url = "{base_url}"', ""]
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "  –  " if x is None else f"{100 * x:5.1f}%"


def style_check(share: float, better: float, tmp: Path) -> Results:
    profiles = {"style-judge": JudgeProfile(style_share=share)}
    with FakeOpenAIServer(strengths={"sft": 0.0, "styled": 0.0, "better": better},
                          styles={"styled": "mixed", "better": "mixed"}, judge_profiles=profiles) as srv:
        cfg = tmp / "style.toml"
        cfg.write_text(_config(srv.base_url, tmp / "style-run", {"judge": "style-judge"}, ["sft", "styled", "better"]))
        results = compare("sft", ["styled", "better"], config=cfg, stats=StatsOptions(n_resamples=2000, bt_rounds=200))
    n = results.info.benchmark.n_questions
    print(f"1. style: judge gives {100 * share:.0f}% of its verdicts to the more formatted, then longer answer; "
          f"{n} questions x 2 turns, both orders, strict")
    print(f"   {'candidate':<9} {'raw win rate':>22} {'LC':>7} {'SC (styles alike)':>24} {'SC at mean style':>24}")
    for c in results.comparisons:
        print(f"   {c.model:<9} {_pct(c.win_rate)} [{_pct(c.ci_low)}, {_pct(c.ci_high)}] {_pct(c.lc_win_rate)} "
              f"{_pct(c.style_win_rate)} [{_pct(c.style_ci_low)}, {_pct(c.style_ci_high)}] "
              f"{_pct(c.style_win_rate_at_mean)} [{_pct(c.style_ci_low_at_mean)}, {_pct(c.style_ci_high_at_mean)}]")
    coef = ", ".join(f"{k.name} {k.estimate:+.3f} [{k.ci_low:+.3f}, {k.ci_high:+.3f}]" for k in results.style_coefficients
                     if k.estimate is not None and k.ci_low is not None and k.ci_high is not None)
    print(f"   style coefficients (logit per SD): {coef}")
    if results.style is not None:
        print(f"   length unit: {results.style.length_unit}")
    return results


def panel_check(judges: dict[str, JudgeProfile], tmp: Path, tag: str) -> Results:
    with FakeOpenAIServer(strengths={"sft": 0.0, "dpo": 1.0}, judge_profiles=judges, answer_spread=3.0) as srv:
        cfg = tmp / f"{tag}.toml"
        cfg.write_text(_config(srv.base_url, tmp / f"{tag}-run", {n: n for n in judges}, ["sft", "dpo"]))
        results = compare("sft", ["dpo"], config=cfg, stats=StatsOptions(n_resamples=2000, bt_rounds=200))
    c = results.comparisons[0]
    print(f"   panel {tag}: dpo vs sft {_pct(c.win_rate)} [{_pct(c.ci_low)}, {_pct(c.ci_high)}]")
    for j in results.judges:
        own = c.per_judge.get(j.name)
        print(f"     {j.name:<8} weight {j.weight or 0:.3f} ({j.weight_source}); consistency {_pct(j.consistency)}; "
              f"mean kappa with the others {'–' if j.agreement is None else f'{j.agreement:+.3f}'}; "
              f"own win rate {_pct(None if own is None else own.win_rate)}")
    if results.judge_agreement is not None:
        print(f"     Fleiss' kappa {results.judge_agreement.fleiss_kappa} on {results.judge_agreement.n_items} matches")
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--style-share", type=float, default=0.35)
    ap.add_argument("--better", type=float, default=0.6, help="the better candidate's strength (logit) over sft")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        style_check(args.style_share, args.better, tmp)
        print("2. panels: sound (reads strength), slot (position bias 4), coin (noise 1); dpo is 1 logit above sft, each answer its own quality (answer_spread 3)")
        faulty = {"slot": JudgeProfile(position_bias=4.0), "coin": JudgeProfile(noise=1.0)}
        panel_check({"sound": JudgeProfile(), **faulty}, tmp, "A")
        panel_check({"sound": JudgeProfile(), "sound-2": JudgeProfile(tie_rate=0.2), **faulty}, tmp, "B")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
