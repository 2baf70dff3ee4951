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


# --------------------------------------------------------------------------------------------- what an import keeps


def _run_import(tmp_path: Path, src: Path, out: str = "ae") -> dict:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "evalsuite", "import-judgments", str(src), "--format", "alpaca-eval",
                          "--run-dir", out, "--resamples", "500"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return {"results": json.loads((tmp_path / out / "results.json").read_text()), "stderr": res.stderr,
            "leaderboard": (tmp_path / out / "leaderboard.md").read_text()}


def test_import_keeps_lengths_and_the_sources_standard_error(tmp_path: Path) -> None:
    recs = []
    for i in range(40):
        r = _record([2, 1, 0, 1.5][i % 4])
        r["instruction"] = f"Say hi {i}."
        r["output_1"] = "b" * (10 + i)  # baseline
        r["output_2"] = "c" * (100 + 3 * i) if i % 4 == 0 else "c" * (20 + i)  # long answers win here
        recs.append(r)
    out = _run_import(tmp_path, _write(tmp_path, recs))
    (c,) = out["results"]["comparisons"]
    assert c["avg_length"] == pytest.approx(sum(len(r["output_2"]) for r in recs) / 40, abs=0.05)
    assert c["avg_length_baseline"] == pytest.approx(sum(len(r["output_1"]) for r in recs) / 40, abs=0.05)
    _, se = alpaca_eval_win_rate(read_alpaca_eval_annotations(_write(tmp_path, recs)))
    assert c["external_se"] == pytest.approx(se / 100, abs=1e-6)
    # LC is computed from the lengths, not copied from the raw rate: the wins here are the long answers
    assert c["lc_win_rate"] is not None and c["lc_win_rate"] != c["win_rate"]
    assert "(the source's own SE)" in out["stderr"]


def test_unknown_lengths_give_no_length_controlled_rate(tmp_path: Path) -> None:
    recs = [_record([2, 1, 0][i % 3]) for i in range(12)]
    for r in recs[::2]:
        del r["output_2"]  # annotations without the answer text: lengths unknown
    (c,) = _run_import(tmp_path, _write(tmp_path, recs))["results"]["comparisons"]
    assert c["lc_win_rate"] is None and c["avg_length"] is None and c["win_rate"] is not None


@pytest.mark.parametrize("file_name", ["vicuna-13b", "alpaca-7b"])
def test_real_import_lengths_and_se_match_the_leaderboard(tmp_path: Path, file_name: str) -> None:
    path = DATA / "annotations" / f"{file_name}.json"
    if not path.exists():
        pytest.skip("shared AlpacaEval data not available")
    row = _leaderboard()[MODELS[file_name]]
    (c,) = _run_import(tmp_path, path)["results"]["comparisons"]
    assert int(c["avg_length"]) == int(row["avg_length"])  # AlpacaEval's avg_length: mean characters of the outputs
    assert 100 * c["external_se"] == pytest.approx(float(row["standard_error"]), abs=0.01)
    assert c["lc_win_rate"] is not None and c["lc_win_rate"] != c["win_rate"]
