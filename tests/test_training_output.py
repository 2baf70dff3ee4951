"""What `evalsuite train` shows while it trains: evalsuite's own progress bar (steps, latest loss) on a terminal, one
summary line per run otherwise, nothing with --quiet; never transformers' bars and log dicts, datasets' bars or
deprecation warnings. Also: `train --model` takes an alias (resolved through evalsuite.models)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("trl")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# What the libraries underneath print when left alone (tqdm bars, transformers' log printer, warnings).
LEAKS = ("it/s]", "s/it]", "{'loss'", "Warning", "warnings.warn", "Writing model shards", "Loading weights", "Map",
         "Tokenizing", "Extracting prompt")


@pytest.fixture(scope="module")
def sft(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from evalsuite.demo.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "sft", seed=0)


@pytest.fixture(scope="module")
def prefs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "prefs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"What is {i} plus {i}?", "chosen": f"It is {2 * i}.",
                                        "rejected": f"It is {2 * i + 1}."}) + "\n" for i in range(8)))
    return path


def _train_args(sft: Path, prefs: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "evalsuite", "train", "dpo", "--model", str(sft), "--data", str(prefs),
            "--out", str(out), "--max-steps", "3", "--batch-size", "2", "--lr", "1e-3", "--lora", *extra]


def _run_in_terminal(args: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str]:
    """Run ``args`` with stdout and stderr on a pseudo-terminal (as a user's shell would); its output, as written."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, cwd=cwd, env=env)
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 1.0)
        if ready:
            try:
                data = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process is done
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(controller)
    rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    return rc, b"".join(chunks).decode("utf-8", errors="replace")


def _frames(raw: str) -> list[str]:
    """The last state of each terminal line (a progress bar redraws itself after a carriage return)."""
    lines = []
    for line in ANSI.sub("", raw).split("\n"):
        parts = [p for p in line.split("\r") if p.strip()]
        if parts:
            lines.append(parts[-1].rstrip())
    return lines


@pytest.mark.slow
def test_a_terminal_shows_evalsuites_bar_and_nothing_from_the_libraries(sft: Path, prefs: Path, tmp_path: Path) -> None:
    rc, raw = _run_in_terminal(_train_args(sft, prefs, tmp_path / "ckpt"), tmp_path)
    assert rc == 0, raw[-3000:]
    frames = _frames(raw)
    bar = [f for f in frames if f.startswith("train dpo-b0.1")]
    assert bar and re.search(r"train dpo-b0\.1 loss \d+\.\d{4} .* 3/3 ", bar[-1]), frames
    assert [f for f in frames if any(leak in f for leak in LEAKS)] == []
    # before the bar and while it runs nothing else is printed; after it comes the summary table
    first_other = next(i for i, f in enumerate(frames) if not f.startswith("train dpo-b0.1"))
    assert first_other == len(bar) and frames[first_other].startswith("Trained ->"), frames
    assert any("dpo-b0.1" in f and "LoRA adapter" in f for f in frames[first_other:]), frames


@pytest.mark.slow
def test_without_a_terminal_each_run_is_one_line_and_quiet_is_silent(sft: Path, prefs: Path, tmp_path: Path) -> None:
    res = subprocess.run(_train_args(sft, prefs, tmp_path / "a", "--beta", "0.1", "--beta", "0.5"), cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stderr.splitlines()
    assert len(lines) == 2, res.stderr
    for line, name in zip(lines, ("dpo-b0.1", "dpo-b0.5")):
        assert re.fullmatch(rf"train {name} loss \d+\.\d{{4}}: 3/3 in \d+\.\ds, 0 errors", line), line

    quiet = subprocess.run(_train_args(sft, prefs, tmp_path / "b", "--quiet"), cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr[-3000:]


@pytest.mark.slow
def test_library_settings_are_restored_after_training(sft: Path, prefs: Path, tmp_path: Path) -> None:
    import datasets
    import transformers

    from evalsuite.trainers import TrainOptions, train_variant

    hf_logging, ds_logging = transformers.utils.logging, datasets.utils.logging
    before = (hf_logging.get_verbosity(), ds_logging.get_verbosity(), hf_logging.is_progress_bar_enabled(),
              ds_logging.is_progress_bar_enabled(), os.environ.get("TQDM_DISABLE"))
    train_variant("dpo", model=str(sft), data=str(prefs), out_dir=tmp_path / "ckpt", progress=False,
                  options=TrainOptions(max_steps=1, batch_size=2, lora=True, lora_r=4, lora_alpha=8))
    after = (hf_logging.get_verbosity(), ds_logging.get_verbosity(), hf_logging.is_progress_bar_enabled(),
             ds_logging.is_progress_bar_enabled(), os.environ.get("TQDM_DISABLE"))
    assert after == before


@pytest.mark.slow
def test_train_model_takes_an_alias(sft: Path, prefs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import evalsuite.models
    from evalsuite.trainers import TrainOptions, train_variant

    # the alias resolves as "smollm2" does, to a converted checkpoint directory (here the tiny model)
    monkeypatch.setattr(evalsuite.models, "resolve_model_path", lambda name: str(sft) if name == "tiny-alias" else name)
    [entry] = train_variant("dpo", model="tiny-alias", data=str(prefs), out_dir=tmp_path / "ckpt", progress=False,
                            options=TrainOptions(max_steps=1, batch_size=2, lora=True, lora_r=4, lora_alpha=8))
    assert entry.base == str(sft.resolve()) and entry.extra["init_model"] == str(sft.resolve())
