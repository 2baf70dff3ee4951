"""Judge panels, the config and judging half: ``[judges.<name>]`` tables, ``[judging] panel`` and ``--judges``, the
one-line errors of a bad panel, every member judging both orders (a new member asks only its own calls), a failing
member that does not stop the others, and workflows that take one judge refusing a panel. Over loopback HTTP, through
the real ``openai`` client and the fake server; the CLI runs in process."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, write_questions

from evalsuite import api
from evalsuite.cli import main
from evalsuite.config import JUDGE_DEFAULTS, config_reference, load_config
from evalsuite.errors import InputError
from evalsuite.report.results import StatsOptions
from evalsuite.testing.fake_server import FakeOpenAIServer

STRENGTHS = {"sft": 0.0, "dpo": 1.0}
N_Q = 8
CALLS_PER_JUDGE = 1 * N_Q * 2 * 2  # one candidate, two turns, two orders
FAST = ("--quiet", "--resamples", "300", "--bt-rounds", "30")


def _toml(value: Any) -> str:
    return json.dumps(value)  # strings, numbers and lists of strings read the same in TOML


def write_panel_config(path: Path, base_url: str, questions: Path, judges: dict[str, dict[str, Any]], *,
                       judging: dict[str, Any] | None = None, judge: dict[str, Any] | None = None) -> Path:
    """Answer models ``sft`` and ``dpo`` on ``base_url``, one ``[judges.<name>]`` table per entry of ``judges``
    (``model`` and ``base_url`` default to the fake server's judge ``judge-<name>``), optional [judging] and [judge]."""
    lines = ["[bench]", f"path = {_toml(str(questions))}", ""]
    for m in STRENGTHS:
        lines += [f"[models.{m}]", f"base_url = {_toml(base_url)}", f"model = {_toml(m)}", "concurrency = 8", ""]
    for table, keys in (("judging", judging), ("judge", judge)):
        if keys:
            lines += [f"[{table}]"] + [f"{k} = {_toml(v)}" for k, v in keys.items()] + [""]
    for name, keys in judges.items():
        keys = {"base_url": base_url, "model": f"judge-{name}", "concurrency": 8, **keys}
        lines += [f"[judges.{name}]"] + [f"{k} = {_toml(v)}" for k, v in keys.items()] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cwd: Path, *args: str) -> tuple[int, str, str]:
    """Run ``evalsuite ARGS`` in process from ``cwd``: (exit code, stdout, stderr)."""
    monkeypatch.chdir(cwd)
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def questions(tmp_path: Path) -> Path:
    return write_questions(tmp_path / "questions.jsonl", n=N_Q)


# --- the config -------------------------------------------------------------------------------------------------------


def test_judges_tables_are_the_panel_in_file_order_with_the_judge_defaults(tmp_path: Path, questions: Path) -> None:
    cfg = write_panel_config(tmp_path / "evalsuite.toml", "http://127.0.0.1:9/v1", questions,
                             {"b": {"weight": 2}, "a": {"temperature": 0.3}}, judging={"mode": "average"},
                             judge={"template": "pairwise"})
    config = load_config(cfg)
    assert list(config.judges) == ["b", "a"] == list(config.defined_judges)
    assert config.judge is config.judges["b"]  # single-judge code keeps working on the first member
    b, a = config.judges["b"], config.judges["a"]
    assert (b.name, b.model, b.extra) == ("b", "judge-b", {"weight": 2.0})
    assert (b.max_tokens, b.temperature) == (JUDGE_DEFAULTS["max_tokens"], JUDGE_DEFAULTS["temperature"])
    assert a.temperature == 0.3 and a.extra == {}
    # judging keys, from [judging] or [judge], apply to every member
    assert (config.judging.mode, config.judging.template, config.judging.panel) == ("average", "pairwise", ())


def test_judging_panel_and_judges_pick_members_in_the_order_named(tmp_path: Path, questions: Path) -> None:
    cfg = write_panel_config(tmp_path / "evalsuite.toml", "http://127.0.0.1:9/v1", questions, {"a": {}, "b": {}, "c": {}},
                             judging={"panel": ["c", "a"]})
    config = load_config(cfg)
    assert list(config.judges) == ["c", "a"] and config.judge.name == "c"
    assert list(config.defined_judges) == ["a", "b", "c"]
    assert list(load_config(cfg, ["judging.panel=b,a"]).judges) == ["b", "a"]  # --set takes a comma list too
    picked = config.with_judges(["b"])
    assert list(picked.judges) == ["b"] and picked.judge.name == "b"


def test_a_judge_table_alone_is_the_one_judge_case_as_before(tmp_path: Path, questions: Path) -> None:
    cfg = write_panel_config(tmp_path / "evalsuite.toml", "http://127.0.0.1:9/v1", questions, {},
                             judge={"base_url": "http://127.0.0.1:9/v1", "model": "judge", "mode": "average"})
    config = load_config(cfg)
    assert config.judges == {} and config.defined_judges == {}
    assert (config.judge.name, config.judge.model, config.judge.temperature) == ("judge", "judge", 0.0)
    assert config.single_judge("grade") is config.judge


def test_the_reference_documents_the_judges_table() -> None:
    ref = config_reference()
    section = ref.split("## `[judges.<name>]`", 1)[1].split("\n## ", 1)[0]
    assert "| `weight` | number | unset |" in section
    assert "| `concurrency` | whole number | `32` |" in section  # the judge's defaults
    assert "| `mode` |" not in section  # judging keys stay in [judging]
    assert "| `panel` |" in ref.split("## `[judging]`", 1)[1].split("\n## ", 1)[0]


def test_the_configuration_pages_panel_example_loads(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    block = re.search(r"## A judge panel.*?```toml\n(.*?)```", text, re.S)
    assert block
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text(block.group(1), encoding="utf-8")
    config = load_config(cfg)
    assert list(config.judges) == ["gpt4o", "llama"] and list(config.defined_judges) == ["gpt4o", "llama", "qwen"]
    assert config.judges["llama"].extra == {"weight": 0.5}


BAD_PANELS: list[tuple[str, dict[str, dict[str, Any]], dict[str, Any], dict[str, Any], tuple[str, ...], list[str]]] = [
    # id, judges, [judging], [judge], extra args, what the one line says
    ("undefined member", {"a": {}, "b": {}}, {"panel": ["a", "zed"]}, {}, (),
     ["judging.panel names judge 'zed', which has no [judges.zed] table", "defined judges: a, b"]),
    ("duplicate vote", {"a": {"model": "same"}, "b": {"model": "same"}}, {}, {}, (),
     ["judges 'a' and 'b' are the same judge", "a duplicate vote", "fix: remove [judges.b]"]),
    ("shared label", {"a": {"label": "gpt"}, "b": {"label": "gpt"}}, {}, {}, (),
     ["judges 'a' and 'b' have the same judge label 'gpt'", 'fix: set label = "b" in [judges.b]']),
    ("judging key in a member", {"a": {"mode": "average"}, "b": {}}, {}, {}, (),
     ["judges.a.mode is a judging key", "fix: move mode to [judging]"]),
    ("[judge] model keys beside [judges]", {"a": {}, "b": {}}, {}, {"model": "judge"}, (),
     ["[judge] sets model keys (model) beside [judges.<name>] tables", "use [judges.<name>] tables for every member"]),
    ("--judges names an unknown member", {"a": {}, "b": {}}, {}, {}, ("--judges", "a,zed"),
     ["--judges names judge 'zed'", "defined judges: a, b"]),
    ("--batch with a panel", {"a": {}, "b": {}}, {}, {}, ("--batch",),
     ["--batch sends one judge's calls, but the panel has 2 (a, b)", "--judges NAME"]),
    ("--sequential with a panel", {"a": {}, "b": {}}, {}, {}, ("--sequential",),
     ["compare --sequential takes one judge, but the panel has 2 (a, b)", "fix: pick one with --judges a, or use [judge]"]),
]


@pytest.mark.parametrize(("judges", "judging", "judge", "args", "says"), [c[1:] for c in BAD_PANELS],
                         ids=[c[0] for c in BAD_PANELS])
def test_a_bad_panel_is_one_line_and_exit_2_before_any_call(tmp_path: Path, questions: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str], judges: dict[str, dict[str, Any]],
                                                            judging: dict[str, Any], judge: dict[str, Any],
                                                            args: tuple[str, ...], says: list[str]) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, judges=("judge-a", "judge-b")) as srv:
        write_panel_config(tmp_path / "evalsuite.toml", srv.base_url, questions, judges, judging=judging, judge=judge)
        code, _, err = cli(monkeypatch, capsys, tmp_path, "compare", "sft", "dpo", *args, *FAST)
        assert srv.stats()["total_requests"] == 0
    assert code == 2, err
    assert err.startswith("evalsuite: error: ") and err.count("\n") == 1, err
    for part in says:
        assert part in err, err


@pytest.mark.parametrize(("args", "says"), [
    (("grade", "sft"), "grade takes one judge, but the panel has 2 (a, b) — fix: pick one with --judges a, or use [judge]"),
    (("gate", "--run-dir", "run", "--baseline", "sft", "--candidate", "dpo", "--sequential", "--config", "evalsuite.toml"),
     "gate --sequential takes one judge, but the panel has 2 (a, b) — fix: pick one with --set 'judging.panel=[\"a\"]'"),
])
def test_workflows_of_one_judge_refuse_a_panel(tmp_path: Path, questions: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str], args: tuple[str, ...], says: str) -> None:
    write_panel_config(tmp_path / "evalsuite.toml", closed_port_url(), questions, {"a": {}, "b": {}})
    code, _, err = cli(monkeypatch, capsys, tmp_path, *args)
    assert code == 2 and err.count("\n") == 1 and says in err, err


# --- judging with a panel ---------------------------------------------------------------------------------------------


def _results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text(encoding="utf-8"))


def test_every_member_judges_both_orders_and_a_new_member_asks_only_its_own_calls(
        tmp_path: Path, questions: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, judges=("judge-a", "judge-b", "judge-c")) as srv:
        cfg = write_panel_config(tmp_path / "evalsuite.toml", srv.base_url, questions, {"a": {}, "b": {"weight": 1.0}})
        code, out, err = cli(monkeypatch, capsys, tmp_path, "compare", "sft", "dpo", "--run-dir", "run", *FAST)
        assert code == 0, err
        assert srv.stats()["by_model"] == {"sft": 2 * N_Q, "dpo": 2 * N_Q, "judge-a": CALLS_PER_JUDGE,
                                           "judge-b": CALLS_PER_JUDGE}
        results = _results(tmp_path / "run")
        assert results["judge"] == "a+b"
        assert results["judging"]["requested"] == 2 * CALLS_PER_JUDGE
        assert [j["name"] for j in results["judges"]] == ["a", "b"]
        assert [j["label"] for j in results["judges"]] == ["judge-a", "judge-b"]
        assert "warning" not in err

        # a third member: only its calls are asked; the others' are in the store
        srv.reset_stats()
        write_panel_config(cfg, srv.base_url, questions, {"a": {}, "b": {"weight": 1.0}, "c": {}})
        code, _, err = cli(monkeypatch, capsys, tmp_path, "compare", "sft", "dpo", "--run-dir", "run", *FAST)
        assert code == 0, err
        assert srv.stats()["by_model"] == {"judge-c": CALLS_PER_JUDGE}
        assert [j["name"] for j in _results(tmp_path / "run")["judges"]] == ["a", "b", "c"]

        # --judges picks members (judge: no generation); one member is the one-judge case, all of it stored
        srv.reset_stats()
        code, _, err = cli(monkeypatch, capsys, tmp_path, "judge", "sft", "dpo", "--judges", "c", "--run-dir", "run", *FAST)
        assert code == 0, err
        assert srv.stats()["total_requests"] == 0
        one = _results(tmp_path / "run")
        assert one["judge"] == "judge-c" and not one.get("judges")
        # the Python API picks members the same way
        two = api.compare("sft", ["dpo"], config=cfg, run_dir=tmp_path / "run", judges=["c", "a"],
                          stats=StatsOptions(n_resamples=300, bt_rounds=30))
        assert srv.stats()["total_requests"] == 0
        assert two.info.judge == "c+a" and [j.name for j in two.judges] == ["c", "a"]

    # calibrate corrects one judge's verdicts: a run judged by a panel is refused, saying how to pick one
    (tmp_path / "human.jsonl").write_text("", encoding="utf-8")
    code, _, err = cli(monkeypatch, capsys, tmp_path, "calibrate", "--human", "human.jsonl", "--run-dir", "run")
    assert code == 2 and err.count("\n") == 1, err
    assert "calibrate takes one judge, but the panel has 3 (judge-a, judge-b, judge-c)" in err and "--judge" in err


def test_a_failing_member_does_not_stop_the_others(tmp_path: Path, questions: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    down = closed_port_url()
    with FakeOpenAIServer(strengths=STRENGTHS, judges=("judge-a", "judge-b")) as srv:
        write_panel_config(tmp_path / "evalsuite.toml", srv.base_url, questions,
                           {"a": {}, "b": {}, "down": {"base_url": down, "max_retries": 0}})
        code, _, err = cli(monkeypatch, capsys, tmp_path, "compare", "sft", "dpo", "--run-dir", "run", *FAST)
        assert code == 0, err
        assert srv.stats()["by_model"]["judge-a"] == srv.stats()["by_model"]["judge-b"] == CALLS_PER_JUDGE
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: judge down failed, the panel went on without it: ")
    assert "cannot reach" in warnings[0]
    results = _results(tmp_path / "run")
    assert results["judge"] == "a+b+down"
    # the failed member's calls are counted as asked and failed; nothing of it is stored, so a re-run asks again
    assert results["judging"] == {"judge": "a+b+down", "requested": 3 * CALLS_PER_JUDGE, "cached": 0,
                                          "errors": CALLS_PER_JUDGE, "skipped_missing": 0}
    assert results["comparisons"][0]["n"] > 0
    down_member = results["judges"][2]
    assert (down_member["name"], down_member["n_matches"], down_member["weight"]) == ("down", 0, 0.0)


def test_a_panel_whose_every_member_fails_stops_the_run(tmp_path: Path, questions: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    down = closed_port_url()
    with FakeOpenAIServer(strengths=STRENGTHS, judges=()) as srv:
        write_panel_config(tmp_path / "evalsuite.toml", srv.base_url, questions,
                           {"a": {"base_url": down}, "b": {"base_url": down + "/", "model": "other"}})
        code, _, err = cli(monkeypatch, capsys, tmp_path, "compare", "sft", "dpo", "--run-dir", "run", *FAST)
    last = err.splitlines()[-1]  # after the progress lines
    assert code == 2 and last.startswith("evalsuite: error: cannot reach"), err
    assert not (tmp_path / "run" / "results.json").exists()


def test_one_judge_configs_judge_and_write_as_before(tmp_path: Path, questions: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, judges=("judge",)) as srv:
        write_panel_config(tmp_path / "evalsuite.toml", srv.base_url, questions, {},
                           judge={"base_url": srv.base_url, "model": "judge", "concurrency": 8})
        code, _, err = cli(monkeypatch, capsys, tmp_path, "compare", "sft", "dpo", "--run-dir", "run", *FAST)
        assert code == 0, err
        assert srv.stats()["by_model"]["judge"] == CALLS_PER_JUDGE
    results = _results(tmp_path / "run")
    assert results["judge"] == "judge" and not results.get("judges")
    assert results["judging"] == {"judge": "judge", "requested": CALLS_PER_JUDGE, "cached": 0, "errors": 0,
                                          "skipped_missing": 0}
    with pytest.raises(InputError, match="no \\[judges.<name>\\] table is defined"):
        load_config(tmp_path / "evalsuite.toml").with_judges(["a"])


@pytest.mark.parametrize("command", [["label", "p.jsonl", "--policy", "sft", "--out", "pairs.jsonl"],
                                     ["iterate"]])
def test_label_and_iterate_refuse_a_panel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    questions = write_questions(tmp_path / "q.jsonl", 2)
    (tmp_path / "p.jsonl").write_text('{"question_id": "p1", "turns": ["Say hi."]}\n', encoding="utf-8")
    cfg = write_panel_config(tmp_path / "evalsuite.toml", "http://127.0.0.1:9/v1", questions, {"a": {}, "b": {}})
    code, _, err = cli(monkeypatch, capsys, tmp_path, *command, "--config", str(cfg))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--set 'judging.panel=" in err
