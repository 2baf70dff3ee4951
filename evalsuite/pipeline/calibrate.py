"""``evalsuite calibrate``: win rates on the human scale. Reads the judge's votes (a run directory's own matches or a
vote file) and human votes on a subset, both in the MT-Bench human-judgment vote shape that ``agreement`` reads
(question_id, model_a, model_b, winner, judge, turn), and reports per model pair the judge-only, human-only and
prediction-powered (PPI++) win rates with their CIs (``evalsuite.stats.ppi_win_rate`` owns the statistics).

Scores: a vote scores 1 for the model it picked, 0 for the other, 0.5 for any "tie..." winner; an item
(question, turn, pair) with several votes (several annotators) scores their mean. ``model`` is the run's candidate and
``opponent`` its baseline when a run directory with ``results.json`` is given, else the pair as the judge's first vote
on it shows them.

Refused with a one-line input error: human votes naming models the judge never saw, human votes for items the judge
did not judge, a pair with fewer than ``MIN_LABELLED`` labelled items, a winner that is not model_a/model_b/tie.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from evalsuite.errors import InputError
from evalsuite.interop.votes import vote_score
from evalsuite.report.results import CalibratedRate, CalibrationRow
from evalsuite.stats import CalibratedWinRate, Vote, WinRateInterval, ppi_win_rate

MIN_LABELLED = 10

PairKey = tuple[str, str]  # (model, opponent)
ItemScores = dict[tuple[str, int], float]


def _rate(w: WinRateInterval) -> CalibratedRate:
    return CalibratedRate(w.win_rate, w.ci_low, w.ci_high, w.n, w.n_questions)


def item_scores(votes: Sequence[Vote], orientation: Mapping[frozenset[str], PairKey], where: str) -> dict[PairKey, ItemScores]:
    """Mean score of ``model`` per (question, turn), per oriented pair."""
    sums: dict[PairKey, dict[tuple[str, int], list[float]]] = {}
    for v in votes:
        pair = orientation[frozenset((v.model_a, v.model_b))]
        s = vote_score(v, where)
        if v.model_a != pair[0]:
            s = 1.0 - s
        sums.setdefault(pair, {}).setdefault((v.question_id, v.turn), []).append(s)
    return {p: {k: sum(x) / len(x) for k, x in items.items()} for p, items in sums.items()}


def _orientation(judge_votes: Sequence[Vote], baseline: str | None) -> dict[frozenset[str], PairKey]:
    out: dict[frozenset[str], PairKey] = {}
    for v in judge_votes:
        key = frozenset((v.model_a, v.model_b))
        if key in out or v.model_a == v.model_b:
            continue
        if baseline in key:
            other = next(m for m in key if m != baseline)
            out[key] = (other, baseline)
        else:
            out[key] = (v.model_a, v.model_b)
    return out


def calibrate_votes(
    judge_votes: Sequence[Vote],
    human_votes: Sequence[Vote],
    *,
    judge_source: str,
    human_source: str,
    baseline: str | None = None,
    alpha: float = 0.05,
) -> list[CalibrationRow]:
    """Calibrated win rates for every pair the humans voted on (module doc for the rules and the refusals)."""
    if not human_votes:
        raise InputError("no human votes", where=human_source, fix="pass a vote file with question_id, model_a, model_b, winner, turn")
    judge_models = {m for v in judge_votes for m in (v.model_a, v.model_b)}
    unknown = sorted({m for v in human_votes for m in (v.model_a, v.model_b)} - judge_models)
    if unknown:
        raise InputError(
            f"human votes name models the judge never compared: {', '.join(unknown)}", where=human_source,
            fix=f"keep votes on the judged models ({', '.join(sorted(judge_models)) or 'none'}) or judge those models",
        )
    orientation = _orientation(judge_votes, baseline)
    for v in human_votes:
        if frozenset((v.model_a, v.model_b)) not in orientation:
            raise InputError(f"human votes compare {v.model_a} with {v.model_b}, a pair the judge never compared",
                             where=human_source, fix="drop those votes or judge that pair")
    judge_items = item_scores(judge_votes, orientation, judge_source)
    human_items = item_scores(human_votes, orientation, human_source)
    rows = []
    for pair in sorted(human_items):
        human, judge = human_items[pair], judge_items.get(pair, {})
        missing = sorted(k for k in human if k not in judge)
        if missing:
            q, t = missing[0]
            raise InputError(
                f"{len(missing)} human-labelled items of {pair[0]} vs {pair[1]} were not judged, e.g. question {q} turn {t}",
                where=human_source, fix=f"judge them first, or drop votes for items {judge_source} does not have",
            )
        if len(human) < MIN_LABELLED:
            raise InputError(
                f"only {len(human)} labelled items for {pair[0]} vs {pair[1]}; calibration needs at least {MIN_LABELLED}",
                where=human_source, fix="label more items of that pair, or drop its votes",
            )
        try:
            r: CalibratedWinRate = ppi_win_rate(judge, human, alpha=alpha)
        except ValueError as exc:
            raise InputError(f"{pair[0]} vs {pair[1]}: {exc}", where=human_source,
                             fix="label items on more questions") from None
        rows.append(CalibrationRow(pair[0], pair[1], _rate(r.judge), _rate(r.human), _rate(r.ppi), r.lam))
    return rows


def calibrate(
    human: str | Path, *, run_dir: str | Path | None = None, judge: str | Path | None = None, alpha: float = 0.05
) -> list[CalibrationRow]:
    """Read the votes (``run_dir``'s own matches or the ``judge`` vote file, and the ``human`` vote file) and
    calibrate; with a run directory holding ``results.json``, its baseline is every pair's opponent."""
    from evalsuite.interop.votes import read_votes

    if (run_dir is None) == (judge is None):
        raise InputError("give the judge's verdicts once", where="calibrate", fix="pass either --run-dir DIR or --judge VOTES")
    source = Path(run_dir if run_dir is not None else judge)  # type: ignore[arg-type]
    if run_dir is not None and not (source / "evalsuite.sqlite").is_file():
        raise InputError("not a run directory (no evalsuite.sqlite)", where=str(source), fix="pass the --run-dir of a compare")
    if not Path(human).is_file():
        raise InputError("no such vote file", where=str(human), fix="pass a JSON/JSONL file of human votes")
    baseline = None
    if run_dir is not None and (source / "results.json").is_file():
        from evalsuite.report.results import load_results

        baseline = load_results(source / "results.json").baseline
    judge_votes = read_votes(source)
    if not judge_votes:
        raise InputError("no judge votes", where=str(source), fix="judge the run first (evalsuite compare)")
    return calibrate_votes(judge_votes, read_votes(human), judge_source=str(source), human_source=str(human),
                           baseline=baseline, alpha=alpha)


def attach_to_run(run_dir: str | Path, rows: Sequence[CalibrationRow]) -> Path | None:
    """Store ``rows`` in the run's results.json (its ``calibration`` section) and re-render its leaderboard; None
    when the run has no results.json yet (nothing to attach to)."""
    from dataclasses import replace

    from evalsuite.pipeline._stages import write_outputs
    from evalsuite.report.results import load_results

    path = Path(run_dir) / "results.json"
    if not path.is_file():
        return None
    results = replace(load_results(path), calibration=tuple(rows))
    write_outputs(results, Path(run_dir))
    return path
