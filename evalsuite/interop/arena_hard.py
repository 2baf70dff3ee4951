"""Arena-Hard answer files (v0.1 and v2): ``{uid, ans_id, model, messages: [{role, content}]}`` in.

``messages`` is the whole conversation; the model's replies are its assistant messages, in order (v2 writes an
assistant ``content`` as ``{"answer": ...}``, v0.1-style tools as a plain string: both are read). Arena-Hard's
questions (``{uid, category, cluster, prompt}``) are read as a benchmark by :mod:`evalsuite.bench`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalsuite.errors import InputError
from evalsuite.jsonl import iter_json_lines
from evalsuite.records import Answer
from evalsuite.store.names import check_model_name

_SHAPE = "Arena-Hard answers are {uid, ans_id, model, messages: [{role, content}]}"


def _reply_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, dict) and isinstance(content.get("answer"), str):
        return str(content["answer"])
    return None


def read_arena_hard_answers(path: str | Path, model: str | None = None) -> list[Answer]:
    """Answers from an Arena-Hard ``model_answer/*.jsonl``; ``model`` renames them (default: each record's model)."""
    out: list[Answer] = []
    for item in iter_json_lines(path):
        where = f"{path}:{item.line}"
        obj = item.data
        qid = obj.get("uid", obj.get("question_id"))
        messages = obj.get("messages")
        if qid is None or not isinstance(messages, list):
            raise InputError("expected uid and messages", where=where, fix=_SHAPE)
        turns = []
        for m in messages:
            if not isinstance(m, dict) or m.get("role") != "assistant":
                continue
            text = _reply_text(m.get("content"))
            if text is None:
                raise InputError("an assistant message without text content", where=where, fix=_SHAPE)
            turns.append(text)
        if not turns:
            raise InputError("no assistant message", where=where, fix=_SHAPE)
        name = model or obj.get("model") or obj.get("model_id")
        if not name:
            raise InputError("no model in the record", where=where, fix="pass --model NAME")
        out.append(Answer(model=check_model_name(str(name), where), question_id=str(qid), turns=tuple(turns), backend="import",
                          settings={"source": str(path), "format": "arena-hard"}))
    if not out:
        raise InputError("no answers", where=str(path), fix="the file has no records")
    return out
