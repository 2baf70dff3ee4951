"""Sequential judging by simulation: validity under peeking, and judge calls saved for the same gate decision.

A scripted judge with a known true win rate p scores 80 questions (2 turns each, both orders: 4 judge calls per
question). A turn is a tie (strict reconciliation's order disagreement) with probability TIE_SHARE, else a win for the
candidate with probability q, where mu = E[q] is set so the expected item score TIE_SHARE / 2 + (1 - TIE_SHARE) mu
equals p. Two judge models:
- "alike": every question has q = mu (turns independent, the scripted judge of the issue);
- "differ": each question has its own q ~ Beta(2 mu, 2 (1 - mu)) (questions disagree strongly about which model is
  better: per-question scores spread more, so every method needs more questions).

For each seed:
- full run: every question judged, question-clustered bootstrap CI (evalsuite.stats.cluster_bootstrap, 95%,
  10,000 resamples), gate rule `lower-bound` at 0.5: pass iff the CI's lower bound > 0.5;
- sequential: questions in a seeded random order, waves of WAVE questions, the betting confidence sequence
  (alpha 0.05, so the lower bound errs with probability <= 2.5%) looked at after each wave, stop once settled;
- naive peeking: the same waves, but the bootstrap CI recomputed after each wave and the gate passed the first time
  its lower bound clears 0.5.

Run: .venv/bin/python scripts/sim_sequential.py [--seeds 1000] [--betting agrapa,prpl,ons,dkelly]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from evalsuite.stats import cluster_bootstrap
from evalsuite.stats import BETTING, confidence_path, decide_path

N_QUESTIONS = 80
TURNS = 2
CALLS_PER_QUESTION = 2 * TURNS  # both orders of both turns
WAVE = 8
TIE_SHARE = 0.3
MODELS = {"alike": None, "differ": 2.0}  # judge model -> Beta concentration of the per-question win chance
CHUNK = 250  # seeds per batch of the sequence computation (bounds memory: dkelly holds seeds x 1000 x 20 floats)
THRESHOLD = 0.5
ALPHA = 0.05


def simulate_items(p: float, n_seeds: int, seed: int, concentration: float | None) -> np.ndarray:
    """Item scores (seeds, questions, turns) in {0, 0.5, 1} with expected value p."""
    rng = np.random.default_rng(seed)
    mu = (p - TIE_SHARE / 2) / (1 - TIE_SHARE)
    if concentration is None:
        q = np.full((n_seeds, N_QUESTIONS, 1), mu)
    else:
        q = rng.beta(concentration * mu, concentration * (1 - mu), size=(n_seeds, N_QUESTIONS, 1))
    tie = rng.random((n_seeds, N_QUESTIONS, TURNS)) < TIE_SHARE
    win = rng.random((n_seeds, N_QUESTIONS, TURNS)) < q
    return np.where(tie, 0.5, win.astype(np.float64))


def bootstrap_lower(items: np.ndarray) -> float:
    clusters = np.repeat(np.arange(items.shape[0]), items.shape[1])
    return cluster_bootstrap(items.ravel(), clusters, n_resamples=10_000, seed=0).ci_low


def full_run_pass(items: np.ndarray) -> np.ndarray:
    return np.array([bootstrap_lower(it) > THRESHOLD for it in items])


def naive_peeking_pass(items: np.ndarray) -> np.ndarray:
    passed = np.zeros(items.shape[0], dtype=bool)
    for n in range(WAVE, N_QUESTIONS + 1, WAVE):  # waves outermost: the bootstrap's resample counts are memoised by size
        for s in np.flatnonzero(~passed):
            passed[s] = bootstrap_lower(items[s, :n]) > THRESHOLD
    return passed


def sequential(items: np.ndarray, betting: str) -> tuple[np.ndarray, np.ndarray]:
    scores = items.mean(axis=-1)  # one score per question (the cluster); items are already in a random order
    passed, used = [], []
    for start in range(0, scores.shape[0], CHUNK):
        path = confidence_path(scores[start : start + CHUNK], alpha=ALPHA, betting=betting,  # type: ignore[arg-type]
                               thresholds=[THRESHOLD])
        ok, n = decide_path(path, THRESHOLD, "lower-bound", checkpoints=range(WAVE, N_QUESTIONS + 1, WAVE))
        passed.append(ok)
        used.append(n)
    return np.concatenate(passed), np.concatenate(used)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--betting", default=",".join(BETTING))
    ap.add_argument("--models", default=",".join(MODELS), help="judge models to simulate: alike, differ")
    args = ap.parse_args()
    bettings = args.betting.split(",")
    start = time.perf_counter()
    print(f"{N_QUESTIONS} questions x {TURNS} turns x 2 orders = {N_QUESTIONS * CALLS_PER_QUESTION} judge calls; waves of "
          f"{WAVE} questions; tie share {TIE_SHARE}; {args.seeds} seeds; gate lower-bound at {THRESHOLD}, alpha {ALPHA}")
    for k, model in enumerate(args.models.split(",")):
        concentration = MODELS[model]
        print(f"\n## Judge model: {model}")
        print("\nValidity under peeking (true win rate 0.50): share of seeds where the gate passes (a false pass)\n")
        null_items = simulate_items(0.5, args.seeds, seed=10 * k + 1, concentration=concentration)
        print("| method | false passes |")
        print("| :--- | ---: |")
        print(f"| full run, bootstrap CI once | {full_run_pass(null_items).mean():.1%} |")
        print(f"| bootstrap CI re-checked after each wave | {naive_peeking_pass(null_items).mean():.1%} |")
        for b in bettings:
            passed, _ = sequential(null_items, b)
            print(f"| sequential, {b} | {passed.mean():.1%} |")

        print("\nSavings: judge calls saved against judging every question, and agreement with the full run's decision\n")
        print("| true win rate | betting | full run passes | calls saved (mean) | same decision | same decision where full run passes |")
        print("| ---: | :--- | ---: | ---: | ---: | ---: |")
        for i, p in enumerate((0.62, 0.65)):
            items = simulate_items(p, args.seeds, seed=10 * k + 2 + i, concentration=concentration)
            full = full_run_pass(items)
            for b in bettings:
                passed, used = sequential(items, b)
                saved = 1.0 - used / N_QUESTIONS
                same = passed == full
                print(f"| {p:.2f} | {b} | {full.mean():.1%} | {saved.mean():.1%} | {same.mean():.1%} | "
                      f"{same[full].mean():.1%} |")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
