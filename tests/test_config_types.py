"""Every config value is checked against its dataclass field's type when the config loads, from the file and from
``--set`` alike, before any model is called; the configuration reference is generated from the same fields."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import ROOT, run_cli, write_config

from evalsuite.bench import BenchSpec
from evalsuite.config import (
    CheckpointOptions,
    IterateOptions,
    JudgingOptions,
    ModelExtraKeys,
    ModelSpec,
    RunOptions,
    config_reference,
    config_tables,
    load_config,
)
from evalsuite.errors import InputError
from evalsuite.schema import TypeMismatch, check_value, toml_value, type_name
from evalsuite.testing.fake_server import FakeOpenAIServer

# every dataclass a table of evalsuite.toml is read into; ModelSpec's name and extra are no keys
CONFIG_DATACLASSES: list[tuple[type, tuple[str, ...]]] = [
    (BenchSpec, ()), (ModelSpec, ("name", "extra")), (ModelExtraKeys, ()), (JudgingOptions, ()), (RunOptions, ()),
    (CheckpointOptions, ()), (IterateOptions, ()),
]


def _wrong_value(tp: Any) -> Any:
    """A TOML value that a key of type ``tp`` must refuse."""
    for candidate in (7, "lots", True, 1.5, {"a": 1}, [1]):
        try:
            check_value(candidate, tp)
        except TypeMismatch:
            return candidate
    raise AssertionError(f"no wrong value for {tp}")


def _every_key() -> list[tuple[str, str, Any]]:
    out = []
    for table in config_tables():
        path = table.name.replace("<name>", "dpo")
        out += [(path, k.name, k.type) for k in table.keys]
    return out


@pytest.mark.parametrize(("table", "key", "tp"), _every_key(), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_a_value_of_the_wrong_type_is_one_line_naming_file_key_value_and_type(tmp_path: Path, table: str, key: str,
                                                                              tp: Any) -> None:
    wrong = _wrong_value(tp)
    header = f"[{table}]\n{key} = {toml_value(wrong)}\n"
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text(header, encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_config(cfg)
    msg = str(info.value)
    assert msg.startswith(f"{cfg}: {table}.{key} = {toml_value(wrong)} is not a {type_name(tp)}"), msg
    assert "\n" not in msg and "fix:" in msg


def test_the_issues_examples(tmp_path: Path) -> None:
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text('[judge]\nconcurrency = "many"\n', encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(f'{cfg}: judge.concurrency = "many" is not a whole number')):
        load_config(cfg)
    cfg.write_text("[models.dpo]\nmodel = \"dpo\"\n", encoding="utf-8")
    with pytest.raises(InputError, match=re.escape('--set: models.dpo.max_tokens = "lots" is not a whole number')):
        load_config(cfg, ["models.dpo.max_tokens=lots"])


def test_a_whole_number_is_a_number_and_a_boolean_is_not_a_whole_number(tmp_path: Path) -> None:
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text("[models.a]\ntimeout = 30\ntemperature = 0\n[iterate]\nlr = 1\n", encoding="utf-8")
    config = load_config(cfg)
    assert config.models["a"].timeout == 30.0 and isinstance(config.models["a"].timeout, float)
    assert config.models["a"].temperature == 0.0 and isinstance(config.iterate.lr, float)
    cfg.write_text("[models.a]\nmax_tokens = true\n", encoding="utf-8")
    with pytest.raises(InputError, match="max_tokens = true is not a whole number"):
        load_config(cfg)
    cfg.write_text("[judge]\ntemperature = false\n", encoding="utf-8")
    with pytest.raises(InputError, match="temperature = false is not a number"):
        load_config(cfg)


def test_lists_and_tables_are_checked_item_by_item(tmp_path: Path) -> None:
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text('[bench]\ncategories = ["math", 3]\n', encoding="utf-8")
    with pytest.raises(InputError, match=re.escape('bench.categories = ["math", 3] is not a list of strings')):
        load_config(cfg)
    cfg.write_text('[bench]\ncategories = "math, coding"\n', encoding="utf-8")
    assert load_config(cfg).bench.categories == ("math", "coding")
    cfg.write_text("[models]\ndpo = 3\n", encoding="utf-8")
    with pytest.raises(InputError, match=re.escape("models.dpo = 3 is not a table")):
        load_config(cfg)


def test_set_values_are_read_as_toml_then_checked(tmp_path: Path) -> None:
    config = load_config(None, ["judge.temperature=0.5", "judge.model=gpt-4o-mini", 'bench.categories=["math"]',
                                "models.a.enable_lora=true", 'models.a.revision="2024-05-01"', "run.seed=3"])
    assert config.judge.temperature == 0.5 and config.judge.model == "gpt-4o-mini"  # not TOML: taken as a string
    assert config.bench.categories == ("math",) and config.models["a"].enable_lora is True
    assert config.models["a"].revision == "2024-05-01" and config.seed == 3
    # TOML reads 2024-05-01 as a date: the fix says how to pass it as the string the key takes
    with pytest.raises(InputError, match=re.escape("""models.a.revision = 2024-05-01 is not a string — fix: quote it: """
                                                   """--set 'models.a.revision="2024-05-01"'""")):
        load_config(None, ["models.a.revision=2024-05-01"])
    with pytest.raises(InputError, match=re.escape("--set: models.a.enable_lora = \"yes\" is not a boolean")):
        load_config(None, ["models.a.enable_lora=yes"])
    with pytest.raises(InputError, match=re.escape("--set: judge.mode = \"best\" is not one of strict, average, games")):
        load_config(None, ["judge.mode=best"])


def test_a_file_value_is_blamed_on_the_file_and_a_set_value_on_set(tmp_path: Path) -> None:
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text('[judge]\nconcurrency = "many"\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"^--set: judge.concurrency = \"x\""):
        load_config(cfg, ["judge.concurrency=x"])
    # the --set fixed it; another key's mistake still points at the file
    cfg.write_text('[judge]\nconcurrency = 4\ntimeout = "long"\n', encoding="utf-8")
    with pytest.raises(InputError, match=rf"^{re.escape(str(cfg))}: judge.timeout"):
        load_config(cfg, ["judge.concurrency=8"])


def test_a_typo_in_judge_lists_the_judging_keys_too(tmp_path: Path) -> None:
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text('[judge]\nmdoe = "average"\n', encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_config(cfg)
    msg = str(info.value)
    assert "unknown key 'mdoe' in [judge]" in msg
    valid = msg.split("valid keys: ")[1].split(", ")
    assert {"mode", "pairs", "template", "concurrency", "model", "label"} <= set(valid)


def test_run_and_judging_tables_are_read(tmp_path: Path) -> None:
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text('[run]\ndir = "runs/x"\nseed = 7\n[judge]\nmode = "average"\npairs = "all"\n'
                   '[judging]\nmode = "games"\n', encoding="utf-8")
    config = load_config(cfg)
    assert str(config.run_dir) == "runs/x" and config.seed == 7
    assert (config.judging.mode, config.judging.pairs) == ("games", "all")  # [judging] wins over [judge]
    cfg.write_text('[run]\ndirectory = "x"\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"unknown key 'directory' in \[run\] — fix: valid keys: dir, seed"):
        load_config(cfg)


def test_judge_defaults_and_train_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text('[judge]\nmodel = "j"\n[train]\nbackend = "vllm"\nmax_tokens = 64\n', encoding="utf-8")
    config = load_config(cfg)
    assert (config.judge.max_tokens, config.judge.temperature, config.judge.concurrency) == (2048, 0.0, 32)
    assert config.checkpoint_backend == "vllm" and config.checkpoint_options == {"max_tokens": 64}
    cfg.write_text('[train]\nbackend = "openai"\n', encoding="utf-8")
    with pytest.raises(InputError, match="train.backend = \"openai\" is not one of hf, vllm"):
        load_config(cfg)
    cfg.write_text('[train]\nbase_url = "http://x"\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"unknown key 'base_url' in \[train\]"):
        load_config(cfg)


def test_a_bad_value_makes_no_model_call(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths={"sft": 0.0, "dpo": 1.0}) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, ["sft", "dpo"], questions, concurrency="many")
        res = run_cli("compare", "sft", "dpo", "--config", str(cfg), cwd=tmp_path)
        assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
        assert 'judge.concurrency = "many" is not a whole number' in res.stderr
        res = run_cli("compare", "sft", "dpo", "--config", str(cfg), "--set", "judge.concurrency=4",
                      "--set", "models.dpo.max_tokens=lots", cwd=tmp_path)
        assert res.returncode == 2 and '--set: models.dpo.max_tokens = "lots"' in res.stderr, res.stderr
        assert srv.stats()["total_requests"] == 0


# --- the configuration reference ----------------------------------------------------------------------------------


def test_the_reference_covers_every_field_of_every_config_dataclass() -> None:
    reference = config_reference()
    sections = {m.group(1): m.group(2) for m in re.finditer(r"^## `\[([^\]]+)\]`\n(.*?)(?=^## |\Z)", reference, re.S | re.M)}
    assert set(sections) == {t.name for t in config_tables()}
    documented_classes = set()
    for cls, not_keys in CONFIG_DATACLASSES:
        for f in dataclasses.fields(cls):
            if f.name in not_keys:
                continue
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
            rows = [s for s in sections.values() if re.search(rf"^\| `{f.name}` \|", s, re.M)]
            assert rows, f"{cls.__name__}.{f.name} is missing from the reference"
            documented_classes.add(cls)
    assert documented_classes == {cls for cls, _ in CONFIG_DATACLASSES}
    # a row carries the type, the default and the help
    judge = sections["judge"]
    assert re.search(r"^\| `concurrency` \| whole number \| `32` \| Requests in flight at once\. \|$", judge, re.M)
    assert re.search(r"^\| `mode` \| string \| `\"strict\"` \| .*One of `strict`, `average`, `games`\. \|$", judge, re.M)


def test_every_table_the_loader_accepts_is_in_the_reference(tmp_path: Path) -> None:
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text("[nonsense]\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_config(cfg)
    accepted = set(str(info.value).split("valid sections: ")[1].split(", "))
    assert accepted == {t.name.split(".")[0] for t in config_tables()}


def _hook() -> Any:
    spec = importlib.util.spec_from_file_location("config_reference_hook", ROOT / "docs" / "hooks" / "config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_hook_fills_the_configuration_page() -> None:
    hook = _hook()
    page_text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    page = SimpleNamespace(file=SimpleNamespace(src_uri="configuration.md"))
    rendered = hook.on_page_markdown(page_text, page=page, config={}, files=[])
    assert hook.MARKER not in rendered and config_reference(heading_level=3) in rendered
    other = SimpleNamespace(file=SimpleNamespace(src_uri="index.md"))
    assert hook.on_page_markdown("x <!-- config-reference -->", page=other, config={}, files=[]).endswith("reference -->")


def test_the_configuration_pages_example_loads(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    block = re.search(r"## A small project\s+```toml\n(.*?)```", text, re.S)
    assert block
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text(block.group(1), encoding="utf-8")
    config = load_config(cfg)
    assert set(config.models) == {"sft", "dpo"} and config.judge.concurrency == 32 and config.judging.mode == "strict"


def test_mkdocs_builds_the_page_with_the_hook(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("no mkdocs executable beside this interpreter")
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "configuration.md", tmp_path / "docs" / "configuration.md")
    (tmp_path / "mkdocs.yml").write_text(
        f"site_name: t\nstrict: true\nhooks:\n  - {ROOT / 'docs' / 'hooks' / 'config_reference.py'}\n"
        "nav:\n  - configuration.md\n", encoding="utf-8")
    proc = subprocess.run([mkdocs, "build", "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "site" / "configuration" / "index.html").read_text(encoding="utf-8")
    assert "<code>tensor_parallel_size</code>" in html and "&lt;!-- config-reference --&gt;" not in html
