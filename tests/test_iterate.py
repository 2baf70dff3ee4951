"""``evalsuite iterate``: label -> train -> compare, round after round, on a tiny hf policy and the scripted judge; a
SIGKILL during labeling and during training resumes at the step it was in; faults name the round and step."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli, write_questions
from evalsuite.config import load_config
from evalsuite.errors import InputError
from evalsuite.pipeline.iterate import iterate, read_state
from evalsuite.manifest import read_manifest
from evalsuite.testing.fake_server import FakeOpenAIServer

PROMPTS = [f"Labeling prompt {i}: describe object number {i * 13} in a sentence." for i in range(8)]


@pytest.fixture(scope="module")
def sft_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from evalsuite.demo.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("sft") / "sft", seed=5)


def write_setup(tmp: Path, base_url: str, sft: Path, **iterate_keys: object) -> Path:
    questions = write_questions(tmp / "questions.jsonl", n=4)
    prompts = tmp / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS), encoding="utf-8")
    it = {"prompts": str(prompts), "rounds": 2, "samples": 3, "variant": "dpo", "lr": 1e-3, "max_steps": 2,
          "batch_size": 2, "max_length": 128, "max_tokens": 12, "dir": str(tmp / "iter"), **iterate_keys}
    lines = ["[bench]", f'path = "{questions}"', "",
             "[models.sft]", 'backend = "hf"', f'model = "{sft}"', "max_tokens = 12", "",
             "[train]", f'manifest = "{tmp / "ckpt" / "manifest.json"}"', 'backend = "hf"', "max_tokens = 12", "",
             "[judge]", 'backend = "openai"', f'base_url = "{base_url}"', 'model = "judge"', "concurrency = 2",
             "max_retries = 0", "timeout = 5", "", "[iterate]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in it.items()]
    cfg = tmp / "evalsuite.toml"
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return cfg


def _wait_for(pred: object, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "iterate finished before it could be killed"
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the step to kill in")


def _state(tmp: Path) -> dict[str, object]:
    try:
        return read_state(tmp / "iter" / "state.json")
    except InputError:
        return {"rounds": {}}


@pytest.mark.slow
def test_two_rounds_resume_after_sigkill_in_labeling_and_in_training(sft_model: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(strengths=None, tie_rate=0.0, latency=0.02) as srv:
        cfg = write_setup(tmp_path, srv.base_url, sft_model)
        cmd = [sys.executable, "-m", "evalsuite", "iterate", "--config", str(cfg), "--no-early-stop", "--quiet"]

        # 1. kill while round 1 labels (some judge calls stored)
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(lambda: srv.stats()["successful"] >= 6, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _state(tmp_path)["rounds"]["1"]["step"] == "label"  # type: ignore[index]

        # 2. resume; kill while round 2 trains
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(lambda: _state(tmp_path)["rounds"].get("2", {}).get("step") == "train", proc)  # type: ignore[union-attr]
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        r1 = tmp_path / "ckpt" / "iterate" / "r1" / "dpo-b0.1" / "model.safetensors"
        r1_mtime = r1.stat().st_mtime

        # 3. resume to the end
        done = run_cli("iterate", "--config", str(cfg), "--no-early-stop", "--quiet", cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stderr
        log = srv.stats()["log"]

    state = read_state(tmp_path / "iter" / "state.json")
    assert {k: v["step"] for k, v in state["rounds"].items()} == {"1": "done", "2": "done"}
    assert r1.stat().st_mtime == r1_mtime  # the finished round was not trained again
    names = {e.name for e in read_manifest(tmp_path / "ckpt" / "manifest.json")}
    assert {"dpo-r1", "dpo-r2"} <= names
    entry = next(e for e in read_manifest(tmp_path / "ckpt" / "manifest.json") if e.name == "dpo-r2")
    assert entry.extra["round"] == 2 and entry.extra["init_model"].endswith("r1/dpo-b0.1")  # round 2 starts from round 1
    # finished judge calls were never asked twice (a reply in flight at a kill may be)
    answered = sum(1 for model, _, status in log if model == "judge" and status == 200)
    stored = 0
    for store in ("label", "eval"):
        with sqlite3.connect(tmp_path / "iter" / store / "evalsuite.sqlite") as con:
            stored += con.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]
    assert stored <= answered <= stored + 4
    # every round vs the baseline, round 2 vs round 1, on the benchmark (not the labeling prompts)
    results = json.loads((tmp_path / "iter" / "eval" / "vs-sft" / "results.json").read_text())
    assert {c["model"] for c in results["comparisons"]} == {"dpo-r1", "dpo-r2"}
    r2_vs_r1 = json.loads((tmp_path / "iter" / "eval" / "r2-vs-r1" / "results.json").read_text())
    assert r2_vs_r1["baseline"] == "dpo-r1"
    assert "dpo-r2 vs dpo-r1: win rate" in done.stdout
    pairs = [json.loads(line) for line in (tmp_path / "iter" / "pairs-r2.jsonl").read_text().splitlines()]
    assert pairs and all(p["policy"] == "dpo-r1" for p in pairs)
    # the rounds are ordinary checkpoints: compare takes them by name
    cmp = run_cli("judge", "sft", "dpo-r1", "dpo-r2", "--config", str(cfg), "--run-dir", str(tmp_path / "iter" / "eval"),
                  "--quiet", "--resamples", "200", "--bt-rounds", "20", cwd=tmp_path, timeout=300)
    assert cmp.returncode == 0, cmp.stderr


@pytest.mark.slow
def test_stops_early_when_a_round_is_not_significantly_better(sft_model: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(strengths=None, tie_rate=0.0) as srv:
        cfg = write_setup(tmp_path, srv.base_url, sft_model, rounds=3)
        res = run_cli("iterate", "--config", str(cfg), "--quiet", cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr
    # The scripted judge cannot tell tiny random models apart, so a round is significantly better only by chance
    # (training on CPU is not bit-reproducible, so which round that is varies between machines): the loop stops at
    # the first round that is not significantly better than its predecessor (round 1's is SFT), names it, and
    # trains no further round.
    stop = re.search(r"stopped after round (\d+): (\S+) is not significantly better than (\S+)", res.stdout)
    assert stop is not None, res.stdout
    k = int(stop.group(1))
    assert k < 3 and stop.group(2) == f"dpo-r{k}" and stop.group(3) == ("sft" if k == 1 else f"dpo-r{k - 1}")
    state = read_state(tmp_path / "iter" / "state.json")
    assert list(state["rounds"]) == [str(r) for r in range(1, k + 1)] and state["stopped"]
    again = run_cli("iterate", "--config", str(cfg), "--quiet", cwd=tmp_path, timeout=300)
    assert again.returncode == 0 and f"stopped after round {k}" in again.stdout  # re-run: nothing more to do


@pytest.mark.slow
def test_trainer_failure_names_round_and_step_and_keeps_the_labels(
    sft_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evalsuite.trainers as trainers

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(trainers, "train", broken)
    with FakeOpenAIServer(strengths=None, tie_rate=0.0) as srv:
        cfg = write_setup(tmp_path, srv.base_url, sft_model)
        config = load_config(cfg)
        with pytest.raises(InputError, match=r"round 1 step train: the trainer failed \(RuntimeError: CUDA out of memory"):
            iterate(config, config.iterate, progress=lambda title, total: _Null())
        calls = srv.stats()["total_requests"]
        assert read_state(tmp_path / "iter" / "state.json")["rounds"]["1"]["step"] == "train"
        assert (tmp_path / "iter" / "pairs-r1.jsonl").read_text().strip()
        monkeypatch.undo()
        srv.reset_stats()
        with pytest.raises(InputError, match="round 1 step train"):
            monkeypatch.setattr(trainers, "train", broken)
            iterate(config, config.iterate, progress=lambda title, total: _Null())
        assert srv.stats()["total_requests"] == 0 < calls  # the labels were not asked for again


class _Null:
    def __enter__(self) -> "_Null":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def advance(self, n: int = 1, *, error: bool = False) -> None:
        return None

    def add_total(self, n: int) -> None:
        return None


def test_bad_iterate_config_is_one_line_exit_2(tmp_path: Path) -> None:
    questions = write_questions(tmp_path / "q.jsonl", n=4)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text(f'[bench]\npath = "{questions}"\n[iterate]\nprompts = "{empty}"\n', encoding="utf-8")
    res = run_cli("iterate", "--config", str(cfg), cwd=tmp_path)
    assert res.returncode == 2 and "no prompts" in res.stderr
    cfg.write_text(f'[bench]\npath = "{questions}"\n[iterate]\nprompts = "{empty}"\nsamples = 1\n', encoding="utf-8")
    res = run_cli("iterate", "--config", str(cfg), cwd=tmp_path)
    assert res.returncode == 2 and "at least 2" in res.stderr
    cfg.write_text('[iterate]\nreference = "ref"\n', encoding="utf-8")
    res = run_cli("iterate", "--config", str(cfg), cwd=tmp_path)
    assert res.returncode == 2 and "iterate.reference" in res.stderr


def test_labeling_prompts_must_not_be_evaluation_questions(tmp_path: Path) -> None:
    questions = write_questions(tmp_path / "q.jsonl", n=4)
    first = json.loads(questions.read_text().splitlines()[0])["turns"][0]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": first}) + "\n", encoding="utf-8")
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text(f'[bench]\npath = "{questions}"\n[models.sft]\nbackend = "hf"\nmodel = "x"\n'
                   f'[iterate]\nprompts = "{prompts}"\n', encoding="utf-8")
    res = run_cli("iterate", "--config", str(cfg), cwd=tmp_path)
    assert res.returncode == 2 and "are evaluation questions" in res.stderr


@pytest.mark.slow
def test_reference_sft_trains_against_another_frozen_model(sft_model: Path, tmp_path: Path) -> None:
    """iterate.reference = "sft" passes the SFT checkpoint as TRL's ref_model: before the first update the policy
    equals its starting model, so its rewards (beta x log-ratio to the reference) are 0 against itself and not 0
    against a different reference."""
    from evalsuite.demo.tiny import build_tiny_model
    from evalsuite.trainers import TrainOptions, read_metrics, train_variant

    other = build_tiny_model(tmp_path / "other", seed=11)
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Say {i}.", "chosen": f"Sure, {i} it is, gladly.",
                                        "rejected": f"No, not {i}, never ever."}) + "\n" for i in range(4)),
                    encoding="utf-8")
    first_rewards = []
    for name, ref in (("self", None), ("other", str(other))):
        (entry,) = train_variant("dpo", model=str(sft_model), data=str(data), out_dir=tmp_path / name, progress=False,
                                 options=TrainOptions(lr=1e-3, max_steps=1, batch_size=4, max_length=64,
                                                      reference_model=ref))
        first_rewards.append(read_metrics(entry.metrics or "")[0]["chosen_reward"])
    assert first_rewards[0] == pytest.approx(0.0, abs=1e-6)
    assert abs(first_rewards[1]) > 1e-3


def test_a_training_that_finished_before_the_kill_is_kept(tmp_path: Path) -> None:
    """Killed after the trainer wrote its manifest entry but before state.json moved on: the resumed step keeps that
    checkpoint (paths made absolute for the main manifest); an entry older than the attempt is a stale one."""
    from evalsuite.pipeline.iterate import _finished_training
    from evalsuite.manifest import CheckpointEntry, upsert_entry, utc_now

    started = utc_now()
    upsert_entry(tmp_path / "manifest.json", CheckpointEntry(name="dpo-b0.1", variant="dpo", beta=0.1,
                                                             path=str(tmp_path / "dpo-b0.1"), created=started))
    (entry,) = _finished_training(tmp_path, started)
    assert entry.path == str((tmp_path / "dpo-b0.1").resolve())
    assert _finished_training(tmp_path, "2999-01-01T00:00:00+00:00") == []
    assert _finished_training(tmp_path, None) == []
