"""Position swap: pairing each judgment with its swapped twin, reconciling the two, and judge health.

Every pair (X, Y) is judged twice, X shown first and Y shown first (DESIGN.md, "Judging"). This module owns:

- ``reconcile_swap``: two ordered verdicts -> X's match score, whether the orders disagree, whether either failed;
- ``build_matches``: judgments -> ``Match`` records (one per question, turn, pair, judge and template);
- ``match_games``: the games of a match in ``games`` mode (each order is one game, for Bradley-Terry);
- ``judge_health`` / ``judge_health_by_group``: position consistency, first-position win share, tie share and error
  share of a judge, per judge x template x turn (DESIGN.md, "Judge health").

Pure functions over records, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Literal, Mapping, Sequence

from evalsuite.errors import InputError
from evalsuite.records import Judgment, Match, ParsedVerdict

__all__ = [
    "RECONCILE_MODES",
    "JudgeHealth",
    "ReconcileMode",
    "HealthKey",
    "build_matches",
    "judge_health",
    "judge_health_by_group",
    "match_games",
    "match_error_reason",
    "reconcile_swap",
]

ReconcileMode = Literal["strict", "average", "games"]
RECONCILE_MODES: tuple[str, ...] = ("strict", "average", "games")

# X's score for each hard label, seen from X: 1 X better, 0.5 tie, 0 Y better.
_LABEL_SCORE = {"X": 1.0, "tie": 0.5, "Y": 0.0}
# What each verdict says about X, by which of the two was shown first.
_LABEL_X_FIRST = {"A": "X", "B": "Y", "tie": "tie"}
_LABEL_Y_FIRST = {"A": "Y", "B": "X", "tie": "tie"}


def _check_pairwise(verdict: ParsedVerdict, which: str) -> None:
    # A single-answer grade parses to "A" + score; counting it as a pairwise win would be silently wrong.
    if verdict.score is not None:
        raise ValueError(f"{which} is a single-answer grade (score={verdict.score}), not a pairwise verdict")


def reconcile_swap(
    xy: ParsedVerdict, yx: ParsedVerdict, mode: ReconcileMode = "strict"
) -> tuple[float | None, bool, bool]:
    """Reconcile the verdicts of both orders into ``(score_x, inconsistent, error)``.

    ``xy`` was judged with X shown first (A = X), ``yx`` with Y shown first (A = Y). ``score_x`` is 1 when X wins,
    0.5 for a tie, 0 when Y wins. If either order is an error the result is ``(None, False, True)``.

    - ``strict`` (MT-Bench): X wins iff both orders pick X, Y wins iff both pick Y, anything else is a tie.
      Soft verdicts are read through their hard ``verdict``.
    - ``average``: each order scores X as 1 / 0.5 / 0 and the match score is the mean (0, .25, .5, .75, 1);
      an order with a soft verdict contributes its probability instead (``xy.p_first``, ``1 - yx.p_first``).

    - ``games`` (Arena-Hard): the two orders are two separate games, each scoring X as in ``average``. The match
      score is the mean of the games that have a verdict: the same as ``average`` when both do, the one game's score
      when the other order failed (a failed order costs only its own game). Bradley-Terry fits the games themselves
      (``match_games``).

    ``inconsistent`` (every mode): the two orders, read as hard labels about X (X / Y / tie), disagree.

    >>> reconcile_swap(ParsedVerdict("A"), ParsedVerdict("B"))
    (1.0, False, False)
    >>> reconcile_swap(ParsedVerdict("A"), ParsedVerdict("A"))
    (0.5, True, False)
    >>> reconcile_swap(ParsedVerdict("A"), ParsedVerdict("tie"), "average")
    (0.75, True, False)
    >>> reconcile_swap(ParsedVerdict("A"), ParsedVerdict("error", reason="parse"), "games")
    (1.0, False, False)
    """
    if mode not in RECONCILE_MODES:
        raise ValueError(f"unknown reconcile mode {mode!r}; known modes: {', '.join(RECONCILE_MODES)}")
    _check_pairwise(xy, "xy")
    _check_pairwise(yx, "yx")
    if mode == "games" and (xy.verdict == "error") != (yx.verdict == "error"):
        return (_game_x_first(xy) if yx.verdict == "error" else _game_y_first(yx)), False, False
    if xy.verdict == "error" or yx.verdict == "error":
        return None, False, True
    label_xy = _LABEL_X_FIRST[xy.verdict]
    label_yx = _LABEL_Y_FIRST[yx.verdict]
    inconsistent = label_xy != label_yx
    if mode == "strict":
        score = _LABEL_SCORE[label_xy] if not inconsistent else 0.5
        return score, inconsistent, False
    return (_game_x_first(xy) + _game_y_first(yx)) / 2.0, inconsistent, False


def _game_x_first(xy: ParsedVerdict) -> float:
    """X's score in the game where X was shown first: its soft probability if read from log-probs, else 1 / .5 / 0."""
    return xy.p_first if xy.p_first is not None else _LABEL_SCORE[_LABEL_X_FIRST[xy.verdict]]


def _game_y_first(yx: ParsedVerdict) -> float:
    """X's score in the game where Y was shown first."""
    return 1.0 - yx.p_first if yx.p_first is not None else _LABEL_SCORE[_LABEL_Y_FIRST[yx.verdict]]


def match_games(match: Match) -> list[float]:
    """X's score in each game of a match (``games`` mode): one per order that has a verdict, X-first order first.

    A match built without its judgments (an import that carries only a score) is one game with that score.

    >>> from evalsuite.records import Judgment
    >>> j = lambda a, b, v: Judgment("j", "t", "h", "q1", 1, a, b, "", v)
    >>> m = build_matches([j("x", "y", "A"), j("y", "x", "A")], {"q1": "math"}, "games")[0]
    >>> match_games(m)
    [1.0, 0.0]
    """
    games = []
    if match.xy is not None and match.xy.verdict != "error":
        games.append(_game_x_first(_parsed(match.xy)))
    if match.yx is not None and match.yx.verdict != "error":
        games.append(_game_y_first(_parsed(match.yx)))
    if not games and match.xy is None and match.yx is None and match.score is not None:
        games.append(match.score)
    return games


def _parsed(judgment: Judgment) -> ParsedVerdict:
    return ParsedVerdict(judgment.verdict, reason=judgment.reason, p_first=judgment.p_first)


def _sorted_pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def build_matches(
    judgments: Iterable[Judgment],
    categories: Mapping[str, str],
    mode: ReconcileMode = "strict",
    orient: Callable[[str, str], tuple[str, str]] | None = None,
) -> list[Match]:
    """Pair each judgment with its swap and reconcile them into ``Match`` records.

    Two judgments are each other's swap when they share judge, template (name and content hash), question and
    turn, and show the same two models in opposite orders; judgments under different templates or judges are never
    mixed. ``orient(a, b)`` names which model of the unordered pair is X (returns ``(x, y)``); by default the
    alphabetically first is X. ``categories`` maps question id to category.

    A judgment whose swap is missing becomes ``Match(score=None, error=True)`` with the one judgment attached
    (``match_error_reason`` then says ``missing``); in ``games`` mode it is a match of that one game instead. Matches come back sorted by question, turn, X, Y, judge and
    template, so the output does not depend on the order the judgments were stored in.

    Raises ``InputError`` for a question with no category or two judgments of the same order (the store must
    hand over one judgment per order), ``ValueError`` for a judgment of a model against itself or an ``orient``
    that does not return the pair it was given.
    """
    orient_pair = orient or _sorted_pair
    # key -> {(shown first, shown second): judgment}
    # (question, turn, X, Y, judge, template, template hash) -> {(shown first, shown second): judgment}
    groups: dict[tuple[str, int, str, str, str, str, str], dict[tuple[str, str], Judgment]] = {}
    for j in judgments:
        if j.model_a == j.model_b:
            raise ValueError(f"judgment of {j.model_a!r} against itself (question {j.question_id}, turn {j.turn})")
        x, y = orient_pair(j.model_a, j.model_b)
        if {x, y} != {j.model_a, j.model_b} or x == y:
            raise ValueError(f"orient({j.model_a!r}, {j.model_b!r}) returned ({x!r}, {y!r}), not the same pair")
        key = (j.question_id, j.turn, x, y, j.judge, j.template, j.template_hash)
        orders = groups.setdefault(key, {})
        order = (j.model_a, j.model_b)
        if order in orders:
            raise InputError(
                f"two judgments of question {j.question_id} turn {j.turn} with {j.model_a} shown before "
                f"{j.model_b} (judge {j.judge}, template {j.template})",
                fix="keep one judgment per order (replace a retried error instead of adding a row)",
            )
        orders[order] = j

    matches: list[Match] = []
    for key in sorted(groups):
        question_id, turn, x, y, *_ = key
        if question_id not in categories:
            raise InputError(
                f"question {question_id} has judgments but no category",
                fix="pass the categories of the benchmark the answers were judged on",
            )
        orders = groups[key]
        xy = orders.get((x, y))
        yx = orders.get((y, x))
        if xy is None or yx is None:
            only = xy or yx
            if mode == "games" and only is not None and only.verdict != "error":
                # a game whose twin was never judged still counts as one game
                score = _game_x_first(_parsed(only)) if xy is not None else _game_y_first(_parsed(only))
                inconsistent, error = False, False
            else:
                score, inconsistent, error = None, False, True
        else:
            score, inconsistent, error = reconcile_swap(_parsed(xy), _parsed(yx), mode)
        matches.append(
            Match(
                question_id=question_id,
                category=categories[question_id],
                turn=turn,
                model_x=x,
                model_y=y,
                score=score,
                inconsistent=inconsistent,
                error=error,
                xy=xy,
                yx=yx,
            )
        )
    return matches


def match_error_reason(match: Match) -> str | None:
    """Why a match has no score: ``missing`` (an order was never judged), else the failed judgment's reason.

    None for a match that has a score. A failed judgment with no recorded reason reads as ``error``.
    """
    if not match.error:
        return None
    if match.xy is None or match.yx is None:
        return "missing"
    for j in (match.xy, match.yx):
        if j.verdict == "error":
            return j.reason or "error"
    return "error"


@dataclass(frozen=True)
class JudgeHealth:
    """How trustworthy a judge's verdicts look, over a set of matches (compute it per judge and template).

    Shares are None when their denominator is empty.

    - ``consistency``: share of matches judged in both orders (both with a verdict) whose two orders agree.
    - ``first_position_win_share``: share of decisive (A or B) non-error judgments that picked the first-shown
      answer; 0.5 is unbiased.
    - ``tie_share``: share of non-error judgments that are ties.
    - ``error_share``: share of all judgments that are errors (``n_errors / n_judgments``); a missing swap is not a
      judgment, it shows in ``n_error_matches``.
    """

    n_judgments: int
    n_matches: int
    consistency: float | None
    first_position_win_share: float | None
    tie_share: float | None
    error_share: float | None
    n_errors: int
    n_inconsistent: int
    n_error_matches: int = 0


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def judge_health(matches: Sequence[Match]) -> JudgeHealth:
    """Judge-health figures for ``matches`` (see ``JudgeHealth``)."""
    n_judgments = n_errors = n_ties = n_decisive = n_first_wins = 0
    n_error_matches = n_inconsistent = n_both_orders = 0
    for m in matches:
        if m.error:
            n_error_matches += 1
        elif m.xy is not None and m.yx is not None and "error" not in (m.xy.verdict, m.yx.verdict):
            # consistency needs both orders' verdicts: a games-mode match of one game, or an imported score with no
            # judgments attached, says nothing about it
            n_both_orders += 1
            n_inconsistent += m.inconsistent
        for j in (m.xy, m.yx):
            if j is None:
                continue
            n_judgments += 1
            if j.verdict == "error":
                n_errors += 1
            elif j.verdict == "tie":
                n_ties += 1
            else:
                n_decisive += 1
                n_first_wins += j.verdict == "A"
    n_ok_judgments = n_judgments - n_errors
    consistency = _share(n_both_orders - n_inconsistent, n_both_orders)
    return JudgeHealth(
        n_judgments=n_judgments,
        n_matches=len(matches),
        consistency=consistency,
        first_position_win_share=_share(n_first_wins, n_decisive),
        tie_share=_share(n_ties, n_ok_judgments),
        error_share=_share(n_errors, n_judgments),
        n_errors=n_errors,
        n_inconsistent=n_inconsistent,
        n_error_matches=n_error_matches,
    )


# (judge, template name, template hash, turn): the unit judge health is reported for.
HealthKey = tuple[str, str, str, int]


def judge_health_by_group(matches: Sequence[Match]) -> list[tuple[HealthKey, JudgeHealth]]:
    """Judge health per judge x template x turn (DESIGN.md): a judge can be position-biased under one template or on
    turn 2 only, which a figure pooled over a candidate's matches hides. Sorted by key.

    A match is grouped by the judgment(s) attached to it (both orders share judge, template and turn by
    construction); a match with no judgment attached (an import carrying only scores) has no health to report.
    """
    groups: dict[HealthKey, list[Match]] = {}
    for m in matches:
        j = m.xy or m.yx
        if j is None:
            continue
        groups.setdefault((j.judge, j.template, j.template_hash, m.turn), []).append(m)
    return [(key, judge_health(groups[key])) for key in sorted(groups)]
