"""Templates are data: rendered in jinja2's sandbox, a template that reaches for Python is refused and nothing runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli, write_config, write_questions

from evalsuite.errors import InputError
from evalsuite.judge.templates import builtin_template_names, load_template
from evalsuite.testing.fake_server import FakeOpenAIServer

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
ATTACK = '{{ cycler.__init__.__globals__.os.system("touch PWNED") }}'
STRENGTHS = {"sft": 0.0, "dpo": 1.0}


def _hostile_copy(tmp_path: Path, payload: str, name: str = "evil.j2") -> Path:
    """prompts/pairwise.j2 with ``payload`` appended: the shared-template attack of issue 17."""
    path = tmp_path / name
    path.write_text((PROMPTS / "pairwise.j2").read_text(encoding="utf-8") + payload + "\n", encoding="utf-8")
    return path


def test_the_issue_attack_through_compare_exits_2_naming_the_file_and_runs_nothing(tmp_path: Path) -> None:
    questions = write_questions(tmp_path / "questions.jsonl", n=4)
    evil = _hostile_copy(tmp_path, ATTACK)
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        res = run_cli("compare", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--quiet",
                      "--template", str(evil), cwd=tmp_path)
        calls = srv.stats()["total_requests"]
    assert res.returncode == 2, res.stderr
    assert not (tmp_path / "PWNED").exists()
    assert calls == 0  # refused when the template loads, before any model call
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("evalsuite: error: ")
    assert str(evil) in lines[0] and "sandbox" in lines[0] and "__init__" in lines[0]
    assert "Traceback" not in res.stderr


def test_an_attack_hidden_behind_a_condition_is_refused_at_render_and_runs_nothing(tmp_path: Path) -> None:
    # The load-time trial render uses placeholder text, so this branch is only taken on real answers.
    questions = write_questions(tmp_path / "questions.jsonl", n=4)
    evil = _hostile_copy(tmp_path, '{% if answer_a_1 != "x" %}' + ATTACK + "{% endif %}", "sly.j2")
    load_template(str(evil))  # loads: the trial render does not take the branch
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        res = run_cli("compare", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--quiet",
                      "--template", str(evil), cwd=tmp_path)
        by_model = srv.stats()["by_model"]
    assert res.returncode == 2, res.stderr
    assert not (tmp_path / "PWNED").exists()
    assert "judge" not in by_model  # answers were generated, but no judge call was made with the template
    errors = [line for line in res.stderr.splitlines() if line.startswith("evalsuite: error: ")]
    assert len(errors) == 1 and str(evil) in errors[0] and "sandbox" in errors[0], res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    "payload",
    [
        ATTACK,
        "{{ answer_a_1.__class__.__mro__[1].__subclasses__() }}",
        "{{ lipsum.__globals__['os'].system('touch PWNED') }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ question_1.__len__() }}",
        "{% set xs = [] %}{{ xs.append(1) }}",  # the immutable sandbox: no method that changes a value
    ],
)
def test_reaching_for_python_is_refused_when_the_file_loads(tmp_path: Path, payload: str) -> None:
    evil = _hostile_copy(tmp_path, payload)
    with pytest.raises(InputError, match="sandbox") as info:
        load_template(str(evil))
    assert str(evil) in str(info.value)
    assert not (tmp_path / "PWNED").exists()


def test_what_a_template_may_do_still_works(tmp_path: Path) -> None:
    body = (
        "{% set n = answer_a_1 | length %}{% for line in question_1.splitlines() %}> {{ line | trim }}\n{% endfor %}"
        "A ({{ n }} chars): {{ answer_a_1 | upper }}{% if answer_b_1 %}\nB: {{ answer_b_1 | replace('x', 'y') }}"
        "{% endif %}\n{{ '%s/%s' | format(1, 2) }} {{ 'compare {} and {}'.format('A', 'B') }}"
    )
    path = tmp_path / "ok.j2"
    path.write_text('{#---\nname = "ok"\nkind = "pairwise"\nturns = 1\nreference = false\n'
                    'verdict_format = "mtbench"\n---#}\n' + body, encoding="utf-8")
    (user,) = load_template(str(path)).render({"question_1": " q1 \nq2", "answer_a_1": "ax", "answer_b_1": "bx"})
    assert user["content"] == "> q1\n> q2\nA (2 chars): AX\nB: by\n1/2 compare A and B"


@pytest.mark.parametrize("name", builtin_template_names())
def test_every_builtin_loads_in_the_sandbox(name: str) -> None:
    t = load_template(name)
    values = {v: f"<{v}>" for v in t.variables}
    assert f"<{sorted(t.variables)[0]}>" in "".join(m["content"] for m in t.render(values))


def test_a_hostile_template_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.j2"
    path.write_text('{#---\nname = "../../x"\nkind = "pairwise"\nturns = 1\nreference = false\n'
                    'verdict_format = "mtbench"\n---#}\n{{ question_1 }}{{ answer_a_1 }}{{ answer_b_1 }}',
                    encoding="utf-8")
    with pytest.raises(InputError, match=r"template name '\.\./\.\./x'"):
        load_template(str(path))


@pytest.mark.parametrize(
    ("prompt", "match"),
    [
        ("{question.__class__} {answer_a} {answer_b}", "unknown variable"),  # attribute access is no variable
        ("{question} {answer_a:>999999999} {answer_b}", "format spec"),  # a huge width would fill memory
        ("{question!r} {answer_a} {answer_b}", "conversion"),
    ],
)
def test_a_fastchat_record_inserts_plain_fields_only(tmp_path: Path, prompt: str, match: str) -> None:
    path = tmp_path / "judge_prompts.jsonl"
    record = {"name": "x", "type": "pairwise", "system_prompt": "", "prompt_template": prompt, "output_format": "[[A]]"}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=match):
        load_template(f"{path}#x")


@pytest.mark.parametrize("tag", ['{% include "/etc/passwd" %}', '{% import "x.j2" as x %}',
                                 '{% from "x.j2" import y %}', '{% extends "x.j2" %}'])
def test_a_template_is_one_file(tmp_path: Path, tag: str) -> None:
    evil = _hostile_copy(tmp_path, tag)
    line = len(evil.read_text(encoding="utf-8").splitlines())
    with pytest.raises(InputError, match=rf"^{evil}: line {line} uses {{% {tag.split()[1]} %}}: a template is one file"):
        load_template(str(evil))
