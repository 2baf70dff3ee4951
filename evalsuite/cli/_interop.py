"""``export``, ``import-answers`` and ``import-judgments``: wiring over :mod:`evalsuite.interop`."""

from __future__ import annotations

from pathlib import Path

import click

from evalsuite.errors import InputError


@click.command("export")
@click.option("--run-dir", required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--format", "fmt", type=click.Choice(["fastchat", "alpaca-eval"]), default="fastchat", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write into (fastchat: model_answer/ and model_judgment/; alpaca-eval: <model>/model_outputs.json).")
def export_cmd(run_dir: str, fmt: str, out: str) -> None:
    """Write a run's answers (and judgments) in FastChat llm_judge's or AlpacaEval's formats."""
    from evalsuite.interop.export import export_run

    for f in export_run(run_dir, out, fmt):
        click.echo(f"{f.path}: {f.records} {f.what}", err=True)


@click.command("import-answers")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--model", help="Name to store the answers under (default: the model named in each file).")
@click.option("--format", "fmt", type=click.Choice(["fastchat", "arena-hard", "alpaca-eval"]),
              help="The files' format (default: told from the first record).")
@click.option("--run-dir", default="runs/default", show_default=True, type=click.Path(file_okay=False))
def import_answers_cmd(files: tuple[str, ...], model: str | None, fmt: str | None, run_dir: str) -> None:
    """Bring answer files into a run (FastChat model_answer, Arena-Hard model_answer, AlpacaEval model_outputs.json),
    to judge answers you already have without regenerating them."""
    from evalsuite.interop.answers import import_answers

    for batch in import_answers(files, run_dir, model=model, fmt=fmt):
        click.echo(f"{batch.path}: read as {batch.format}; {len(batch.answers)} answers stored as {batch.models} in {run_dir}",
                   err=True)


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
