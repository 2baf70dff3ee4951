"""Kill -9 at any moment, run the same command again: the work finishes without repeating a committed call."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli, write_config

from evalsuite.testing.fake_server import FakeOpenAIServer

STRENGTHS = {"sft": 0.0, "dpo": 1.0}
N_Q = 12
TOTAL_CALLS = 2 * N_Q * 2 + N_Q * 2 * 2  # generation (2 models x 2 turns) + judging (2 turns x 2 orders)


def _committed(db_path: Path) -> int:
    if not db_path.exists():
        return 0
    db = sqlite3.connect(db_path)
    try:
        n = db.execute("SELECT COUNT(*) FROM answer_turns").fetchone()[0]
        n += db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not there yet
        n = 0
    db.close()
    return n


def _core(run_dir: Path) -> list[tuple]:
    r = json.loads((run_dir / "results.json").read_text())
    return [(c["model"], c["wins"], c["ties"], c["losses"], c["errors"], c["win_rate"], c["ci_low"], c["ci_high"]) for c in r["comparisons"]]


@pytest.mark.parametrize("kill_after", [10, 60])  # during generation, during judging
def test_sigkill_then_rerun_repeats_no_committed_call(tmp_path: Path, questions: Path, kill_after: int) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, latency=0.03) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions, concurrency=4)
        args = ["compare", "sft", "dpo", "--config", str(cfg), "--quiet", "--resamples", "500", "--bt-rounds", "100"]

        # reference: the same run, uninterrupted
        assert run_cli(*args, "--run-dir", "ref", cwd=tmp_path).returncode == 0
        srv.reset_stats()

        db = tmp_path / "run" / "evalsuite.sqlite"
        proc = subprocess.Popen([sys.executable, "-m", "evalsuite", *args, "--run-dir", "run"], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while _committed(db) < kill_after and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        committed = _committed(db)
        assert 0 < committed < TOTAL_CALLS, "the kill should land mid-run"

        srv.reset_stats()
        res = run_cli(*args, "--run-dir", "run", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        # exactly the calls that were not committed are made again; none that were
        assert srv.stats()["total_requests"] == TOTAL_CALLS - committed
    assert _committed(db) == TOTAL_CALLS
    assert _core(tmp_path / "run") == _core(tmp_path / "ref")


def test_sigint_exits_cleanly_and_resumes(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, latency=0.05) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions, concurrency=2)
        args = ["compare", "sft", "dpo", "--config", str(cfg), "--quiet", "--resamples", "500", "--run-dir", "run"]
        db = tmp_path / "run" / "evalsuite.sqlite"
        proc = subprocess.Popen([sys.executable, "-m", "evalsuite", *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while _committed(db) < 20 and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130
        assert "re-run the same command to resume" in err
        committed = _committed(db)
        srv.reset_stats()
        assert run_cli(*args, cwd=tmp_path).returncode == 0
        assert srv.stats()["total_requests"] == TOTAL_CALLS - committed
