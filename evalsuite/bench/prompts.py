"""Prompts files: the prompts a policy is sampled on (labeling, ``iterate``'s rounds, online DPO), read as
``Question`` records with one turn each."""

from __future__ import annotations

from pathlib import Path

from evalsuite.errors import InputError
from evalsuite.jsonl import iter_jsonl
from evalsuite.records import Question


def read_prompts(path: str | Path) -> list[Question]:
    """Prompts from a JSONL file: ``{"prompt": str}`` (optional ``id``/``question_id``, ``category``), or a question
    record (``turns``: its first turn is the prompt). An empty file is an input error."""
    p = Path(path)
    if not p.is_file():
        raise InputError("no such prompts file", where=str(p), fix="pass a JSONL file with one {\"prompt\": ...} per line")
    out: list[Question] = []
    seen: set[str] = set()
    for number, (line, obj) in enumerate(iter_jsonl(p), 1):
        text = obj.get("prompt")
        if text is None and isinstance(obj.get("turns"), list) and obj["turns"]:
            text = obj["turns"][0]
        if not isinstance(text, str) or not text.strip():
            raise InputError(
                f"record {number} (line {line}) has no prompt",
                where=str(p),
                fix='give each line a non-empty "prompt" string (or "turns": [...])',
            )
        qid = str(obj.get("id") or obj.get("question_id") or f"p{number}")
        if qid in seen:
            raise InputError(f"record {number} (line {line}) repeats id {qid!r}", where=str(p), fix="give each prompt its own id")
        seen.add(qid)
        out.append(Question(qid, str(obj.get("category") or "general"), (text,)))
    if not out:
        raise InputError("the prompts file has no prompts", where=str(p), fix="add one {\"prompt\": ...} per line")
    return out


__all__ = ["read_prompts"]
