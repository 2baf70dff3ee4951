"""Every results section typed, kept across a later compare, and one leaderboard model rendered twice (issue 17).

- sequential and calibration sections are typed records of ``Results`` with a JSON round trip, and files written
  before they were typed read into the fields;
- rewriting results.json (a later plain ``compare``) keeps the sections it did not recompute;
- markdown and HTML render one model (``build_leaderboard``), and report/ imports no orchestration module;
- ``gate --sequential`` writes the GitHub step summary like ``gate``.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
from conftest import run_cli, write_config, write_questions

from evalsuite.records import Match
from evalsuite.report.build import build_results
from evalsuite.report.html import leaderboard_html
from evalsuite.report.leaderboard import Table, build_leaderboard
from evalsuite.report.markdown import render_markdown
from evalsuite.report.results import (
    CalibratedRate,
    CalibrationRow,
    CandidateSequence,
    Results,
    SequentialRun,
    SequentialSettings,
    StatsOptions,
    WaveLook,
    load_results,
    with_kept_sections,
    write_results,
)
from evalsuite.testing.fake_server import FakeOpenAIServer

REPORT = Path(__file__).resolve().parents[1] / "evalsuite" / "report"
ORCHESTRATION = ("compare", "sequential", "calibrate", "iterate", "label", "grade", "batch", "pipeline")


def _results(models: dict[str, float], baseline: str = "sft") -> Results:
    rng = np.random.default_rng(0)
    matches = [Match(f"q{i}", "writing", 1, m, baseline, float(rng.random() < p), False, False)
               for m, p in models.items() for i in range(30)]
    return build_results(matches, baseline=baseline, candidates=list(models), lengths={},
                         options=StatsOptions(n_resamples=500, bt_rounds=20))


SEQUENTIAL = SequentialRun(
    SequentialSettings(rule="lower-bound", threshold=0.5, alpha=0.05, wave=8, seed=3, betting="dkelly"),
    ("q1", "q0"),
    (CandidateSequence("dpo", "pass", True, 16, 30, 64, 120, 0.05, 0.8, 0.55, 0.97,
                       (WaveLook(8, 0.75, 0.3, 1.0), WaveLook(16, 0.8, 0.55, 0.97))),),
)
CALIBRATION = (CalibrationRow("dpo", "sft", CalibratedRate(0.7, 0.6, 0.8, 30, 30), CalibratedRate(0.65, 0.5, 0.8, 12, 12),
                              CalibratedRate(0.66, 0.55, 0.77, 30, 30), 0.8),)


def test_sections_are_typed_and_round_trip_through_json() -> None:
    res = replace(_results({"dpo": 0.8}), sequential=SEQUENTIAL, calibration=CALIBRATION)
    data = json.loads(res.dumps())
    assert data["sequential"]["candidates"][0]["calls_saved"] == round(1 - 64 / 120, 6)
    assert data["calibration"][0]["ppi_lambda"] == 0.8 and "sequential" not in res.extra
    assert Results.from_json(data) == res


def test_sections_written_before_they_were_typed_read_into_their_fields() -> None:
    # the JSON shape of both sections is the one the sequential and calibrate workflows wrote into ``extra`` before
    data = json.loads(_results({"dpo": 0.8}).dumps())
    data.update(sequential=SEQUENTIAL.to_json(), calibration=[r.to_json() for r in CALIBRATION], future_key=1)
    for row in data["calibration"]:  # that writer did not record the questions behind each rate
        for side in ("judge", "human", "ppi"):
            del row[side]["n_questions"]
    read = Results.from_json(data)
    assert read.sequential == SEQUENTIAL and dict(read.extra) == {"future_key": 1}
    assert read.calibration[0].judge.n_questions is None and read.calibration[0].lam == 0.8
    assert json.loads(read.dumps())["calibration"] == data["calibration"]  # written back as it was read
    md = render_markdown(read)
    assert "## Sequential judging" in md and "## Human-calibrated win rates" in md
    assert "| `dpo` | pass | 16 / 30 | 64 / 120 | 47% |" in md


def test_a_later_compare_keeps_the_sections_it_did_not_recompute(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_results(replace(_results({"dpo": 0.8}), sequential=SEQUENTIAL, calibration=CALIBRATION,
                          extra={"future_key": [1, 2]}), path)
    later = _results({"dpo": 0.7, "simpo": 0.5})
    kept = with_kept_sections(later, path)
    assert kept.sequential == SEQUENTIAL and kept.calibration == CALIBRATION and kept.extra["future_key"] == [1, 2]
    assert kept.comparisons == later.comparisons  # the recomputed figures are the new ones
    # a section the later run did compute replaces the old one
    newer = replace(SEQUENTIAL, order=("q0", "q1"))
    assert with_kept_sections(replace(later, sequential=newer), path).sequential == newer
    # another baseline compared other pairs: nothing is kept
    assert with_kept_sections(_results({"dpo": 0.7}, baseline="base"), path).sequential is None
    # no file, or a broken one: nothing to keep
    assert with_kept_sections(later, tmp_path / "none.json") == later
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    assert with_kept_sections(later, tmp_path / "bad.json") == later


def test_the_compare_writer_keeps_a_calibration_section(tmp_path: Path) -> None:
    from evalsuite.pipeline import write_outputs

    write_results(replace(_results({"dpo": 0.8}), calibration=CALIBRATION), tmp_path / "results.json")
    rp, lp = write_outputs(_results({"dpo": 0.6}), tmp_path)
    assert load_results(rp).calibration == CALIBRATION
    assert "## Human-calibrated win rates" in lp.read_text(encoding="utf-8")


def test_markdown_and_html_render_the_same_model() -> None:
    res = replace(_results({"dpo-b0.1": 0.8, "dpo-b0.5": 0.5, "a|b<c>": 0.5}), sequential=SEQUENTIAL)
    board = build_leaderboard(res)
    md, page = render_markdown(res), leaderboard_html(board)
    titles = [s.title for s in board.sections]
    assert titles[:3] == ["Sequential judging", "Win rate by turn", "Beta sweeps"]
    assert [line[3:] for line in md.splitlines() if line.startswith("## ")] == titles
    assert re.findall(r"<summary><h2>([^<]*)</h2></summary>", page) == titles
    n_rows = sum(len(b.rows) + 1 for b in (*board.intro, *(b for s in board.sections for b in s.blocks))
                 if isinstance(b, Table))
    assert page.count("<tr>") == n_rows
    assert sum(1 for line in md.splitlines() if line.startswith("| ") and not line.startswith("| :") and
               not line.startswith("| -")) == n_rows
    # a name with markup or a pipe stays one cell, escaped by each renderer in its own way
    assert "`a\\|b<c>`" in md and "<code>a|b&lt;c&gt;</code>" in page and "<c>" not in page


def test_report_imports_no_orchestration_module() -> None:
    for path in sorted(REPORT.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                parts = name.split(".")
                assert not (parts[0] == "evalsuite" and len(parts) > 1 and parts[1] in ORCHESTRATION), (path.name, name)


def test_gate_sequential_writes_the_step_summary(tmp_path: Path) -> None:
    strengths = {"sft": 0.0, "strong": 3.0}
    write_questions(tmp_path / "questions.jsonl", n=24)
    summary = tmp_path / "summary.md"
    with FakeOpenAIServer(strengths=strengths) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, strengths, tmp_path / "questions.jsonl")
        res = run_cli("gate", "--baseline", "sft", "--candidate", "strong", "--config", str(cfg), "--sequential",
                      "--quiet", "--run-dir", "run", cwd=tmp_path, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert res.returncode == 0, res.stdout + res.stderr
    text = summary.read_text(encoding="utf-8")
    assert "### evalsuite gate: passed" in text and "strong vs sft: decided after" in text
    assert res.stdout.startswith("PASS strong vs sft: decided after")
