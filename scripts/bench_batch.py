"""Batch vs live judging of 2,000 judge calls against the fake server: calls made, wall time, calls repeated after a kill.

Workload: 500 two-turn questions, answers of two models stored first (live, not timed), then ``evalsuite judge sft
dpo`` (500 questions x 2 turns x 2 orders = 2,000 judge calls) run as a user runs it (a CLI subprocess):

  - live: one chat request per call (judge concurrency 32);
  - batch (``--batch``): one input file upload, one ``batches.create``, status polls (``--batch-poll``), the output
    file download;
  - after a kill: the same command SIGKILLed half-way (1,000 judgments committed for live; 1,000 lines answered by the
    server for batch) and run again; "repeated" counts model calls the server answered twice (live: calls in flight
    at the kill; batch: lines in a second batch).

The fake server answers instantly (no model latency) in both modes, so wall times measure evalsuite's own overhead,
not a provider's queue (a real batch may take up to its 24 h window). The kill runs give the batch lines a processing
time (``--line-ms``) so the kill lands while the batch runs.

    python scripts/bench_batch.py                  # 2,000 calls
    python scripts/bench_batch.py --questions 100  # 400 calls, quicker
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from evalsuite.testing.fake_server import BatchPlan, FakeOpenAIServer

STRENGTHS = {"sft": 0.0, "dpo": 1.0}


def write_inputs(root: Path, base_url: str, n_questions: int) -> Path:
    rows = [{"question_id": f"q{i:04d}", "category": "writing",
             "turns": [f"Write a short paragraph about topic {i}.", f"Now shorten it ({i})."]} for i in range(n_questions)]
    (root / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    lines = ["[bench]", f'path = "{root / "questions.jsonl"}"', ""]
    for m in STRENGTHS:
        lines += [f"[models.{m}]", 'backend = "openai"', f'base_url = "{base_url}"', f'model = "{m}"', "concurrency = 32", ""]
    lines += ["[judge]", 'backend = "openai"', f'base_url = "{base_url}"', 'model = "judge"', "concurrency = 32"]
    cfg = root / "evalsuite.toml"
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return cfg


def cli(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "evalsuite", *args], cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def judged(run_dir: Path) -> int:
    try:
        db = sqlite3.connect(run_dir / "evalsuite.sqlite")
        try:
            return int(db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def prepare(root: Path, cfg: Path, run_dir: str) -> None:
    proc = cli(root, "generate", "sft", "dpo", "--config", str(cfg), "--run-dir", run_dir, "--quiet")
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"generation failed: {err}")


def judge_args(cfg: Path, run_dir: str, *extra: str) -> list[str]:
    return ["judge", "sft", "dpo", "--config", str(cfg), "--run-dir", run_dir, "--quiet", "--resamples", "200",
            "--bt-rounds", "50", *extra]


def counts(srv: FakeOpenAIServer) -> dict[str, int]:
    s = srv.stats()
    return {k: int(s[k]) for k in ("total_requests", "batch_api_requests", "batches_created", "batch_lines")}


def run_once(root: Path, srv: FakeOpenAIServer, args: list[str]) -> tuple[float, dict[str, int]]:
    srv.reset_stats()
    start = time.perf_counter()
    proc = cli(root, *args)
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"judge failed ({proc.returncode}): {err}")
    return wall, counts(srv)


def kill_and_rerun(root: Path, srv: FakeOpenAIServer, args: list[str], landed: Callable[[], bool]) -> dict[str, Any]:
    srv.reset_stats()
    proc = cli(root, *args)
    deadline = time.monotonic() + 300
    while not landed() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = counts(srv)
    rerun = cli(root, *args)
    _, err = rerun.communicate()
    if rerun.returncode != 0:
        raise SystemExit(f"re-run failed ({rerun.returncode}): {err}")
    total = counts(srv)
    return {"first": first, "total": total, "stderr": err}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=500, help="questions (judge calls = 4 x questions)")
    ap.add_argument("--poll", type=float, default=0.2, help="--batch-poll seconds")
    ap.add_argument("--line-ms", type=float, default=2.0, help="batch line processing time in the kill runs (ms)")
    args = ap.parse_args()
    n_calls = args.questions * 4

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp, FakeOpenAIServer(strengths=STRENGTHS) as srv:
        root = Path(tmp)
        cfg = write_inputs(root, srv.base_url, args.questions)
        for run_dir in ("live", "batch", "live-kill", "batch-kill"):
            prepare(root, cfg, run_dir)

        live_wall, live = run_once(root, srv, judge_args(cfg, "live"))
        batch_wall, batch = run_once(root, srv, judge_args(cfg, "batch", "--batch", "--batch-poll", str(args.poll)))
        assert judged(root / "live") == judged(root / "batch") == n_calls
        _, after = run_once(root, srv, judge_args(cfg, "batch"))  # live re-run over the batch run's store

        half = n_calls // 2
        live_kill = kill_and_rerun(root, srv, judge_args(cfg, "live-kill"), lambda: judged(root / "live-kill") >= half)
        srv.batch_plan = BatchPlan(line_seconds=args.line_ms / 1000)

        earlier = set(srv._batches)

        def batch_half_done() -> bool:
            batches = [b for bid, b in list(srv._batches.items()) if bid not in earlier]
            return bool(batches) and batches[0]["request_counts"]["completed"] >= half

        batch_kill = kill_and_rerun(root, srv, judge_args(cfg, "batch-kill", "--batch", "--batch-poll", str(args.poll)),
                                    batch_half_done)
        assert judged(root / "live-kill") == judged(root / "batch-kill") == n_calls

    print(f"{n_calls:,} judge calls ({args.questions} questions x 2 turns x 2 orders), fake server, no model latency")
    print(f"{'mode':<7} {'chat requests':>14} {'batch API requests':>19} {'batches':>8} {'batch lines':>12} {'wall s':>7}")
    for name, wall, c in (("live", live_wall, live), ("batch", batch_wall, batch)):
        print(f"{name:<7} {c['total_requests']:>14,} {c['batch_api_requests']:>19,} {c['batches_created']:>8} "
              f"{c['batch_lines']:>12,} {wall:>7.2f}")
    print(f"live re-run over the batch run's store: {after['total_requests']} chat requests, "
          f"{after['batches_created']} batches")
    lk, bk = live_kill["total"], batch_kill["total"]
    live_repeated = lk["total_requests"] - n_calls
    batch_repeated = bk["batch_lines"] + bk["total_requests"] - n_calls
    print(f"SIGKILL half-way, then the same command again (model calls answered in all / repeated):")
    print(f"  live : {lk['total_requests']:,} chat requests, {live_repeated} repeated "
          f"(killed after {live_kill['first']['total_requests']:,} requests)")
    print(f"  batch: {bk['batches_created']} batch(es) created, {bk['batch_lines']:,} lines + {bk['total_requests']} chat "
          f"requests, {batch_repeated} repeated (killed after {batch_kill['first']['batch_lines']:,} lines answered; "
          f"re-run re-attached: {'re-attached to batch' in batch_kill['stderr']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
