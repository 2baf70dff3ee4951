"""Every mistake a new user makes on the command line is one line in evalsuite's format, exit code 2 (exit 1 means
"gate failed"): a missing optional package names the extra that brings it, a usage error speaks like the other
errors, a malformed JSONL line is reported at its real column, a missing config file is said to be missing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from conftest import ROOT, run_cli

from evalsuite.errors import EXTRAS, InputError, MissingExtra, missing_extra
from evalsuite.jsonl import iter_jsonl

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# what a core install (`pip install evalsuite`) lacks
CORE_INSTALL_LACKS = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "tokenizers", "vllm")


def _one_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and "Usage:" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("evalsuite: error: ")]
    assert len(lines) == 1, res.stderr
    return lines[0]


def _run_as_core_install(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI with the optional packages made unimportable, as on a core install."""
    code = ("import sys\n"
            f"for name in {CORE_INSTALL_LACKS!r}:\n"
            "    sys.modules[name] = None  # import raises ModuleNotFoundError, as when it is not installed\n"
            "from evalsuite.cli import main\n"
            "main(sys.argv[1:])\n")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# --- missing extras ------------------------------------------------------------------------------------------------


def test_demo_on_a_core_install_names_the_train_extra_and_writes_nothing(tmp_path: Path) -> None:
    msg = _one_line(_run_as_core_install("demo", "--out", "demo", cwd=tmp_path))
    assert "evalsuite demo needs torch" in msg and "pip install 'evalsuite[train]'" in msg
    assert not (tmp_path / "demo").exists()


def test_train_on_a_core_install_names_the_train_extra(tmp_path: Path) -> None:
    (tmp_path / "prefs.jsonl").write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    msg = _one_line(_run_as_core_install("train", "dpo", "--model", "sft", "--data", "prefs.jsonl", cwd=tmp_path))
    assert "evalsuite train needs" in msg and "pip install 'evalsuite[train]'" in msg


def test_an_hf_model_on_a_core_install_names_the_model_and_the_extra(tmp_path: Path) -> None:
    (tmp_path / "evalsuite.toml").write_text(
        '[bench]\nlimit = 1\n[models.sft]\nbackend = "hf"\nmodel = "ckpt/sft"\n[models.dpo]\nbackend = "hf"\n'
        'model = "ckpt/dpo"\n[judge]\nbase_url = "http://127.0.0.1:9/v1"\n', encoding="utf-8")
    msg = _one_line(_run_as_core_install("compare", "sft", "dpo", "--quiet", cwd=tmp_path))
    assert "backend 'hf' of model 'sft' needs torch" in msg and "pip install 'evalsuite[train]'" in msg


def test_help_and_the_core_verbs_work_on_a_core_install(tmp_path: Path) -> None:
    for args in (("--help",), ("train", "--help"), ("demo", "--help")):
        res = _run_as_core_install(*args, cwd=tmp_path)
        assert res.returncode == 0 and "Usage:" in res.stdout, res.stderr


def test_an_import_error_of_a_missing_extra_anywhere_becomes_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI's last line of defence: an optional package imported lazily, wherever, that is not installed."""
    from evalsuite import cli

    @click.command("needs-vllm")
    def needs_vllm() -> None:
        import vllm  # noqa: F401

    monkeypatch.setitem(sys.modules, "vllm", None)
    monkeypatch.setattr(cli._LazyGroup, "get_command", lambda self, ctx, name: needs_vllm)
    with pytest.raises(SystemExit) as exited:
        cli.main(["needs-vllm"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1
    assert err == "evalsuite: error: vllm is needed, which is not installed (evalsuite's [vllm] extra) — " \
                  "fix: pip install 'evalsuite[vllm]'\n"


def test_other_import_errors_are_not_dressed_up_as_missing_extras() -> None:
    assert missing_extra(ModuleNotFoundError("No module named 'numpy'", name="numpy")) is None
    assert missing_extra(ImportError("libcudart.so.12: cannot open shared object file", name="torch")) is None
    found = missing_extra(ModuleNotFoundError("No module named 'trl.trainer'", name="trl.trainer"), "evalsuite train")
    assert isinstance(found, MissingExtra) and isinstance(found, InputError)
    assert str(found) == ("evalsuite train needs trl, which is not installed (evalsuite's [train] extra) — "
                          "fix: pip install 'evalsuite[train]'")


def test_the_extras_map_matches_pyproject() -> None:
    """Every optional dependency of pyproject.toml (but the dev tools) is mapped to the extra that installs it."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    import_name = {"ppi-python": "ppi_py"}  # distributions whose import name differs
    declared = {}
    for extra, requirements in extras.items():
        if extra == "dev":
            continue
        for req in requirements:
            dist = re.match(r"[A-Za-z0-9_.-]+", req)
            assert dist
            declared[import_name.get(dist.group(0), dist.group(0).replace("-", "_"))] = extra
    assert declared == EXTRAS


# --- usage errors --------------------------------------------------------------------------------------------------


def test_export_of_a_missing_run_directory_speaks_evalsuites_format(tmp_path: Path) -> None:
    msg = _one_line(run_cli("export", "--run-dir", "nowhere", "--out", "out", cwd=tmp_path))
    assert "nowhere" in msg and "fix:" in msg
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (("export", "--out", "x"), "Missing option '--run-dir'. — fix: see 'evalsuite export --help'"),
    (("comapre", "sft"), "No such command 'comapre'. — fix: see 'evalsuite --help'"),
    (("agreement", "nofile.jsonl"), "'nofile.jsonl' does not exist. — fix: see 'evalsuite agreement --help'"),
])
def test_usage_errors_are_one_line_exit_2(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    assert expected in _one_line(run_cli(*args, cwd=tmp_path))


def test_no_config_file_says_so_instead_of_listing_no_models(tmp_path: Path) -> None:
    msg = _one_line(run_cli("generate", "sft", cwd=tmp_path))
    assert f"unknown model 'sft': no evalsuite.toml in {tmp_path.resolve()}" in msg or \
        f"unknown model 'sft': no evalsuite.toml in {tmp_path}" in msg, msg
    assert "--config" in msg and "known: none" not in msg


# --- JSONL positions -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lines", "expected"), [
    (['{"a": 1}', '{"b": 2, x}'], "line 2 is not valid JSON (Expecting property name enclosed in double quotes at column 10)"),
    (['{"a": 1, "b": 2 "c": 3}'], "line 1 is not valid JSON (Expecting ',' delimiter at column 17)"),
    (['{"a": 1}', "", '{"a": [1, 2'], "record 2 (line 3) is not valid JSON (Expecting ',' delimiter at the end of the line "
                                       "(column 12): is the line cut short?)"),
    (['{"a": 1}  x'], "line 1 is not valid JSON (Extra data at column 11)"),
])
def test_a_malformed_line_is_reported_at_its_real_column(tmp_path: Path, lines: list[str], expected: str) -> None:
    for ending in ("\n", "\r\n"):
        f = tmp_path / "data.jsonl"
        f.write_bytes(ending.join(lines).encode() + ending.encode())
        with pytest.raises(InputError) as info:
            list(iter_jsonl(f))
        assert str(info.value) == f"{f}: {expected} — fix: write one JSON object per line"


def test_the_cli_reports_the_column_too(tmp_path: Path) -> None:
    (tmp_path / "answers.jsonl").write_text('{"question_id": 1, "choices": [{"turns": ["a"]}] ]\n')
    msg = _one_line(run_cli("import-answers", "answers.jsonl", "--model", "m", "--run-dir", "run", cwd=tmp_path))
    assert "answers.jsonl: line 1 is not valid JSON (Expecting ',' delimiter at column 50)" in msg
