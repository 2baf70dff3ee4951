"""Batch judging and generation through OpenAI Batch files (``--batch``), end to end through the CLI.

Against the fake server's Batch API (the real ``openai`` SDK over loopback): a batch run stores exactly what a live
run stores and a later live run makes no call; a poller killed with SIGKILL while its batch runs re-attaches to the
same batch (one ``batches.create`` in all); failed lines are asked again live or in a follow-up batch; an expired
batch stops the run with one line naming it (exit 2) and keeps what it answered; cost applies the batch price.
Against the REAL ``vllm.entrypoints.openai.run_batch`` from the vLLM venv: one run_batch over a tiny local judge.
"""

from __future__ import annotations

import doctest
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, write_config

import evalsuite.backends.batch
from evalsuite.backends import NullProgress
from evalsuite.backends.batch import BatchBackend, BatchOptions, batch_prices, token_cost
from evalsuite.bench import BenchSpec, load_benchmark
from evalsuite.config import JudgingOptions, ModelSpec
from evalsuite.judge import run_judge
from evalsuite.store import RunStore
from evalsuite.testing.fake_server import BatchPlan, FakeOpenAIServer

STRENGTHS = {"sft": 0.0, "dpo": 1.0}
N_Q = 12
JUDGE_CALLS = N_Q * 2 * 2  # 2 turns x 2 orders
GEN_CALLS = 2 * N_Q * 2  # 2 models x 2 turns
STATS = ["--resamples", "200", "--bt-rounds", "50", "--quiet"]


def _rows(run_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(run_dir / "evalsuite.sqlite")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _judgments(run_dir: Path) -> list[tuple[Any, ...]]:
    return _rows(run_dir, "SELECT cache_key, question_id, turn, model_a, model_b, raw, verdict, prompt_tokens, "
                          "completion_tokens FROM judgments ORDER BY cache_key")


def _answers(run_dir: Path) -> list[tuple[Any, ...]]:
    return _rows(run_dir, "SELECT model, question_id, turn, text, cache_key FROM answer_turns ORDER BY model, question_id, turn")


class _NoBar:
    """A stage progress factory that shows nothing."""

    def __init__(self, *args: Any) -> None:
        pass

    def __enter__(self) -> NullProgress:
        return NullProgress()

    def __exit__(self, *exc: object) -> None:
        pass


def _generate_live(tmp_path: Path, cfg: Path, run_dir: str) -> None:
    res = run_cli("generate", "sft", "dpo", "--config", str(cfg), "--run-dir", run_dir, "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr


def test_doctests() -> None:
    assert doctest.testmod(evalsuite.backends.batch).failed == 0


def test_batch_prices_default_to_half_the_live_price() -> None:
    spec = ModelSpec(name="j", price_input=2.0, price_output=8.0)
    assert batch_prices(spec) == (1.0, 4.0)
    assert token_cost(spec, (1_000_000, 100_000)) == 2.8
    assert token_cost(spec, (1_000_000, 100_000), (1_000_000, 100_000)) == 1.4
    assert token_cost(spec, (1_000_000, 100_000), (500_000, 0)) == 2.3
    own = ModelSpec(name="j", price_input=2.0, price_output=8.0, price_batch_input=0.5, price_batch_output=0.5)
    assert token_cost(own, (1_000_000, 1_000_000), (1_000_000, 1_000_000)) == 1.0
    assert token_cost(ModelSpec(name="j"), (10, 10)) is None


def test_compare_batch_stores_what_live_stores(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions, price_input=1.0,
                           price_output=2.0)
        args = ["compare", "sft", "dpo", "--config", str(cfg), *STATS]
        assert run_cli(*args, "--run-dir", "live", cwd=tmp_path).returncode == 0
        srv.reset_stats()
        res = run_cli(*args, "--run-dir", "batch", "--batch", "--batch-poll", "0.05", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        stats = srv.stats()
        # no live call: 2 models x 2 turns (turn 2 waits for turn 1) + the judge = 5 batches, one line per call
        assert stats["total_requests"] == 0
        assert (stats["batches_created"], stats["batch_lines"]) == (5, GEN_CALLS + JUDGE_CALLS)
        srv.reset_stats()
        # a live re-run of the batch run's directory finds everything stored under the same cache keys
        again = run_cli(*args, "--run-dir", "batch", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert srv.stats()["total_requests"] == 0 and srv.stats()["batches_created"] == 0

    assert _answers(tmp_path / "batch") == _answers(tmp_path / "live")
    assert _judgments(tmp_path / "batch") == _judgments(tmp_path / "live")
    assert len(_judgments(tmp_path / "live")) == JUDGE_CALLS
    live = json.loads((tmp_path / "live" / "results.json").read_text())
    batch = json.loads((tmp_path / "batch" / "results.json").read_text())
    assert [c["win_rate"] for c in batch["comparisons"]] == [c["win_rate"] for c in live["comparisons"]]
    # every judge call was answered by a batch: half the live price
    lj, bj = live["usage"]["judge"], batch["usage"]["judge"]
    assert (bj["prompt_tokens"], bj["completion_tokens"]) == (lj["prompt_tokens"], lj["completion_tokens"])
    assert bj["cost_usd"] == pytest.approx(lj["cost_usd"] / 2, abs=2e-6)
    # the batch input file: custom_id = cache key, POST /v1/chat/completions, the body the live path sends
    (judge_file,) = (tmp_path / "batch" / "batches").glob("*-judge-*.jsonl")
    lines = [json.loads(line) for line in judge_file.read_text().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == [j[0] for j in _judgments(tmp_path / "live")]
    assert {(line["method"], line["url"], line["body"]["model"]) for line in lines} == {("POST", "/v1/chat/completions", "judge")}
    assert _rows(tmp_path / "batch", "SELECT DISTINCT status FROM batches") == [("ingested",)]


def _batch_progress(srv: FakeOpenAIServer) -> tuple[int, str]:
    batches = list(srv._batches.values())
    if not batches:
        return 0, ""
    b = batches[-1]
    return b["request_counts"]["completed"], b["status"]


def test_killed_poller_reattaches_to_the_same_batch(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, batch=BatchPlan(line_seconds=0.04)) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        _generate_live(tmp_path, cfg, "run")
        srv.reset_stats()
        args = ["judge", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--batch", "--batch-poll", "0.05", *STATS]
        proc = subprocess.Popen([sys.executable, "-m", "evalsuite", *args], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while _batch_progress(srv)[0] < 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done, status = _batch_progress(srv)
        assert status == "in_progress" and 0 < done < JUDGE_CALLS, "the kill should land while the batch runs"
        (batch_id,) = [r[0] for r in _rows(tmp_path / "run", "SELECT batch_id FROM batches")]
        assert _judgments(tmp_path / "run") == []

        res = run_cli(*args, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert f"re-attached to batch {batch_id}" in res.stderr
        stats = srv.stats()
        assert stats["batches_created"] == 1  # paid once
        assert stats["batch_lines"] == JUDGE_CALLS and stats["total_requests"] == 0
    assert len(_judgments(tmp_path / "run")) == JUDGE_CALLS
    assert _rows(tmp_path / "run", "SELECT batch_id, status FROM batches") == [(batch_id, "ingested")]


@pytest.mark.parametrize("retry", ["live", "batch"])
def test_failed_lines_are_asked_again(tmp_path: Path, questions: Path, retry: str) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, batch=BatchPlan(fail_rate=0.25)) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        _generate_live(tmp_path, cfg, "run")
        _generate_live(tmp_path, cfg, "ref")
        assert run_cli("judge", "sft", "dpo", "--config", str(cfg), "--run-dir", "ref", *STATS, cwd=tmp_path).returncode == 0
        srv.reset_stats()
        res = run_cli("judge", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--batch", "--batch-poll", "0.05",
                      "--batch-retry", retry, *STATS, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        stats = srv.stats()
    failed = _rows(tmp_path / "run", "SELECT COUNT(*) FROM batch_calls WHERE state = 'failed'")[0][0]
    assert 0 < failed < JUDGE_CALLS
    if retry == "live":
        assert stats["batches_created"] == 1 and stats["total_requests"] == failed
        assert f"{failed} failed batch lines are asked again live" in res.stderr
    else:  # one follow-up batch holds exactly the failed lines, and it answers them
        assert stats["batches_created"] == 2 and stats["total_requests"] == 0
        assert stats["batch_lines"] == JUDGE_CALLS + failed
    # nothing is stored as an error, and the verdicts are the live ones
    assert _judgments(tmp_path / "run") == _judgments(tmp_path / "ref")


def test_expired_batch_is_one_line_exit_2_and_keeps_what_it_answered(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, batch=BatchPlan(expire_after=10)) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        _generate_live(tmp_path, cfg, "run")
        args = ["judge", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--batch", "--batch-poll", "0.05", *STATS]
        res = run_cli(*args, cwd=tmp_path)
        assert res.returncode == 2
        (batch_id,) = [r[0] for r in _rows(tmp_path / "run", "SELECT batch_id FROM batches")]
        errors = [line for line in res.stderr.splitlines() if line.startswith("evalsuite: error:")]
        assert len(errors) == 1 and "Traceback" not in res.stderr
        assert f"batch {batch_id} expired" in errors[0] and "re-run the same command" in errors[0]
        assert "10 of 48 calls answered and stored" in errors[0]
        assert len(_judgments(tmp_path / "run")) == 10  # what it answered is kept
        assert _rows(tmp_path / "run", "SELECT status FROM batches") == [("expired",)]

        srv.batch_plan = BatchPlan()
        srv.reset_stats()
        again = run_cli(*args, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        # a new batch holds only the 38 calls still missing
        assert (srv.stats()["batches_created"], srv.stats()["batch_lines"]) == (1, JUDGE_CALLS - 10)
    assert len(_judgments(tmp_path / "run")) == JUDGE_CALLS


def test_run_batched_api_splits_large_batches_and_stores_like_live(tmp_path: Path, questions: Path) -> None:
    """The core API other stages call: a stage's planned requests through BatchBackend, max_lines per batch file."""
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        _generate_live(tmp_path, cfg, "run")
        srv.reset_stats()
        judge = ModelSpec(name="judge", model="judge", base_url=srv.base_url, max_tokens=2048, temperature=0.0)
        backend = BatchBackend(judge, tmp_path / "run", BatchOptions(poll_interval=0.02, max_lines=10))
        qs = load_benchmark(BenchSpec(name=None, path=str(questions)))
        with RunStore(tmp_path / "run") as store:
            summary = run_judge(judge, [("dpo", "sft")], qs, store, JudgingOptions(), progress=_NoBar, backend=backend)
            again = run_judge(judge, [("dpo", "sft")], qs, store, JudgingOptions(), progress=_NoBar)  # live: nothing left
        stats = srv.stats()
    assert (summary.requested, summary.errors, again.requested, again.cached) == (JUDGE_CALLS, 0, 0, JUDGE_CALLS)
    assert (stats["batches_created"], stats["batch_lines"], stats["total_requests"]) == (5, JUDGE_CALLS, 0)
    assert len(backend.report.created) == 5 and backend.report.answered == JUDGE_CALLS


def test_batch_created_but_never_recorded_is_found_again(tmp_path: Path, questions: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that dies between batches.create and the store write: the re-run finds its batch by the input file's
    sha256 and run directory in the batch metadata, and does not pay twice."""
    class Died(Exception):
        pass

    def die(*args: Any, **kwargs: Any) -> None:
        raise Died

    with FakeOpenAIServer(strengths=STRENGTHS, batch=BatchPlan(line_seconds=0.01)) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        _generate_live(tmp_path, cfg, "run")
        _generate_live(tmp_path, cfg, "other")
        srv.reset_stats()
        judge = ModelSpec(name="judge", model="judge", base_url=srv.base_url, max_tokens=2048, temperature=0.0)
        qs = load_benchmark(BenchSpec(name=None, path=str(questions)))
        options = BatchOptions(poll_interval=0.02)
        with monkeypatch.context() as mp:
            mp.setattr(RunStore, "put_batch", die)
            with RunStore(tmp_path / "run") as store, pytest.raises(Died):
                run_judge(judge, [("dpo", "sft")], qs, store, JudgingOptions(), progress=_NoBar,
                          backend=BatchBackend(judge, tmp_path / "run", options))
        assert srv.stats()["batches_created"] == 1
        backend = BatchBackend(judge, tmp_path / "run", options)
        with RunStore(tmp_path / "run") as store:
            summary = run_judge(judge, [("dpo", "sft")], qs, store, JudgingOptions(), progress=_NoBar, backend=backend)
        assert summary.requested == JUDGE_CALLS and srv.stats()["batches_created"] == 1
        assert backend.report.reattached and not backend.report.created
        # the same calls for another run directory are that run's own batch
        other = BatchBackend(judge, tmp_path / "other", options)
        with RunStore(tmp_path / "other") as store:
            run_judge(judge, [("dpo", "sft")], qs, store, JudgingOptions(), progress=_NoBar, backend=other)
        assert srv.stats()["batches_created"] == 2 and len(other.report.created) == 1


def test_batch_on_a_backend_without_batch_files_is_an_input_error(tmp_path: Path, questions: Path) -> None:
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text(f'[bench]\npath = "{questions}"\n[judge]\nbackend = "hf"\nmodel = "{tmp_path}"\n')
    res = run_cli("judge", "sft", "dpo", "--config", str(cfg), "--batch", *STATS, cwd=tmp_path)
    assert res.returncode == 2
    assert "has no batch files" in res.stderr and len(res.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------------------------------
# The real vLLM run_batch (one engine load)


@pytest.mark.slow
def test_judge_batch_through_real_vllm_run_batch(tmp_path: Path) -> None:
    from vllm_fixtures import build_checkpoints, require_vllm

    python = require_vllm()
    checkpoints = build_checkpoints(tmp_path / "tiny")
    rows = [{"question_id": f"w{i}", "category": "writing", "turns": [f"Write note {i}.", "Shorter."]} for i in range(3)]
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        _generate_live(tmp_path, cfg, "run")
    # the judge is the tiny local model, answered through vLLM's own batch runner
    text = cfg.read_text().split("[judge]")[0] + (
        f'[judge]\nbackend = "vllm"\nmodel = "{checkpoints.base}"\npython = "{python}"\ndtype = "float32"\n'
        "max_tokens = 12\nengine = { max_model_len = 4096 }\n")
    cfg.write_text(text)
    args = ["judge", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", *STATS]
    res = run_cli(*args, "--batch", "--batch-poll", "0.5", cwd=tmp_path, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    judgments = _judgments(tmp_path / "run")
    assert len(judgments) == 3 * 2 * 2
    batches = _rows(tmp_path / "run", "SELECT provider, status, n_requests, details FROM batches")
    assert [(p, s, n) for p, s, n, _ in batches] == [("vllm", "ingested", 12)]
    done = {r[0] for r in _rows(tmp_path / "run", "SELECT cache_key FROM batch_calls WHERE state = 'done'")}
    assert done == {j[0] for j in judgments}  # every judgment came from run_batch's output, keyed by cache key
    assert all(j[8] > 0 for j in judgments)  # the engine generated tokens for each
    output = Path(json.loads(batches[0][3])["output"])
    assert len(output.read_text().splitlines()) == 12
    # a live re-run plans nothing: the same cache keys are stored (no engine is started for zero calls)
    again = run_cli(*args, cwd=tmp_path, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["judging"]["requested"] == 0
