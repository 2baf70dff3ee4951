"""Bad input gets one line naming the file or model and the fix, exit code 2, and loses nothing already computed."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

from conftest import run_cli, write_config

from evalsuite.testing.fake_server import FakeOpenAIServer

STRENGTHS = {"sft": 0.0, "dpo": 1.0}


def _one_line_error(res) -> str:  # type: ignore[no-untyped-def]
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("evalsuite: error:")]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_malformed_question_line_names_file_and_line(tmp_path: Path, questions: Path) -> None:
    questions.write_text(questions.read_text() + "{not json\n")
    cfg = write_config(tmp_path / "evalsuite.toml", "http://127.0.0.1:9/v1", STRENGTHS, questions)
    msg = _one_line_error(run_cli("compare", "sft", "dpo", "--config", str(cfg), cwd=tmp_path))
    assert "questions.jsonl" in msg and "line 13" in msg and "fix:" in msg


def test_question_without_turns(tmp_path: Path) -> None:
    q = tmp_path / "q.jsonl"
    q.write_text('{"question_id": 1, "category": "math"}\n')
    cfg = write_config(tmp_path / "evalsuite.toml", "http://127.0.0.1:9/v1", STRENGTHS, q)
    msg = _one_line_error(run_cli("compare", "sft", "dpo", "--config", str(cfg), cwd=tmp_path))
    assert "q.jsonl:1" in msg and "turns" in msg


def test_unknown_model_name(tmp_path: Path, questions: Path) -> None:
    cfg = write_config(tmp_path / "evalsuite.toml", "http://127.0.0.1:9/v1", STRENGTHS, questions)
    msg = _one_line_error(run_cli("compare", "sft", "orpo", "--config", str(cfg), cwd=tmp_path))
    assert "unknown model 'orpo'" in msg and "evalsuite.toml" in msg and "[models.orpo]" in msg


def test_template_without_verdict_format(tmp_path: Path, questions: Path) -> None:
    t = tmp_path / "mine.j2"
    t.write_text('{#---\nname = "mine"\nkind = "pairwise"\nturns = 1\nreference = false\n---#}\nJudge {{ question_1 }}\n')
    cfg = write_config(tmp_path / "evalsuite.toml", "http://127.0.0.1:9/v1", STRENGTHS, questions)
    msg = _one_line_error(run_cli("compare", "sft", "dpo", "--template", str(t), "--config", str(cfg), cwd=tmp_path))
    assert "mine.j2" in msg and "verdict_format" in msg


def test_unreachable_judge_keeps_finished_answers(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = tmp_path / "evalsuite.toml"
        write_config(cfg, srv.base_url, STRENGTHS, questions)
        text = cfg.read_text().replace(f'[judge]\nbackend = "openai"\nbase_url = "{srv.base_url}"',
                                       f'[judge]\nbackend = "openai"\nbase_url = "http://127.0.0.1:{_free_port()}/v1"')
        cfg.write_text(text)
        msg = _one_line_error(run_cli("compare", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", cwd=tmp_path))
        assert "cannot reach" in msg and "judge" in msg and "re-run" in msg
        db = sqlite3.connect(tmp_path / "run" / "evalsuite.sqlite")
        assert db.execute("SELECT COUNT(*) FROM answer_turns").fetchone()[0] == 2 * 12 * 2

        # fix the endpoint: the re-run judges without regenerating a single answer
        write_config(cfg, srv.base_url, STRENGTHS, questions)
        srv.reset_stats()
        res = run_cli("compare", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "500", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert set(srv.stats()["by_model"]) == {"judge"}


def test_401_names_the_key_variable(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, api_key="right") as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions, model_opts={"api_key_env": "MY_KEY"})
        msg = _one_line_error(run_cli("compare", "sft", "dpo", "--config", str(cfg), cwd=tmp_path, env={"MY_KEY": "wrong"}))
        assert "401" in msg and "$MY_KEY" in msg


def test_404_unknown_model_at_the_endpoint(tmp_path: Path, questions: Path) -> None:
    with FakeOpenAIServer(strengths={"sft": 0.0}) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        msg = _one_line_error(run_cli("compare", "sft", "dpo", "--config", str(cfg), cwd=tmp_path))
        assert "404" in msg and "'dpo'" in msg


def test_judging_a_model_without_answers(tmp_path: Path, questions: Path) -> None:
    cfg = write_config(tmp_path / "evalsuite.toml", "http://127.0.0.1:9/v1", STRENGTHS, questions)
    msg = _one_line_error(run_cli("judge", "sft", "dpo", "--config", str(cfg), "--run-dir", "run", cwd=tmp_path))
    assert "no answers" in msg and "import-answers" in msg


def test_malformed_answer_file(tmp_path: Path) -> None:
    f = tmp_path / "answers.jsonl"
    f.write_text('{"question_id": 1, "choices": [{"index": 0, "turns": ["a", "b"]}]}\n{"question_id": 2}\n')
    msg = _one_line_error(run_cli("import-answers", str(f), "--model", "x", "--run-dir", "run", cwd=tmp_path))
    assert "answers.jsonl:2" in msg and "choices[0].turns" in msg
    assert not (tmp_path / "run" / "evalsuite.sqlite").exists() or sqlite3.connect(tmp_path / "run" / "evalsuite.sqlite").execute(
        "SELECT COUNT(*) FROM answer_turns").fetchone()[0] == 0


def test_bad_override_and_unknown_config_key(tmp_path: Path, questions: Path) -> None:
    cfg = write_config(tmp_path / "evalsuite.toml", "http://127.0.0.1:9/v1", STRENGTHS, questions)
    msg = _one_line_error(run_cli("compare", "sft", "dpo", "--config", str(cfg), "--set", "models.dpo.temprature=0.5", cwd=tmp_path))
    assert "temprature" in msg and "dpo" in msg
