"""The preference-data checklist: what to look at before spending GPU hours on DPO/SimPO/IPO/KTO.

:func:`check_preferences` is a pure function of the pairs: length distribution of chosen vs rejected (a large ratio
means the judge-visible signal may be length, not quality), near-identical pairs (no signal), empty, very short and
very long replies, duplicate prompts, coverage by category/source/topic, and a seeded random sample for a human to
confirm that chosen is better. :func:`clean_preferences` drops what cannot help training; :func:`render_report` and
:func:`render_cleaning` print rich tables. Reads through the plain-JSON parser in ``_data``: no ``datasets`` import.
"""

from __future__ import annotations

import difflib
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import fmean, median
from typing import TYPE_CHECKING

from evalsuite.trainers._data import PreferencePair

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

# Chosen/rejected mean-length ratio beyond which the data teaches length (either way).
LENGTH_BIAS_RATIO = 2.0
# SequenceMatcher ratio at or above which chosen and rejected carry no preference signal.
NEAR_IDENTICAL_RATIO = 0.95
MIN_WORDS = 3
MAX_WORDS = 2000
DEFAULT_SAMPLE = 5

DROP_REASONS = ("empty", "near_identical", "duplicate_prompt")


@dataclass(frozen=True)
class LengthStats:
    """Reply lengths in words."""

    mean: float
    median: float
    minimum: int
    maximum: int

    @classmethod
    def of(cls, counts: Sequence[int]) -> "LengthStats":
        if not counts:
            return cls(0.0, 0.0, 0, 0)
        return cls(fmean(counts), float(median(counts)), min(counts), max(counts))


@dataclass(frozen=True)
class Finding:
    """One record that fails a check, and how."""

    record: int
    detail: str


@dataclass
class DataReport:
    """Everything :func:`check_preferences` found."""

    n_pairs: int
    chosen_words: LengthStats
    rejected_words: LengthStats
    length_ratio: float  # mean chosen words / mean rejected words
    chosen_longer_share: float  # share of pairs whose chosen reply is longer
    length_bias: bool
    empty: list[Finding] = field(default_factory=list)
    too_short: list[Finding] = field(default_factory=list)
    too_long: list[Finding] = field(default_factory=list)
    near_identical: list[Finding] = field(default_factory=list)
    duplicate_prompts: list[Finding] = field(default_factory=list)
    coverage_field: str | None = None
    coverage: dict[str, int] = field(default_factory=dict)
    sample: list[PreferencePair] = field(default_factory=list)
    min_words: int = MIN_WORDS
    max_words: int = MAX_WORDS

    def issue_counts(self) -> dict[str, int]:
        """Records failing each check (a record with two bad replies counts once per check)."""
        return {
            "empty": len({f.record for f in self.empty}),
            "very short": len({f.record for f in self.too_short}),
            "very long": len({f.record for f in self.too_long}),
            "near-identical": len(self.near_identical),
            "duplicate prompt": len(self.duplicate_prompts),
        }


@dataclass
class CleanResult:
    """Pairs kept by :func:`clean_preferences` and the record numbers dropped, by reason."""

    kept: list[PreferencePair]
    dropped: dict[str, list[int]]


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _words(text: str) -> int:
    return len(text.split())


def near_identical(a: str, b: str, threshold: float = NEAR_IDENTICAL_RATIO) -> float | None:
    """The similarity of two replies when it reaches ``threshold`` (1.0 if equal up to whitespace), else None."""
    na, nb = _normalised(a), _normalised(b)
    if na == nb:
        return 1.0
    matcher = difflib.SequenceMatcher(None, na, nb, autojunk=False)
    # The cheap upper bounds rule out most pairs before the quadratic ratio().
    if matcher.real_quick_ratio() < threshold or matcher.quick_ratio() < threshold:
        return None
    ratio = matcher.ratio()
    return ratio if ratio >= threshold else None


def _duplicates(pairs: Sequence[PreferencePair]) -> list[Finding]:
    first_seen: dict[str, int] = {}
    findings = []
    for pair in pairs:
        key = _normalised(pair.prompt_text)
        if key in first_seen:
            findings.append(Finding(pair.record, f"same prompt as record {first_seen[key]}"))
        else:
            first_seen[key] = pair.record
    return findings


def check_preferences(
    rows: Sequence[PreferencePair],
    *,
    min_words: int = MIN_WORDS,
    max_words: int = MAX_WORDS,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
) -> DataReport:
    """Run every check on the pairs; pure (the sample is drawn with its own seeded generator)."""
    chosen_counts = [_words(p.chosen) for p in rows]
    rejected_counts = [_words(p.rejected) for p in rows]
    chosen_stats, rejected_stats = LengthStats.of(chosen_counts), LengthStats.of(rejected_counts)
    if rejected_stats.mean > 0:
        ratio = chosen_stats.mean / rejected_stats.mean
    else:
        ratio = float("inf") if chosen_stats.mean > 0 else 1.0
    longer = sum(c > r for c, r in zip(chosen_counts, rejected_counts))
    report = DataReport(
        n_pairs=len(rows),
        chosen_words=chosen_stats,
        rejected_words=rejected_stats,
        length_ratio=ratio,
        chosen_longer_share=longer / len(rows) if rows else 0.0,
        length_bias=ratio > LENGTH_BIAS_RATIO or ratio < 1 / LENGTH_BIAS_RATIO,
        min_words=min_words,
        max_words=max_words,
    )
    for pair, n_chosen, n_rejected in zip(rows, chosen_counts, rejected_counts):
        if not pair.prompt_text.strip():
            report.empty.append(Finding(pair.record, "prompt is empty"))
        for side, text, count in (("chosen", pair.chosen, n_chosen), ("rejected", pair.rejected, n_rejected)):
            if not text.strip():
                report.empty.append(Finding(pair.record, f"{side} is empty"))
            elif count < min_words:
                report.too_short.append(Finding(pair.record, f"{side} has {count} word{'s' * (count != 1)}"))
            elif count > max_words:
                report.too_long.append(Finding(pair.record, f"{side} has {count} words"))
        if pair.chosen.strip() and pair.rejected.strip():
            similarity = near_identical(pair.chosen, pair.rejected)
            if similarity is not None:
                detail = "identical after whitespace" if similarity == 1.0 else f"similarity {similarity:.3f}"
                report.near_identical.append(Finding(pair.record, detail))
    report.duplicate_prompts = _duplicates(rows)
    fields = Counter(p.group_field for p in rows if p.group_field)
    if fields:
        report.coverage_field = "/".join(name for name, _ in fields.most_common())
        counts = Counter(p.group if p.group is not None else "(none)" for p in rows)
        report.coverage = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    if sample > 0 and rows:
        picked = random.Random(seed).sample(range(len(rows)), min(sample, len(rows)))
        report.sample = [rows[i] for i in sorted(picked)]
    return report


def clean_preferences(rows: Sequence[PreferencePair]) -> CleanResult:
    """Drop pairs that cannot teach a preference: empty replies or prompt, near-identical replies, and repeats of a
    prompt already kept (the first kept occurrence stays). Each dropped record is counted under its first reason."""
    dropped: dict[str, list[int]] = {reason: [] for reason in DROP_REASONS}
    kept: list[PreferencePair] = []
    seen_prompts: set[str] = set()
    for pair in rows:
        if not (pair.prompt_text.strip() and pair.chosen.strip() and pair.rejected.strip()):
            dropped["empty"].append(pair.record)
        elif near_identical(pair.chosen, pair.rejected) is not None:
            dropped["near_identical"].append(pair.record)
        elif _normalised(pair.prompt_text) in seen_prompts:
            dropped["duplicate_prompt"].append(pair.record)
        else:
            seen_prompts.add(_normalised(pair.prompt_text))
            kept.append(pair)
    return CleanResult(kept=kept, dropped=dropped)


def _records(findings: Sequence[Finding], limit: int = 6) -> str:
    numbers = sorted({f.record for f in findings})
    shown = ", ".join(str(n) for n in numbers[:limit])
    return shown + (f", … (+{len(numbers) - limit})" if len(numbers) > limit else "")


def _clip(text: str, limit: int = 400) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_report(report: DataReport, console: "Console", *, source: str = "") -> None:
    """Print the checklist as rich tables: lengths, issues, coverage, then the sample to read."""
    from rich.table import Table
    from rich.text import Text

    title = f"Preference data: {source}" if source else "Preference data"
    console.print(Text(f"{title} — {report.n_pairs} pairs", style="bold"))
    lengths = Table()
    lengths.add_column("words")
    for name in ("mean", "median", "min", "max"):
        lengths.add_column(name, justify="right")
    for side, stats in (("chosen", report.chosen_words), ("rejected", report.rejected_words)):
        lengths.add_row(side, f"{stats.mean:.1f}", f"{stats.median:.1f}", str(stats.minimum), str(stats.maximum))
    console.print(lengths)
    bias_style = "bold red" if report.length_bias else "green"
    console.print(
        Text.assemble(
            ("chosen/rejected length ratio ", ""),
            (f"{report.length_ratio:.2f}", bias_style),
            (f"; chosen is longer in {report.chosen_longer_share:.0%} of pairs", ""),
            (
                f" — LENGTH BIAS (beyond {LENGTH_BIAS_RATIO:g}x): a model can learn 'longer wins' instead of quality"
                if report.length_bias
                else "",
                bias_style,
            ),
        )
    )

    issues = Table(title="Checks", title_justify="left")
    for name in ("check", "records", "examples (record numbers)", "rule"):
        issues.add_column(name, justify="right" if name == "records" else "left")
    rules = {
        "empty": (report.empty, "prompt, chosen or rejected blank"),
        "very short": (report.too_short, f"< {report.min_words} words"),
        "very long": (report.too_long, f"> {report.max_words} words"),
        "near-identical": (report.near_identical, f"similarity ≥ {NEAR_IDENTICAL_RATIO:g} or equal up to whitespace"),
        "duplicate prompt": (report.duplicate_prompts, "prompt seen in an earlier record"),
    }
    for name, count in report.issue_counts().items():
        findings, rule = rules[name]
        style = "bold red" if count else "green"
        issues.add_row(Text(name, style=style), Text(str(count), style=style), _records(findings), rule)
    console.print(issues)

    if report.coverage:
        coverage = Table(title=f"Coverage by {report.coverage_field}", title_justify="left")
        coverage.add_column(report.coverage_field or "group")
        coverage.add_column("pairs", justify="right")
        coverage.add_column("share", justify="right")
        for group, count in report.coverage.items():
            coverage.add_row(Text(group), str(count), f"{count / report.n_pairs:.0%}")
        console.print(coverage)

    if report.sample:
        sample = Table(
            title=f"Random sample ({len(report.sample)}): is chosen really better?",
            title_justify="left",
            show_lines=True,
        )
        for name in ("record", "prompt", "chosen", "rejected"):
            sample.add_column(name, overflow="fold", justify="right" if name == "record" else "left")
        for pair in report.sample:
            sample.add_row(
                str(pair.record), Text(_clip(pair.prompt_text)), Text(_clip(pair.chosen)), Text(_clip(pair.rejected))
            )
        console.print(sample)


def render_cleaning(result: CleanResult, console: "Console", *, out: "Path | str", total: int) -> None:
    """Print what ``--out`` kept and dropped, with counts and the records per reason."""
    from rich.table import Table

    table = Table(title=f"Wrote {len(result.kept)} of {total} pairs to {out}", title_justify="left")
    table.add_column("dropped because")
    table.add_column("records", justify="right")
    table.add_column("record numbers")
    labels = {
        "empty": "empty prompt or reply",
        "near_identical": "chosen ≈ rejected",
        "duplicate_prompt": "duplicate prompt (first kept)",
    }
    for reason in DROP_REASONS:
        numbers = result.dropped[reason]
        table.add_row(labels[reason], str(len(numbers)), _records([Finding(n, "") for n in numbers]))
    console.print(table)


__all__ = [
    "LENGTH_BIAS_RATIO",
    "MAX_WORDS",
    "MIN_WORDS",
    "NEAR_IDENTICAL_RATIO",
    "CleanResult",
    "DataReport",
    "Finding",
    "LengthStats",
    "check_preferences",
    "clean_preferences",
    "near_identical",
    "render_cleaning",
    "render_report",
]
