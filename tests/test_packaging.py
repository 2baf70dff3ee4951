"""The wheel carries the data a non-editable install needs, and an install of it runs the main job from anywhere;
the core CLI path imports no heavy library."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

from evalsuite.testing.fake_server import FakeOpenAIServer

# What a build must not see: environments, build and run outputs, caches (a stale build/lib would leak into the wheel).
_NOT_SOURCE = shutil.ignore_patterns(".venv*", ".git", "build", "dist", "runs", "checkpoints", "*.egg-info",
                                     "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "*.sqlite*")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of this checkout, offline."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
    # build in this environment when it has setuptools (fast, offline); otherwise let pip isolate the build
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", *isolation, "-q", "-w", str(tmp / "dist")],
                   check=True, capture_output=True)
    (built,) = (tmp / "dist").glob("evalsuite-*.whl")
    return built


def test_wheel_ships_prompts_benchmarks_demo_data_and_trainers(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    # every data file of the source the wheel was built from, wherever pyproject maps its folder (a file that the
    # package-data globs miss fails here)
    src = wheel.parents[1] / "src"
    mapped = {"prompts": "evalsuite/prompts", "benchmarks": "evalsuite/benchmarks", "evalsuite": "evalsuite"}
    for folder, inside in mapped.items():
        for path in (src / folder).rglob("*"):
            if path.is_file() and path.suffix != ".py":
                assert f"{inside}/{path.relative_to(src / folder).as_posix()}" in names, path
    assert "evalsuite/prompts/pairwise.j2" in names
    assert "evalsuite/benchmarks/mtb-style/question.jsonl" in names
    assert "evalsuite/demo/data/prefs.jsonl" in names
    assert "evalsuite/trainers/__init__.py" in names


def test_wheel_ships_the_apache_license(wheel: Path) -> None:
    """The Apache-2.0 text of the repository root travels in the wheel's metadata, and the metadata names it."""
    with zipfile.ZipFile(wheel) as zf:
        licenses = [n for n in zf.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert licenses, "the wheel carries no LICENSE"
        assert zf.read(licenses[0]) == (ROOT / "LICENSE").read_bytes()
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "License-Expression: Apache-2.0" in metadata
    assert "License-File: LICENSE" in metadata


def test_core_cli_path_imports_no_torch_transformers_trl_peft_vllm() -> None:
    code = (
        "import sys\n"
        "import evalsuite.cli, evalsuite.cli._run, evalsuite.cli._report, evalsuite.cli._interop\n"
        "import evalsuite.pipeline.compare, evalsuite.backends.openai, evalsuite.report.gate, evalsuite.stats\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'vllm', 'datasets') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == ""


def test_help_lists_every_verb() -> None:
    out = subprocess.run([sys.executable, "-m", "evalsuite", "--help"], check=True, capture_output=True, text=True).stdout
    for verb in ("compare", "generate", "judge", "grade", "report", "gate", "agreement", "export", "import-answers", "train", "data", "demo"):
        assert verb in out


def _installed_venv(wheel: Path, where: Path) -> tuple[Path, Path]:
    """A fresh venv holding the wheel (not editable) and no source tree: (its bin folder, its site-packages).

    The dependencies come from this environment through a .pth file listing its site-packages folders: a plain path
    line adds the folder to sys.path without running the .pth files inside it, so this environment's editable finder
    for evalsuite (if any) stays out, and nothing is downloaded.
    """
    venv.EnvBuilder(with_pip=False).create(where)
    bindir = where / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, capture_output=True)
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    ours = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "_evalsuite_test_deps.pth").write_text("".join(f"{p}\n" for p in ours), encoding="utf-8")
    return bindir, purelib


def test_wheel_install_runs_compare_on_the_bundled_benchmark_from_anywhere(wheel: Path, tmp_path: Path) -> None:
    bindir, purelib = _installed_venv(wheel, tmp_path / "venv")
    cwd = tmp_path / "project"  # not the checkout: nothing of the source tree is on the path
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH")}
    env["PATH"] = os.pathsep.join([str(bindir), env.get("PATH", "")])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(bindir / "evalsuite"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=180)

    probe = (
        "import json, evalsuite, evalsuite._resources as r\n"
        "from evalsuite.demo.tiny import _bundled_texts\n"
        "print(json.dumps({'paths': [evalsuite.__file__, str(r.benchmarks_dir()), str(r.prompts_dir()),\n"
        "                            str(r.demo_data_dir())], 'corpus': _bundled_texts()}))\n"
    )
    installed = json.loads(subprocess.run([str(bindir / "python"), "-c", probe], cwd=cwd, env=env,
                                          capture_output=True, text=True, check=True).stdout)
    for found in installed["paths"]:
        assert Path(found).resolve().is_relative_to(purelib.resolve()), (found, purelib)
    from evalsuite.demo.tiny import _bundled_texts

    assert installed["corpus"] == _bundled_texts()  # the tiny tokenizer is trained on the same text as in a checkout

    questions = [json.loads(line) for line in (ROOT / "benchmarks" / "mtb-style" / "question.jsonl").open()]
    n_questions = len({q["category"] for q in questions})  # limit = 1: one question per category
    with FakeOpenAIServer(strengths={"sft": 0.0, "dpo": 1.0}) as srv:
        lines = ["[bench]", 'name = "mtb-style"', "limit = 1", ""]
        for name in ("sft", "dpo", "judge"):
            lines += ["[judge]" if name == "judge" else f"[models.{name}]", 'backend = "openai"',
                      f'base_url = "{srv.base_url}"', f'model = "{name}"', ""]
        (cwd / "evalsuite.toml").write_text("\n".join(lines), encoding="utf-8")
        res = run("compare", "sft", "dpo", "--run-dir", "run", "--quiet", "--resamples", "200", "--bt-rounds", "50")
        assert res.returncode == 0, res.stderr[-3000:]
        assert srv.stats()["by_model"] == {"sft": 2 * n_questions, "dpo": 2 * n_questions, "judge": 2 * 2 * n_questions}
    (comparison,) = json.loads((cwd / "run" / "results.json").read_text())["comparisons"]
    assert (comparison["model"], comparison["baseline"]) == ("dpo", "sft")
    assert comparison["n"] + comparison["errors"] == 2 * n_questions

    report = run("report", "--run-dir", "run", "--format", "md")
    assert report.returncode == 0, report.stderr[-3000:]
    assert "dpo" in report.stdout and "mtb-style" in report.stdout
    demo = run("demo", "--help")
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "tiny" in demo.stdout


def test_bundled_folders_hold_their_files_and_a_missing_one_is_an_input_error() -> None:
    from evalsuite._resources import BundledFolder, bundled_dir, benchmarks_dir, demo_data_dir, prompts_dir
    from evalsuite.errors import InputError

    assert (benchmarks_dir() / "mtb-style" / "question.jsonl").is_file()
    assert (prompts_dir() / "pairwise.j2").is_file()
    assert {"sft.jsonl", "prefs.jsonl"} <= {p.name for p in demo_data_dir().iterdir()}
    # a folder that exists but lacks the marker is not taken (here: evalsuite/ itself has no *.j2)
    with pytest.raises(InputError, match=r"'nowhere'.*looked in .*reinstall evalsuite"):
        bundled_dir(BundledFolder("evalsuite", "", "nowhere", "*.j2"))
