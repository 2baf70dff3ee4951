"""The run store: one SQLite database (WAL) per run directory holding every record of the run.

Each finished model call is committed as it lands, so a killed run resumes where it stopped and a re-run of finished
work makes no model call. Cache keys (hashes of everything that can change a call's output) decide what is finished.

This module owns the store's layout and its version (``PRAGMA user_version``, :data:`SCHEMA_VERSION`). Opening a
store checks it before reading a record: a store written by an earlier release is migrated in place, in one
transaction (all steps or none); one written by a newer release, a file that is not SQLite, or a damaged one is
refused with an ``InputError`` naming the file and the fix, and nothing is written.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, ParamSpec, Sequence, TypeVar

from evalsuite.errors import InputError
from evalsuite.records import Answer, Judgment, Question

DB_NAME = "evalsuite.sqlite"

# The layout this release writes. History:
#   0  unversioned stores of evalsuite 0.1.0 and earlier (user_version never set); the oldest lack judgments.score
#   1  the same tables, with the version recorded in PRAGMA user_version
#   2  + batches and batch_calls: batch files submitted for a run (evalsuite.backends.batch), so a killed run re-attaches
SCHEMA_VERSION = 2

_TABLES: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS questions(
    question_id TEXT PRIMARY KEY, category TEXT NOT NULL, turns TEXT NOT NULL, reference TEXT)""",
    """CREATE TABLE IF NOT EXISTS answer_turns(
    model TEXT NOT NULL, question_id TEXT NOT NULL, turn INTEGER NOT NULL, text TEXT NOT NULL,
    cache_key TEXT NOT NULL, backend TEXT NOT NULL, settings TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, seconds REAL NOT NULL, created REAL NOT NULL,
    PRIMARY KEY(model, question_id, turn))""",
    """CREATE TABLE IF NOT EXISTS judgments(
    judge TEXT NOT NULL, template TEXT NOT NULL, template_hash TEXT NOT NULL, question_id TEXT NOT NULL,
    turn INTEGER NOT NULL, model_a TEXT NOT NULL, model_b TEXT NOT NULL, raw TEXT NOT NULL, verdict TEXT NOT NULL,
    reason TEXT, p_first REAL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    latency REAL NOT NULL, cache_key TEXT NOT NULL, created REAL NOT NULL, score REAL,
    PRIMARY KEY(judge, question_id, turn, model_a, model_b))""",
)
# The columns an unversioned (version 0) store must have for migration to read it; judgments.score may be missing.
_V0_COLUMNS: dict[str, frozenset[str]] = {
    "meta": frozenset({"key", "value"}),
    "questions": frozenset({"question_id", "category", "turns", "reference"}),
    "answer_turns": frozenset(
        {"model", "question_id", "turn", "text", "cache_key", "backend", "settings", "prompt_tokens",
         "completion_tokens", "seconds", "created"}
    ),
    "judgments": frozenset(
        {"judge", "template", "template_hash", "question_id", "turn", "model_a", "model_b", "raw", "verdict",
         "reason", "p_first", "prompt_tokens", "completion_tokens", "latency", "cache_key", "created"}
    ),
}


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")}


def _migrate_0_to_1(db: sqlite3.Connection, path: Path) -> None:
    tables = {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:  # a new, empty database file
        for statement in _TABLES:
            db.execute(statement)
        return
    for table, needed in _V0_COLUMNS.items():
        missing = sorted(needed - _columns(db, table)) if table in tables else ["(the whole table)"]
        if missing:
            raise InputError(
                f"SQLite file but not an evalsuite run store: table {table} lacks {', '.join(missing)}",
                where=str(path),
                fix="point --run-dir at an evalsuite run directory, or move this file aside",
            )
    if "score" not in _columns(db, "judgments"):  # written before single-answer grading existed
        db.execute("ALTER TABLE judgments ADD COLUMN score REAL")


# Batch files (evalsuite.backends.batch): one row per submitted batch, one row per call in it. ``state`` of a call: pending
# (in the batch, no result stored yet), done (answered by the batch and stored), failed (the batch's answer was an
# error; asked again live or in a follow-up batch).
_BATCH_TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS batches(
    batch_id TEXT PRIMARY KEY, provider TEXT NOT NULL, target TEXT NOT NULL, endpoint TEXT NOT NULL,
    input_path TEXT NOT NULL, status TEXT NOT NULL, n_requests INTEGER NOT NULL, created REAL NOT NULL,
    updated REAL NOT NULL, details TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS batch_calls(
    batch_id TEXT NOT NULL, cache_key TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY(batch_id, cache_key))""",
    "CREATE INDEX IF NOT EXISTS batch_calls_key ON batch_calls(cache_key, state)",
)


def _migrate_1_to_2(db: sqlite3.Connection, path: Path) -> None:
    for statement in _BATCH_TABLES:
        db.execute(statement)


# version v -> the step that turns a version-v store into version v + 1, run inside the migration's transaction.
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection, Path], None]] = {0: _migrate_0_to_1, 1: _migrate_1_to_2}

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _damaged(path: Path, exc: sqlite3.DatabaseError) -> InputError:
    return InputError(
        f"the run store is damaged or not an SQLite database ({exc})",
        where=str(path),
        fix=f"move it aside (mv {path} {path}.damaged) and re-run to rebuild the store, or pass another --run-dir",
    )


def _guarded(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Damage found mid-run (a malformed page) becomes the same one-line ``InputError`` as damage found at open."""

    @functools.wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except sqlite3.OperationalError:
            raise  # locked, disk full, I/O: not damage to the file
        except sqlite3.DatabaseError as exc:
            store = args[0]
            assert isinstance(store, RunStore)
            raise _damaged(store.path, exc) from None

    return call


def _open(path: Path) -> sqlite3.Connection:
    """Connect, check the version and migrate; nothing is written to a store this release cannot read."""
    if path.exists() and not path.is_file():
        raise InputError("the run store is not a file", where=str(path), fix="remove it or pass another --run-dir")
    db = sqlite3.connect(path, isolation_level=None)
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise InputError(
                f"the run store was written by a newer evalsuite (store version {version}; this release reads "
                f"versions up to {SCHEMA_VERSION})",
                where=str(path),
                fix="upgrade evalsuite (pip install -U evalsuite), or pass another --run-dir",
            )
        if version < SCHEMA_VERSION:
            # One transaction for every step: a crash or a refusal leaves the store exactly as it was.
            db.execute("BEGIN IMMEDIATE")
            try:
                version = int(db.execute("PRAGMA user_version").fetchone()[0])  # another process may have migrated
                while version < SCHEMA_VERSION:
                    _MIGRATIONS[version](db, path)
                    version += 1
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        # Only now, with a store this release reads: WAL + NORMAL, so a commit survives a killed process (the WAL is
        # fsynced at checkpoints; an OS crash may lose only the last commits, never corrupt the file). Each call's
        # result is its own transaction.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.OperationalError:
        db.close()
        raise
    except sqlite3.DatabaseError as exc:
        db.close()
        raise _damaged(path, exc) from None
    except BaseException:
        db.close()
        raise
    return db


@dataclass(frozen=True)
class AnswerTurn:
    text: str
    cache_key: str
    backend: str


@dataclass(frozen=True)
class BatchRecord:
    """A batch file submitted for this run: where (provider, endpoint), for whom (target: a judge or model name),
    its input file, its last known status, and provider details (file ids, a local runner's pid and output path)."""

    batch_id: str
    provider: str
    target: str
    endpoint: str
    input_path: str
    status: str
    n_requests: int
    details: dict[str, Any]


class RunStore:
    """All records of one run directory. Not thread-safe: one writer (the event loop or the batch loop)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / DB_NAME
        self._db = _open(self.path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # meta -----------------------------------------------------------------------------------------------
    @_guarded
    def set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    @_guarded
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # questions ------------------------------------------------------------------------------------------
    @_guarded
    def put_questions(self, questions: Iterable[Question]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO questions VALUES (?, ?, ?, ?)",
                [
                    (q.question_id, q.category, json.dumps(q.turns), json.dumps(q.reference) if q.reference else None)
                    for q in questions
                ],
            )

    @_guarded
    def questions(self) -> dict[str, Question]:
        rows = self._db.execute("SELECT question_id, category, turns, reference FROM questions").fetchall()
        return {
            r[0]: Question(r[0], r[1], tuple(json.loads(r[2])), tuple(json.loads(r[3])) if r[3] else None) for r in rows
        }

    # answers --------------------------------------------------------------------------------------------
    @_guarded
    def put_answer_turn(
        self,
        *,
        model: str,
        question_id: str,
        turn: int,
        text: str,
        cache_key: str,
        backend: str,
        settings: dict[str, Any],
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        seconds: float = 0.0,
    ) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO answer_turns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                model,
                question_id,
                turn,
                text,
                cache_key,
                backend,
                json.dumps(settings, sort_keys=True),
                prompt_tokens,
                completion_tokens,
                seconds,
                time.time(),
            ),
        )

    @_guarded
    def answer_turns(self, model: str) -> dict[tuple[str, int], AnswerTurn]:
        rows = self._db.execute(
            "SELECT question_id, turn, text, cache_key, backend FROM answer_turns WHERE model = ?", (model,)
        ).fetchall()
        return {(r[0], r[1]): AnswerTurn(r[2], r[3], r[4]) for r in rows}

    @_guarded
    def answers(self, model: str) -> dict[str, Answer]:
        """Every stored answer of ``model`` with its turns in order (possibly fewer turns than the question has)."""
        rows = self._db.execute(
            "SELECT question_id, turn, text, backend, settings, prompt_tokens, completion_tokens, seconds "
            "FROM answer_turns WHERE model = ? ORDER BY question_id, turn",
            (model,),
        ).fetchall()
        grouped: dict[str, list[tuple[Any, ...]]] = {}
        for r in rows:
            grouped.setdefault(r[0], []).append(r)
        out: dict[str, Answer] = {}
        for qid, rs in grouped.items():
            # keep the contiguous prefix of turns 1..k: turn 2 without turn 1 cannot be judged
            turns = []
            for expected, r in enumerate(rs, 1):
                if r[1] != expected:
                    break
                turns.append(r)
            if not turns:
                continue
            out[qid] = Answer(
                model=model,
                question_id=qid,
                turns=tuple(r[2] for r in turns),
                backend=turns[0][3],
                settings=json.loads(turns[0][4]),
                prompt_tokens=sum(r[5] for r in turns),
                completion_tokens=sum(r[6] for r in turns),
                seconds=sum(r[7] for r in turns),
            )
        return out

    @_guarded
    def put_answers(self, answers: Sequence[Answer], *, cache_key: str = "import") -> None:
        """Store whole answers (imported from files) in one transaction, replacing the model's turns for those questions."""
        with self._db:
            self._db.execute("BEGIN")
            for a in answers:
                self._db.execute("DELETE FROM answer_turns WHERE model = ? AND question_id = ?", (a.model, a.question_id))
                for i, text in enumerate(a.turns, 1):
                    self.put_answer_turn(
                        model=a.model,
                        question_id=a.question_id,
                        turn=i,
                        text=text,
                        cache_key=cache_key,
                        backend=a.backend or "import",
                        settings=a.settings,
                        prompt_tokens=a.prompt_tokens if i == 1 else 0,
                        completion_tokens=a.completion_tokens if i == 1 else 0,
                        seconds=a.seconds if i == 1 else 0.0,
                    )

    @_guarded
    def models(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT model FROM answer_turns ORDER BY model")]

    @_guarded
    def usage_by_model(self) -> dict[str, tuple[int, int]]:
        rows = self._db.execute(
            "SELECT model, SUM(prompt_tokens), SUM(completion_tokens) FROM answer_turns GROUP BY model"
        ).fetchall()
        return {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in rows}

    # judgments ------------------------------------------------------------------------------------------
    @_guarded
    def put_judgment(self, j: Judgment) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO judgments (judge, template, template_hash, question_id, turn, model_a, model_b, raw, "
            "verdict, reason, p_first, prompt_tokens, completion_tokens, latency, cache_key, created, score) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                j.judge,
                j.template,
                j.template_hash,
                j.question_id,
                j.turn,
                j.model_a,
                j.model_b,
                j.raw,
                j.verdict,
                j.reason,
                j.p_first,
                j.prompt_tokens,
                j.completion_tokens,
                j.latency,
                j.cache_key,
                time.time(),
                j.score,
            ),
        )

    @_guarded
    def judgment_index(self, judge: str) -> dict[tuple[str, int, str, str], tuple[str, str]]:
        """(question_id, turn, model_a, model_b) -> (cache_key, verdict) for ``judge``: what is already finished."""
        rows = self._db.execute(
            "SELECT question_id, turn, model_a, model_b, cache_key, verdict FROM judgments WHERE judge = ?", (judge,)
        ).fetchall()
        return {(r[0], r[1], r[2], r[3]): (r[4], r[5]) for r in rows}

    @_guarded
    def judgments(self, judge: str | None = None, *, grades: bool = False) -> list[Judgment]:
        """Pairwise judgments (or, with ``grades``, single-answer grades, whose ``model_b`` is empty)."""
        sql = (
            "SELECT judge, template, template_hash, question_id, turn, model_a, model_b, raw, verdict, reason, p_first, "
            "prompt_tokens, completion_tokens, latency, cache_key, score FROM judgments WHERE "
            + ("model_b = ''" if grades else "model_b != ''")
        )
        params: tuple[Any, ...] = ()
        if judge is not None:
            sql += " AND judge = ?"
            params = (judge,)
        return [Judgment(*r) for r in self._db.execute(sql + " ORDER BY question_id, turn, model_a, model_b", params)]

    @_guarded
    def put_judgments(self, judgments: Iterable[Judgment]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            for j in judgments:
                self.put_judgment(j)

    @_guarded
    def judges(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT judge FROM judgments ORDER BY judge")]

    @_guarded
    def judge_usage(self) -> dict[str, tuple[int, int]]:
        rows = self._db.execute(
            "SELECT judge, SUM(prompt_tokens), SUM(completion_tokens) FROM judgments GROUP BY judge"
        ).fetchall()
        return {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in rows}

    # batches --------------------------------------------------------------------------------------------
    @_guarded
    def put_batch(self, record: BatchRecord, keys: Iterable[str]) -> None:
        """Record a submitted batch and its calls (all pending) in one transaction."""
        now = time.time()
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.batch_id, record.provider, record.target, record.endpoint, record.input_path, record.status,
                 record.n_requests, now, now, json.dumps(record.details, sort_keys=True)),
            )
            self._db.executemany("INSERT OR REPLACE INTO batch_calls VALUES (?, ?, 'pending')",
                                 [(record.batch_id, k) for k in keys])

    @_guarded
    def set_batch_status(self, batch_id: str, status: str, details: dict[str, Any] | None = None) -> None:
        if details is None:
            self._db.execute("UPDATE batches SET status = ?, updated = ? WHERE batch_id = ?", (status, time.time(), batch_id))
        else:
            self._db.execute("UPDATE batches SET status = ?, updated = ?, details = ? WHERE batch_id = ?",
                             (status, time.time(), json.dumps(details, sort_keys=True), batch_id))

    @_guarded
    def batches(self, *, provider: str | None = None, endpoint: str | None = None,
                statuses: Sequence[str] | None = None) -> list[BatchRecord]:
        """Recorded batches, oldest first, optionally only those of one provider/endpoint or in given statuses."""
        sql = ("SELECT batch_id, provider, target, endpoint, input_path, status, n_requests, details FROM batches "
               "WHERE 1 = 1")
        params: list[Any] = []
        for column, value in (("provider", provider), ("endpoint", endpoint)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        if statuses is not None:
            sql += f" AND status IN ({', '.join('?' * len(statuses))})"
            params.extend(statuses)
        rows = self._db.execute(sql + " ORDER BY created, batch_id", params).fetchall()
        return [BatchRecord(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), json.loads(r[7])) for r in rows]

    @_guarded
    def batch_calls(self, batch_id: str) -> dict[str, str]:
        """cache key -> state (pending | done | failed) of every call in the batch."""
        rows = self._db.execute("SELECT cache_key, state FROM batch_calls WHERE batch_id = ?", (batch_id,)).fetchall()
        return {r[0]: r[1] for r in rows}

    @_guarded
    def set_batch_call_state(self, batch_id: str, keys: Iterable[str], state: str) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("UPDATE batch_calls SET state = ? WHERE batch_id = ? AND cache_key = ?",
                                 [(state, batch_id, k) for k in keys])

    @_guarded
    def batch_usage(self) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
        """Tokens of stored calls that a batch answered (billed at the batch price): (per answer model, per judge)."""
        answered = "cache_key IN (SELECT cache_key FROM batch_calls WHERE state = 'done')"
        models = self._db.execute(
            f"SELECT model, SUM(prompt_tokens), SUM(completion_tokens) FROM answer_turns WHERE {answered} GROUP BY model"
        ).fetchall()
        judges = self._db.execute(
            f"SELECT judge, SUM(prompt_tokens), SUM(completion_tokens) FROM judgments WHERE {answered} GROUP BY judge"
        ).fetchall()
        return ({r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in models},
                {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in judges})
