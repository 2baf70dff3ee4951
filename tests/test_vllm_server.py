"""Real vLLM behind its OpenAI-compatible server (``python -m vllm.entrypoints.openai.api_server``), used through
evalsuite's ``openai`` backend for the answer models (a base and a LoRA adapter served by the same engine) and the
judge, in text and logprob verdict modes, and resumed after SIGKILL mid-judging.

The tiny model's verdicts are noise (steered so that some replies hold ``[[X]]`` and some do not): the tests pin
structure (counts, what is stored, errors with reasons, no verdict without ``[[``), not outcomes. They skip with a
one-line reason without a vLLM venv, and fail with ``CI=true``.
"""

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
from conftest import run_cli, write_questions
from vllm_fixtures import VLLMServer, tiny_vllm_checkpoints, vllm_server  # noqa: F401 - fixtures

from evalsuite.judge.verdict import parse_verdict

pytestmark = pytest.mark.slow

MODELS = ("base", "lora")


def _config(path: Path, server: VLLMServer, questions: Path, *, verdict_mode: str, judge_concurrency: int = 8) -> Path:
    served = {"base": server.base, "lora": server.adapter}
    lines = ["[bench]", f'path = "{questions}"', ""]
    for name in MODELS:
        lines += [f"[models.{name}]", 'backend = "openai"', f'base_url = "{server.base_url}"', f'model = "{served[name]}"',
                  "max_tokens = 24", "concurrency = 16", "seed = 0", ""]
    lines += ["[judge]", 'backend = "openai"', f'base_url = "{server.base_url}"', f'model = "{server.base}"',
              # evalsuite sends the judge's seed with every call and the tiny model's replies hardly depend on the
              # prompt, so all judge replies come out alike; seed 1 happens to make them hold a verdict
              f'verdict_mode = "{verdict_mode}"', "max_tokens = 32", "temperature = 1.0", "seed = 1",
              f"concurrency = {judge_concurrency}", "timeout = 120"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _rows(run: Path, sql: str) -> list[tuple]:
    if not (run / "evalsuite.sqlite").exists():
        return []
    db = sqlite3.connect(run / "evalsuite.sqlite")
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # the store is not there yet
        return []
    finally:
        db.close()


def _judgments(run: Path) -> list[tuple]:
    return _rows(run, "SELECT question_id, turn, model_a, model_b, verdict, reason, p_first, raw, completion_tokens, cache_key "
                      "FROM judgments ORDER BY question_id, turn, model_a, model_b")


def _committed(run: Path) -> int:
    return len(_rows(run, "SELECT 1 FROM answer_turns")) + len(_rows(run, "SELECT 1 FROM judgments"))


def _check_answers(run: Path, n_questions: int) -> None:
    turns = _rows(run, "SELECT model, backend, text FROM answer_turns")
    assert sorted({m for m, _, _ in turns}) == sorted(MODELS)
    assert len(turns) == len(MODELS) * n_questions * 2 and {b for _, b, _ in turns} == {"openai"}
    by_model = {m: sorted(t for mm, _, t in turns if mm == m) for m in MODELS}
    assert by_model["base"] != by_model["lora"]  # the adapter is really applied


def _compare(tmp_path: Path, server: VLLMServer, verdict_mode: str, n_questions: int = 4) -> tuple[Path, list[tuple]]:
    questions = write_questions(tmp_path / "questions.jsonl", n=n_questions)
    cfg = _config(tmp_path / "evalsuite.toml", server, questions, verdict_mode=verdict_mode)
    res = run_cli("compare", "base", "lora", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "200",
                  "--bt-rounds", "50", cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr
    run = tmp_path / "run"
    _check_answers(run, n_questions)
    rows = _judgments(run)
    assert len(rows) == n_questions * 2 * 2  # every question, both turns, both orders
    comparison = json.loads((run / "results.json").read_text())["comparisons"][0]
    assert comparison["errors"] + comparison["n"] >= 1 and comparison["errors"] <= n_questions * 2
    return run, rows


def test_compare_with_text_verdicts_over_the_vllm_server(tmp_path: Path, vllm_server: VLLMServer) -> None:  # noqa: F811
    _, rows = _compare(tmp_path, vllm_server, "text")
    for _, _, _, _, verdict, reason, p_first, raw, _, _ in rows:
        assert p_first is None
        parsed = parse_verdict(raw)
        assert (verdict, reason) == (parsed.verdict, parsed.reason)  # the stored verdict is the text's last token
        if verdict == "error":
            assert reason == "parse"  # no api errors: every call reached the server
        else:
            assert "[[" in raw


def test_compare_with_logprob_verdicts_prefills_the_verdict_position(tmp_path: Path, vllm_server: VLLMServer) -> None:  # noqa: F811
    _, rows = _compare(tmp_path, vllm_server, "logprob")
    for _, _, _, _, verdict, reason, p_first, raw, completion_tokens, _ in rows:
        # vLLM continues the prefilled "[[" (continue_final_message): one generated token, the verdict position
        assert raw.startswith("[[") and completion_tokens == 1
        if verdict == "error":
            assert reason == "parse" and p_first is None
        else:
            assert verdict in ("A", "B", "tie") and p_first is not None and 0.0 <= p_first <= 1.0
    assert any(r[4] != "error" for r in rows)  # the steered model offers A/B/C among the top log-probabilities
    assert any(0.0 < r[6] < 1.0 for r in rows if r[6] is not None)  # soft verdicts, read from the distribution


def test_sigkill_mid_judging_then_rerun_repeats_no_committed_call(tmp_path: Path, vllm_server: VLLMServer) -> None:  # noqa: F811
    n_questions = 6
    questions = write_questions(tmp_path / "questions.jsonl", n=n_questions)
    cfg = _config(tmp_path / "evalsuite.toml", vllm_server, questions, verdict_mode="text", judge_concurrency=1)
    args = ["compare", "base", "lora", "--config", str(cfg), "--quiet", "--resamples", "200", "--bt-rounds", "50", "--run-dir", "run"]
    n_answers, n_judgments = len(MODELS) * n_questions * 2, n_questions * 2 * 2
    run = tmp_path / "run"

    proc = subprocess.Popen([sys.executable, "-m", "evalsuite", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while _committed(run) < n_answers + 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = _committed(run)
    assert n_answers < committed < n_answers + n_judgments, "the kill should land mid-judging"
    before = {r[:4]: r for r in _judgments(run)}

    vllm_server.wait_idle()  # the killed client's in-flight requests finish or are aborted first
    calls_before = vllm_server.finished_requests()
    res = run_cli(*args, cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr
    vllm_server.wait_idle()
    # exactly the calls that were not committed are made again; none that were
    assert vllm_server.finished_requests() - calls_before == n_answers + n_judgments - committed
    assert _committed(run) == n_answers + n_judgments
    after = {r[:4]: r for r in _judgments(run)}
    assert all(after[k] == row for k, row in before.items())  # committed judgments were kept as they were
    assert all(r[5] == "parse" for r in after.values() if r[4] == "error")
    c = json.loads((run / "results.json").read_text())["comparisons"][0]
    assert c["wins"] + c["ties"] + c["losses"] + c["errors"] == n_questions * 2  # every (question, turn) counted

    # a finished run re-run makes zero model calls
    calls_before = vllm_server.finished_requests()
    assert run_cli(*args, cwd=tmp_path, timeout=900).returncode == 0
    assert vllm_server.finished_requests() == calls_before
