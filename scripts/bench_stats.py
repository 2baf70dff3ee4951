"""Benchmark the report statistics on a synthetic run, and Bradley-Terry against an Arena-Hard-style bootstrap.

Synthetic run: 12 candidates and one baseline, 80 questions x 2 turns, every (candidate, question, turn) judged in
both orders and reconciled by the strict rule. Timed: everything a report computes for it (per candidate: cluster
bootstrap percentile and BCa with 10,000 resamples, sign test, length-controlled win rate; Holm over the family;
paired differences between every pair of candidates; Bradley-Terry with 1,000 rounds), then peak memory. Side by
side: Arena-Hard's ``compute_mle_elo`` bootstrap (resample battle rows, duplicate them, one-hot +-ln(10) design,
sklearn ``LogisticRegression(fit_intercept=False, penalty=None)`` per round) on the same matches.

Prints figures; it is not a timed test. Needs scikit-learn for the comparison (``pip install scikit-learn``).

    pip install -e . scikit-learn   # or run from the repository root with PYTHONPATH=.
    python scripts/bench_stats.py
"""

from __future__ import annotations

import itertools
import math
import resource
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

_t0 = time.perf_counter()
from evalsuite.records import Match  # noqa: E402
from evalsuite.stats import (  # noqa: E402
    bradley_terry,
    cluster_bootstrap,
    holm,
    length_controlled_win_rate,
    paired_difference,
    sign_test,
)

IMPORT_SECONDS = time.perf_counter() - _t0

N_CANDIDATES, N_QUESTIONS, N_TURNS = 12, 80, 2
BASELINE = "sft"
N_RESAMPLES, BT_ROUNDS, ARENA_ROUNDS = 10_000, 1_000, 50
WARM_REPEATS = 5
BT_PART = f"Bradley-Terry ({BT_ROUNDS} rounds)"


@dataclass(frozen=True)
class SyntheticRun:
    matches: list[Match]
    len_candidate: dict[tuple[str, str, int], float]
    len_baseline: dict[tuple[str, int], float]


def synthetic_run(seed: int = 0) -> SyntheticRun:
    """Strict-reconciled candidate-vs-baseline matches from a judge with position bias and a length preference."""
    rng = np.random.default_rng(seed)
    candidates = [f"cand-{k:02d}" for k in range(N_CANDIDATES)]
    strength = dict(zip(candidates, rng.normal(0.3, 0.5, N_CANDIDATES)))
    difficulty = rng.normal(0.0, 0.6, N_QUESTIONS)  # shared by both turns: within-question correlation
    len_baseline = {(f"q{q}", t): float(rng.normal(400, 100)) for q in range(N_QUESTIONS) for t in (1, 2)}
    matches: list[Match] = []
    len_candidate: dict[tuple[str, str, int], float] = {}
    for cand in candidates:
        for q in range(N_QUESTIONS):
            for turn in range(1, N_TURNS + 1):
                qid = f"q{q}"
                length = float(rng.normal(450 + 100 * strength[cand], 120))
                len_candidate[(cand, qid, turn)] = length
                edge = strength[cand] + difficulty[q] + 0.3 * math.tanh((length - len_baseline[(qid, turn)]) / 150)
                # Each order: the judge sees a logit edge plus a first-position bonus, and may call a tie.
                picks = []
                for shown_first in (cand, BASELINE):
                    logit = edge + (0.4 if shown_first == cand else -0.4)
                    u = rng.random()
                    p_cand = 1 / (1 + math.exp(-logit))
                    picks.append("tie" if u < 0.15 else (cand if rng.random() < p_cand else BASELINE))
                if picks[0] == picks[1] == cand:
                    score = 1.0
                elif picks[0] == picks[1] == BASELINE:
                    score = 0.0
                else:
                    score = 0.5
                matches.append(
                    Match(
                        question_id=qid,
                        category="writing",
                        turn=turn,
                        model_x=cand,
                        model_y=BASELINE,
                        score=score,
                        inconsistent=picks[0] != picks[1],
                        error=False,
                    )
                )
    return SyntheticRun(matches=matches, len_candidate=len_candidate, len_baseline=len_baseline)


class _Clock:
    """Wall and CPU seconds per named part (CPU time is the steadier figure on a shared machine)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._start = (0.0, 0.0)

    def start(self) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def stop(self, part: str) -> None:
        self.wall[part] = time.perf_counter() - self._start[0]
        self.cpu[part] = time.process_time() - self._start[1]


def report_statistics(run: SyntheticRun, seed: int = 0) -> _Clock:
    """Everything a report over this run computes, timed per part."""
    clock = _Clock()
    clock.start()
    by_candidate: dict[str, list[Match]] = {}
    for m in run.matches:
        by_candidate.setdefault(m.model_x, []).append(m)
    candidates = sorted(by_candidate)
    # Items in the same (question, turn) order for every candidate, so paired differences align.
    scores = {c: np.array([m.score for m in by_candidate[c]], dtype=float) for c in candidates}
    clusters = np.array([m.question_id for m in by_candidate[candidates[0]]])
    clock.stop("arrays")

    clock.start()
    p_values = []
    for c in candidates:
        s = scores[c]
        pct = cluster_bootstrap(s, clusters, n_resamples=N_RESAMPLES, method="percentile", seed=seed)
        cluster_bootstrap(s, clusters, n_resamples=N_RESAMPLES, method="bca", seed=seed)
        sign_test(int((s == 1.0).sum()), int((s == 0.0).sum()))
        len_c = np.array([run.len_candidate[(c, m.question_id, m.turn)] for m in by_candidate[c]])
        len_b = np.array([run.len_baseline[(m.question_id, m.turn)] for m in by_candidate[c]])
        length_controlled_win_rate(s, len_c, len_b)
        p_values.append(pct.p_value)
    holm(p_values)
    clock.stop("per candidate: bootstrap pct + BCa, sign, LC; Holm")

    clock.start()
    for a, b in itertools.combinations(candidates, 2):
        paired_difference(scores[a], scores[b], clusters, n_resamples=N_RESAMPLES, seed=seed)
    clock.stop(f"paired differences ({len(candidates) * (len(candidates) - 1) // 2} pairs)")

    clock.start()
    bradley_terry(
        [m.model_x for m in run.matches],
        [m.model_y for m in run.matches],
        np.array([m.score for m in run.matches], dtype=float),
        np.array([m.question_id for m in run.matches]),
        anchor=BASELINE,
        n_rounds=BT_ROUNDS,
        seed=seed,
    )
    clock.stop(BT_PART)
    return clock


def arena_hard_style_rounds(run: SyntheticRun, n_rounds: int, seed: int = 0) -> tuple[float, float]:
    """(wall, CPU) seconds for ``n_rounds`` of Arena-Hard's bootstrap: resample battle rows, fit compute_mle_elo."""
    from sklearn.linear_model import LogisticRegression

    model_a = np.array([m.model_x for m in run.matches])
    model_b = np.array([m.model_y for m in run.matches])
    winner = np.array(["model_a" if m.score == 1.0 else "model_b" if m.score == 0.0 else "tie" for m in run.matches])
    rng = np.random.default_rng(seed)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n_rounds):
        rows = rng.integers(0, winner.size, winner.size)  # battles.sample(frac=1.0, replace=True)
        a, b, w = model_a[rows], model_b[rows], winner[rows]
        models, index = np.unique(np.concatenate([a, b]), return_inverse=True)
        n, p = rows.size, models.size
        # Duplicate battles; a win counts twice, a tie once for each side.
        x = np.zeros((2 * n, p))
        x[np.arange(2 * n), np.tile(index[:n], 2)] = math.log(10)
        x[np.arange(2 * n), np.tile(index[n:], 2)] = -math.log(10)
        y = np.zeros(2 * n)
        y[np.tile(w == "model_a", 2)] = 1.0
        tie_first_half = np.concatenate([w == "tie", np.zeros(n, dtype=bool)])
        y[tie_first_half] = 1.0
        # penalty=None in Arena-Hard; C=inf is the same unpenalised fit without sklearn>=1.8's deprecation warning.
        lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-8)
        lr.fit(x, y)
        elo = 400 * lr.coef_[0] + 1000
        elo += 1000 - elo[list(models).index(BASELINE)]
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    run = synthetic_run()
    print(f"synthetic run: {N_CANDIDATES} candidates vs {BASELINE}, {N_QUESTIONS} questions x {N_TURNS} turns, "
          f"{len(run.matches)} strict-reconciled matches")
    print(f"import evalsuite.stats: {IMPORT_SECONDS * 1000:.0f} ms")

    cold = report_statistics(run)  # the first call also pays scipy.optimize's lazy import
    warm = [report_statistics(run) for _ in range(WARM_REPEATS)]
    parts = list(cold.wall)

    def median(clocks: list[_Clock], part: str, cpu: bool = False) -> float:
        return float(np.median([(c.cpu if cpu else c.wall)[part] for c in clocks]))

    def median_total(clocks: list[_Clock], cpu: bool = False) -> float:
        return float(np.median([sum((c.cpu if cpu else c.wall).values()) for c in clocks]))

    print(f"\n{'part':<52}{'cold wall':>10}{'warm wall':>10}{'warm CPU':>10}   (s; warm = median of {WARM_REPEATS})")
    for part in parts:
        print(f"{part:<52}{cold.wall[part]:>10.3f}{median(warm, part):>10.3f}{median(warm, part, cpu=True):>10.3f}")
    print(f"{'TOTAL report statistics':<52}{sum(cold.wall.values()):>10.3f}{median_total(warm):>10.3f}"
          f"{median_total(warm, cpu=True):>10.3f}")

    # The whole report as `compare` builds it: results.json (every statistic) and the markdown leaderboard.
    from evalsuite.report.markdown import render_markdown
    from evalsuite.report.results import StatsOptions
    from evalsuite.report.build import build_results

    lengths: dict[str, dict[tuple[str, int], int]] = {BASELINE: {k: int(v) for k, v in run.len_baseline.items()}}
    for (cand, qid, turn), length in run.len_candidate.items():
        lengths.setdefault(cand, {})[(qid, turn)] = int(length)
    candidates = sorted({m.model_x for m in run.matches})
    t0, c0 = time.perf_counter(), time.process_time()
    results = build_results(run.matches, baseline=BASELINE, candidates=candidates, lengths=lengths,
                            options=StatsOptions(n_resamples=10_000, bt_rounds=BT_ROUNDS, seed=2))
    board = render_markdown(results)
    print(f"whole report (build_results + markdown, {len(board.splitlines())} lines): "
          f"{time.perf_counter() - t0:.3f} s wall, {time.process_time() - c0:.3f} s CPU")

    tracemalloc.start()
    report_statistics(run, seed=1)  # a new seed: the memoised resample counts are drawn (and counted) afresh
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    maxrss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"\npeak traced allocation during one report: {peak / 2**20:.1f} MiB; process max RSS: {maxrss_mib:.0f} MiB")

    ours_ms = median(warm, BT_PART) / BT_ROUNDS * 1000
    ours_cpu_ms = median(warm, BT_PART, cpu=True) / BT_ROUNDS * 1000
    try:
        arena_wall, arena_cpu = arena_hard_style_rounds(run, ARENA_ROUNDS)
    except ImportError:
        print("\nscikit-learn not installed: skipping the Arena-Hard-style comparison")
        return
    arena_ms, arena_cpu_ms = arena_wall / ARENA_ROUNDS * 1000, arena_cpu / ARENA_ROUNDS * 1000
    print("\nBradley-Terry bootstrap, per round (wall / CPU):")
    print(f"  ours (unique rows x cluster weights, batched Newton): {ours_ms:8.3f} / {ours_cpu_ms:8.3f} ms  "
          f"({BT_ROUNDS} rounds, incl. the point fit)")
    print(f"  Arena-Hard style (row resample + sklearn LR):         {arena_ms:8.3f} / {arena_cpu_ms:8.3f} ms  "
          f"({ARENA_ROUNDS} rounds)")
    print(f"  speedup per round: {arena_ms / ours_ms:.0f}x wall, {arena_cpu_ms / ours_cpu_ms:.0f}x CPU; "
          f"{BT_ROUNDS} Arena-Hard-style rounds would take ~{arena_ms * BT_ROUNDS / 1000:.0f} s")


if __name__ == "__main__":
    main()
