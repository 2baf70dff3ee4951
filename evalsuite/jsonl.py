"""The one JSONL reader: every ``.jsonl`` file evalsuite reads (questions, answers, judgments, votes, training data,
template bundles) goes through :func:`iter_jsonl`, so they all share one set of rules:

- UTF-8 (a leading byte-order mark is tolerated);
- blank lines are skipped, and line numbers count them, so a message points at the line an editor shows;
- each non-blank line is one JSON object; anything else is an ``InputError`` naming the file and the line, e.g.
  ``line 13 is not valid JSON`` (or ``record 12 (line 13)`` when blank lines make the two counts differ).

:func:`read_json_records` also accepts a ``.json`` file holding a list of objects (AlpacaEval's files, vote lists).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from evalsuite.errors import InputError


@dataclass(frozen=True)
class JsonLine:
    """One object of a JSONL file: its 1-based line, its 1-based position among the objects, the object, the text."""

    line: int
    number: int
    data: dict[str, Any]
    text: str  # the line as written, without its line ending (template bundles hash it)

    @property
    def label(self) -> str:
        """``line 5``, or ``record 3 (line 5)`` when blank lines make the two counts differ."""
        return f"line {self.line}" if self.line == self.number else f"record {self.number} (line {self.line})"


def _label(line: int, number: int) -> str:
    return f"line {line}" if line == number else f"record {number} (line {line})"


def _where_in_line(exc: json.JSONDecodeError, text: str) -> str:
    """``Expecting ',' delimiter at column 9``, or ``... at the end of the line (column 9)`` when the object is cut off.

    >>> try:
    ...     json.loads('{"a": 1')
    ... except json.JSONDecodeError as e:
    ...     print(_where_in_line(e, '{"a": 1'))
    Expecting ',' delimiter at the end of the line (column 8): is the line cut short?
    """
    column = exc.pos + 1  # the text is one line, so the offset into it is its column
    if exc.pos >= len(text.rstrip()):
        return f"{exc.msg} at the end of the line (column {column}): is the line cut short?"
    return f"{exc.msg} at column {column}"


def iter_json_lines(path: str | Path) -> Iterator[JsonLine]:
    """Every object of a JSONL file with where it came from; see the module docstring for the rules."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no such file {str(p)!r}", fix="check the path")
    number = 0
    with p.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            number += 1
            text = line.rstrip("\r\n")
            try:
                # parsed without its line ending, so an error's position is a column of the line as written
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{_label(lineno, number)} is not valid JSON ({_where_in_line(exc, text)})",
                    where=str(p),
                    fix="write one JSON object per line",
                ) from None
            if not isinstance(obj, dict):
                raise InputError(
                    f"{_label(lineno, number)} is a JSON {type(obj).__name__}, not an object",
                    where=str(p),
                    fix="write one JSON object per line",
                )
            yield JsonLine(lineno, number, obj, text)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a JSONL file."""
    for item in iter_json_lines(path):
        yield item.line, item.data


def read_json_records(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """(label, object) for each record of a ``.json`` list (or single object) or, for any other file, of a JSONL file.

    A ``.json`` file's labels are ``record N`` (1-based); JSONL labels are as :func:`iter_json_lines` gives them.
    """
    p = Path(path)
    if p.suffix.lower() != ".json":
        return [(item.label, item.data) for item in iter_json_lines(p)]
    if not p.is_file():
        raise InputError(f"no such file {str(p)!r}", fix="check the path")
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # JSONL under a .json name: several objects, one per line
            return [(item.label, item.data) for item in iter_json_lines(p)]
        raise InputError(f"not valid JSON ({exc.msg} at line {exc.lineno})", where=str(p), fix="fix the JSON syntax") from None
    items = data if isinstance(data, list) else [data]
    out: list[tuple[str, dict[str, Any]]] = []
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise InputError(
                f"record {number} is a JSON {type(item).__name__}, not an object",
                where=str(p),
                fix="make the file a JSON list of objects",
            )
        out.append((f"record {number}", item))
    return out


__all__ = ["JsonLine", "iter_json_lines", "iter_jsonl", "read_json_records"]
