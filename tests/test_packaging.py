"""The wheel carries the data a non-editable install needs; the core CLI path imports no heavy library."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT


def test_wheel_ships_prompts_benchmarks_demo_data_and_trainers(tmp_path: Path) -> None:
    import importlib.util

    # build in this environment when it has setuptools (fast, offline); otherwise let pip isolate the build
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", *isolation, "-q", "-w", str(tmp_path)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("evalsuite-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "evalsuite/prompts/pairwise.j2" in names
    assert "evalsuite/benchmarks/mtb-style/question.jsonl" in names
    assert "evalsuite/demo/data/prefs.jsonl" in names
    assert "evalsuite/trainers/__init__.py" in names


def test_core_cli_path_imports_no_torch_transformers_trl_peft_vllm() -> None:
    code = (
        "import sys\n"
        "import evalsuite.cli, evalsuite.cli._run, evalsuite.cli._report, evalsuite.cli._interop\n"
        "import evalsuite.compare, evalsuite.backends.openai, evalsuite.report.gate, evalsuite.stats\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'vllm', 'datasets') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == ""


def test_help_lists_every_verb() -> None:
    out = subprocess.run([sys.executable, "-m", "evalsuite", "--help"], check=True, capture_output=True, text=True).stdout
    for verb in ("compare", "generate", "judge", "grade", "report", "gate", "agreement", "export", "import-answers", "train", "data", "demo"):
        assert verb in out
