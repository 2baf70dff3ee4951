"""Agreement between two sets of pairwise votes (two judges, or a judge and humans), by the MT-Bench paper's rules.

Votes are grouped by (turn, question, unordered model pair) and each vote is normalised to the *name* of the model it
picked, or "tie" (any winner starting with "tie", e.g. "tie (inconsistent)" or "tie (bothbad)"), so the same verdict
agrees whichever order the two models were shown in. Within a group every vote of set 1 is compared with every vote
of set 2; a set compared with itself compares every unordered pair of distinct votes once (FastChat's
``compute_agreement.py``, human vs human).

- Setup S1: ties are a label like any other (tie vs tie agrees, tie vs win does not).
- Setup S2: every comparison in which either vote is a tie is dropped.

Cohen's kappa is computed over the S1 comparisons with labels {first model by name wins, second wins, tie}; the
"rater 1" of a comparison is the set-1 vote (for one set against itself, the earlier of the two votes in input order).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

_TIE = 2  # label index; 0 = first model by name wins, 1 = second model by name wins

GroupKey = tuple[int, str, str, str]  # (turn, question_id, first model by name, second model by name)


@dataclass(frozen=True)
class Vote:
    """One pairwise vote: ``winner`` is "model_a", "model_b", "tie" or a "tie (...)" variant."""

    question_id: str
    turn: int
    model_a: str
    model_b: str
    winner: str
    judge: str


@dataclass(frozen=True)
class AgreementRow:
    """Agreement in one turn (None = all turns) under one setup; ``ratio`` is NaN when nothing was compared."""

    turn: int | None
    setup: Literal["S1", "S2"]
    agree: int
    total: int
    ratio: float


@dataclass(frozen=True)
class AgreementResult:
    """Per-turn and overall rows (S1 then S2 each), kappa over the S1 comparisons, groups with a comparison."""

    rows: list[AgreementRow]
    kappa: float
    n_groups: int
    same_set: bool = False  # both sides were the same votes, compared as one set against itself


def agreement(votes_1: Sequence[Vote], votes_2: Sequence[Vote] | None = None) -> AgreementResult:
    """Agreement of ``votes_1`` with ``votes_2`` (or of ``votes_1`` with itself when ``votes_2`` is None).

    When ``votes_2`` holds exactly the votes of ``votes_1`` (the same file and judge filter on both sides), it is
    one set against itself: distinct pairs of votes only, never a vote with itself (which would always agree and
    inflate the ratio); ``same_set`` says so.
    """
    same_set = votes_2 is not None and Counter(votes_1) == Counter(votes_2)
    if same_set:
        votes_2 = None
    # counts[turn] = [S1 agree, S1 total, S2 agree, S2 total]
    counts: dict[int, list[int]] = {}
    confusion = np.zeros((3, 3), dtype=np.int64)
    compared_groups: set[GroupKey] = set()
    for key, first, second in _comparisons(votes_1, votes_2):
        turn_counts = counts.setdefault(key[0], [0, 0, 0, 0])
        same = first == second
        turn_counts[0] += same
        turn_counts[1] += 1
        if first != _TIE and second != _TIE:
            turn_counts[2] += same
            turn_counts[3] += 1
        confusion[first, second] += 1
        compared_groups.add(key)

    rows: list[AgreementRow] = []
    for turn in sorted(counts):
        rows.extend(_rows(turn, counts[turn]))
    overall = [sum(c[k] for c in counts.values()) for k in range(4)]
    rows.extend(_rows(None, overall))
    return AgreementResult(rows=rows, kappa=_cohen_kappa(confusion), n_groups=len(compared_groups), same_set=same_set)


def _rows(turn: int | None, c: Sequence[int]) -> list[AgreementRow]:
    return [
        AgreementRow(turn=turn, setup="S1", agree=c[0], total=c[1], ratio=c[0] / c[1] if c[1] else float("nan")),
        AgreementRow(turn=turn, setup="S2", agree=c[2], total=c[3], ratio=c[2] / c[3] if c[3] else float("nan")),
    ]


def _label(vote: Vote) -> tuple[GroupKey, int]:
    """The vote's group and its label relative to the model pair in name order."""
    if vote.model_a == vote.model_b:
        raise ValueError(
            f"vote on question {vote.question_id!r} turn {vote.turn} compares {vote.model_a!r} with itself"
        )
    first, second = sorted((vote.model_a, vote.model_b))
    key = (vote.turn, vote.question_id, first, second)
    if vote.winner.startswith("tie"):
        return key, _TIE
    if vote.winner == "model_a":
        picked = vote.model_a
    elif vote.winner == "model_b":
        picked = vote.model_b
    else:
        raise ValueError(
            f"vote on question {vote.question_id!r} turn {vote.turn} by {vote.judge!r} has winner {vote.winner!r}; "
            "expected 'model_a', 'model_b' or 'tie...' (drop error votes first)"
        )
    return key, 0 if picked == first else 1


def _group(votes: Sequence[Vote]) -> dict[GroupKey, list[int]]:
    groups: dict[GroupKey, list[int]] = {}
    for vote in votes:
        key, label = _label(vote)
        groups.setdefault(key, []).append(label)
    return groups


def _comparisons(votes_1: Sequence[Vote], votes_2: Sequence[Vote] | None) -> Iterator[tuple[GroupKey, int, int]]:
    groups_1 = _group(votes_1)
    if votes_2 is None:
        for key, labels in groups_1.items():
            for i in range(len(labels)):
                for j in range(i + 1, len(labels)):
                    yield key, labels[i], labels[j]
        return
    groups_2 = _group(votes_2)
    for key, labels_1 in groups_1.items():
        for label_1 in labels_1:
            for label_2 in groups_2.get(key, ()):
                yield key, label_1, label_2


def _cohen_kappa(confusion: np.ndarray) -> float:
    """(p_o - p_e) / (1 - p_e); NaN when nothing was compared or chance agreement is already 1."""
    n = confusion.sum()
    if n == 0:
        return float("nan")
    observed = np.trace(confusion) / n
    expected = float(confusion.sum(axis=1) @ confusion.sum(axis=0)) / n**2
    if expected >= 1.0:
        return float("nan")
    return float((observed - expected) / (1.0 - expected))
