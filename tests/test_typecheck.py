"""mypy with disallow_untyped_defs over evalsuite/ and trainers/ reports no error ([tool.mypy] in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_reports_no_errors() -> None:
    pytest.importorskip("mypy")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "typecheck.py")], cwd=ROOT, capture_output=True, text=True,
        timeout=900,
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert "Success: no issues found" in report, report


def test_trainers_is_checked_as_evalsuite_trainers() -> None:
    """mypy sees trainers/ where the installed package has it, and reports its errors under the checkout's path."""
    pytest.importorskip("mypy")
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import typecheck
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    typecheck.mirror()
    tree = typecheck.TREE / "evalsuite"
    assert (tree / "trainers" / "health.py").read_bytes() == (ROOT / "trainers" / "health.py").read_bytes()
    assert (tree / "store" / "__init__.py").is_file() and (tree / "py.typed").is_file()
    assert typecheck.to_checkout("evalsuite/trainers/health.py:3: error: x") == "trainers/health.py:3: error: x"
    assert typecheck.to_checkout("evalsuite/store/__init__.py:9: error: y") == "evalsuite/store/__init__.py:9: error: y"


def test_a_judge_without_a_temperature_is_asked_greedily() -> None:
    """The hole mypy found once ``**sampling: dict[str, Any]`` was spelled out: a judge whose temperature is unset
    (None) sent ``temperature=None``, which the hf backend turns into ``float(None)``."""
    from evalsuite.config import ModelSpec
    from evalsuite.judge import plan_requests
    from evalsuite.records import Answer, Question

    judge = ModelSpec(name="judge", backend="openai", model="judge", base_url="http://127.0.0.1:9/v1")
    assert judge.temperature is None
    q = Question("q1", "writing", ("Write a haiku.",))
    answers = {m: {"q1": Answer(m, "q1", (f"{m} writes a haiku.",))} for m in ("sft", "dpo")}
    requests, cached, missing = plan_requests(judge, "pairwise", [("sft", "dpo")], [q], answers, {})
    assert (len(requests), cached, missing) == (2, 0, 0)
    assert all(isinstance(r.temperature, float) and r.temperature == 0.0 for r in requests)
