"""Vote files for judge agreement: the MT-Bench human-judgment shape, FastChat pair judgments, or a run's own matches."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from evalsuite.errors import InputError
from evalsuite.jsonl import read_json_records
from evalsuite.stats import Vote
from evalsuite.store.names import check_judge_name, check_model_name


def _judge_name(judge: Any) -> str:
    # MT-Bench's human file has strings ("author_0"); FastChat's judgment files have [model, template] lists
    return "/".join(map(str, judge)) if isinstance(judge, list) else str(judge)


def _checked(vote: Vote, where: str) -> Vote:
    """The vote, once its model and judge names pass the name rules (names from files are untrusted)."""
    check_model_name(vote.model_a, where, fix="rename the model in the file")
    check_model_name(vote.model_b, where, fix="rename the model in the file")
    if vote.judge:
        check_judge_name(vote.judge, where, fix="rename the judge in the file")
    return vote


def read_votes(source: str | Path) -> list[Vote]:
    p = Path(source)
    if p.is_dir():
        return _run_votes(p)
    votes: list[Vote] = []
    for label, r in read_json_records(p):
        where = f"{p}: {label}"
        if "g1_winner" in r:  # FastChat pair judgment: one vote from the two orders, MT-Bench's rule
            w1, w2 = r["g1_winner"], r["g2_winner"]
            winner = w1 if w1 == w2 else "tie (inconsistent)"
            if winner == "error":
                continue
            winner = {"model_1": "model_a", "model_2": "model_b"}.get(winner, winner)
            votes.append(_checked(Vote(str(r["question_id"]), int(r.get("turn", 1)), str(r["model_1"]), str(r["model_2"]),
                                       winner, _judge_name(r.get("judge", ""))), where))
            continue
        try:
            vote = Vote(str(r["question_id"]), int(r.get("turn", 1)), str(r["model_a"]), str(r["model_b"]), str(r["winner"]), _judge_name(r.get("judge", "")))
        except KeyError as exc:
            raise InputError(f"missing field {exc}", where=where, fix="votes need question_id, model_a, model_b, winner, judge, turn") from None
        votes.append(_checked(vote, where))
    return votes


def _run_votes(run_dir: Path) -> list[Vote]:
    from evalsuite.judge.swap import build_matches
    from evalsuite.store import RunStore

    with RunStore(run_dir) as store:
        categories = {q: v.category for q, v in store.questions().items()}
        judgments = store.judgments()
    votes = []
    for m in build_matches(judgments, categories, "strict"):
        if m.error or m.score is None:
            continue
        winner = "model_a" if m.score > 0.5 else "model_b" if m.score < 0.5 else ("tie (inconsistent)" if m.inconsistent else "tie")
        votes.append(Vote(m.question_id, m.turn, m.model_x, m.model_y, winner, (m.xy or m.yx).judge))  # type: ignore[union-attr]
    return votes


def filter_votes(votes: Sequence[Vote], pattern: str | None) -> list[Vote]:
    if not pattern:
        return list(votes)
    rx = re.compile(pattern)
    return [v for v in votes if rx.search(v.judge)]


def vote_score(v: Vote, where: str) -> float:
    """A vote's score for model_a: 1 picked, 0 the other, 0.5 any "tie..." winner (else a one-line input error)."""
    if v.winner == "model_a":
        return 1.0
    if v.winner == "model_b":
        return 0.0
    if v.winner.startswith("tie"):
        return 0.5
    raise InputError(f"vote on question {v.question_id} turn {v.turn} has winner {v.winner!r}", where=where,
                     fix="winner must be model_a, model_b or tie")
