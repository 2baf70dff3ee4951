"""``import_judgments``: external judgments (FastChat pair judgments, AlpacaEval annotations) in, a run's results out.

Each format is a reader in ``JUDGMENT_FORMATS`` that turns a file into an :class:`ImportedJudgments`: the oriented
matches, who the baseline and candidates are, the judge, what the file gives beyond verdicts (answer lengths,
the source's own standard error), and a note for the leaderboard. :func:`import_judgments` turns that into the
same results document ``compare`` writes, so ``report`` and ``gate`` work on it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.errors import InputError
from evalsuite.records import Match, Question

if TYPE_CHECKING:
    from evalsuite.report.results import Results, StatsOptions


@dataclass(frozen=True)
class ImportedJudgments:
    """What a judgment file gives, ready for the statistics."""

    matches: list[Match]  # oriented: the candidate is X, the baseline Y
    baseline: str
    candidates: list[str]
    judge: str
    note: str
    n_questions: int
    categories: list[str]
    lengths: dict[str, dict[tuple[str, int], int]] = field(default_factory=dict)  # empty: lengths unknown
    external_se: dict[str, float] = field(default_factory=dict)  # candidate -> the source's own SE of the win rate
    # the answers' text (model -> (question id, turn) -> text) where the file carries it: style control needs it
    texts: dict[str, dict[tuple[str, int], str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportOutcome:
    results: Results
    results_path: Path
    leaderboard_path: Path
    imported: ImportedJudgments


def _alpaca_eval(file: str, *, baseline: str | None, run_dir: Path, questions: str | None, mode: str) -> ImportedJudgments:
    from evalsuite.interop.alpaca_eval import CATEGORY, alpaca_eval_win_rate, read_alpaca_eval

    read = read_alpaca_eval(file)
    if not read.matches:
        raise InputError("no annotations", where=file, fix="pass an AlpacaEval annotations.json")
    base = baseline or read.matches[0].model_y
    cands = sorted({m.model_x for m in read.matches} - {base})
    external = {}
    for c in cands:
        mine = [m for m in read.matches if m.model_x == c]
        if any(not m.error for m in mine):
            external[c] = round(alpaca_eval_win_rate(mine)[1] / 100.0, 6)
    return ImportedJudgments(
        matches=read.matches, baseline=base, candidates=cands, judge="alpaca_eval_gpt4 (imported)",
        note="Imported AlpacaEval annotations: one judged order per instruction, so position consistency is not "
             "measured; the source's own standard error (SE of the mean preference) is shown beside the clustered CI.",
        n_questions=len({m.question_id for m in read.matches}), categories=[CATEGORY], lengths=read.lengths,
        external_se=external, texts=read.texts,
    )


def _fastchat(file: str, *, baseline: str | None, run_dir: Path, questions: str | None, mode: str) -> ImportedJudgments:
    from evalsuite.bench import read_questions
    from evalsuite.interop.fastchat import read_fastchat_pair_judgments
    from evalsuite.judge.swap import build_matches
    from evalsuite.report.build import orient_to
    from evalsuite.store import RunStore

    judgments = read_fastchat_pair_judgments(file)
    if not judgments:
        raise InputError("no judgments", where=file, fix="pass a FastChat model_judgment/*_pair.jsonl")
    models = sorted({j.model_a for j in judgments} | {j.model_b for j in judgments})
    if baseline is None or baseline not in models:
        raise InputError(f"--baseline must name one of {models}", where=file, fix="pass --baseline MODEL")
    cands = [m for m in models if m != baseline]
    if questions:
        qs = {q.question_id: q for q in read_questions(questions)}
    else:
        qs = {j.question_id: Question(j.question_id, "unknown", ("",)) for j in judgments}
    missing = sorted({j.question_id for j in judgments} - set(qs))
    if missing:
        raise InputError(f"judged questions {missing[:5]} are not in {questions}", fix="pass the matching question.jsonl")
    with RunStore(run_dir) as store:
        store.put_questions(qs.values())
        store.put_judgments(judgments)
    categories = {q: qs[q].category for q in qs}
    matches = build_matches(judgments, categories, mode, orient_to(baseline, cands))  # type: ignore[arg-type]
    return ImportedJudgments(
        matches=matches, baseline=baseline, candidates=cands, judge=judgments[0].judge,
        note=f"Imported FastChat pair judgments from {file}.", n_questions=len({j.question_id for j in judgments}),
        categories=sorted({m.category for m in matches}),
    )


JudgmentReader = Callable[..., ImportedJudgments]
JUDGMENT_FORMATS: dict[str, JudgmentReader] = {"fastchat": _fastchat, "alpaca-eval": _alpaca_eval}


def import_judgments(
    file: str | Path,
    fmt: str,
    *,
    baseline: str | None = None,
    run_dir: str | Path = "runs/imported",
    questions: str | Path | None = None,
    mode: str = "strict",
    options: StatsOptions | None = None,
    instruction_difficulty: str | Path | None = None,
    style_reference: str | Path | None = None,
) -> ImportOutcome:
    """Read ``file`` in format ``fmt`` (``fastchat`` or ``alpaca-eval``), compute the results and write
    ``results.json`` and ``leaderboard.md`` into ``run_dir``.

    ``baseline`` is required for FastChat files (AlpacaEval's is generator_1); ``questions`` (a question.jsonl)
    gives FastChat judgments their categories; ``mode`` is the swap reconciliation for two-order judgments.
    ``instruction_difficulty`` (AlpacaEval only: its ``instruction_difficulty.csv`` or ``df_gamed.csv``) adds
    AlpacaEval's own length-controlled win rate (LC v1) beside evalsuite's. Files that carry the answers' text
    (AlpacaEval's) get style control; ``style_reference`` (an earlier results.json) freezes its normalisation.
    """
    from evalsuite import __version__
    from evalsuite.pipeline import write_outputs
    from evalsuite.report.results import StatsOptions
    from evalsuite.report.build import build_results, load_style_reference, style_input

    if fmt not in JUDGMENT_FORMATS:
        raise InputError(f"unknown judgment format {fmt!r}", fix=f"use one of {', '.join(JUDGMENT_FORMATS)}")
    if instruction_difficulty is not None and fmt != "alpaca-eval":
        raise InputError("an instruction difficulty file applies to AlpacaEval annotations only",
                         where=str(instruction_difficulty), fix="drop --instruction-difficulty, or use --format alpaca-eval")
    frozen = None if style_reference is None else load_style_reference(style_reference)
    out = Path(run_dir)
    imported = JUDGMENT_FORMATS[fmt](str(file), baseline=baseline, run_dir=out,
                                     questions=None if questions is None else str(questions), mode=mode)
    meta: Mapping[str, Any] = {
        "evalsuite_version": __version__,
        "run_dir": str(out),
        "benchmark": {"name": Path(file).name, "n_questions": imported.n_questions, "categories": imported.categories},
        "judge": imported.judge,
        "templates": [],
        "mode": mode,
        "note": imported.note,
    }
    results = build_results(imported.matches, baseline=imported.baseline, candidates=imported.candidates,
                            lengths=imported.lengths, options=options or StatsOptions(), meta=meta,
                            style=style_input(imported.texts, reference=frozen,
                                              reference_source=str(style_reference) if style_reference else "run"))
    results = _with_external_se(results, imported.external_se)
    if instruction_difficulty is not None:
        results = _with_alpaca_eval_lc(results, str(file), imported.baseline, str(instruction_difficulty))
    rp, lp = write_outputs(results, out)
    return ImportOutcome(results, rp, lp, imported)


def _with_external_se(results: Results, external_se: Mapping[str, float]) -> Results:
    from dataclasses import replace

    if not external_se:
        return results
    comps = tuple(replace(c, external_se=external_se.get(c.model)) for c in results.comparisons)
    return replace(results, comparisons=comps)


def _with_alpaca_eval_lc(results: Results, file: str, baseline: str, difficulty_file: str) -> Results:
    """AlpacaEval's LC v1 of every candidate beside evalsuite's LC (the stats layer owns the formula)."""
    from dataclasses import replace

    from evalsuite.interop.alpaca_eval import alpaca_eval_length_controlled, read_instruction_difficulty

    lc = alpaca_eval_length_controlled(file, baseline, read_instruction_difficulty(difficulty_file))
    comps = tuple(replace(c, alpaca_eval_lc_win_rate=round(lc[c.model].win_rate, 6) if c.model in lc else None)
                  for c in results.comparisons)
    return replace(results, comparisons=comps)


__all__ = ["JUDGMENT_FORMATS", "ImportOutcome", "ImportedJudgments", "import_judgments"]
