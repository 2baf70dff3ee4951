"""Benchmark a large compare end to end: K candidates x N two-turn questions x both orders through the real pipeline.

The default run is issue 16's: 12 candidates and a baseline, 1,000 questions, 2 turns, both orders = 48,000 judge
calls, plus (12 + 1) x 1,000 x 2 = 26,000 answer turns. Every call goes over loopback HTTP through the ``openai``
SDK to the project's fake server (``python -m evalsuite.testing.fake_server``) in its own process, so the figures
are evalsuite's own cost with an "infinitely fast" model. The stages are the ones ``evalsuite compare`` runs
(:func:`evalsuite.pipeline._stages.run_pipeline`, ``compute_results``, ``write_outputs``, ``write_viewer``), timed
one by one:

- ``generation``: every answer turn of every model, stored as it lands;
- ``judging``: every (candidate, question, turn) in both orders, stored as it lands;
- ``compute results``: matches from the store, every statistic (default bootstrap sizes), style control;
- ``write leaderboard``: ``results.json`` and ``leaderboard.md``;
- ``viewer``: the self-contained HTML viewer.

Reported: wall seconds per stage, the process's peak RSS after each stage (``getrusage``'s high-water mark, so the
stage where it rose is the one that needed it), the run store's size on disk (the SQLite file with its WAL), and the
sizes of ``results.json`` and the viewer. The fake server's own memory is not counted.

    python scripts/bench_large_run.py                      # 12 candidates x 1,000 questions
    python scripts/bench_large_run.py --questions 100      # a quick run
    python scripts/bench_large_run.py --candidates 3 --questions 10 --json out.json --keep run/
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from evalsuite.config import load_config, resolve_models
from evalsuite.pipeline._stages import PipelineRun, compute_results, run_pipeline, with_run_records, write_outputs
from evalsuite.pipeline.compare import judged_pairs
from evalsuite.progress import StageProgress
from evalsuite.records import CATEGORIES, REFERENCE_CATEGORIES
from evalsuite.report.html import write_viewer
from evalsuite.report.results import StatsOptions

T = TypeVar("T")
BASELINE = "sft"
JUDGE = "judge"


@dataclass
class StageFigure:
    """One stage's wall time and the process's peak RSS once it finished."""

    stage: str
    seconds: float
    peak_rss_mib: float


@dataclass
class LargeRunReport:
    """What one benchmark run measured."""

    candidates: int
    questions: int
    generations: int  # answer turns generated
    judgments: int  # judge calls made
    stages: list[StageFigure] = field(default_factory=list)
    total_seconds: float = 0.0
    peak_rss_mib: float = 0.0
    store_bytes: int = 0
    results_bytes: int = 0
    viewer_bytes: int = 0
    leaderboard_bytes: int = 0


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_benchmark(path: Path, n: int) -> Path:
    """``n`` two-turn questions cycling through the categories; the reference-guided ones carry references."""
    rows = []
    for i in range(n):
        cat = CATEGORIES[i % len(CATEGORIES)]
        row: dict[str, Any] = {"question_id": f"q{i:06d}", "category": cat,
                               "turns": [f"Question {i} about {cat}: explain it.", f"Now extend answer {i}."]}
        if cat in REFERENCE_CATEGORIES:
            row["reference"] = [f"reference {i} turn 1", f"reference {i} turn 2"]
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def candidate_names(k: int) -> list[str]:
    """``k`` candidate names, c01 .. ck."""
    return [f"c{i:02d}" for i in range(1, k + 1)]


def strengths(k: int) -> dict[str, float]:
    """The baseline at 0 and the candidates spread from -1 to 1 (so some win, some lose, some are close)."""
    names = candidate_names(k)
    return {BASELINE: 0.0, **{c: round(-1 + 2 * i / max(k - 1, 1), 3) for i, c in enumerate(names)}}


def write_config(path: Path, base_url: str, models: dict[str, float], bench: Path, concurrency: int,
                 judge_concurrency: int) -> Path:
    """An ``evalsuite.toml`` with every answer model and the judge on the fake server."""
    lines = ["[bench]", f"path = {json.dumps(str(bench))}", ""]
    for m in models:
        lines += [f"[models.{m}]", 'backend = "openai"', f"base_url = {json.dumps(base_url)}", f'model = "{m}"',
                  f"concurrency = {concurrency}", ""]
    lines += ["[judge]", 'backend = "openai"', f"base_url = {json.dumps(base_url)}", f'model = "{JUDGE}"',
              f"concurrency = {judge_concurrency}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class FakeServerProcess:
    """The fake OpenAI-compatible server in a child process, for the life of a ``with`` block."""

    def __init__(self, models: dict[str, float]) -> None:
        args = [sys.executable, "-m", "evalsuite.testing.fake_server", "--port", "0", "--judge", JUDGE]
        args += [f"--strength={m}={s}" for m, s in models.items()]
        self._args = args
        self._proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> FakeServerProcess:
        self._proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("READY "):
            self._proc.kill()
            raise SystemExit(f"the fake server did not start (said {line!r})")
        self.base_url = line.split(" ", 1)[1]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def _timed(report: LargeRunReport, stage: str, fn: Callable[[], T]) -> T:
    start = time.perf_counter()
    value = fn()
    report.stages.append(StageFigure(stage, round(time.perf_counter() - start, 3), round(peak_rss_mib(), 1)))
    return value


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _quiet(title: str, total: int) -> StageProgress:
    return StageProgress(title, total, enabled=False)


def run_large(run_dir: Path, questions: int, candidates: int, *, concurrency: int = 64, judge_concurrency: int = 128,
              stats: StatsOptions | None = None) -> LargeRunReport:
    """Generate, judge, compute and write a ``candidates`` x ``questions`` compare in ``run_dir`` and measure each
    stage (the fake server runs in a child process for the duration)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    models = strengths(candidates)
    bench = write_benchmark(run_dir / "questions.jsonl", questions)
    report = LargeRunReport(candidates, questions, 0, 0)
    started = time.perf_counter()
    with FakeServerProcess(models) as server:
        cfg = load_config(write_config(run_dir / "evalsuite.toml", server.base_url, models, bench, concurrency,
                                       judge_concurrency), run_dir=run_dir / "run")
        base = resolve_models(cfg, [BASELINE])[0]
        cands = resolve_models(cfg, candidate_names(candidates))
        generated = time.perf_counter()

        def judge_and_compute(run: PipelineRun) -> Any:
            nonlocal generated
            report.stages.append(StageFigure("generation", round(time.perf_counter() - generated, 3),
                                             round(peak_rss_mib(), 1)))
            summaries = _timed(report, "judging",
                               lambda: run.judge_pairs(judged_pairs(base.name, [c.name for c in cands], cfg.judging.pairs)))
            results = _timed(report, "compute results", lambda: compute_results(
                run.store, cfg, run.questions, base, cands, stats_options=stats or StatsOptions(seed=cfg.seed)))
            return summaries[0], results

        out = run_pipeline(judge_and_compute, questions=cfg.bench, store=Path(cfg.run_dir), models=[base, *cands],
                           judge=cfg.judge, judging=cfg.judging, progress=_quiet)
    summary, results = out.value
    results = with_run_records(results, out.generation, summary)
    target = Path(cfg.run_dir)
    rp, lp = _timed(report, "write leaderboard", lambda: write_outputs(results, target))
    vp = _timed(report, "viewer", lambda: write_viewer(target, results))
    report.total_seconds = round(time.perf_counter() - started, 3)
    report.peak_rss_mib = round(peak_rss_mib(), 1)
    report.generations = sum(g.requested for g in out.generation)
    report.judgments = summary.requested
    report.store_bytes = sum(_size(p) for p in target.glob("evalsuite.sqlite*"))
    report.results_bytes, report.leaderboard_bytes, report.viewer_bytes = _size(rp), _size(lp), _size(vp)
    errors = sum(g.errors for g in out.generation) + summary.errors
    if errors:
        raise SystemExit(f"{errors} calls failed: the figures would not be those of a full run")
    return report


def format_report(r: LargeRunReport) -> str:
    """The report as a few aligned lines."""
    mib = 1024 * 1024
    lines = [f"{r.candidates} candidates x {r.questions} questions x 2 turns x 2 orders: "
             f"{r.generations:,} answer turns generated, {r.judgments:,} judge calls"]
    lines += [f"  {s.stage:<18} {s.seconds:9.2f} s   peak RSS {s.peak_rss_mib:8.1f} MiB" for s in r.stages]
    lines += [f"  {'total':<18} {r.total_seconds:9.2f} s   peak RSS {r.peak_rss_mib:8.1f} MiB",
              f"  store {r.store_bytes / mib:.1f} MiB, results.json {r.results_bytes / mib:.2f} MiB, "
              f"leaderboard.md {r.leaderboard_bytes / 1024:.1f} KiB, viewer {r.viewer_bytes / mib:.2f} MiB"]
    return "\n".join(lines)


@contextlib.contextmanager
def _run_dir(keep: Path | None) -> Iterator[Path]:
    """``keep`` (emptied first) or a temporary directory removed afterwards."""
    if keep is not None:
        if keep.exists():
            shutil.rmtree(keep)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="evalsuite-large-") as d:
        yield Path(d)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark once and print (and optionally write as JSON) its figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--questions", type=int, default=1000, help="two-turn questions (default 1,000)")
    p.add_argument("--candidates", type=int, default=12, help="candidate models besides the baseline (default 12)")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight per answer model")
    p.add_argument("--judge-concurrency", type=int, default=128, help="judge requests in flight")
    p.add_argument("--resamples", type=int, default=None, help="bootstrap resamples (default: the project's 10,000)")
    p.add_argument("--bt-rounds", type=int, default=None, help="Bradley-Terry bootstrap rounds (default 1,000)")
    p.add_argument("--keep", type=Path, default=None, help="run here and keep the run directory")
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    if args.questions < 1 or args.candidates < 1:
        raise SystemExit("--questions and --candidates must be at least 1")
    default = StatsOptions()
    stats = StatsOptions(n_resamples=args.resamples or default.n_resamples, bt_rounds=args.bt_rounds or default.bt_rounds)
    with _run_dir(args.keep) as where:
        report = run_large(where, args.questions, args.candidates, concurrency=args.concurrency,
                           judge_concurrency=args.judge_concurrency, stats=stats)
    print(format_report(report))
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
