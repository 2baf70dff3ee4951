"""The records that flow between stages (see DESIGN.md, "Records").

Every stage reads and writes these plain dataclasses; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["A", "B", "tie", "error"]
ErrorReason = Literal["parse", "api", "missing"]

CATEGORIES: tuple[str, ...] = (
    "writing",
    "roleplay",
    "reasoning",
    "math",
    "coding",
    "extraction",
    "stem",
    "humanities",
)
# Categories whose questions carry reference answers and get reference-guided judging.
REFERENCE_CATEGORIES: frozenset[str] = frozenset({"math", "reasoning", "coding"})
# MT-Bench's per-category sampling temperatures.
CATEGORY_TEMPERATURE: dict[str, float] = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}
DEFAULT_TEMPERATURE = 0.7


@dataclass(frozen=True)
class Question:
    question_id: str
    category: str
    turns: tuple[str, ...]
    reference: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Answer:
    model: str
    question_id: str
    turns: tuple[str, ...]
    backend: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class ParsedVerdict:
    """What a judge said about one ordered pair: A = first shown, B = second shown.

    ``p_first`` is a soft verdict in [0, 1] (probability that the first answer is better, ties as half)
    when the judge was read through token log-probabilities; None for a parsed text verdict.
    ``score`` is a 1-10 grade for single-answer grading.
    """

    verdict: Verdict
    reason: str | None = None
    strong: bool = False
    p_first: float | None = None
    score: float | None = None


@dataclass(frozen=True)
class Judgment:
    judge: str
    template: str
    template_hash: str
    question_id: str
    turn: int
    model_a: str  # shown first
    model_b: str  # shown second
    raw: str
    verdict: Verdict
    reason: str | None = None
    p_first: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    cache_key: str = ""
    score: float | None = None  # single-answer grading: the 1-10 grade of model_a (model_b is "")


@dataclass(frozen=True)
class Match:
    """The two judgments of one (question, turn, X, Y), reconciled.

    ``score`` is X's score in [0, 1] (1 = X wins, 0.5 = tie, 0 = Y wins), None when either order errored.
    """

    question_id: str
    category: str
    turn: int
    model_x: str
    model_y: str
    score: float | None
    inconsistent: bool
    error: bool
    xy: Judgment | None = None  # X shown first
    yx: Judgment | None = None  # Y shown first
