"""Answer files in: FastChat ``model_answer`` JSONL, Arena-Hard ``model_answer`` JSONL (v0.1 and v2) and AlpacaEval
``model_outputs.json``, told apart by their first record, and stored in a run for judging.

To add a format: a reader ``(path, model) -> list[Answer]`` and a test of its first record in ``ANSWER_FORMATS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.errors import InputError
from evalsuite.jsonl import iter_jsonl
from evalsuite.records import Answer
from evalsuite.store.names import check_model_name

Reader = Callable[[str | Path, str | None], list[Answer]]


def _fastchat(path: str | Path, model: str | None) -> list[Answer]:
    from evalsuite.interop.fastchat import read_fastchat_answers

    return read_fastchat_answers(path, model)


def _arena_hard(path: str | Path, model: str | None) -> list[Answer]:
    from evalsuite.interop.arena_hard import read_arena_hard_answers

    return read_arena_hard_answers(path, model)


def _alpaca_eval(path: str | Path, model: str | None) -> list[Answer]:
    from evalsuite.interop.alpaca_eval import read_alpaca_eval_outputs

    return read_alpaca_eval_outputs(path, model)


@dataclass(frozen=True)
class AnswerFormat:
    name: str
    description: str
    matches: Callable[[Mapping[str, Any]], bool]  # does this first record look like the format?
    read: Reader


ANSWER_FORMATS: dict[str, AnswerFormat] = {
    f.name: f
    for f in (
        AnswerFormat("fastchat", "FastChat model_answer {question_id, model_id, choices: [{turns}]}",
                     lambda r: "choices" in r, _fastchat),
        AnswerFormat("arena-hard", "Arena-Hard model_answer {uid, ans_id, model, messages}",
                     lambda r: "messages" in r, _arena_hard),
        AnswerFormat("alpaca-eval", "AlpacaEval model_outputs.json [{instruction, output, generator}]",
                     lambda r: "instruction" in r and "output" in r, _alpaca_eval),
    )
}


def _first_record(path: Path) -> Mapping[str, Any]:
    if path.suffix.lower() == ".json":
        # AlpacaEval's files are one JSON list; reading it is cheap enough to do twice
        import json

        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON ({exc.msg})", where=str(path), fix="pass an answer file") from None
        first = data[0] if isinstance(data, list) and data else data
        return first if isinstance(first, dict) else {}
    for _, obj in iter_jsonl(path):
        return obj
    return {}


def detect_answer_format(path: str | Path) -> AnswerFormat:
    """The format of an answer file, from its first record; an InputError lists the formats read."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no such file {str(p)!r}", fix="check the path")
    first = _first_record(p)
    for fmt in ANSWER_FORMATS.values():
        if fmt.matches(first):
            return fmt
    known = "; ".join(f.description for f in ANSWER_FORMATS.values())
    raise InputError(f"not an answer file I know (first record has {sorted(first)})", where=str(p), fix=f"use one of: {known}")


@dataclass(frozen=True)
class ImportedAnswers:
    """One file's answers as read: the file, the format it was read as, and the answers."""

    path: str
    format: str
    answers: list[Answer]

    @property
    def models(self) -> list[str]:
        return sorted({a.model for a in self.answers})


def read_answers(path: str | Path, model: str | None = None, fmt: str | None = None) -> ImportedAnswers:
    """Answers of a file in any format of ``ANSWER_FORMATS`` (detected unless ``fmt`` names one)."""
    if fmt is not None and fmt not in ANSWER_FORMATS:
        raise InputError(f"unknown answer format {fmt!r}", fix=f"use one of {', '.join(ANSWER_FORMATS)}")
    if model is not None:
        check_model_name(model, "--model", fix="choose a name without path separators or control characters")
    chosen = ANSWER_FORMATS[fmt] if fmt else detect_answer_format(path)
    return ImportedAnswers(str(path), chosen.name, chosen.read(path, model))


def import_answers(files: Sequence[str | Path], run_dir: str | Path, *, model: str | None = None,
                   fmt: str | None = None) -> list[ImportedAnswers]:
    """Read every file (all before storing any), then store the answers in the run at ``run_dir``."""
    from evalsuite.store import RunStore

    if model and len(files) > 1:
        raise InputError("--model renames one file's answers; several files were given", fix="import one file per --model")
    batches = [read_answers(f, model, fmt) for f in files]
    with RunStore(run_dir) as store:
        for batch in batches:
            store.put_answers(batch.answers)
    return batches
