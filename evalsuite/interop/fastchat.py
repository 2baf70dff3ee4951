"""FastChat llm_judge formats: ``model_answer/*.jsonl`` and ``model_judgment/*_pair.jsonl``, both ways.

Answers: ``{question_id, answer_id, model_id, choices: [{index, turns}], tstamp}``.
Pair judgments: ``g1_*`` shows ``model_1`` first, ``g2_*`` shows ``model_2`` first; winners are ``model_1``,
``model_2``, ``tie`` or ``error``.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from evalsuite.jsonl import iter_jsonl
from evalsuite.errors import InputError
from evalsuite.records import Answer, Judgment, Verdict
from evalsuite.store.names import check_judge_name, check_model_name, check_template_name


def _qid_out(qid: str) -> int | str:
    # FastChat's ids are integers; keep ours as they are when they are not
    return int(qid) if qid.isdigit() else qid


def read_fastchat_answers(path: str | Path, model: str | None = None) -> list[Answer]:
    """Answers from a FastChat ``model_answer`` file; ``model`` renames them (default: the file's ``model_id``)."""
    out: list[Answer] = []
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        try:
            turns = obj["choices"][0]["turns"]
            qid = str(obj["question_id"])
        except (KeyError, IndexError, TypeError):
            raise InputError(
                "expected question_id and choices[0].turns", where=where, fix="use FastChat's model_answer format"
            ) from None
        if isinstance(turns, list):  # Arena-Hard v0.1 writes each turn as {"content": ..., "token_len": ...}
            turns = [t["content"] if isinstance(t, dict) and isinstance(t.get("content"), str) else t for t in turns]
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise InputError("choices[0].turns must be a list of strings", where=where, fix="one reply per user turn")
        name = model or obj.get("model_id")
        if not name:
            raise InputError("no model_id in the record", where=where, fix="pass --model NAME")
        name = check_model_name(str(name), where)
        out.append(Answer(model=name, question_id=qid, turns=tuple(turns), backend="import",
                          settings={"source": str(path), "format": "fastchat"}))
    if not out:
        raise InputError("no answers", where=str(path), fix="the file has no records")
    return out


def write_fastchat_answers(answers: Iterable[Answer], path: str | Path) -> int:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with p.open("w", encoding="utf-8") as fh:
        for a in answers:
            rec = {
                "question_id": _qid_out(a.question_id),
                "answer_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{a.model}/{a.question_id}/{a.turns}").hex[:22],
                "model_id": a.model,
                "choices": [{"index": 0, "turns": list(a.turns)}],
                "tstamp": time.time(),
            }
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


_G1 = {"A": "model_1", "B": "model_2", "tie": "tie", "error": "error"}  # model_1 shown first
_G2 = {"A": "model_2", "B": "model_1", "tie": "tie", "error": "error"}  # model_2 shown first


def pair_records(judgments: Sequence[Judgment], user_prompt: Callable[[Judgment], str] | None = None) -> list[dict[str, Any]]:
    """One FastChat pair record per (question, turn, unordered pair): model_1/model_2 in name order.

    ``user_prompt`` recovers the user message a judgment was asked with (the store keeps the inputs, not the
    rendered prompt); without it the ``g*_user_prompt`` fields are empty.
    """
    prompt = user_prompt or (lambda j: "")
    groups: dict[tuple[str, str, int, str, str], dict[tuple[str, str], Judgment]] = {}
    for j in judgments:
        m1, m2 = sorted((j.model_a, j.model_b))
        groups.setdefault((j.judge, j.question_id, j.turn, m1, m2), {})[(j.model_a, j.model_b)] = j
    out = []
    for (judge, qid, turn, m1, m2), orders in sorted(groups.items()):
        g1, g2 = orders.get((m1, m2)), orders.get((m2, m1))
        template = (g1 or g2).template  # type: ignore[union-attr]
        out.append(
            {
                "question_id": _qid_out(qid),
                "model_1": m1,
                "model_2": m2,
                "g1_winner": _G1[g1.verdict] if g1 else "error",
                "g2_winner": _G2[g2.verdict] if g2 else "error",
                "judge": [judge, template],
                "g1_user_prompt": prompt(g1) if g1 else "",
                "g1_judgment": g1.raw if g1 else "",
                "g2_user_prompt": prompt(g2) if g2 else "",
                "g2_judgment": g2.raw if g2 else "",
                "turn": turn,
                "tstamp": time.time(),
            }
        )
    return out


def read_fastchat_pair_judgments(path: str | Path) -> list[Judgment]:
    """FastChat pair judgments -> two ``Judgment`` records each (g1: model_1 first, g2: model_2 first)."""
    back1 = {v: k for k, v in _G1.items()}
    back2 = {v: k for k, v in _G2.items()}
    out: list[Judgment] = []
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        try:
            m1, m2, qid, turn = str(obj["model_1"]), str(obj["model_2"]), str(obj["question_id"]), int(obj.get("turn", 1))
            w1, w2 = obj["g1_winner"], obj["g2_winner"]
        except (KeyError, TypeError, ValueError):
            raise InputError(
                "expected model_1, model_2, question_id, turn, g1_winner, g2_winner",
                where=where,
                fix="use FastChat's model_judgment/*_pair.jsonl format",
            ) from None
        if w1 not in back1 or w2 not in back2:
            raise InputError(f"unknown winner {w1!r}/{w2!r}", where=where, fix="winners are model_1, model_2, tie or error")
        judge = obj.get("judge", ["imported"])
        judge_name, template = (judge[0], judge[1] if len(judge) > 1 else "imported") if isinstance(judge, list) else (str(judge), "imported")
        check_model_name(m1, where)
        check_model_name(m2, where)
        check_judge_name(str(judge_name), where)
        check_template_name(str(template), where)
        for (a, b), verdict, raw in (((m1, m2), back1[w1], obj.get("g1_judgment", "")), ((m2, m1), back2[w2], obj.get("g2_judgment", ""))):
            v: Verdict = verdict  # type: ignore[assignment]
            out.append(
                Judgment(
                    judge=str(judge_name), template=str(template), template_hash="imported", question_id=qid, turn=turn,
                    model_a=a, model_b=b, raw=str(raw), verdict=v, reason="parse" if v == "error" else None,
                    cache_key="import",
                )
            )
    return out
