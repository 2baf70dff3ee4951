"""``evalsuite train online-dpo``: TRL's OnlineDPOTrainer with evalsuite's judge as the reward, both orders judged.

The reward callable is pinned against the scripted judge on the fake server (whose verdicts follow «NAME» markers in
the answers, so the better completion is known); the real trainer runs 2 steps on a tiny policy with a tiny local hf
judge read through verdict-token probabilities, and through the CLI with the judge from ./evalsuite.toml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from evalsuite.config import JudgingOptions, ModelSpec
from evalsuite.manifest import read_manifest
from evalsuite.testing.fake_server import FakeOpenAIServer
from evalsuite.trainers import VARIANTS, JudgeReward, TrainOptions, read_metrics


def test_online_dpo_is_a_variant() -> None:
    spec = VARIANTS["online-dpo"]
    assert (spec.trainer, spec.loss_type, spec.default_beta, spec.data_shape) == ("online", "sigmoid", 0.1, "prompts")


def test_reward_judges_both_orders_and_returns_the_reconciled_preference(tmp_path: Path) -> None:
    # strong and weak answers carry their writer's marker: the scripted judge prefers «good» whatever the order
    with FakeOpenAIServer(strengths={"good": 4.0, "bad": -4.0}, tie_rate=0.0) as srv:
        judge = ModelSpec(name="judge", backend="openai", base_url=srv.base_url, model="judge", max_tokens=64,
                          temperature=0.0)
        reward = JudgeReward(judge, tmp_path / "store", JudgingOptions(mode="strict"))
        prompts = ["Say hi.", "Name a colour."]
        first = ["«good» hello there friend", "«bad» blue"]
        second = ["«bad» hi", "«good» a deep ocean blue"]
        try:
            scores = reward(prompts=2 * prompts, completions=first + second, completion_ids=[[0]] * 4)
            assert scores == [1.0, 0.0, 0.0, 1.0]  # per completion: the better one of each prompt gets 1
            assert reward.calls == 4  # two pairs, both orders
            assert srv.stats()["total_requests"] == 4
            # the same pairs again (TRL can resample identical completions): answered from the store
            assert reward(prompts=2 * prompts, completions=first + second) == scores
            assert srv.stats()["total_requests"] == 4
            # identical completions: no call, no preference
            assert reward(prompts=["Same?", "Same?"], completions=["«good» x", "«good» x"]) == [0.5, 0.5]
        finally:
            reward.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from evalsuite.demo.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("online")
    return build_tiny_model(root / "policy", seed=1), build_tiny_model(root / "judge", seed=2)


def _prompts(path: Path) -> Path:
    path.write_text("".join(json.dumps({"prompt": f"Question {i}: name a fruit."}) + "\n" for i in range(4)),
                    encoding="utf-8")
    return path


@pytest.mark.slow
def test_real_online_dpo_two_steps_with_a_tiny_local_judge(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    policy, judge_dir = tiny
    judge = ModelSpec(name="judge", backend="hf", model=str(judge_dir), verdict_mode="logprob", max_tokens=4,
                      batch_size=8, extra={"label": "tiny-judge"})
    from evalsuite.trainers import train_online_dpo
    from evalsuite.trainers._variants import get_variant

    entries = train_online_dpo(
        get_variant("online-dpo"), model=str(policy), data=str(_prompts(tmp_path / "prompts.jsonl")), betas=[0.1],
        options=TrainOptions(lr=1e-3, max_steps=2, batch_size=2, max_length=128, logging_steps=1),
        out_dir=tmp_path / "ckpt", progress=False, judge=judge, max_new_tokens=8,
    )
    (entry,) = entries
    assert entry.name == "online-dpo-b0.1" and entry.extra["steps"] == 2
    # 2 steps x 2 prompts, each pair judged in both orders by the local judge (identical pairs are not asked)
    assert 0 < entry.extra["judge_calls"] <= 8 and entry.extra["judge"] == "tiny-judge"
    rows = read_metrics(entry.metrics or "")
    assert len(rows) == 2 and all(r["loss"] is not None and r["kl"] is not None for r in rows)
    assert [e.name for e in read_manifest(tmp_path / "ckpt" / "manifest.json")] == ["online-dpo-b0.1"]
    assert (Path(entry.path) / "model.safetensors").is_file()
    assert (Path(entry.path) / "judge" / "evalsuite.sqlite").is_file()  # every label kept, inspectable


@pytest.mark.slow
def test_train_online_dpo_through_the_cli_reads_the_judge_from_the_project(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    policy, _ = tiny
    with FakeOpenAIServer(strengths=None, tie_rate=0.0) as srv:
        (tmp_path / "evalsuite.toml").write_text(
            f'[judge]\nbackend = "openai"\nbase_url = "{srv.base_url}"\nmodel = "judge"\nmax_retries = 0\n',
            encoding="utf-8")
        res = run_cli("train", "online-dpo", "--model", str(policy), "--data", str(_prompts(tmp_path / "p.jsonl")),
                      "--max-steps", "2", "--batch-size", "2", "--lr", "1e-3", "--max-length", "96",
                      "--out", str(tmp_path / "ckpt"), "--quiet", cwd=tmp_path, timeout=600)
        assert res.returncode == 0, res.stderr
        assert srv.stats()["total_requests"] > 0  # the judge was asked
    assert "online-dpo-b0.1" in res.stdout
    (entry,) = read_manifest(tmp_path / "ckpt" / "manifest.json")
    assert entry.variant == "online-dpo" and entry.extra["judge"] == "judge"


def test_online_dpo_without_a_judge_is_an_input_error(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    policy, _ = tiny
    res = run_cli("train", "online-dpo", "--model", str(policy), "--data", str(_prompts(tmp_path / "p.jsonl")),
                  "--max-steps", "1", "--out", str(tmp_path / "ckpt"), "--quiet", cwd=tmp_path)
    assert res.returncode == 2 and "needs a judge" in res.stderr
