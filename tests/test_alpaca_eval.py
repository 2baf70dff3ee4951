"""AlpacaEval annotations: read as Matches, and reproduce the published leaderboard's win rate and standard error."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from evalsuite.errors import InputError
from evalsuite.interop.alpaca_eval import alpaca_eval_win_rate, read_alpaca_eval_annotations

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "alpaca_eval"
# Annotation file -> its row in alpaca_eval_gpt4_leaderboard.csv (the same names in this release).
MODELS = {"alpaca-7b": "alpaca-7b", "claude": "claude", "gpt4": "gpt4", "vicuna-13b": "vicuna-13b"}


def _leaderboard() -> dict[str, dict[str, str]]:
    with open(DATA / "alpaca_eval_gpt4_leaderboard.csv", newline="", encoding="utf-8") as f:
        return {row[""]: row for row in csv.DictReader(f)}


@pytest.mark.parametrize("file_name", sorted(MODELS))
def test_reproduces_published_win_rate_and_standard_error(file_name: str) -> None:
    path = DATA / "annotations" / f"{file_name}.json"
    if not path.exists():
        pytest.skip("shared AlpacaEval data not available")
    matches = read_alpaca_eval_annotations(path)
    row = _leaderboard()[MODELS[file_name]]
    win_rate, standard_error = alpaca_eval_win_rate(matches)
    assert win_rate == pytest.approx(float(row["win_rate"]), abs=0.01)
    assert standard_error == pytest.approx(float(row["standard_error"]), abs=0.01)
    # The counts agree too: wins, baseline wins, draws.
    scores = [m.score for m in matches if not m.error]
    assert sum(s == 1.0 for s in scores) == int(row["n_wins"])
    assert sum(s == 0.0 for s in scores) == int(row["n_wins_base"])
    assert sum(s == 0.5 for s in scores) == int(row["n_draws"])
    first = matches[0]
    assert (first.question_id, first.category, first.turn) == ("ae-0", "alpaca_eval", 1)
    assert (first.model_x, first.model_y) == (file_name, "text_davinci_003")


def _write(tmp_path: Path, records: object) -> Path:
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def _record(preference: object) -> dict[str, object]:
    return {
        "instruction": "Say hi.",
        "output_1": "hi",
        "output_2": "hello",
        "generator_1": "base",
        "generator_2": "cand",
        "preference": preference,
    }


def test_preference_encoding(tmp_path: Path) -> None:
    path = _write(tmp_path, [_record(2), _record(1), _record(0), _record(1.5), _record(1.75), _record(None)])
    matches = read_alpaca_eval_annotations(path)
    assert [m.score for m in matches] == [1.0, 0.0, 0.5, 0.5, 0.75, None]
    assert [m.error for m in matches] == [False] * 5 + [True]
    assert all(not m.inconsistent and m.model_x == "cand" and m.model_y == "base" for m in matches)
    win_rate, se = alpaca_eval_win_rate(matches)
    assert win_rate == pytest.approx(55.0)  # mean of 1, 0, 0.5, 0.5, 0.75; the null one is left out
    scores = [1.0, 0.0, 0.5, 0.5, 0.75]
    sd = math.sqrt(sum((s - 0.55) ** 2 for s in scores) / 4)
    assert se == pytest.approx(100 * sd / math.sqrt(5))


def test_nan_preference_is_an_error_match(tmp_path: Path) -> None:
    path = tmp_path / "nan.json"
    path.write_text(json.dumps([_record(2)])[:-1].replace('"preference": 2', '"preference": NaN') + "]")
    (match,) = read_alpaca_eval_annotations(path)
    assert match.error and match.score is None


def test_bad_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[{"instruction": ', encoding="utf-8")
    with pytest.raises(InputError, match="broken.json"):
        read_alpaca_eval_annotations(path)


@pytest.mark.parametrize(
    "records,message",
    [
        ([_record(2), {"instruction": "x"}], r"record 1: missing field\(s\) generator_1"),
        ([_record(2), _record(2), _record(3)], r"record 2: preference must be 0 \(draw\), in \[1, 2\]"),
        ([_record("2")], r"record 0: preference must be a number"),
        ([_record(True)], r"record 0: preference must be a number"),
        ([["not", "an", "object"]], r"record 0: expected a JSON object"),
        ({"not": "a list"}, "expected a JSON list"),
    ],
)
def test_bad_records_name_file_and_index(tmp_path: Path, records: object, message: str) -> None:
    path = _write(tmp_path, records)
    with pytest.raises(InputError, match=message) as info:
        read_alpaca_eval_annotations(path)
    assert str(path) in str(info.value)
