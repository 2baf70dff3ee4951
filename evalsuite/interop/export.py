"""``export``: a run's answers and judgments written in other tools' formats.

- ``fastchat``: ``model_answer/<model>.jsonl`` per model and ``model_judgment/<judge>_pair.jsonl`` per judge that
  judged pairs (``g1_user_prompt`` / ``g2_user_prompt`` re-rendered from each judgment's template);
- ``alpaca-eval``: ``<model>/model_outputs.json`` per model (first turns; AlpacaEval is one turn).

A name becomes a file name through :func:`~evalsuite.store.names.safe_file_name` (a hub id's ``/`` does not make a
folder), and every path is checked to stay inside ``out_dir`` before it is written, whatever the run store holds.

To add a format: a function ``(store, out_dir) -> list[ExportedFile]`` in ``EXPORT_FORMATS``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evalsuite.errors import InputError
from evalsuite.store import DB_NAME, RunStore
from evalsuite.store.names import path_inside, safe_file_name


@dataclass(frozen=True)
class ExportedFile:
    path: Path
    records: int
    what: str  # "answers" | "pair records"


def export_fastchat(store: RunStore, out_dir: Path) -> list[ExportedFile]:
    from evalsuite.interop.fastchat import pair_records, write_fastchat_answers
    from evalsuite.judge import rendered_user_prompt

    written = []
    answers = {model: store.answers(model) for model in store.models()}
    questions = store.questions()
    for model, by_question in answers.items():
        p = path_inside(out_dir, Path("model_answer") / f"{safe_file_name(model)}.jsonl")
        written.append(ExportedFile(p, write_fastchat_answers(by_question.values(), p), "answers"))
    for judge in store.judges():
        pairwise = store.judgments(judge)
        if not pairwise:
            continue  # a judge that only graded single answers has no pair file
        recs = pair_records(pairwise, lambda j: rendered_user_prompt(j, questions, answers))
        p = path_inside(out_dir, Path("model_judgment") / f"{safe_file_name(judge)}_pair.jsonl")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
        written.append(ExportedFile(p, len(recs), "pair records"))
    return written


def export_alpaca_eval(store: RunStore, out_dir: Path) -> list[ExportedFile]:
    from evalsuite.interop.alpaca_eval import write_alpaca_eval_outputs

    questions = store.questions()
    written = []
    for model in store.models():
        p = path_inside(out_dir, Path(safe_file_name(model)) / "model_outputs.json")
        written.append(ExportedFile(p, write_alpaca_eval_outputs(store.answers(model).values(), questions, p), "answers"))
    return written


EXPORT_FORMATS: dict[str, Callable[[RunStore, Path], list[ExportedFile]]] = {
    "fastchat": export_fastchat,
    "alpaca-eval": export_alpaca_eval,
}


def export_run(run_dir: str | Path, out_dir: str | Path, fmt: str = "fastchat") -> list[ExportedFile]:
    """Write the run at ``run_dir`` into ``out_dir`` in format ``fmt`` (a key of ``EXPORT_FORMATS``)."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}", fix=f"use one of {', '.join(EXPORT_FORMATS)}")
    if not (Path(run_dir) / DB_NAME).is_file():
        raise InputError(f"no run store in {str(run_dir)!r}", fix="pass the --run-dir of a compare, judge or import run")
    with RunStore(run_dir) as store:
        return EXPORT_FORMATS[fmt](store, Path(out_dir))
