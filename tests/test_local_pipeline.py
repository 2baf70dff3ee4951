"""Local checkpoints end to end on CPU: `compare` through the `hf` backend with a tiny local judge, and the demo."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from evalsuite.demo.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    return {name: build_tiny_model(root / name, seed=seed) for name, seed in (("sft", 0), ("dpo", 1), ("judge", 2))}


@pytest.mark.slow
def test_compare_two_local_checkpoints_with_a_local_logprob_judge(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text(
        "[bench]\nname = \"mtb-style\"\nlimit = 1\n\n"
        + "".join(f"[models.{m}]\nbackend = \"hf\"\nmodel = \"{tiny_models[m]}\"\nmax_tokens = 12\nbatch_size = 8\n\n" for m in ("sft", "dpo"))
        + f"[judge]\nbackend = \"hf\"\nmodel = \"{tiny_models['judge']}\"\nverdict_mode = \"logprob\"\nbatch_size = 8\n"
    )
    args = ("compare", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "500", "--bt-rounds", "100")
    res = run_cli(*args, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    c = results["comparisons"][0]
    assert c["n"] + c["errors"] == 16  # 8 questions (one per category) x 2 turns
    db = sqlite3.connect(tmp_path / "run" / "evalsuite.sqlite")
    assert db.execute("SELECT COUNT(*) FROM answer_turns").fetchone()[0] == 2 * 8 * 2
    p = [r[0] for r in db.execute("SELECT p_first FROM judgments")]
    assert len(p) == 32 and all(0.0 <= x <= 1.0 for x in p)
    turn2 = db.execute("SELECT COUNT(*) FROM answer_turns WHERE turn = 2").fetchone()[0]
    assert turn2 == 16

    # a finished local run re-run generates and judges nothing
    before = db.execute("SELECT MAX(created) FROM judgments").fetchone()[0]
    assert run_cli(*args, cwd=tmp_path, timeout=600).returncode == 0
    assert db.execute("SELECT MAX(created) FROM judgments").fetchone()[0] == before


@pytest.mark.slow
def test_tiny_demo_runs_end_to_end(tmp_path: Path) -> None:
    res = run_cli("demo", "--tiny", "--out", str(tmp_path / "demo"), "--quiet", cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads((tmp_path / "demo" / "run" / "results.json").read_text())
    assert results["baseline"] == "sft"
    assert sorted(c["model"] for c in results["comparisons"]) == ["dpo-b0.1", "dpo-b0.5", "simpo-b2", "simpo-b5"]
    assert {s["variant"] for s in results["sweeps"]} == {"dpo", "simpo"}
    assert all(c["n"] + c["errors"] == 16 for c in results["comparisons"])
    board = (tmp_path / "demo" / "run" / "leaderboard.md").read_text()
    assert "noise" in board and "## Beta sweeps" in board
    assert "evalsuite compare sft dpo simpo" in res.stdout  # the command for real checkpoints
    manifest = json.loads((tmp_path / "demo" / "checkpoints" / "manifest.json").read_text())
    assert {c["name"] for c in manifest["checkpoints"]} == {"sft", "dpo-b0.1", "dpo-b0.5", "simpo-b2", "simpo-b5"}
