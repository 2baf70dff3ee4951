"""Position swap: reconciling both orders, pairing judgments into matches, and judge health."""

from __future__ import annotations

import doctest
import random

import pytest

from evalsuite.errors import InputError
from evalsuite.judge import swap as swap_module
from evalsuite.judge.swap import (
    JudgeHealth,
    build_matches,
    judge_health,
    judge_health_by_group,
    match_error_reason,
    match_games,
    reconcile_swap,
)
from evalsuite.records import Judgment, Match, ParsedVerdict

A, B, TIE, ERR = ParsedVerdict("A"), ParsedVerdict("B"), ParsedVerdict("tie"), ParsedVerdict("error", reason="parse")


def test_doctests_pass() -> None:
    result = doctest.testmod(swap_module)
    assert result.attempted > 0 and result.failed == 0


# xy: X shown first (A = X); yx: Y shown first (A = Y). Expected (strict score, average score, inconsistent).
NINE_COMBOS = [
    # both orders pick X
    (A, B, 1.0, 1.0, False),
    # both orders pick Y
    (B, A, 0.0, 0.0, False),
    # both tie
    (TIE, TIE, 0.5, 0.5, False),
    # the first-shown answer wins both times: pure position bias
    (A, A, 0.5, 0.5, True),
    # the second-shown answer wins both times
    (B, B, 0.5, 0.5, True),
    # X once, tie once
    (A, TIE, 0.5, 0.75, True),
    (TIE, B, 0.5, 0.75, True),
    # Y once, tie once
    (B, TIE, 0.5, 0.25, True),
    (TIE, A, 0.5, 0.25, True),
]


@pytest.mark.parametrize(("xy", "yx", "strict", "average", "inconsistent"), NINE_COMBOS)
def test_strict_table(xy: ParsedVerdict, yx: ParsedVerdict, strict: float, average: float, inconsistent: bool) -> None:
    assert reconcile_swap(xy, yx) == (strict, inconsistent, False)
    assert reconcile_swap(xy, yx, "strict") == (strict, inconsistent, False)


@pytest.mark.parametrize(("xy", "yx", "strict", "average", "inconsistent"), NINE_COMBOS)
def test_average_table(xy: ParsedVerdict, yx: ParsedVerdict, strict: float, average: float, inconsistent: bool) -> None:
    assert reconcile_swap(xy, yx, "average") == (average, inconsistent, False)


def test_nine_combos_cover_every_pair_of_labels() -> None:
    assert {(xy.verdict, yx.verdict) for xy, yx, *_ in NINE_COMBOS} == {
        (p, q) for p in ("A", "B", "tie") for q in ("A", "B", "tie")
    }


@pytest.mark.parametrize("mode", ["strict", "average"])
@pytest.mark.parametrize(("xy", "yx"), [(ERR, A), (A, ERR), (ERR, ERR), (ParsedVerdict("error", reason="api"), TIE)])
def test_an_error_in_either_order_gives_no_score(xy: ParsedVerdict, yx: ParsedVerdict, mode: str) -> None:
    assert reconcile_swap(xy, yx, mode) == (None, False, True)  # type: ignore[arg-type]


def test_average_uses_soft_verdicts_when_present() -> None:
    xy = ParsedVerdict("A", p_first=0.9)  # X first: P(X better) = 0.9
    yx = ParsedVerdict("B", p_first=0.3)  # Y first: P(Y better) = 0.3, so P(X better) = 0.7
    score, inconsistent, error = reconcile_swap(xy, yx, "average")
    assert score == pytest.approx(0.8)
    assert (inconsistent, error) == (False, False)


def test_average_mixes_a_soft_order_with_a_hard_one() -> None:
    score, _, _ = reconcile_swap(ParsedVerdict("A", p_first=0.6), TIE, "average")
    assert score == pytest.approx((0.6 + 0.5) / 2)


def test_soft_inconsistency_is_read_from_the_hard_labels() -> None:
    # Both orders lean to the first-shown answer: the hard labels disagree about X.
    xy = ParsedVerdict("A", p_first=0.6)
    yx = ParsedVerdict("A", p_first=0.6)
    score, inconsistent, _ = reconcile_swap(xy, yx, "average")
    assert score == pytest.approx(0.5)
    assert inconsistent


def test_strict_ignores_soft_values_and_uses_the_hard_verdicts() -> None:
    xy = ParsedVerdict("A", p_first=0.51)
    yx = ParsedVerdict("B", p_first=0.49)
    assert reconcile_swap(xy, yx, "strict") == (1.0, False, False)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown reconcile mode 'elo'"):
        reconcile_swap(A, B, "elo")  # type: ignore[arg-type]


@pytest.mark.parametrize(("xy", "yx", "strict", "average", "inconsistent"), NINE_COMBOS)
def test_games_scores_a_full_match_like_average(
    xy: ParsedVerdict, yx: ParsedVerdict, strict: float, average: float, inconsistent: bool
) -> None:
    assert reconcile_swap(xy, yx, "games") == (average, inconsistent, False)


def test_games_keeps_the_game_whose_twin_failed() -> None:
    # X shown first and picked: X wins that game; Y shown first and picked (A = Y): X loses that game
    assert reconcile_swap(A, ERR, "games") == (1.0, False, False)
    assert reconcile_swap(ERR, A, "games") == (0.0, False, False)
    assert reconcile_swap(ERR, TIE, "games") == (0.5, False, False)
    assert reconcile_swap(ERR, ERR, "games") == (None, False, True)
    # strict and average still lose the whole match
    assert reconcile_swap(A, ERR, "average") == (None, False, True)


def test_single_answer_grades_are_not_pairwise_verdicts() -> None:
    with pytest.raises(ValueError, match="single-answer grade"):
        reconcile_swap(ParsedVerdict("A", score=8.0), B)


# --- build_matches ---------------------------------------------------------------------------------------------


def judgment(
    first: str, second: str, verdict: str, *, q: str = "q1", turn: int = 1, judge: str = "gpt-4",
    template: str = "pairwise", template_hash: str = "abc123abc123", reason: str | None = None,
    p_first: float | None = None,
) -> Judgment:
    if verdict == "error" and reason is None:
        reason = "parse"
    return Judgment(
        judge=judge, template=template, template_hash=template_hash, question_id=q, turn=turn, model_a=first,
        model_b=second, raw=f"... [[{verdict}]]", reason=reason, p_first=p_first,
        verdict=verdict,  # type: ignore[arg-type]
    )


CATEGORIES = {"q1": "writing", "q2": "math", "q3": "coding"}


def test_a_judgment_and_its_swap_make_one_match() -> None:
    xy = judgment("dpo", "sft", "A")
    yx = judgment("sft", "dpo", "B")
    [match] = build_matches([yx, xy], CATEGORIES)
    assert match == Match(
        question_id="q1", category="writing", turn=1, model_x="dpo", model_y="sft", score=1.0,
        inconsistent=False, error=False, xy=xy, yx=yx,
    )


def test_default_orientation_is_alphabetical_and_orient_overrides_it() -> None:
    js = [judgment("sft", "dpo", "A"), judgment("dpo", "sft", "A")]  # first-shown wins both times
    [m] = build_matches(js, CATEGORIES)
    assert (m.model_x, m.model_y, m.score, m.inconsistent) == ("dpo", "sft", 0.5, True)

    js = [judgment("sft", "dpo", "B"), judgment("dpo", "sft", "A")]  # dpo wins both orders
    [m] = build_matches(js, CATEGORIES, orient=lambda a, b: ("sft", "dpo") if {a, b} == {"sft", "dpo"} else (a, b))
    assert (m.model_x, m.model_y, m.score) == ("sft", "dpo", 0.0)
    assert m.xy is js[0] and m.yx is js[1]


def test_orient_must_return_the_pair_it_was_given() -> None:
    with pytest.raises(ValueError, match="not the same pair"):
        build_matches([judgment("a", "b", "A")], CATEGORIES, orient=lambda a, b: ("a", "c"))


def test_average_mode_is_passed_through() -> None:
    js = [judgment("dpo", "sft", "A"), judgment("sft", "dpo", "tie")]
    [m] = build_matches(js, CATEGORIES, mode="average")
    assert (m.score, m.inconsistent) == (0.75, True)
    js = [judgment("dpo", "sft", "A", p_first=0.8), judgment("sft", "dpo", "B", p_first=0.4)]
    [m] = build_matches(js, CATEGORIES, mode="average")
    assert m.score == pytest.approx(0.7)


def test_a_missing_swap_is_an_error_match_with_the_one_judgment_attached() -> None:
    only = judgment("sft", "dpo", "A")
    [m] = build_matches([only], CATEGORIES)
    assert (m.score, m.error, m.inconsistent) == (None, True, False)
    assert (m.model_x, m.model_y) == ("dpo", "sft")
    assert m.xy is None and m.yx is only
    assert match_error_reason(m) == "missing"


def test_an_error_judgment_makes_an_error_match() -> None:
    js = [judgment("dpo", "sft", "A"), judgment("sft", "dpo", "error", reason="api")]
    [m] = build_matches(js, CATEGORIES)
    assert (m.score, m.error, m.inconsistent) == (None, True, False)
    assert match_error_reason(m) == "api"


def test_match_error_reason_is_none_for_a_scored_match() -> None:
    [m] = build_matches([judgment("dpo", "sft", "A"), judgment("sft", "dpo", "B")], CATEGORIES)
    assert match_error_reason(m) is None


def test_judges_templates_turns_and_questions_are_never_mixed() -> None:
    js = [
        judgment("dpo", "sft", "A", judge="gpt-4"),
        judgment("sft", "dpo", "B", judge="claude"),
        judgment("dpo", "sft", "A", template="pairwise-arena"),
        judgment("sft", "dpo", "B", template_hash="fff000fff000"),
        judgment("dpo", "sft", "A", turn=2),
        judgment("sft", "dpo", "B", q="q2"),
    ]
    matches = build_matches(js, CATEGORIES)
    assert len(matches) == 6
    assert all(m.error and m.score is None for m in matches)


def test_many_pairs_come_back_sorted_whatever_the_input_order() -> None:
    js = []
    for q in ("q1", "q2", "q3"):
        for turn in (1, 2):
            for x, y in (("dpo", "sft"), ("simpo", "sft"), ("dpo", "simpo")):
                js += [judgment(x, y, "A", q=q, turn=turn), judgment(y, x, "B", q=q, turn=turn)]
    shuffled = js[:]
    random.Random(0).shuffle(shuffled)
    matches = build_matches(shuffled, CATEGORIES)
    assert matches == build_matches(js, CATEGORIES)
    assert len(matches) == 18
    keys = [(m.question_id, m.turn, m.model_x, m.model_y) for m in matches]
    assert keys == sorted(keys)
    assert [m.category for m in matches[:6]] == ["writing"] * 6
    # X is the alphabetically first model ("sft" < "simpo"); each pair's winner is the first model in the loop.
    expected = {("dpo", "sft"): 1.0, ("sft", "simpo"): 0.0, ("dpo", "simpo"): 1.0}
    assert all(m.score == expected[(m.model_x, m.model_y)] and not m.inconsistent for m in matches)


def test_two_judgments_of_the_same_order_are_refused() -> None:
    js = [judgment("dpo", "sft", "A"), judgment("dpo", "sft", "B"), judgment("sft", "dpo", "B")]
    with pytest.raises(InputError, match="one judgment per order"):
        build_matches(js, CATEGORIES)


def test_a_question_without_category_is_refused() -> None:
    with pytest.raises(InputError, match="question q9 has judgments but no category"):
        build_matches([judgment("dpo", "sft", "A", q="q9"), judgment("sft", "dpo", "B", q="q9")], CATEGORIES)


def test_a_model_judged_against_itself_is_refused() -> None:
    with pytest.raises(ValueError, match="against itself"):
        build_matches([judgment("sft", "sft", "A")], CATEGORIES)


# --- judge_health ----------------------------------------------------------------------------------------------


def test_judge_health_on_a_hand_worked_example() -> None:
    js = [
        # q1: consistent, X wins: decisive A then decisive B
        judgment("x", "y", "A", q="q1"), judgment("y", "x", "B", q="q1"),
        # q2: inconsistent, first shown wins both times: decisive A, decisive A
        judgment("x", "y", "A", q="q2"), judgment("y", "x", "A", q="q2"),
        # q3: consistent tie: two ties
        judgment("x", "y", "tie", q="q3"), judgment("y", "x", "tie", q="q3"),
        # q4: one error, one decisive B (error match; its good judgment still counts for position and ties)
        judgment("x", "y", "error", q="q4"), judgment("y", "x", "B", q="q4"),
        # q5: swap missing; the one judgment is a tie
        judgment("x", "y", "tie", q="q5"),
    ]
    cats = {q: "writing" for q in ("q1", "q2", "q3", "q4", "q5")}
    health = judge_health(build_matches(js, cats))
    # judgments: 9; errors: 1 -> 8 valid; decisive: A, B, A, A, B = 5 with 3 first-position wins; ties: 3.
    # matches: 5; error matches: q4, q5 -> 3 scored, of which q2 is inconsistent -> consistency 2/3.
    assert health == JudgeHealth(
        n_judgments=9,
        n_matches=5,
        consistency=pytest.approx(2 / 3),  # type: ignore[arg-type]
        first_position_win_share=pytest.approx(3 / 5),  # type: ignore[arg-type]
        tie_share=pytest.approx(3 / 8),  # type: ignore[arg-type]
        error_share=pytest.approx(1 / 9),  # type: ignore[arg-type]
        n_errors=1,
        n_inconsistent=1,
        n_error_matches=2,
    )


def test_judge_health_of_nothing_has_no_shares() -> None:
    health = judge_health([])
    assert (health.n_judgments, health.n_matches, health.n_errors, health.n_inconsistent) == (0, 0, 0, 0)
    assert health.consistency is None and health.first_position_win_share is None
    assert health.tie_share is None and health.error_share is None


def test_judge_health_when_every_judgment_failed() -> None:
    js = [judgment("x", "y", "error"), judgment("y", "x", "error", reason="api")]
    health = judge_health(build_matches(js, CATEGORIES))
    assert (health.n_judgments, health.n_errors, health.error_share, health.n_error_matches) == (2, 2, 1.0, 1)
    assert health.consistency is None and health.tie_share is None and health.first_position_win_share is None


def test_a_position_biased_judge_shows_in_its_health() -> None:
    # Always picks whatever is shown first: never consistent, every decisive judgment a first-position win.
    js = []
    for i in range(10):
        js += [judgment("x", "y", "A", q=f"p{i}"), judgment("y", "x", "A", q=f"p{i}")]
    health = judge_health(build_matches(js, {f"p{i}": "stem" for i in range(10)}))
    assert (health.consistency, health.first_position_win_share, health.n_inconsistent) == (0.0, 1.0, 10)
    assert health.tie_share == 0.0 and health.error_share == 0.0


# --- games mode and health per judge x template x turn --------------------------------------------------------


def test_games_mode_gives_two_games_per_match_and_one_when_a_swap_is_missing() -> None:
    js = [
        judgment("x", "y", "A", q="q1"), judgment("y", "x", "A", q="q1"),  # position bias: X wins one, loses one
        judgment("x", "y", "B", q="q2"),  # swap never judged: one game, Y wins
        judgment("x", "y", "error", q="q3"), judgment("y", "x", "B", q="q3"),  # one failed order: one game, X wins
    ]
    by_q = {m.question_id: m for m in build_matches(js, CATEGORIES, "games")}
    assert match_games(by_q["q1"]) == [1.0, 0.0] and by_q["q1"].score == 0.5 and by_q["q1"].inconsistent
    assert match_games(by_q["q2"]) == [0.0] and (by_q["q2"].score, by_q["q2"].error) == (0.0, False)
    assert match_games(by_q["q3"]) == [1.0] and (by_q["q3"].score, by_q["q3"].error) == (1.0, False)
    strict = {m.question_id: m for m in build_matches(js, CATEGORIES, "strict")}
    assert strict["q2"].error and strict["q3"].error
    # soft verdicts are games too
    soft = build_matches([judgment("x", "y", "A", p_first=0.8), judgment("y", "x", "B", p_first=0.3)], CATEGORIES, "games")
    assert match_games(soft[0]) == pytest.approx([0.8, 0.7])


def test_one_game_matches_do_not_count_for_position_consistency() -> None:
    js = [judgment("x", "y", "A", q="q1"), judgment("y", "x", "B", q="q1"), judgment("x", "y", "B", q="q2")]
    health = judge_health(build_matches(js, CATEGORIES, "games"))
    assert health.consistency == 1.0 and health.n_matches == 2 and health.n_error_matches == 0


def test_health_is_reported_per_judge_template_and_turn_not_pooled() -> None:
    # The judge is fair on turn 1 and always picks the first-shown answer on turn 2; pooled, it looks half-biased.
    js = []
    for i in range(6):
        q = f"q{i % 3 + 1}"
        if i < 3:
            js += [judgment("x", "y", "A", q=q, turn=1), judgment("y", "x", "B", q=q, turn=1)]
        else:
            js += [judgment("x", "y", "A", q=q, turn=2), judgment("y", "x", "A", q=q, turn=2)]
    js += [judgment("x", "y", "tie", q="q1", template="ref", template_hash="fff000fff000"),
           judgment("y", "x", "tie", q="q1", template="ref", template_hash="fff000fff000")]
    matches = build_matches(js, CATEGORIES)
    groups = dict(judge_health_by_group(matches))
    assert list(groups) == [("gpt-4", "pairwise", "abc123abc123", 1), ("gpt-4", "pairwise", "abc123abc123", 2),
                            ("gpt-4", "ref", "fff000fff000", 1)]
    turn1, turn2, ref = groups.values()
    assert (turn1.consistency, turn1.first_position_win_share) == (1.0, 0.5)
    assert (turn2.consistency, turn2.first_position_win_share) == (0.0, 1.0)
    assert (ref.tie_share, ref.n_matches) == (1.0, 1)
    pooled = judge_health(matches)
    assert pooled.first_position_win_share == 0.75  # what a pooled figure would show instead
