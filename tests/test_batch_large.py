"""Runs larger than one batch file: several OpenAI batches in flight, re-attached after a kill.

Against the fake server's Batch API with a small per-file limit (10 requests; the real API's is 50,000 and 200 MB):
48 judge calls become 5 batch files, at most ``max_in_flight`` of them running at once, every call asked exactly once;
the server refuses a file over its limit; a CLI process killed with SIGKILL while 3 batches run re-attaches to all 3 on
the re-run and writes files only for the calls no batch holds; one batch of several expiring has its unanswered calls
retried (live or in a follow-up batch) while the others are stored; every batch of a round expiring stops with one line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, write_config
from test_batch import _NoBar, _rows  # the same helpers as the one-file tests

from evalsuite.backends.batch import BatchBackend, BatchOptions, plan_batch_files
from evalsuite.bench import BenchSpec, load_benchmark
from evalsuite.config import JudgingOptions, ModelSpec
from evalsuite.errors import InputError
from evalsuite.judge import JudgeSummary, run_judge
from evalsuite.store import RunStore
from evalsuite.testing.fake_server import BatchPlan, FakeOpenAIServer

STRENGTHS = {"sft": 0.0, "dpo": 1.0}
JUDGE_CALLS = 12 * 2 * 2  # 12 questions x 2 turns x 2 orders
LIMIT = 10  # lines per batch file, on the server and the client: 48 calls -> 10, 10, 10, 10, 8
FILES = 5
STATS = ["--resamples", "200", "--bt-rounds", "50", "--quiet"]
# The CLI with a small per-file limit and at most 3 batches at once (the OpenAI provider's limits, set for this test)
CLI_WITH_LIMITS = ("import sys; from evalsuite.backends.batch import FileLimits, OpenAIBatchProvider; "
                   f"OpenAIBatchProvider.limits = FileLimits(lines={LIMIT}, bytes=200_000_000, in_flight=3); "
                   "from evalsuite.cli import main; main(sys.argv[1:])")


def _judgments(run_dir: Path) -> list[tuple[Any, ...]]:
    return _rows(run_dir, "SELECT cache_key, question_id, turn, model_a, model_b, raw, verdict FROM judgments "
                          "ORDER BY cache_key")


def _answered(tmp_path: Path, srv: FakeOpenAIServer, questions: Path) -> Path:
    """A run directory with both models' answers (live), and a live judging of a copy of it in ``ref``."""
    cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
    res = run_cli("generate", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    shutil.copytree(tmp_path / "run", tmp_path / "ref")
    ref = run_cli("judge", "sft", "dpo", "--config", str(cfg), "--run-dir", "ref", *STATS, cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr
    srv.reset_stats()
    return cfg


def _judge(tmp_path: Path, srv: FakeOpenAIServer, questions: Path, options: BatchOptions) -> tuple[JudgeSummary, BatchBackend]:
    judge = ModelSpec(name="judge", model="judge", base_url=srv.base_url, max_tokens=2048, temperature=0.0)
    backend = BatchBackend(judge, tmp_path / "run", options)
    qs = load_benchmark(BenchSpec(name=None, path=str(questions)))
    with RunStore(tmp_path / "run") as store:
        summary = run_judge(judge, [("dpo", "sft")], qs, store, JudgingOptions(), progress=_NoBar, backend=backend)
    return summary, backend


def test_plan_batch_files_keeps_every_file_under_both_limits() -> None:
    sizes = [37, 120, 5, 5, 80, 99, 1, 1, 1, 64] * 7
    files = plan_batch_files(sizes, max_lines=6, max_bytes=150)
    assert [i for part in files for i in part] == list(range(len(sizes)))  # every line once, in order
    assert all(len(part) <= 6 and sum(sizes[i] for i in part) <= 150 for part in files)
    # a file ends only where the next line would break a limit
    assert all(len(a) == 6 or sum(sizes[i] for i in a) + sizes[a.stop] > 150 for a in files[:-1])


def test_calls_over_one_file_go_into_several_batches_each_call_once(tmp_path: Path, questions: Path) -> None:
    notes: list[str] = []
    with FakeOpenAIServer(strengths=STRENGTHS, batch=BatchPlan(max_lines=LIMIT, line_seconds=0.01)) as srv:
        _answered(tmp_path, srv, questions)
        options = BatchOptions(poll_interval=0.02, max_lines=LIMIT, max_in_flight=3, notify=notes.append)
        summary, backend = _judge(tmp_path, srv, questions, options)
        stats = srv.stats()
    assert (summary.requested, summary.errors) == (JUDGE_CALLS, 0)
    # every call in exactly one line of one file; no live call; never more than 3 batches running
    assert (stats["batches_created"], stats["files_created"], stats["batch_lines"]) == (FILES, FILES, JUDGE_CALLS)
    assert stats["total_requests"] == 0
    assert 2 <= stats["batches_running_max"] <= 3
    assert len(backend.report.created) == FILES and backend.report.answered == JUDGE_CALLS
    files = sorted((tmp_path / "run" / "batches").glob("*.jsonl"))
    ids = [json.loads(line)["custom_id"] for f in files for line in f.read_text().splitlines()]
    assert sorted(len(f.read_text().splitlines()) for f in files) == [8, 10, 10, 10, 10]
    assert sorted(ids) == [j[0] for j in _judgments(tmp_path / "ref")]
    assert _judgments(tmp_path / "run") == _judgments(tmp_path / "ref")
    assert _rows(tmp_path / "run", "SELECT status, COUNT(*) FROM batches GROUP BY status") == [("ingested", FILES)]
    # progress across batches: the last batch to end reports every line done
    assert f"{JUDGE_CALLS}/{JUDGE_CALLS} lines done across this round's batches, 0 still to end" in notes[-1]


def test_bytes_limit_splits_files_and_the_server_refuses_an_oversized_one(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, batch=BatchPlan(max_bytes=20_000)) as srv:
        _answered(tmp_path, srv, questions)
        # no client limit: one 48-line file, over the server's 20,000 bytes, fails validation: one line naming it
        with pytest.raises(InputError, match=r"batch \S+ failed: The input file is \d+ bytes; a batch input file may "
                                             r"be at most 20000 bytes\.; 0 of 48 calls answered"):
            _judge(tmp_path, srv, questions, BatchOptions(poll_interval=0.02))
        assert (srv.stats()["batches_created"], srv.stats()["batch_lines"]) == (1, 0)
        srv.reset_stats()
        summary, _ = _judge(tmp_path, srv, questions, BatchOptions(poll_interval=0.02, max_bytes=20_000))
        stats = srv.stats()
    sizes = [f.stat().st_size for f in (tmp_path / "run" / "batches").glob("*.jsonl")]
    assert len(sizes) == 1 + stats["files_created"] and stats["files_created"] >= 3
    assert sum(size > 20_000 for size in sizes) == 1  # only the first, refused file was larger
    assert (summary.requested, stats["batch_lines"], stats["total_requests"]) == (JUDGE_CALLS, JUDGE_CALLS, 0)
    assert _judgments(tmp_path / "run") == _judgments(tmp_path / "ref")


def _server_batches(srv: FakeOpenAIServer) -> list[tuple[str, str, int]]:
    return [(b["id"], b["status"], b["request_counts"]["completed"]) for b in list(srv._batches.values())]


def test_killed_run_reattaches_to_every_batch_in_flight(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, batch=BatchPlan(max_lines=LIMIT, line_seconds=0.05)) as srv:
        cfg = _answered(tmp_path, srv, questions)
        args = ["judge", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--batch", "--batch-poll", "0.05", *STATS]
        proc = subprocess.Popen([sys.executable, "-c", CLI_WITH_LIMITS, *args], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            running = _server_batches(srv)
            if len(running) == 3 and max(done for _, _, done in running) >= 2:
                break
            time.sleep(0.01)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        in_flight = _server_batches(srv)
        assert len(in_flight) == 3 and all(status == "in_progress" and done < LIMIT for _, status, done in in_flight), \
            f"the kill should land while 3 batches run: {in_flight}"
        assert _judgments(tmp_path / "run") == []
        # every batch id was in the run store before the kill
        assert {r[0] for r in _rows(tmp_path / "run", "SELECT batch_id FROM batches")} == {b for b, _, _ in in_flight}

        res = subprocess.run([sys.executable, "-c", CLI_WITH_LIMITS, *args], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        stats = srv.stats()
    # all three re-attached from the run store (not found again by their input files), none asked again
    reattached = set(re.findall(r"re-attached to batch (\S+) \(10 calls, status [a-z_]+\)", res.stderr))
    assert reattached == {bid for bid, _, _ in in_flight}
    assert len(re.findall(r"submitted batch ", res.stderr)) == FILES - 3  # files only for calls no batch held
    # every call asked exactly once across both runs, never more than 3 batches at once
    assert (stats["batches_created"], stats["files_created"], stats["batch_lines"]) == (FILES, FILES, JUDGE_CALLS)
    assert stats["total_requests"] == 0 and stats["batches_running_max"] <= 3
    assert _judgments(tmp_path / "run") == _judgments(tmp_path / "ref")
    assert _rows(tmp_path / "run", "SELECT COUNT(*), COUNT(DISTINCT cache_key) FROM batch_calls") == [(48, 48)]
    assert _rows(tmp_path / "run", "SELECT DISTINCT status FROM batches") == [("ingested",)]


@pytest.mark.parametrize("retry", ["live", "batch"])
def test_one_expired_batch_of_several_is_retried_and_the_others_are_kept(tmp_path: Path, questions: Path,
                                                                         retry: str) -> None:
    # the second of five batches expires after answering 4 of its 10 lines
    plan = BatchPlan(max_lines=LIMIT, expire_after=4, expiring=(2,), line_seconds=0.005)
    with FakeOpenAIServer(strengths=STRENGTHS, batch=plan) as srv:
        _answered(tmp_path, srv, questions)
        options = BatchOptions(poll_interval=0.02, max_lines=LIMIT, retry="live" if retry == "live" else "batch")
        summary, backend = _judge(tmp_path, srv, questions, options)
        stats = srv.stats()
    assert (summary.requested, summary.errors) == (JUDGE_CALLS, 0)
    statuses = _rows(tmp_path / "run", "SELECT status, COUNT(*) FROM batches GROUP BY status ORDER BY status")
    if retry == "live":  # the 6 calls the expired batch left are asked live, once
        assert (stats["batches_created"], stats["batch_lines"], stats["total_requests"]) == (FILES, JUDGE_CALLS - 6, 6)
        assert backend.report.retried_live == 6
        assert statuses == [("expired", 1), ("ingested", FILES - 1)]
    else:  # ... or in one follow-up batch of exactly those 6
        assert (stats["batches_created"], stats["batch_lines"], stats["total_requests"]) == (FILES + 1, JUDGE_CALLS, 0)
        assert statuses == [("expired", 1), ("ingested", FILES)]
    assert _judgments(tmp_path / "run") == _judgments(tmp_path / "ref")


def test_every_batch_of_a_round_expiring_stops_with_one_line_after_storing_all(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, batch=BatchPlan(max_lines=LIMIT, expire_after=4)) as srv:
        _answered(tmp_path, srv, questions)
        with pytest.raises(InputError) as err:
            _judge(tmp_path, srv, questions, BatchOptions(poll_interval=0.02, max_lines=LIMIT))
        assert (srv.stats()["batches_created"], srv.stats()["total_requests"]) == (FILES, 0)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and "evalsuite.sqlite: batches batch-" in message
    assert message.count(" expired") == FILES and "20 of 48 calls answered and stored, 28 not" in message
    assert len(_judgments(tmp_path / "run")) == 5 * 4  # what each answered is kept
