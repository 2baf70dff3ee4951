"""docs/testing.md's offline CI recipe, as a user's CI job runs it: the fake server as a process, a project file
pointing at it, ``evalsuite compare`` then ``evalsuite gate`` through the CLI; the gate passes a stronger candidate
(exit 0) and fails a weaker one (exit 1)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = """\
[bench]
name = "mtb-style"
limit = 1

[models.sft]
backend = "openai"
base_url = "{url}"
model = "sft"

[models.dpo]
backend = "openai"
base_url = "{url}"
model = "dpo"

[judge]
backend = "openai"
base_url = "{url}"
model = "judge"
"""


def _ci_job(tmp_path: Path, dpo_strength: float) -> subprocess.CompletedProcess[str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "evalsuite.testing.fake_server", "--port", "0", "--strength", "sft=0",
         "--strength", f"dpo={dpo_strength}"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline()
        m = re.fullmatch(r"READY (http://127\.0\.0\.1:\d+/v1)\n", ready)
        assert m, ready
        (tmp_path / "evalsuite.toml").write_text(PROJECT.format(url=m.group(1)), encoding="utf-8")
        compare = subprocess.run([sys.executable, "-m", "evalsuite", "compare", "sft", "dpo", "--quiet", "--no-viewer"],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert compare.returncode == 0, compare.stderr
        return subprocess.run([sys.executable, "-m", "evalsuite", "gate", "--baseline", "sft", "--candidate", "dpo"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize(("strength", "exit_code", "word"), [(1.5, 0, "PASS"), (-1.5, 1, "FAIL")])
def test_gate_against_the_fake_server_process(tmp_path: Path, strength: float, exit_code: int, word: str) -> None:
    gate = _ci_job(tmp_path, strength)
    assert gate.returncode == exit_code, gate.stdout + gate.stderr
    assert gate.stdout.startswith(f"{word} dpo"), gate.stdout
