"""The run store is versioned: old stores are migrated in place, newer or damaged ones are refused untouched."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli, write_config

from evalsuite import store as store_module
from evalsuite.errors import InputError
from evalsuite.store import DB_NAME, SCHEMA_VERSION, RunStore
from evalsuite.testing.fake_server import FakeOpenAIServer

# Written by `compare sft dpo` + `grade sft` of the release before the store had a version (see its README).
FIXTURE = Path(__file__).parent / "fixtures" / "store_v0" / DB_NAME
STRENGTHS = {"sft": 0.0, "dpo": 1.0}

# The judgments table of the oldest stores: no score column (added in place since single-answer grading).
_OLDEST_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE questions(question_id TEXT PRIMARY KEY, category TEXT NOT NULL, turns TEXT NOT NULL, reference TEXT);
CREATE TABLE answer_turns(
    model TEXT NOT NULL, question_id TEXT NOT NULL, turn INTEGER NOT NULL, text TEXT NOT NULL,
    cache_key TEXT NOT NULL, backend TEXT NOT NULL, settings TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, seconds REAL NOT NULL, created REAL NOT NULL,
    PRIMARY KEY(model, question_id, turn));
CREATE TABLE judgments(
    judge TEXT NOT NULL, template TEXT NOT NULL, template_hash TEXT NOT NULL, question_id TEXT NOT NULL,
    turn INTEGER NOT NULL, model_a TEXT NOT NULL, model_b TEXT NOT NULL, raw TEXT NOT NULL, verdict TEXT NOT NULL,
    reason TEXT, p_first REAL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    latency REAL NOT NULL, cache_key TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY(judge, question_id, turn, model_a, model_b));
INSERT INTO judgments VALUES ('judge', 'pairwise', 'abc123abc123', 'q1', 1, 'sft', 'dpo', 'B is better. [[B]]', 'B',
    NULL, NULL, 10, 5, 0.1, 'key1', 0.0);
"""


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _version(path: Path) -> int:
    return int(_raw(path, "PRAGMA user_version")[0][0])


def _copy_fixture(run_dir: Path) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURE, run_dir / DB_NAME)
    return run_dir / DB_NAME


def _compare(tmp_path: Path, questions: Path, run_dir: str) -> tuple[int, str, int]:
    """Exit code, stderr and the number of model calls of `evalsuite compare sft dpo` over the fake server."""
    with FakeOpenAIServer(strengths=STRENGTHS) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        res = run_cli("compare", "sft", "dpo", "--config", str(cfg), "--run-dir", run_dir, "--quiet",
                      "--resamples", "200", cwd=tmp_path)
        calls = int(srv.stats()["total_requests"])
    return res.returncode, res.stderr, calls


# ------------------------------------------------------------------------------------------ damaged stores


def test_damaged_store_is_one_line_exit_2_and_nothing_is_touched(tmp_path: Path, questions: Path) -> None:
    db = _copy_fixture(tmp_path / "run")
    (tmp_path / "run" / "results.json").write_text("{}\n")
    with db.open("r+b") as fh:  # the reproduction: overwrite the first bytes of the file
        fh.write(b"this is not the SQLite header")
    before = _snapshot(tmp_path / "run")
    code, stderr, calls = _compare(tmp_path, questions, "run")
    assert code == 2 and calls == 0
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert str(Path("run") / DB_NAME) in stderr and "not an SQLite database" in stderr and "fix: move it aside" in stderr
    assert _snapshot(tmp_path / "run") == before  # no WAL file, no results rewritten, the damaged file as it was


def test_a_text_file_named_like_the_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_text("question_id,verdict\nq1,A\n")
    with pytest.raises(InputError, match="damaged or not an SQLite database") as err:
        RunStore(tmp_path)
    assert str(tmp_path / DB_NAME) in str(err.value)
    assert (tmp_path / DB_NAME).read_text() == "question_id,verdict\nq1,A\n"


def test_damage_inside_the_file_found_while_reading_is_the_same_one_line_error(tmp_path: Path) -> None:
    db = _copy_fixture(tmp_path)
    page = _raw(db, "PRAGMA page_size")[0][0]
    assert isinstance(page, int)
    data = bytearray(db.read_bytes())
    for start in range(page, len(data), page):  # every page but the first (the header and the schema) is garbage
        data[start : start + page] = b"\xa5" * page
    db.write_bytes(bytes(data))
    with pytest.raises(InputError, match="damaged or not an SQLite database") as err:
        with RunStore(tmp_path) as store:
            store.judgments()
            store.answers("sft")
    assert "fix: move it aside" in str(err.value)


# ------------------------------------------------------------------------------------------ versions


def test_a_new_store_records_the_current_version(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        assert store.judgments() == []
    assert _version(tmp_path / DB_NAME) == SCHEMA_VERSION


def test_a_store_of_the_earlier_release_is_migrated_in_place(tmp_path: Path) -> None:
    db = _copy_fixture(tmp_path)
    assert _version(db) == 0
    answers = _raw(db, "SELECT model, question_id, turn, text FROM answer_turns ORDER BY 1, 2, 3")
    judgments = _raw(db, "SELECT judge, question_id, turn, model_a, model_b, verdict, score FROM judgments "
                         "ORDER BY 2, 3, 4, 5")
    questions = _raw(db, "SELECT question_id FROM questions ORDER BY 1")

    with RunStore(tmp_path) as store:
        got_answers = sorted(
            (a.model, a.question_id, turn, text)
            for model in store.models()
            for a in store.answers(model).values()
            for turn, text in enumerate(a.turns, 1)
        )
        got_judgments = sorted(
            ((j.judge, j.question_id, j.turn, j.model_a, j.model_b, j.verdict, j.score)
             for j in store.judgments() + store.judgments(grades=True)),
            key=lambda r: (r[1], r[2], r[3], r[4]),
        )
        assert sorted(store.questions()) == [q for (q,) in questions]
    assert _version(db) == SCHEMA_VERSION
    assert got_answers == answers and len(answers) == 16
    assert got_judgments == judgments and len(judgments) == 24  # 16 pairwise judgments + 8 grades, all kept
    with RunStore(tmp_path) as store:  # opening a migrated store again changes nothing
        assert len(store.judgments()) == 16
    assert _version(db) == SCHEMA_VERSION


def test_a_migrated_store_serves_compare(tmp_path: Path, questions: Path) -> None:
    _copy_fixture(tmp_path / "run")
    code, stderr, calls = _compare(tmp_path, questions, "run")
    assert code == 0, stderr
    assert calls > 0  # eight more questions than the fixture holds: new work, landing in the migrated store
    assert _version(tmp_path / "run" / DB_NAME) == SCHEMA_VERSION
    with RunStore(tmp_path / "run") as store:
        assert len(store.answers("sft")) == len(store.answers("dpo")) == 12
        assert len(store.judgments(grades=True)) == 8  # the fixture's grades survive the migration and the run


def test_the_oldest_layout_without_grades_gains_the_score_column(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(_OLDEST_SCHEMA)
    db.close()
    with RunStore(tmp_path) as store:
        [judgment] = store.judgments()
    assert (judgment.question_id, judgment.verdict, judgment.score) == ("q1", "B", None)
    assert "score" in {r[1] for r in _raw(tmp_path / DB_NAME, "PRAGMA table_info(judgments)")}
    assert _version(tmp_path / DB_NAME) == SCHEMA_VERSION


def test_a_store_of_a_newer_release_is_refused_untouched(tmp_path: Path, questions: Path) -> None:
    db = _copy_fixture(tmp_path / "run")
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    before = _snapshot(tmp_path / "run")
    with pytest.raises(InputError, match="written by a newer evalsuite") as err:
        RunStore(tmp_path / "run")
    assert "upgrade evalsuite" in str(err.value)
    code, stderr, calls = _compare(tmp_path, questions, "run")
    assert code == 2 and calls == 0 and len(stderr.strip().splitlines()) == 1 and "newer evalsuite" in stderr, stderr
    assert _snapshot(tmp_path / "run") == before


def test_an_sqlite_file_of_another_program_is_refused_not_half_read(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / DB_NAME)
    raw.execute("CREATE TABLE judgments(id INTEGER PRIMARY KEY, verdict TEXT)")
    raw.execute("INSERT INTO judgments VALUES (1, 'A')")
    raw.commit()
    raw.close()
    before = _snapshot(tmp_path)
    with pytest.raises(InputError, match="not an evalsuite run store: table meta lacks"):
        RunStore(tmp_path)
    assert _snapshot(tmp_path) == before
    assert _version(tmp_path / DB_NAME) == 0


def test_a_failing_migration_leaves_the_store_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(_OLDEST_SCHEMA)
    db.close()

    def half_then_fail(conn: sqlite3.Connection, path: Path) -> None:
        conn.execute("ALTER TABLE judgments ADD COLUMN score REAL")
        raise RuntimeError("crash in the middle of a migration")

    monkeypatch.setitem(store_module._MIGRATIONS, 0, half_then_fail)
    with pytest.raises(RuntimeError, match="crash in the middle"):
        RunStore(tmp_path)
    assert "score" not in {r[1] for r in _raw(tmp_path / DB_NAME, "PRAGMA table_info(judgments)")}
    assert _version(tmp_path / DB_NAME) == 0
