"""Shared fixtures: a question file, a config pointing at the fake OpenAI-compatible server, and a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterable

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CATEGORIES = ("writing", "math", "stem", "coding")


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; skips the test when that folder is absent (a user's clone has none)."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent")
    return p


def write_questions(path: Path, n: int = 12) -> Path:
    """n two-turn questions cycling through four categories; math and coding carry references."""
    rows = []
    for i in range(n):
        cat = CATEGORIES[i % len(CATEGORIES)]
        row = {"question_id": f"q{i:03d}", "category": cat, "turns": [f"First question {i} ({cat})?", f"Now extend answer {i}."]}
        if cat in ("math", "coding"):
            row["reference"] = [f"reference {i} turn 1", f"reference {i} turn 2"]
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_config(path: Path, base_url: str, models: Iterable[str], questions: Path, *, model_opts: dict[str, object] | None = None,
                 **judge: object) -> Path:
    lines = ["[bench]", f'path = "{questions}"', ""]
    for m in models:
        lines += [f"[models.{m}]", 'backend = "openai"', f'base_url = "{base_url}"', f'model = "{m}"', "concurrency = 8"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in (model_opts or {}).items()] + [""]
    lines += ["[judge]", 'backend = "openai"', f'base_url = "{base_url}"', 'model = "judge"']
    for k, v in {"concurrency": 16, **judge}.items():
        lines.append(f"{k} = {json.dumps(v)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalsuite", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def questions(tmp_path: Path) -> Path:
    return write_questions(tmp_path / "questions.jsonl")
