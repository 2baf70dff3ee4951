"""Names that come from files are untrusted: the rules a model, judge or template name must follow, the file name
derived from a name, and the check that a path the project writes stays inside the folder the user named.

A model name (``sft``, ``dpo-b0.1``, a FastChat ``model_id``, an Arena-Hard ``model``, an AlpacaEval
``generator``) is a single word of the run: no path separator, not ``.`` or ``..``. A judge or template name may
be a hub id (``Qwen/Qwen2.5-7B-Instruct``), so it may hold ``/`` between non-empty parts, but never a ``..`` or
``.`` part, a backslash, or a leading ``/``. No name is empty, holds a NUL, a control, format or line-separator
character, or is longer than :data:`MAX_NAME_LENGTH` characters. A name that breaks a rule is an ``InputError``
(exit 2) naming where it was read and how to rename it.

Checking names at the door is one wall; the writers build a second: a file named after a name goes through
:func:`safe_file_name` (a name that is not already a plain file name gets its odd characters replaced and a hash
of the whole name appended, so two names never share a file), and the path is checked with :func:`path_inside`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from evalsuite.errors import InputError

__all__ = [
    "MAX_NAME_LENGTH",
    "check_judge_name",
    "check_model_name",
    "check_template_name",
    "path_inside",
    "safe_file_name",
]

MAX_NAME_LENGTH = 128
# Control (Cc), format (Cf: bidi overrides, zero-width marks), surrogate (Cs) and line/paragraph separators (Zl, Zp):
# none has a place in a name, and some make a name print as another one.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# A file-name stem kept as it is: word characters (any script) and a few marks, not starting with "." or "-".
_PLAIN_FILE_NAME = re.compile(r"\w[\w.+=@,-]*")
_NOT_FILE_CHAR = re.compile(r"[^\w.+=@,-]")
_MAX_STEM_BYTES = 120  # file systems allow 255 bytes; room is left for the suffixes writers add ("_pair.jsonl")
_HASH_CHARS = 10


def _check_common(name: object, where: str, what: str, fix: str) -> str:
    if not isinstance(name, str) or not name:
        raise InputError(f"{what} must be a non-empty string, not {name!r}", where=where, fix=fix)
    if len(name) > MAX_NAME_LENGTH:
        raise InputError(f"{what} {name[:40]!r}... is {len(name)} characters long (at most {MAX_NAME_LENGTH})",
                         where=where, fix=fix)
    bad = next((c for c in name if unicodedata.category(c) in _BAD_CATEGORIES), None)
    if bad is not None:
        raise InputError(f"{what} {name!r} contains the control character U+{ord(bad):04X}", where=where, fix=fix)
    if "\\" in name:
        raise InputError(f"{what} {name!r} contains a backslash (a path separator)", where=where, fix=fix)
    return name


def check_model_name(name: object, where: str, *, fix: str = "rename the model (import-*: pass --model NAME)") -> str:
    """``name`` if it is a valid model name, else an ``InputError`` naming ``where`` it was read.

    >>> check_model_name("dpo-b0.1", "config")
    'dpo-b0.1'
    >>> check_model_name("llama3.1:8b", "answers.jsonl:1")
    'llama3.1:8b'
    >>> check_model_name("../../../somewhere/pwned", "answers.jsonl:3")
    Traceback (most recent call last):
    ...
    evalsuite.errors.InputError: answers.jsonl:3: model name '../../../somewhere/pwned' contains a path separator ("/") — fix: rename the model (import-*: pass --model NAME)
    """
    what = "model name"
    name = _check_common(name, where, what, fix)
    if "/" in name:
        raise InputError(f'{what} {name!r} contains a path separator ("/")', where=where, fix=fix)
    if name in (".", ".."):
        raise InputError(f"{what} {name!r} is a path component, not a name", where=where, fix=fix)
    return name


def _check_hub_style(name: object, where: str, what: str, fix: str) -> str:
    name = _check_common(name, where, what, fix)
    if name.startswith("/"):
        raise InputError(f"{what} {name!r} is an absolute path", where=where, fix=fix)
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InputError(f"{what} {name!r} has an empty, '.' or '..' part between its '/'", where=where, fix=fix)
    return name


def check_judge_name(name: object, where: str, *, fix: str = "rename the judge") -> str:
    """``name`` if it is a valid judge name: a model name, or a hub id with ``/`` between plain parts.

    >>> check_judge_name("Qwen/Qwen2.5-7B-Instruct", "gpt-4_pair.jsonl:1")
    'Qwen/Qwen2.5-7B-Instruct'
    >>> check_judge_name("/etc/passwd", "gpt-4_pair.jsonl:1")
    Traceback (most recent call last):
    ...
    evalsuite.errors.InputError: gpt-4_pair.jsonl:1: judge name '/etc/passwd' is an absolute path — fix: rename the judge
    """
    return _check_hub_style(name, where, "judge name", fix)


def check_template_name(name: object, where: str, *, fix: str = "rename the template") -> str:
    """``name`` if it is a valid template name (the same rules as a judge name)."""
    return _check_hub_style(name, where, "template name", fix)


def safe_file_name(name: str) -> str:
    """A file-name stem for ``name``: the name itself when it is a plain file name, else a cleaned one with a hash.

    Plain means word characters (any script), ``.``, ``+``, ``=``, ``@``, ``,`` and ``-``, not starting with ``.``
    or ``-``, and short enough for any file system. Anything else (``/``, ``:``, spaces, ``..``, NUL) is replaced
    by ``_`` and the first 10 hex digits of the name's sha256 are appended, so two different names never map to
    the same file (``a/b`` and ``a_b`` stay apart) and no result is a path.

    >>> safe_file_name("dpo-b0.1")
    'dpo-b0.1'
    >>> safe_file_name("Qwen/Qwen2.5-7B")
    'Qwen_Qwen2.5-7B-401a4b448e'
    >>> safe_file_name("../../x")
    '_.._.._x-9cdf6a5010'
    """
    if _PLAIN_FILE_NAME.fullmatch(name) and len(name.encode("utf-8")) <= _MAX_STEM_BYTES:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    cleaned = _NOT_FILE_CHAR.sub("_", name)
    if cleaned[:1] in (".", "-"):
        cleaned = "_" + cleaned
    # cut to the byte budget; "ignore" drops a character the cut split in two
    cleaned = cleaned.encode("utf-8")[: _MAX_STEM_BYTES - _HASH_CHARS - 1].decode("utf-8", "ignore")
    return f"{cleaned}-{digest}"


def path_inside(root: str | Path, path: str | Path) -> Path:
    """``path`` resolved (symlinks followed), after checking it stays inside ``root`` (resolved too).

    A relative ``path`` is taken relative to ``root``. The last line of defence of every writer that builds a file
    name from data: an ``InputError`` instead of a write outside the folder the user named.

    >>> path_inside("/tmp/out", "model_answer/sft.jsonl").as_posix().endswith("/out/model_answer/sft.jsonl")
    True
    >>> path_inside("/tmp/out", "../elsewhere.jsonl")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    evalsuite.errors.InputError: ...elsewhere.jsonl: would be written outside .../out — fix: rename what the file ...
    """
    base = Path(root).expanduser().resolve()
    target = (base / Path(path)).resolve()
    if target != base and base not in target.parents:
        raise InputError(f"would be written outside {base}", where=str(target),
                         fix="rename what the file is named after (a model or judge name)")
    return target
