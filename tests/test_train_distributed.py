"""Training across processes with accelerate, on CPU over gloo (as CI runs it): two processes train the same loss
curve as one process with the same global batch, rank 0 alone writes and records the world, each rank trains its own
shard; ranks that disagree on their data, and accelerate configs that are missing, broken or need GPUs, stop with one
line and exit 2; iterate trains a round under a launcher.

Every launched process sees no GPU (``CUDA_VISIBLE_DEVICES=""``), so the tests take the same path on any machine.
"""

from __future__ import annotations

import doctest
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import evalsuite.trainers._distributed as distributed
from conftest import ROOT
from evalsuite.errors import InputError
from evalsuite.manifest import TrainingWorld, read_manifest, resolve_path
from evalsuite.trainers import read_accelerate_config

DDP_EXAMPLE = ROOT / "examples" / "accelerate" / "ddp.yaml"
ROWS = 16
# Two processes against one: the measured difference is below 4e-7 per step (float32 sums in another order); a
# run whose ranks did not split the data, or that batched it differently, is 1.4e-3 off by step 2.
TOLERANCE = 1e-5
CPU_ONLY = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny random-weight model and 16 preference pairs."""
    pytest.importorskip("trl")
    from evalsuite.demo.tiny import build_tiny_model

    folder = tmp_path_factory.mktemp("tiny")
    model = build_tiny_model(folder / "sft", seed=0)
    data = folder / "prefs.jsonl"
    data.write_text("".join(json.dumps({
        "prompt": f"What is {i} plus {i}?",
        "chosen": f"{i} plus {i} is {2 * i}, since adding a number to itself doubles it.",
        "rejected": f"It is {2 * i + 1}.",
    }) + "\n" for i in range(ROWS)), encoding="utf-8")
    return model, data


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "evalsuite", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **CPU_ONLY})


def finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def evalsuite(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return finish(start(*args, cwd=cwd))


def _losses(metrics: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in metrics.read_text(encoding="utf-8").splitlines()]


def test_doctests() -> None:
    assert doctest.testmod(distributed).failed == 0


@pytest.mark.slow
def test_two_processes_train_the_curve_of_one_with_the_same_global_batch(tiny: tuple[Path, Path],
                                                                          tmp_path: Path) -> None:
    model, data = tiny
    common = ["train", "dpo", "--model", str(model), "--data", str(data), "--max-steps", "4", "--lr", "1e-3",
              "--max-length", "64"]
    # 2 processes x 1 per device x 2 accumulation = 4 = 1 process x 4 (both runs at once: they share nothing)
    runs = [start(*common, "--out", str(tmp_path / "two"), "--batch-size", "1", "--grad-accum", "2",
                  "--accelerate-config", str(DDP_EXAMPLE), cwd=tmp_path),
            start(*common, "--out", str(tmp_path / "one"), "--batch-size", "4", "--quiet", cwd=tmp_path)]
    two, one = (finish(run) for run in runs)
    assert two.returncode == 0, two.stderr[-3000:]
    assert one.returncode == 0, one.stderr[-3000:]

    (entry,) = read_manifest(tmp_path / "two" / "manifest.json")
    assert TrainingWorld.of(entry) == TrainingWorld(world_size=2, per_device_batch=1, grad_accum=2, global_batch=4,
                                                    rows_per_rank=(8, 8), distributed_type="MULTI_CPU",
                                                    backend="gloo")
    (single,) = read_manifest(tmp_path / "one" / "manifest.json")
    assert TrainingWorld.of(single) == TrainingWorld(world_size=1, per_device_batch=4, grad_accum=1, global_batch=4,
                                                     rows_per_rank=(ROWS,), distributed_type="NO", backend=None)
    # Rank 0 alone wrote: one table, one metrics line per step, and no shared data folder left behind.
    assert two.stdout.count("Trained ->") == 1 and "2 processes (MULTI_CPU, gloo), global batch 4" in two.stdout
    assert not list((tmp_path / "two").glob(".data-*"))
    assert (tmp_path / "two" / "dpo-b0.1" / "model.safetensors").is_file()

    # Each rank trained on half of every global batch: otherwise the curves part from step 2.
    curve_two = _losses(tmp_path / "two" / "dpo-b0.1" / "metrics.jsonl")
    curve_one = _losses(tmp_path / "one" / "dpo-b0.1" / "metrics.jsonl")
    assert len(curve_two) == len(curve_one) == 4
    assert curve_one[-1] < curve_one[0] - 0.1  # it trained
    assert max(abs(a - b) for a, b in zip(curve_two, curve_one)) < TOLERANCE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A launcher as torchrun is one, for two ranks on this machine, that gives each rank its own --data file: what two
# machines with different files behind the same path amount to.
TWO_RANK_LAUNCHER = """
import os, subprocess, sys
model, out, port, *data = sys.argv[1:]
ranks = [subprocess.Popen([sys.executable, "-m", "evalsuite", "train", "dpo", "--model", model, "--data", rows,
                           "--out", out, "--max-steps", "1", "--quiet"],
                          env={**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                               "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
         for rank, rows in enumerate(data)]
statuses = [rank.wait() for rank in ranks]
open(out + ".statuses", "w").write(" ".join(map(str, statuses)))
sys.exit(max(statuses))
"""


@pytest.mark.slow
def test_ranks_that_disagree_on_the_data_stop_with_one_line(tiny: tuple[Path, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capfd: pytest.CaptureFixture[str]) -> None:
    """Every rank stops before loading anything; rank 0 says why, once, and the launching evalsuite (here the one
    that runs iterate's launcher or --accelerate-config) raises that line; nothing is written."""
    from evalsuite.trainers import run_launched

    for name, value in CPU_ONLY.items():
        monkeypatch.setenv(name, value)
    model, data = tiny
    other = tmp_path / "prefs.jsonl"
    other.write_text("".join(data.read_text(encoding="utf-8").splitlines(keepends=True)[:8]), encoding="utf-8")
    launcher = tmp_path / "launcher.py"
    launcher.write_text(TWO_RANK_LAUNCHER, encoding="utf-8")
    command = [sys.executable, str(launcher), str(model), str(tmp_path / "out"), str(_free_port()), str(data),
               str(other)]
    with pytest.raises(InputError) as caught:
        run_launched(command)
    line = str(caught.value)
    assert "ranks of this launch disagree" in line and f"rank 1 reads data {other}" in line and "fix:" in line
    assert "\n" not in line and "evalsuite: error" not in capfd.readouterr().err  # no rank printed it
    assert (tmp_path / "out.statuses").read_text() == "2 2"
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_accelerate_configs_that_are_missing_broken_or_unknown_are_one_line(tmp_path: Path) -> None:
    pytest.importorskip("accelerate")
    broken = tmp_path / "broken.yaml"
    broken.write_text("distributed_type: [MULTI_GPU\n", encoding="utf-8")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("distributed_type: MULTI_GPU\nnum_processes: 2\nnum_gpus_please: 8\n", encoding="utf-8")
    for path, message in ((tmp_path / "absent.yaml", "not found"), (broken, "not a usable accelerate config"),
                          (unknown, "not a usable accelerate config")):
        with pytest.raises(InputError, match=message) as caught:
            read_accelerate_config(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    for example in ("ddp", "fsdp"):
        config = read_accelerate_config(ROOT / "examples" / "accelerate" / f"{example}.yaml")
        assert config["distributed_type"] in ("MULTI_GPU", "FSDP")


def test_the_deepspeed_example_needs_deepspeed(tmp_path: Path) -> None:
    import importlib.util

    pytest.importorskip("accelerate")
    example = ROOT / "examples" / "accelerate" / "deepspeed_zero2.yaml"
    if importlib.util.find_spec("deepspeed") is not None:
        assert read_accelerate_config(example)["distributed_type"] == "DEEPSPEED"
        return
    with pytest.raises(InputError, match="DeepSpeed, which is not installed .* pip install deepspeed"):
        read_accelerate_config(example)


def test_train_with_a_bad_accelerate_config_exits_2_before_launching(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = tiny
    base = ["train", "dpo", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "out")]
    missing = evalsuite(*base, "--accelerate-config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert "accelerate config file not found" in missing.stderr
    # FSDP on a machine without a GPU: accelerate would run it as plain DDP, so evalsuite refuses it.
    fsdp = evalsuite(*base, "--accelerate-config", str(ROOT / "examples" / "accelerate" / "fsdp.yaml"), cwd=tmp_path)
    assert fsdp.returncode == 2 and fsdp.stderr.count("\n") == 1, fsdp.stderr
    assert "FSDP needs CUDA GPUs" in fsdp.stderr
    assert not (tmp_path / "out").exists()


def test_iterate_launcher_words() -> None:
    from evalsuite.cli._loop import launcher_words

    assert launcher_words(None, None) is None
    assert launcher_words("accelerate launch --num_processes 2", None) == ["accelerate", "launch", "--num_processes",
                                                                          "2"]
    assert launcher_words(None, DDP_EXAMPLE)[-2:] == ["--config_file", str(DDP_EXAMPLE)]  # type: ignore[index]
    for launcher, config, message in (("", None, "empty"), ("accelerate 'launch", None, "does not parse"),
                                      ("torchrun", DDP_EXAMPLE, "both given")):
        with pytest.raises(InputError, match=message):
            launcher_words(launcher, config)


@pytest.mark.slow
def test_iterate_trains_its_round_under_a_launcher(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    from evalsuite.testing.fake_server import FakeOpenAIServer
    from test_iterate import write_setup

    model, _ = tiny
    launcher = f"{sys.executable} -m accelerate.commands.launch --multi_gpu --num_processes 2"
    with FakeOpenAIServer(strengths=None, tie_rate=0.0) as server:
        config = write_setup(tmp_path, server.base_url, model, rounds=1)
        done = evalsuite("iterate", "--config", str(config), "--quiet", "--launcher", launcher, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dpo-r1 vs sft: win rate" in done.stdout and "Trained ->" not in done.stdout  # the ranks' table: stderr
    manifest = tmp_path / "ckpt" / "manifest.json"
    entry = next(e for e in read_manifest(manifest) if e.name == "dpo-r1")
    world = TrainingWorld.of(entry)
    assert world is not None and (world.world_size, world.global_batch, world.distributed_type) == (2, 4, "MULTI_CPU")
    assert entry.extra["round"] == 1 and (resolve_path(manifest, entry) / "config.json").is_file()


def test_iterate_reads_its_launcher_from_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from evalsuite.cli import main
    from evalsuite.config import load_config

    config = tmp_path / "evalsuite.toml"
    config.write_text("[iterate]\nlauncher = \"accelerate 'launch\"\n", encoding="utf-8")
    assert load_config(config).iterate.launcher == "accelerate 'launch"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["iterate", "--config", str(config), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "does not parse" in err
