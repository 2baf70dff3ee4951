"""The CLI only wires: flags become fields of the typed config (never TOML text parsed again), and the commands hand
their work to core calls whose mistakes come back as one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

from evalsuite.cli._run import build_config, judging_flags


def test_flags_set_config_fields_directly(tmp_path: Path) -> None:
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text('[bench]\npath = "from_file.jsonl"\nlimit = 5\n\n[judging]\nmode = "average"\n', encoding="utf-8")
    # characters that TOML text would have to escape reach the config as they are
    odd = str(tmp_path / 'we"ird\\dir' / "q.jsonl")
    config = build_config(str(cfg), "runs/x", None, odd, 2, "math, coding", ["judge.concurrency=7"])
    assert (config.bench.path, config.bench.limit, config.bench.categories) == (odd, 2, ("math", "coding"))
    assert config.judge.concurrency == 7 and str(config.run_dir) == "runs/x"
    assert config.judging.mode == "average"  # no flag: the file's value stays
    flagged = judging_flags(config, "strict", "all", 'my "template".j2')
    assert (flagged.judging.mode, flagged.judging.pairs, flagged.judging.template) == ("strict", "all", 'my "template".j2')
    # --bench names a bundled set: the file's path no longer applies
    bundled = build_config(str(cfg), None, "mtb-style", None, None, None, [])
    assert (bundled.bench.name, bundled.bench.path, bundled.bench.limit) == ("mtb-style", None, 5)


def test_import_answers_of_an_unknown_shape_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text(json.dumps({"id": 1, "text": "hi"}) + "\n")
    res = run_cli("import-answers", "x.jsonl", "--run-dir", "run", cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "x.jsonl" in res.stderr and "not an answer file I know" in res.stderr and "fix:" in res.stderr
    assert not (tmp_path / "run").exists()  # nothing read, nothing written


def test_alpaca_eval_output_without_output_names_the_record(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(json.dumps([{"instruction": "a", "output": "x", "generator": "m"},
                                                 {"instruction": "b", "generator": "m"}]))
    res = run_cli("import-answers", "m.json", "--run-dir", "run", cwd=tmp_path)
    assert res.returncode == 2 and "m.json record 1: no output" in res.stderr


def test_export_of_a_folder_without_a_run_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    res = run_cli("export", "--run-dir", "empty", "--format", "alpaca-eval", "--out", "ae", cwd=tmp_path)
    assert res.returncode == 2 and "no run store" in res.stderr and not (tmp_path / "empty" / "evalsuite.sqlite").exists()
