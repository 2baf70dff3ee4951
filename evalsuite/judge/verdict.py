"""Verdict formats and the parser that turns a judge's output into a ``ParsedVerdict``.

This module owns the rule from DESIGN.md ("Judging"): the verdict is the *last* well-formed token of the
template's format in the judge's output; only tokens the format offers count; no verdict is an error with
reason ``parse``, never a tie. It also owns the log-probability reading of a verdict (``verdict_from_probs``).
Pure functions, no I/O.

Formats:

- ``mtbench`` (default): ``[[A]]`` first answer better, ``[[B]]`` second better, ``[[C]]`` tie.
- ``arena5``: ``[[A>>B]]`` ``[[A>B]]`` ``[[A=B]]`` ``[[B>A]]`` ``[[B>>A]]``; ``>>`` sets ``strong=True``,
  ``A=B`` is a tie.
- ``score10``: single-answer grading, ``[[N]]`` with N a grade from 1 to 10 (decimals such as ``[[7.5]]``
  allowed). A grade is not a preference, so it cannot be ``A``, ``B`` or ``tie`` in the pairwise sense; the rule
  here is: the one graded answer is shown in the first (A) slot, so a successful parse is
  ``ParsedVerdict("A", score=N)`` ("the shown answer was graded N") and a failed one is
  ``ParsedVerdict("error", reason="parse")``. ``swap.reconcile_swap`` refuses verdicts that carry a score, so a
  grade can never be counted as a pairwise win by mistake.

Tokens are matched strictly: ``[[ A ]]``, ``[[a]]``, ``[[D]]``, ``[[11]]`` or ``[[A > B]]`` are not verdicts.
A judge that strays from the format it was told is counted as a parse error (visible, retryable) rather than
guessed at.

>>> parse_verdict("B is more precise. [[B]]")
ParsedVerdict(verdict='B', reason=None, strong=False, p_first=None, score=None)
>>> parse_verdict('I would say "[[A]]" at first, but on reflection: [[C]]').verdict
'tie'
>>> parse_verdict("Both are fine.")
ParsedVerdict(verdict='error', reason='parse', strong=False, p_first=None, score=None)
>>> parse_verdict("Final verdict: [[B>>A]]", "arena5")
ParsedVerdict(verdict='B', reason=None, strong=True, p_first=None, score=None)
>>> parse_verdict("Rating: [[7.5]]", "score10")
ParsedVerdict(verdict='A', reason=None, strong=False, p_first=None, score=7.5)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

from evalsuite.records import ParsedVerdict, Verdict

__all__ = ["VERDICT_FORMATS", "VerdictFormat", "get_verdict_format", "parse_verdict", "verdict_from_probs"]


@dataclass(frozen=True)
class VerdictFormat:
    """A verdict format: the tokens a template asks the judge to end with.

    ``logprob_choices`` are the single tokens read after ``[[`` in log-probability mode (None when the format
    cannot be read that way).
    """

    name: str
    tokens: tuple[str, ...]
    logprob_choices: tuple[str, ...] | None


VERDICT_FORMATS: dict[str, VerdictFormat] = {
    "mtbench": VerdictFormat("mtbench", ("[[A]]", "[[B]]", "[[C]]"), ("A", "B", "C")),
    "arena5": VerdictFormat("arena5", ("[[A>>B]]", "[[A>B]]", "[[A=B]]", "[[B>A]]", "[[B>>A]]"), None),
    # Integer grades are the canonical tokens; decimal grades in 1..10 are accepted by the parser as well.
    "score10": VerdictFormat("score10", tuple(f"[[{n}]]" for n in range(1, 11)), None),
}

# Parsed verdicts are immutable, so each token maps to one shared instance (no allocation per parse).
_TOKEN_VERDICTS: dict[str, dict[str, ParsedVerdict]] = {
    "mtbench": {
        "[[A]]": ParsedVerdict("A"),
        "[[B]]": ParsedVerdict("B"),
        "[[C]]": ParsedVerdict("tie"),
    },
    "arena5": {
        "[[A>>B]]": ParsedVerdict("A", strong=True),
        "[[A>B]]": ParsedVerdict("A"),
        "[[A=B]]": ParsedVerdict("tie"),
        "[[B>A]]": ParsedVerdict("B"),
        "[[B>>A]]": ParsedVerdict("B", strong=True),
    },
}
# One alternation of the literal tokens per format; longest first so "[[A>>B]]" is never read as a shorter one.
_TOKEN_PATTERNS: dict[str, re.Pattern[str]] = {
    name: re.compile("|".join(re.escape(t) for t in sorted(table, key=len, reverse=True)))
    for name, table in _TOKEN_VERDICTS.items()
}
# 1..10, optional decimals; "10.5", "0.5", "07", "7." and "11" do not match, so they are not grades.
_SCORE_PATTERN = re.compile(r"\[\[(10(?:\.0+)?|[1-9](?:\.[0-9]+)?)\]\]")

_PARSE_ERROR = ParsedVerdict("error", reason="parse")


def get_verdict_format(fmt: str) -> VerdictFormat:
    """The format named ``fmt``; ValueError naming the known formats otherwise."""
    try:
        return VERDICT_FORMATS[fmt]
    except KeyError:
        known = ", ".join(sorted(VERDICT_FORMATS))
        raise ValueError(f"unknown verdict format {fmt!r}; known formats: {known}") from None


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for last in pattern.finditer(text):
        pass
    return last


def parse_verdict(text: str, fmt: str = "mtbench") -> ParsedVerdict:
    """Parse a judge's output: the last well-formed token of ``fmt`` wins; none is ``error`` (reason ``parse``).

    >>> parse_verdict("[[A]] ... no wait, [[B]]").verdict
    'B'
    >>> parse_verdict("[[ A ]] [[a]] [[D]]").reason
    'parse'
    >>> parse_verdict("[[A=B]]", "arena5").verdict
    'tie'
    >>> parse_verdict("Rating: [[11]]", "score10").verdict
    'error'
    """
    get_verdict_format(fmt)
    if fmt == "score10":
        match = _last_match(_SCORE_PATTERN, text)
        if match is None:
            return _PARSE_ERROR
        return ParsedVerdict("A", score=float(match.group(1)))
    match = _last_match(_TOKEN_PATTERNS[fmt], text)
    if match is None:
        return _PARSE_ERROR
    return _TOKEN_VERDICTS[fmt][match.group(0)]


def verdict_from_probs(probs: Mapping[str, float], fmt: str = "mtbench") -> ParsedVerdict:
    """A soft verdict from the judge's next-token probabilities of the format's choices (after ``[[``).

    ``p_first`` = (P(A) + P(C) / 2) / (P(A) + P(B) + P(C)): the chance the first answer is better, a tie counting
    half. ``verdict`` is the most probable choice (C is ``tie``; an exact tie for the top is ``tie``). Keys that are
    not choices are ignored; a missing choice counts as probability 0. No probability mass on the choices is an
    error with reason ``parse``, as for a text verdict with no token.

    >>> v = verdict_from_probs({"A": 0.6, "B": 0.2, "C": 0.2})
    >>> v.verdict, round(v.p_first, 3)
    ('A', 0.7)
    >>> verdict_from_probs({"D": 1.0}).reason
    'parse'
    """
    spec = get_verdict_format(fmt)
    if spec.logprob_choices is None:
        readable = ", ".join(sorted(n for n, f in VERDICT_FORMATS.items() if f.logprob_choices))
        raise ValueError(f"verdict format {fmt!r} has no log-probability mode; formats that do: {readable}")
    choice_a, choice_b, choice_tie = spec.logprob_choices
    p_a = float(probs.get(choice_a, 0.0))
    p_b = float(probs.get(choice_b, 0.0))
    p_tie = float(probs.get(choice_tie, 0.0))
    for choice, p in ((choice_a, p_a), (choice_b, p_b), (choice_tie, p_tie)):
        # A NaN or negative probability is a backend bug, not a judge's answer: fail loudly.
        if not (math.isfinite(p) and p >= 0.0):
            raise ValueError(f"probability of {choice!r} must be a finite number >= 0, got {p!r}")
    total = p_a + p_b + p_tie
    if total <= 0.0:
        return _PARSE_ERROR
    top = max(p_a, p_b, p_tie)
    verdict: Verdict
    if p_tie == top or p_a == p_b == top:
        verdict = "tie"
    elif p_a == top:
        verdict = "A"
    else:
        verdict = "B"
    return ParsedVerdict(verdict, p_first=(p_a + 0.5 * p_tie) / total)
