"""``evalsuite data check``: the preference-data checklist, and ``--out`` to write the cleaned set."""

from __future__ import annotations

import json
from pathlib import Path

import click

from evalsuite.errors import InputError
from evalsuite.trainers.data_check import DEFAULT_SAMPLE, MAX_WORDS, MIN_WORDS


@click.group("data")
def data_group() -> None:
    """Inspect and clean training data."""


@data_group.command("check")
@click.argument("prefs", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the pairs left after dropping empty, near-identical and repeated-prompt pairs (JSONL).",
)
@click.option(
    "--sample", type=click.IntRange(min=0), default=DEFAULT_SAMPLE, show_default=True, help="Pairs to print for a human."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the printed sample.")
@click.option(
    "--min-words", type=click.IntRange(min=0), default=MIN_WORDS, show_default=True, help="Shorter replies are flagged."
)
@click.option(
    "--max-words", type=click.IntRange(min=1), default=MAX_WORDS, show_default=True, help="Longer replies are flagged."
)
def check_cmd(prefs: Path, out: Path | None, sample: int, seed: int, min_words: int, max_words: int) -> None:
    """Check a preference file (PREFS: .jsonl or .json; plain prompt/chosen/rejected or UltraFeedback message lists)."""
    from rich.console import Console

    from evalsuite.trainers import parse_preference_pairs, read_records
    from evalsuite.trainers.data_check import check_preferences, clean_preferences, render_cleaning, render_report

    if out is not None and out.resolve() == prefs.resolve():
        raise InputError("--out would overwrite the input", where=str(out), fix="write the cleaned set to a new file")
    records = read_records(prefs)
    pairs = parse_preference_pairs(records, source=str(prefs))
    console = Console()
    report = check_preferences(pairs, min_words=min_words, max_words=max_words, sample=sample, seed=seed)
    render_report(report, console, source=str(prefs))
    if out is None:
        return
    result = clean_preferences(pairs)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for pair in result.kept:
            # The original record, untouched: cleaning removes records, it never rewrites them.
            handle.write(json.dumps(records[pair.record - 1].data, ensure_ascii=False) + "\n")
    render_cleaning(result, console, out=out, total=len(pairs))


__all__ = ["check_cmd", "data_group"]
