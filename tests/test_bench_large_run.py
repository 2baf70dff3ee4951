"""``scripts/bench_large_run.py`` at a tiny size, so the large-run benchmark cannot rot: it drives the real pipeline
through the fake server in its own process, makes exactly the calls a compare makes, and reports sizes that are the
files' own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_large_run.py"
STAGES = ["generation", "judging", "compute results", "write leaderboard", "viewer"]


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_tiny_large_run_makes_every_call_and_reports_every_stage(tmp_path: Path) -> None:
    res = _bench("--candidates", "3", "--questions", "10", "--resamples", "500", "--bt-rounds", "50",
                 "--json", "figures.json", "--keep", "kept", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert (figures["candidates"], figures["questions"]) == (3, 10)
    assert figures["generations"] == (3 + 1) * 10 * 2  # every model, both turns
    assert figures["judgments"] == 3 * 10 * 2 * 2  # every candidate, both turns, both orders
    assert [s["stage"] for s in figures["stages"]] == STAGES
    assert all(s["seconds"] >= 0 and s["peak_rss_mib"] > 0 for s in figures["stages"])
    assert figures["peak_rss_mib"] == max(s["peak_rss_mib"] for s in figures["stages"])

    run = tmp_path / "kept" / "run"
    assert figures["results_bytes"] == (run / "results.json").stat().st_size
    assert figures["viewer_bytes"] == (run / "viewer.html").stat().st_size
    assert figures["store_bytes"] >= (run / "evalsuite.sqlite").stat().st_size > 0
    results = json.loads((run / "results.json").read_text())
    assert sorted(c["model"] for c in results["comparisons"]) == ["c01", "c02", "c03"]
    assert all(c["n"] + c["errors"] == 20 and c["errors"] == 0 for c in results["comparisons"])
    assert results["stats"]["n_resamples"] == 500
    assert "3 candidates x 10 questions" in res.stdout and "viewer" in res.stdout


def test_a_size_of_zero_is_refused(tmp_path: Path) -> None:
    res = _bench("--questions", "0", cwd=tmp_path)
    assert res.returncode != 0 and "--questions" in res.stderr
