"""The demo judge's verdict data: pairs of replies where one is plainly better, each shown in both orders.

A good reply is fluent, relevant and on topic; its plainly worse partner is made from it (or from the replies to
other prompts) by one of the failures a preference run can fall into: a line of symbols, a word or phrase repeated,
an empty reply, a fragment cut off after a few words, word salad, or a fluent reply to another question. Tie pairs
(the same reply twice, two good replies, two broken ones) teach the judge to say ``[[C]]`` when nothing separates
the replies. Every pair is emitted in both orders with the verdict that follows the better reply, so the first
position wins exactly as often as the second and position alone cannot pay.

The good replies come from ``data/judge_replies.jsonl`` (a prompt and its good replies; the shipped file holds the
reply written for each prompt of the bundled preference data); prompts are split by a stable hash into a training part and a held-apart part, so the held-apart
agreement the demo prints is measured on prompts the judge adapter never saw. Pure functions; no model here.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

from evalsuite.errors import InputError
from evalsuite.jsonl import iter_json_lines

Verdict = Literal["A", "B", "C"]
Split = Literal["train", "held"]

# The failures a broken reply shows; names appear in the data so a test (or a reader) can count them.
FAILURES: tuple[str, ...] = ("symbols", "repeat-word", "repeat-phrase", "empty", "fragment", "word-salad", "off-topic")
_SYMBOLS = (":", ".", "!", "-", "*", "?", "#", ",", ";", "=")
HELD_SHARE = 5  # one prompt in HELD_SHARE is held apart from training


@dataclass(frozen=True)
class PromptReplies:
    """A prompt and the good replies to it (a written one, and the model's own when there is one)."""

    prompt: str
    replies: tuple[str, ...]


@dataclass(frozen=True)
class VerdictExample:
    """One judge prompt's content and its target verdict (A: the first reply is better)."""

    question: str
    answer_a: str
    answer_b: str
    verdict: Verdict
    kind: str  # the failure that makes one reply worse, or "tie-*"


def split_of(prompt: str) -> Split:
    """Stable train / held-apart split of a prompt (a hash, not the file order).

    >>> split_of("What is 12 x 15?") in ("train", "held")
    True
    """
    digest = int(hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8], 16)
    return "held" if digest % HELD_SHARE == 0 else "train"


def read_prompt_replies(path: str | Path) -> list[PromptReplies]:
    """``{"prompt": str, "replies": [str, ...]}`` per line; every reply non-empty."""
    out = []
    for item in iter_json_lines(Path(path)):
        prompt, replies = item.data.get("prompt"), item.data.get("replies")
        if not isinstance(prompt, str) or not isinstance(replies, list) or not replies \
                or not all(isinstance(r, str) and r.strip() for r in replies):
            raise InputError(f"record {item.number} needs a prompt and a non-empty list of non-empty replies",
                             where=str(path), fix='write {"prompt": "...", "replies": ["..."]}')
        out.append(PromptReplies(prompt, tuple(replies)))
    return out


def broken_reply(kind: str, good: str, other: str, rng: random.Random) -> str:
    """``good`` turned into a plainly worse reply by failure ``kind`` (``other`` is a good reply to another prompt).

    >>> broken_reply("empty", "Paris is the capital.", "x", random.Random(0))
    ''
    >>> broken_reply("off-topic", "Paris is the capital.", "Use my_list[-1].", random.Random(0))
    'Use my_list[-1].'
    """
    words = good.split()
    if kind == "symbols":
        symbol = rng.choice(_SYMBOLS)
        return symbol * rng.randint(12, 80) if rng.random() < 0.7 else " ".join([symbol * rng.randint(2, 6)] * rng.randint(4, 12))
    if kind == "repeat-word":
        return " ".join([rng.choice(words)] * rng.randint(8, 30))
    if kind == "repeat-phrase":
        phrase = " ".join(words[: rng.randint(2, min(5, len(words)))])
        return " ".join([phrase] * rng.randint(4, 10))
    if kind == "empty":
        return ""
    if kind == "fragment":
        return " ".join(words[: rng.randint(1, min(3, max(1, len(words) - 1)))])
    if kind == "word-salad":
        shuffled = list(words)
        for _ in range(5):  # a few shuffles: a short reply may come back in order the first time
            rng.shuffle(shuffled)
            if shuffled != words:
                break
        return " ".join(w.strip(".,;:!?").lower() for w in shuffled)
    if kind == "off-topic":
        return other
    raise ValueError(f"unknown failure kind {kind!r}; known: {', '.join(FAILURES)}")


def _both_orders(question: str, better: str, worse: str, kind: str) -> list[VerdictExample]:
    return [VerdictExample(question, better, worse, "A", kind), VerdictExample(question, worse, better, "B", kind)]


def _tie(question: str, first: str, second: str, kind: str) -> list[VerdictExample]:
    return [VerdictExample(question, first, second, "C", kind), VerdictExample(question, second, first, "C", kind)]


def verdict_examples(
    items: Sequence[PromptReplies], *, decisive_per_prompt: int = 2, tie_every: int = 2, seed: int = 0
) -> list[VerdictExample]:
    """Judge examples for ``items``: ``decisive_per_prompt`` plainly-better pairs per prompt (failures in rotation,
    so every kind is equally common), a tie pair every ``tie_every`` prompts, each pair in both orders.

    >>> ex = verdict_examples([PromptReplies("Q1?", ("Answer one is here.",)), PromptReplies("Q2?", ("Two.",))])
    >>> sum(e.verdict == "A" for e in ex) == sum(e.verdict == "B" for e in ex)
    True
    """
    rng = random.Random(seed)
    out: list[VerdictExample] = []
    turn = 0
    for index, item in enumerate(items):
        others = [r for other in items if other.prompt != item.prompt for r in other.replies]
        for _ in range(decisive_per_prompt):
            kind = FAILURES[turn % len(FAILURES)]
            turn += 1
            good = rng.choice(item.replies)
            bad = broken_reply(kind, good, rng.choice(others) if others else "", rng)
            out += _both_orders(item.prompt, good, bad, kind)
        if tie_every and index % tie_every == 0:
            tie_kind = ("tie-same", "tie-good", "tie-broken")[(index // tie_every) % 3]
            if tie_kind == "tie-good" and len(item.replies) > 1:
                out += _tie(item.prompt, item.replies[0], item.replies[1], tie_kind)
            elif tie_kind == "tie-broken":
                good = rng.choice(item.replies)
                first, second = rng.sample(FAILURES[:-1], 2)  # two broken replies, neither of them fluent
                out += _tie(item.prompt, broken_reply(first, good, "", rng), broken_reply(second, good, "", rng), tie_kind)
            else:
                same = rng.choice(item.replies)
                out += _tie(item.prompt, same, same, "tie-same")
    return out


def split_items(items: Iterable[PromptReplies], split: Split) -> list[PromptReplies]:
    return [item for item in items if split_of(item.prompt) == split]


__all__ = [
    "FAILURES", "HELD_SHARE", "PromptReplies", "VerdictExample", "broken_reply", "read_prompt_replies", "split_items",
    "split_of", "verdict_examples",
]
