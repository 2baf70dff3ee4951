"""``export``, ``import-answers`` and ``import-judgments``: FastChat and AlpacaEval files in and out of a run."""

from __future__ import annotations

from pathlib import Path

import click

from evalsuite.errors import InputError


@click.command("export")
@click.option("--run-dir", required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--format", "fmt", type=click.Choice(["fastchat"]), default="fastchat", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write model_answer/ and model_judgment/ into.")
def export_cmd(run_dir: str, fmt: str, out: str) -> None:
    """Write a run's answers and judgments in FastChat llm_judge's schemas."""
    import json

    from evalsuite.interop.fastchat import pair_records, write_fastchat_answers
    from evalsuite.judge._calls import rendered_user_prompt
    from evalsuite.store import RunStore

    out_dir = Path(out)
    with RunStore(run_dir) as store:
        answers = {model: store.answers(model) for model in store.models()}
        questions = store.questions()
        for model, by_question in answers.items():
            n = write_fastchat_answers(by_question.values(), out_dir / "model_answer" / f"{model}.jsonl")
            click.echo(f"model_answer/{model}.jsonl: {n} answers", err=True)
        for judge in store.judges():
            pairwise = store.judgments(judge)
            if not pairwise:
                continue  # a judge that only graded single answers has no pair file
            recs = pair_records(pairwise, lambda j: rendered_user_prompt(j, questions, answers))
            p = out_dir / "model_judgment" / f"{judge.replace('/', '_')}_pair.jsonl"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
            click.echo(f"model_judgment/{p.name}: {len(recs)} pair records", err=True)


@click.command("import-answers")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--model", help="Name to store the answers under (default: each file's model_id).")
@click.option("--run-dir", default="runs/default", show_default=True, type=click.Path(file_okay=False))
def import_answers_cmd(files: tuple[str, ...], model: str | None, run_dir: str) -> None:
    """Bring FastChat model_answer files into a run, to judge answers you already have without regenerating them."""
    from evalsuite.interop.fastchat import read_fastchat_answers
    from evalsuite.store import RunStore

    if model and len(files) > 1:
        raise InputError("--model renames one file's answers; several files were given", fix="import one file per --model")
    batches = [read_fastchat_answers(f, model) for f in files]  # read everything before writing anything
    with RunStore(run_dir) as store:
        for f, answers in zip(files, batches):
            store.put_answers(answers)
            click.echo(f"{f}: {len(answers)} answers stored as {sorted({a.model for a in answers})} in {store.path}", err=True)


@click.command("import-judgments")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["fastchat", "alpaca-eval"]), required=True)
@click.option("--baseline", help="Baseline model (AlpacaEval: taken from the file).")
@click.option("--run-dir", default="runs/imported", show_default=True, type=click.Path(file_okay=False))
@click.option("--questions", "bench_path", type=click.Path(dir_okay=False), help="question.jsonl giving categories (FastChat).")
@click.option("--mode", type=click.Choice(["strict", "average"]), default="strict", show_default=True)
@click.option("--resamples", type=int, default=10_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def import_judgments_cmd(file: str, fmt: str, baseline: str | None, run_dir: str, bench_path: str | None, mode: str,
                         resamples: int, seed: int) -> None:
    """Import external judgments (FastChat pair judgments, AlpacaEval annotations) and write the run's results.

    Then `evalsuite report --run-dir DIR` and `evalsuite gate` work on them like on a run of evalsuite's own.
    """
    from evalsuite import __version__
    from evalsuite.bench import read_questions
    from evalsuite.compare import write_outputs
    from evalsuite.cli._run import print_summary
    from evalsuite.judge.swap import build_matches
    from evalsuite.records import Question
    from evalsuite.report.results import StatsOptions, build_results, orient_to
    from evalsuite.store import RunStore

    options = StatsOptions(n_resamples=resamples, seed=seed)
    if fmt == "alpaca-eval":
        from evalsuite.interop.alpaca_eval import read_alpaca_eval_annotations

        matches = read_alpaca_eval_annotations(file)
        base = baseline or matches[0].model_y
        cands = sorted({m.model_x for m in matches} - {base})
        judge = "alpaca_eval_gpt4 (imported)"
        note = "Imported AlpacaEval annotations: one judged order per instruction, so position consistency is not measured."
        n_questions = len({m.question_id for m in matches})
        categories = ["alpaca_eval"]
    else:
        from evalsuite.interop.fastchat import read_fastchat_pair_judgments

        judgments = read_fastchat_pair_judgments(file)
        models = sorted({j.model_a for j in judgments} | {j.model_b for j in judgments})
        if baseline is None or baseline not in models:
            raise InputError(f"--baseline must name one of {models}", where=file, fix="pass --baseline MODEL")
        base = baseline
        cands = [m for m in models if m != base]
        if bench_path:
            qs = {q.question_id: q for q in read_questions(bench_path)}
        else:
            qs = {j.question_id: Question(j.question_id, "unknown", ("",)) for j in judgments}
        missing = sorted({j.question_id for j in judgments} - set(qs))
        if missing:
            raise InputError(f"judged questions {missing[:5]} are not in {bench_path}", fix="pass the matching question.jsonl")
        with RunStore(run_dir) as store:
            store.put_questions(qs.values())
            store.put_judgments(judgments)
        categories_map = {q: qs[q].category for q in qs}
        matches = build_matches(judgments, categories_map, mode, orient_to(base, cands))  # type: ignore[arg-type]
        judge = judgments[0].judge
        note = f"Imported FastChat pair judgments from {file}."
        n_questions = len({j.question_id for j in judgments})
        categories = sorted({m.category for m in matches})
    meta = {
        "evalsuite_version": __version__,
        "run_dir": run_dir,
        "benchmark": {"name": Path(file).name, "n_questions": n_questions, "categories": categories},
        "judge": judge,
        "templates": [],
        "mode": mode,
        "note": note,
    }
    results = build_results(matches, baseline=base, candidates=cands, lengths={}, options=options, meta=meta)
    rp, lp = write_outputs(results, Path(run_dir))
    print_summary(results)
    click.echo(f"wrote {rp} and {lp}", err=True)
