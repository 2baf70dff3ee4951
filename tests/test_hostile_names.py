"""Names that come from files are untrusted: every reader refuses a hostile model, judge or template name at the door
(one line naming the file and record, exit 2), and every writer that names a file after a name stays inside the
folder the user named, even when a run store already holds such a name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_cli, write_config, write_questions

from evalsuite.config import load_config
from evalsuite.errors import InputError
from evalsuite.interop.alpaca_eval import read_alpaca_eval, read_alpaca_eval_outputs
from evalsuite.interop.answers import read_answers
from evalsuite.interop.arena_hard import read_arena_hard_answers
from evalsuite.interop.export import export_run
from evalsuite.interop.fastchat import read_fastchat_answers, read_fastchat_pair_judgments
from evalsuite.interop.votes import read_votes
from evalsuite.manifest import read_manifest
from evalsuite.records import Answer, Judgment, Question
from evalsuite.store import RunStore
from evalsuite.store.atomic import atomic_write_bytes, atomic_write_text
from evalsuite.store.names import (
    MAX_NAME_LENGTH,
    check_judge_name,
    check_model_name,
    path_inside,
    safe_file_name,
)
from evalsuite.testing.fake_server import FakeOpenAIServer

# Each of these, used as a file name, writes outside its folder, writes somewhere odd, or prints as something else.
HOSTILE = [
    "..",
    ".",
    "../../x",
    "../../../somewhere/pwned",
    "/tmp/evalsuite-pwned",
    "a\\..\\..\\b",
    "a\x00b",
    "a\nb",
    "a\x1b[31mb",
    "\u202egnp.exe",  # right-to-left override: prints as "exe.png"
    "x" * (MAX_NAME_LENGTH + 1),
]
# A judge name may be a hub id ("org/model"), but never a path that climbs or is absolute.
HOSTILE_JUDGES = [n for n in HOSTILE if n not in ("../../x", "../../../somewhere/pwned")] + [
    "../x", "org/../../x", "org//x", "org/./x",
]
FINE_MODELS = ["sft", "dpo-b0.1", "gpt-4", "vicuna-13b-v1.3", "llama3.1:8b", "Meta-Llama-3-70B-Instruct",
               "gpt4_1106_preview", "模型-7b", "x" * MAX_NAME_LENGTH]


def _ids(names: list[str]) -> list[str]:
    return [ascii(n)[:30] for n in names]


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# --- the rules ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE, ids=_ids(HOSTILE))
def test_a_hostile_model_name_is_refused_naming_where_it_was_read(name: str) -> None:
    with pytest.raises(InputError, match="^answers.jsonl:7: model name") as info:
        check_model_name(name, "answers.jsonl:7")
    assert "\n" not in str(info.value)  # one line, even for a name holding a newline


@pytest.mark.parametrize("name", HOSTILE_JUDGES, ids=_ids(HOSTILE_JUDGES))
def test_a_hostile_judge_name_is_refused(name: str) -> None:
    with pytest.raises(InputError, match="judge name"):
        check_judge_name(name, "gpt-4_pair.jsonl:1")


@pytest.mark.parametrize("name", FINE_MODELS, ids=_ids(FINE_MODELS))
def test_ordinary_names_pass_unchanged(name: str) -> None:
    assert check_model_name(name, "x") == name
    assert check_judge_name(name, "x") == name
    assert check_judge_name("Qwen/Qwen2.5-7B-Instruct", "x") == "Qwen/Qwen2.5-7B-Instruct"


@pytest.mark.parametrize("name", HOSTILE + HOSTILE_JUDGES + FINE_MODELS + ["Qwen/Qwen2.5-7B", "a_b", "a/b", "é" * 200],
                         ids=_ids(HOSTILE + HOSTILE_JUDGES + FINE_MODELS + ["Qwen/Qwen2.5-7B", "a_b", "a/b", "é" * 200]))
def test_safe_file_name_is_one_plain_file_name_inside_its_folder(tmp_path: Path, name: str) -> None:
    stem = safe_file_name(name)
    assert stem and "/" not in stem and "\\" not in stem and "\x00" not in stem and not stem.startswith(".")
    assert len((stem + "_pair.jsonl").encode("utf-8")) < 255
    assert path_inside(tmp_path, stem + ".jsonl").parent == tmp_path.resolve()
    (tmp_path / (stem + ".jsonl")).write_text("x")  # the file system takes it


def test_safe_file_name_keeps_plain_names_and_never_merges_two_names() -> None:
    assert [safe_file_name(n) for n in ("sft", "dpo-b0.1", "gpt-4")] == ["sft", "dpo-b0.1", "gpt-4"]
    names = ["a/b", "a_b", "a:b", "a b", "x" * 300, "x" * 301]
    assert len({safe_file_name(n) for n in names}) == len(names)


def test_path_inside_follows_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "out"
    root.mkdir()
    (root / "model_answer").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InputError, match="outside"):
        path_inside(root, "model_answer/sft.jsonl")
    with pytest.raises(InputError, match="outside"):
        path_inside(root, "/etc/passwd")
    assert path_inside(root, "a/../b.jsonl") == root.resolve() / "b.jsonl"


# --- readers: refused at the door, with the file and the record ----------------------------------------------------


def _fastchat_answers(path: Path, model_id: str, *, line: int = 2) -> Path:
    rows = [{"question_id": i, "model_id": "ok" if i != line else model_id, "choices": [{"index": 0, "turns": ["hi"]}]}
            for i in range(1, 4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", HOSTILE, ids=_ids(HOSTILE))
def test_answer_files_refuse_a_hostile_model_name(tmp_path: Path, name: str) -> None:
    fastchat = _fastchat_answers(tmp_path / "fc.jsonl", name)
    with pytest.raises(InputError, match=rf"^{fastchat}:2: model name"):
        read_fastchat_answers(fastchat)
    arena = tmp_path / "ah.jsonl"
    arena.write_text(json.dumps({"uid": "u1", "model": name, "messages": [{"role": "user", "content": "q"},
                                                                           {"role": "assistant", "content": "a"}]}) + "\n")
    with pytest.raises(InputError, match=rf"^{arena}:1: model name"):
        read_arena_hard_answers(arena)
    alpaca = tmp_path / "model_outputs.json"
    alpaca.write_text(json.dumps([{"instruction": "i", "output": "o", "generator": name}]))
    with pytest.raises(InputError, match=rf"^{alpaca} record 0: model name"):
        read_alpaca_eval_outputs(alpaca)
    with pytest.raises(InputError, match="^--model: model name"):  # the rename flag is checked too
        read_answers(_fastchat_answers(tmp_path / "ok.jsonl", "ok"), model=name)


@pytest.mark.parametrize("name", HOSTILE, ids=_ids(HOSTILE))
def test_judgment_and_vote_files_refuse_a_hostile_model_name(tmp_path: Path, name: str) -> None:
    pair = tmp_path / "gpt-4_pair.jsonl"
    pair.write_text(json.dumps({"question_id": 81, "model_1": "sft", "model_2": name, "g1_winner": "model_1",
                                "g2_winner": "model_2", "judge": ["gpt-4", "pair-v2"], "turn": 1}) + "\n")
    with pytest.raises(InputError, match=rf"^{pair}:1: model name"):
        read_fastchat_pair_judgments(pair)
    with pytest.raises(InputError, match="model name"):
        read_votes(pair)
    annotations = tmp_path / "annotations.json"
    annotations.write_text(json.dumps([{"instruction": "i", "generator_1": "gpt4", "generator_2": name,
                                        "preference": 2}]))
    with pytest.raises(InputError, match=rf"^{annotations} record 0: model name"):
        read_alpaca_eval(annotations)
    votes = tmp_path / "human.jsonl"
    votes.write_text(json.dumps({"question_id": 1, "model_a": name, "model_b": "sft", "winner": "model_a",
                                 "judge": "author_0", "turn": 1}) + "\n")
    with pytest.raises(InputError, match="model name"):
        read_votes(votes)


@pytest.mark.parametrize("name", HOSTILE_JUDGES, ids=_ids(HOSTILE_JUDGES))
def test_judgment_files_refuse_a_hostile_judge_or_template_name(tmp_path: Path, name: str) -> None:
    pair = tmp_path / "pair.jsonl"
    base = {"question_id": 81, "model_1": "sft", "model_2": "dpo", "g1_winner": "model_1", "g2_winner": "model_2"}
    for judge, what in (([name, "pair-v2"], "judge name"), (["gpt-4", name], "template name")):
        pair.write_text(json.dumps({**base, "judge": judge}) + "\n")
        with pytest.raises(InputError, match=rf"^{pair}:1: {what}"):
            read_fastchat_pair_judgments(pair)


def test_the_config_and_the_manifest_refuse_a_hostile_model_name(tmp_path: Path) -> None:
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text('[models."../../x"]\nbackend = "openai"\nmodel = "m"\n')
    with pytest.raises(InputError, match=rf"^{cfg}: model name '\.\./\.\./x'"):
        load_config(cfg)
    cfg.write_text('[iterate]\nbaseline = "../sft"\n')
    with pytest.raises(InputError, match="model name '../sft'"):
        load_config(cfg)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"version": 1, "checkpoints": [
        {"name": "dpo-b0.1", "variant": "dpo", "path": "dpo-b0.1"},
        {"name": "../../evil", "variant": "dpo", "path": "x"}]}))
    with pytest.raises(InputError, match=rf"^{manifest} entry 2: model name"):
        read_manifest(manifest)


# --- the issue's case, end to end ----------------------------------------------------------------------------------


def test_import_answers_refuses_the_issue_model_id_and_export_cannot_escape(tmp_path: Path) -> None:
    answers = _fastchat_answers(tmp_path / "downloaded.jsonl", "../../../somewhere/pwned", line=3)
    res = run_cli("import-answers", str(answers), "--run-dir", "run", cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{answers}:3: model name '../../../somewhere/pwned'" in lines[0], res.stderr
    assert "--model" in lines[0]  # the fix: rename on import
    with RunStore(tmp_path / "run") as store:
        assert store.models() == []  # nothing of the file was stored

    # A store that already holds hostile names (an older version, a crafted database): export stays inside --out.
    with RunStore(tmp_path / "old") as store:
        store.put_questions([Question("1", "writing", ("q",))])
        store.put_answers([Answer(model=n, question_id="1", turns=("a",), backend="import") for n in HOSTILE])
        store.put_judgments([Judgment(judge=j, template="pair-v2", template_hash="h", question_id="1", turn=1,
                                      model_a=HOSTILE[2], model_b=HOSTILE[3], raw="[[A]]", verdict="A")
                             for j in ("../../../pwned-judge", "/tmp/evalsuite-pwned-judge")])
    for fmt in ("fastchat", "alpaca-eval"):
        res = run_cli("export", "--run-dir", "old", "--format", fmt, "--out", f"out/{fmt}", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    inside = _files_under(tmp_path / "out")
    assert len(inside) == len(HOSTILE) * 2 + 2  # every model in both formats, one pair file per judge
    everything = _files_under(tmp_path) - inside
    assert everything == {answers} | _files_under(tmp_path / "run") | _files_under(tmp_path / "old")
    assert not Path("/tmp/evalsuite-pwned.jsonl").exists() and not Path("/tmp/evalsuite-pwned-judge_pair.jsonl").exists()
    exported = {json.loads(p.read_text().splitlines()[0])["model_id"]
                for p in (tmp_path / "out" / "fastchat" / "model_answer").iterdir()}
    assert exported == set(HOSTILE)  # the names themselves travel unchanged inside the files


def test_export_refuses_an_out_folder_whose_subfolder_links_outside(tmp_path: Path) -> None:
    with RunStore(tmp_path / "run") as store:
        store.put_questions([Question("1", "writing", ("q",))])
        store.put_answers([Answer(model="sft", question_id="1", turns=("a",), backend="import")])
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model_answer").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(InputError, match="outside"):
        export_run(tmp_path / "run", tmp_path / "out", "fastchat")
    assert not any((tmp_path / "elsewhere").iterdir())


@pytest.mark.parametrize("verb", ["compare", "label"])
def test_a_hostile_config_model_name_fails_before_any_model_call_or_write(tmp_path: Path, verb: str) -> None:
    questions = write_questions(tmp_path / "questions.jsonl", n=2)
    args = {"compare": ["compare", "sft", "../../x", "--run-dir", "run"],
            "label": ["label", str(questions), "--policy", "../../x", "--out", "prefs.jsonl", "--run-dir", "run"]}[verb]
    with FakeOpenAIServer(strengths={"sft": 0.0}) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, ["sft"], questions)
        cfg.write_text(cfg.read_text() + f'\n[models."../../x"]\nbackend = "openai"\nbase_url = "{srv.base_url}"\n')
        before = _files_under(tmp_path)
        res = run_cli(*args, "--config", str(cfg), "--quiet", cwd=tmp_path)
        assert srv.stats()["total_requests"] == 0
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert f"{cfg}: model name '../../x'" in res.stderr
    assert _files_under(tmp_path) == before  # no run store, no preference file


# --- the other writers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", HOSTILE + ["Qwen/Qwen2.5-7B", ""], ids=_ids(HOSTILE + ["Qwen/Qwen2.5-7B", ""]))
def test_batch_input_files_stay_in_the_batch_folder(tmp_path: Path, target: str) -> None:
    from evalsuite.backends.batch import BATCH_DIR, _write_input

    path, sha = _write_input(tmp_path / "run", target, ['{"custom_id": "k"}'])
    assert path.parent == (tmp_path / "run" / BATCH_DIR).resolve()
    assert path.read_text() == '{"custom_id": "k"}\n' and len(sha) == 64
    assert _files_under(tmp_path) == {path}


def test_checkpoint_folders_are_plain_names_inside_out() -> None:
    # train names a checkpoint folder checkpoint_name(variant, beta) and writes it through path_inside(out, name):
    # every registered variant at any beta is already a plain file name, so nothing is renamed.
    from evalsuite.manifest import checkpoint_name
    from evalsuite.trainers._variants import VARIANTS

    for variant in VARIANTS:
        for beta in (None, 0.01, 0.1, 2.0, 2.5e-5, 10.0):
            name = checkpoint_name(variant, beta)
            assert safe_file_name(name) == name
            assert path_inside("/ckpt", name) == Path("/ckpt").resolve() / name


def test_the_viewer_of_a_run_with_hostile_names_writes_one_file_in_the_run(tmp_path: Path) -> None:
    from evalsuite.judge.swap import build_matches
    from evalsuite.report.build import build_results, orient_to
    from evalsuite.report.html import VIEWER_FILE, write_viewer
    from evalsuite.report.results import StatsOptions

    run, cand, judge = tmp_path / "run", "../../../cand</script>", "../../judge"
    judgments = [Judgment(judge, "pair-v2", "h", "1", 1, a, b, "[[A]]", "A")
                 for a, b in ((cand, "sft"), ("sft", cand))]
    with RunStore(run) as store:
        store.put_questions([Question("1", "writing", ("q",))])
        store.put_answers([Answer(model=m, question_id="1", turns=("a",), backend="import") for m in ("sft", cand)])
        store.put_judgments(judgments)
    matches = build_matches(judgments, {"1": "writing"}, "strict", orient_to("sft", [cand]))
    results = build_results(matches, baseline="sft", candidates=[cand], lengths={},
                            options=StatsOptions(n_resamples=50, bt_rounds=5), meta={"judge": judge})
    before = _files_under(tmp_path)
    path = write_viewer(run, results, plots=False)
    assert path == run / VIEWER_FILE
    assert _files_under(tmp_path) - before == {path}
    assert "</script><" not in path.read_text().split('id="viewer-data"', 1)[1].split("</script>", 1)[0]


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "results.json"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old" and _files_under(tmp_path) == {target}  # no temp file left behind
    atomic_write_text(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # the permissions of an ordinary write
