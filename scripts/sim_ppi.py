"""Human-calibrated win rates by simulation: coverage and width of the PPI++ interval against judge-only and
human-only intervals, with a judge of known bias.

Humans: each question has its own chance q ~ Beta(2 mu, 2 (1 - mu)) that the candidate wins a turn (2 turns per
question); a turn is a human tie with probability 0.2, else a human win with probability q. The true human win rate
is HUMAN_WIN_RATE. The judge copies the human verdict with probability AGREE, else gives its own verdict, which favours
the candidate (win 0.6, tie 0.2, loss 0.2): a judge of known bias, whose win rate is printed. A random share of the
questions (both turns) gets human labels. Each seed draws new questions, verdicts and labelled questions; every
interval is 95% (evalsuite.stats.ppi_win_rate: per-question means, ppi_py's intervals).

Run: .venv/bin/python scripts/sim_ppi.py [--seeds 1000] [--questions 80,500]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from evalsuite.stats import ppi_win_rate

TURNS = 2
HUMAN_WIN_RATE = 0.55
HUMAN_TIE = 0.2
AGREE = 0.6
JUDGE_OWN = (0.6, 0.2, 0.2)  # the judge's own verdict when it does not copy the human: win, tie, loss
SHARES = (0.10, 0.25, 0.50)


def judge_win_rate() -> float:
    own = JUDGE_OWN[0] + JUDGE_OWN[1] / 2
    return AGREE * HUMAN_WIN_RATE + (1 - AGREE) * own


def simulate(n_questions: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Human and judge item scores, each (questions, turns) in {0, 0.5, 1}."""
    mu = (HUMAN_WIN_RATE - HUMAN_TIE / 2) / (1 - HUMAN_TIE)
    q = rng.beta(2 * mu, 2 * (1 - mu), size=(n_questions, 1))
    tie = rng.random((n_questions, TURNS)) < HUMAN_TIE
    human = np.where(tie, 0.5, (rng.random((n_questions, TURNS)) < q).astype(np.float64))
    own = rng.choice([1.0, 0.5, 0.0], p=JUDGE_OWN, size=(n_questions, TURNS))
    judge = np.where(rng.random((n_questions, TURNS)) < AGREE, human, own)
    return human, judge


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--questions", default="80,500", help="comma-separated question counts")
    args = ap.parse_args()
    start = time.perf_counter()
    print(f"human win rate {HUMAN_WIN_RATE}, judge win rate {judge_win_rate():.3f} (agrees with humans on "
          f"{AGREE:.0%} of items plus chance), {TURNS} turns per question, {args.seeds} seeds, 95% intervals")
    print("\n| questions | labelled share | PPI coverage | judge-only coverage | human-only coverage | "
          "PPI width / human-only width | mean lambda |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n_questions in (int(x) for x in args.questions.split(",")):
        for share in SHARES:
            rng = np.random.default_rng(1000 * n_questions + int(100 * share))
            n_labelled = max(2, round(share * n_questions))
            covered = np.zeros((args.seeds, 3), dtype=bool)
            ratio = np.zeros(args.seeds)
            lams = np.zeros(args.seeds)
            for s in range(args.seeds):
                human, judge = simulate(n_questions, rng)
                labelled = rng.choice(n_questions, size=n_labelled, replace=False)
                judge_items = {(str(i), t + 1): float(judge[i, t]) for i in range(n_questions) for t in range(TURNS)}
                human_items = {(str(i), t + 1): float(human[i, t]) for i in labelled for t in range(TURNS)}
                r = ppi_win_rate(judge_items, human_items)
                for j, block in enumerate((r.ppi, r.judge, r.human)):
                    covered[s, j] = block.ci_low <= HUMAN_WIN_RATE <= block.ci_high
                ratio[s] = (r.ppi.ci_high - r.ppi.ci_low) / (r.human.ci_high - r.human.ci_low)
                lams[s] = r.lam
            cov = covered.mean(axis=0)
            print(f"| {n_questions} | {share:.0%} | {cov[0]:.1%} | {cov[1]:.1%} | {cov[2]:.1%} | {ratio.mean():.2f} | "
                  f"{lams.mean():.2f} |")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
