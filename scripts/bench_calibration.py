"""Calibration under the null: a judge that flips a fair coin (per item: win / tie / loss with 0.45 / 0.10 / 0.45),
80 questions x 2 turns. Prints how often the 95% question-clustered bootstrap CI covers 50%, how often the gate with
`--rule lower-bound` passes (should be about 2.5%), and how often the bootstrap and sign tests reject at 0.05.

    python scripts/bench_calibration.py [--seeds 400] [--resamples 2000]
"""

from __future__ import annotations

import argparse

import numpy as np

from evalsuite.records import Match
from evalsuite.report.gate import GateOptions, run_gate
from evalsuite.report.results import StatsOptions
from evalsuite.report.build import build_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=400)
    ap.add_argument("--resamples", type=int, default=2000)
    args = ap.parse_args()
    covered = passed = boot_reject = sign_reject = 0
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        scores = rng.choice([0.0, 0.5, 1.0], size=160, p=[0.45, 0.10, 0.45])
        matches = [Match(f"q{i // 2}", "writing", 1 + i % 2, "dpo", "sft", float(s), False, False) for i, s in enumerate(scores)]
        res = build_results(matches, baseline="sft", candidates=["dpo"], lengths={},
                            options=StatsOptions(n_resamples=args.resamples, bt_rounds=20, seed=seed))
        c = res.comparisons[0]
        assert c.ci_low is not None and c.ci_high is not None and c.p_bootstrap is not None and c.p_sign is not None
        covered += c.ci_low <= 0.5 <= c.ci_high
        passed += run_gate(res, GateOptions("sft", ["dpo"], 0.5, "lower-bound"))[0].passed
        boot_reject += c.p_bootstrap < 0.05
        sign_reject += c.p_sign < 0.05
    n = args.seeds
    print(f"fair-coin judge, {n} seeds, 80 questions x 2 turns, {args.resamples} resamples")
    print(f"95% CI covers 50%:             {covered / n:.3f}  (nominal 0.95)")
    print(f"gate --rule lower-bound passes: {passed / n:.3f}  (nominal 0.025)")
    print(f"bootstrap p < 0.05:             {boot_reject / n:.3f}  (nominal 0.05)")
    print(f"sign test p < 0.05:             {sign_reject / n:.3f}  (nominal 0.05; ignores clustering)")


if __name__ == "__main__":
    main()
