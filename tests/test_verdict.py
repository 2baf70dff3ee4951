"""Verdict parsing: the last well-formed token of the format wins; no token is an error, never a tie."""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path

import pytest

from evalsuite.judge import verdict as verdict_module
from evalsuite.judge.verdict import VERDICT_FORMATS, get_verdict_format, parse_verdict, verdict_from_probs
from evalsuite.records import ParsedVerdict

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PARSE_ERROR = ParsedVerdict("error", reason="parse")


def test_doctests_pass() -> None:
    result = doctest.testmod(verdict_module)
    assert result.attempted > 0 and result.failed == 0


def test_formats_offer_exactly_their_tokens() -> None:
    assert VERDICT_FORMATS["mtbench"].tokens == ("[[A]]", "[[B]]", "[[C]]")
    assert VERDICT_FORMATS["mtbench"].logprob_choices == ("A", "B", "C")
    assert VERDICT_FORMATS["arena5"].tokens == ("[[A>>B]]", "[[A>B]]", "[[A=B]]", "[[B>A]]", "[[B>>A]]")
    assert VERDICT_FORMATS["arena5"].logprob_choices is None
    assert VERDICT_FORMATS["score10"].tokens == tuple(f"[[{n}]]" for n in range(1, 11))
    assert VERDICT_FORMATS["score10"].logprob_choices is None
    assert all(name == f.name for name, f in VERDICT_FORMATS.items())


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown verdict format 'likert'"):
        parse_verdict("[[A]]", "likert")
    with pytest.raises(ValueError, match="arena5, mtbench, score10"):
        get_verdict_format("likert")


# --- mtbench ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("token", "expected"), [("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie")])
def test_mtbench_every_token(token: str, expected: str) -> None:
    assert parse_verdict(f"Explanation first.\n\n{token}") == ParsedVerdict(expected)
    assert parse_verdict(token, "mtbench") == ParsedVerdict(expected)


def test_default_format_is_mtbench() -> None:
    assert parse_verdict("[[C]]").verdict == "tie"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[A]] was my first thought, but on reflection [[B]]", "B"),
        ("[[B]]\n[[C]]", "tie"),
        ('Rules: "[[A]]" if A is better, "[[B]]" if B is better, "[[C]]" for a tie. Final verdict: [[A]]', "A"),
        ("[[C]] [[B]] [[A]]", "A"),
        ("Verdict: [[B]]. (I considered [[D]] but that is not an option.)", "B"),  # a later non-token is ignored
        ("[[A]] then [[A>B]]", "A"),  # another format's token is not a verdict here
    ],
)
def test_mtbench_last_token_wins(text: str, expected: str) -> None:
    assert parse_verdict(text).verdict == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Both answers are equally good, so it is a tie.",
        "[[ A ]]",
        "[[a]]",
        "[[b]] [[c]]",
        "[[D]]",
        "[A]",
        "[[A]",
        "[A]]",
        "[[AB]]",
        "[[A>B]]",
        "[[A=B]]",
        "[[Tie]]",
        "[[1]]",
        "Assistant A is better.",
    ],
)
def test_mtbench_no_well_formed_token_is_a_parse_error_not_a_tie(text: str) -> None:
    parsed = parse_verdict(text)
    assert parsed == PARSE_ERROR
    assert parsed.verdict != "tie"


# --- arena5 ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "verdict", "strong"),
    [
        ("[[A>>B]]", "A", True),
        ("[[A>B]]", "A", False),
        ("[[A=B]]", "tie", False),
        ("[[B>A]]", "B", False),
        ("[[B>>A]]", "B", True),
    ],
)
def test_arena5_every_token(token: str, verdict: str, strong: bool) -> None:
    assert parse_verdict(f"My final verdict is {token}.", "arena5") == ParsedVerdict(verdict, strong=strong)


def test_arena5_last_token_wins() -> None:
    assert parse_verdict("[[A>>B]] ... actually [[B>A]]", "arena5") == ParsedVerdict("B")
    assert parse_verdict("[[B>A]] ... actually [[A>>B]]", "arena5") == ParsedVerdict("A", strong=True)
    assert parse_verdict("[[A>B]] and then [[A]]", "arena5") == ParsedVerdict("A")  # [[A]] is not arena5


@pytest.mark.parametrize(
    "text",
    ["[[A]]", "[[C]]", "[[A<B]]", "[[A>>>B]]", "[[A = B]]", "[[ A>B ]]", "[[a>b]]", "[[B=A]]", "[[A>>A]]", "none"],
)
def test_arena5_malformed_is_a_parse_error(text: str) -> None:
    assert parse_verdict(text, "arena5") == PARSE_ERROR


# --- score10 ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grade", range(1, 11))
def test_score10_every_integer_grade(grade: int) -> None:
    # A grade is reported as verdict "A" (the one shown answer was graded) with the grade in `score`.
    assert parse_verdict(f"Good answer.\nGrade: [[{grade}]]", "score10") == ParsedVerdict("A", score=float(grade))


@pytest.mark.parametrize(("token", "score"), [("[[7.5]]", 7.5), ("[[1.25]]", 1.25), ("[[10.0]]", 10.0)])
def test_score10_decimal_grades(token: str, score: float) -> None:
    assert parse_verdict(token, "score10").score == score


def test_score10_last_grade_wins_and_out_of_range_is_skipped() -> None:
    assert parse_verdict('Format: "Rating: [[5]]". Rating: [[8]]', "score10").score == 8.0
    assert parse_verdict("[[6]] then [[11]]", "score10").score == 6.0  # [[11]] is not a grade on this scale


@pytest.mark.parametrize(
    "text", ["[[0]]", "[[11]]", "[[10.5]]", "[[0.5]]", "[[07]]", "[[7.]]", "[[ 7 ]]", "[[7/10]]", "[[-3]]",
             "[[A]]", "Rating: 7", "[7]"],
)
def test_score10_malformed_is_a_parse_error(text: str) -> None:
    assert parse_verdict(text, "score10") == PARSE_ERROR


# --- soft verdicts (log-probability mode) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probs", "verdict", "p_first"),
    [
        ({"A": 0.7, "B": 0.2, "C": 0.1}, "A", 0.75),
        ({"A": 0.1, "B": 0.8, "C": 0.1}, "B", 0.15),
        ({"A": 0.2, "B": 0.2, "C": 0.6}, "tie", 0.5),
        ({"A": 0.35, "B": 0.35, "C": 0.3}, "tie", 0.5),  # an exact tie for the top choice is a tie
        ({"A": 0.4, "B": 0.2, "C": 0.4}, "tie", 0.6),
        ({"A": 1.0}, "A", 1.0),  # missing choices count as 0
        ({"B": 3.0, "C": 1.0}, "B", 0.125),  # normalised over the choices
        ({"A": 0.07, "B": 0.02, "C": 0.01, "D": 0.9, "[[": 0.5}, "A", 0.75),  # other keys ignored
    ],
)
def test_verdict_from_probs(probs: dict[str, float], verdict: str, p_first: float) -> None:
    parsed = verdict_from_probs(probs)
    assert parsed.verdict == verdict
    assert parsed.p_first == pytest.approx(p_first)
    assert parsed.reason is None and parsed.score is None


@pytest.mark.parametrize("probs", [{}, {"A": 0.0, "B": 0.0, "C": 0.0}, {"D": 1.0}])
def test_verdict_from_probs_without_mass_is_a_parse_error(probs: dict[str, float]) -> None:
    assert verdict_from_probs(probs) == PARSE_ERROR


@pytest.mark.parametrize("bad", [math.nan, -0.1, math.inf])
def test_verdict_from_probs_rejects_invalid_probabilities(bad: float) -> None:
    with pytest.raises(ValueError, match="finite number"):
        verdict_from_probs({"A": bad, "B": 0.5})


@pytest.mark.parametrize("fmt", ["arena5", "score10"])
def test_verdict_from_probs_only_for_formats_with_choices(fmt: str) -> None:
    with pytest.raises(ValueError, match="no log-probability mode"):
        verdict_from_probs({"A": 1.0}, fmt)


# --- real data -------------------------------------------------------------------------------------------------


def test_real_gpt4_judgments() -> None:
    """80 real GPT-4 pair judgments (both orders) parse to the winners FastChat recorded."""
    path = SHARED_DATA / "mt_bench" / "gpt4_pair_judgments" / "gpt-4_pair.jsonl"
    if not path.exists():
        pytest.skip(f"shared data not present: {path}")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) == 80
    # g1 shows model_1 first, g2 shows model_2 first.
    to_winner = {
        "g1": {"A": "model_1", "B": "model_2", "tie": "tie", "error": "error"},
        "g2": {"A": "model_2", "B": "model_1", "tie": "tie", "error": "error"},
    }
    mismatches = []
    checked = 0
    for row in rows:
        for game, mapping in to_winner.items():
            parsed = parse_verdict(row[f"{game}_judgment"], "mtbench")
            checked += 1
            if mapping[parsed.verdict] != row[f"{game}_winner"]:
                mismatches.append((row["question_id"], game, parsed.verdict, row[f"{game}_winner"]))
            if parsed.verdict == "error":
                assert parsed.reason == "parse"
    assert checked == 160
    assert mismatches == []
