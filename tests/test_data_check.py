"""The preference-data checklist on a crafted file with every defect, and ``evalsuite data check --out``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from evalsuite.cli._data import data_group
from evalsuite.errors import InputError
from evalsuite.trainers._data import read_preference_pairs
from evalsuite.trainers.data_check import check_preferences, clean_preferences, near_identical

LONG_TEXT = " ".join(f"word{i}" for i in range(2100))
PARAGRAPH = (
    "Photosynthesis turns light, water and carbon dioxide into glucose and oxygen inside the chloroplasts of "
    "plant cells, using chlorophyll to capture the energy of sunlight."
)

# Record number -> what is wrong with it.
RECORDS: list[dict[str, object]] = [
    # 1: fine
    {"prompt": "Name a prime.", "chosen": "Seven is a prime number.", "rejected": "Eight is prime, I think.", "category": "math"},
    # 2: fine
    {"prompt": "Write a haiku.", "chosen": "Autumn moonlight, a worm digs silently.", "rejected": "Here is a poem about cats.", "category": "writing"},
    # 3: empty chosen
    {"prompt": "Say hi.", "chosen": "   ", "rejected": "Hello there, friend.", "category": "writing"},
    # 4: identical up to whitespace
    {"prompt": "Define entropy.", "chosen": "A measure of  disorder in a system.", "rejected": "A measure of disorder\nin a system.", "category": "stem"},
    # 5: near-identical (one character differs)
    {"prompt": "Explain photosynthesis.", "chosen": PARAGRAPH, "rejected": PARAGRAPH.replace("glucose", "glucoze"), "category": "stem"},
    # 6: very short rejected
    {"prompt": "Is the sky blue?", "chosen": "Yes, because of Rayleigh scattering.", "rejected": "Yes.", "category": "stem"},
    # 7: very long chosen
    {"prompt": "Write a long essay.", "chosen": LONG_TEXT, "rejected": "A short essay on nothing much.", "category": "writing"},
    # 8: duplicate prompt of record 1
    {"prompt": "Name  a prime.", "chosen": "Two is the only even prime.", "rejected": "Nine is a prime number.", "category": "math"},
    # 9: UltraFeedback-binarized shape
    {
        "prompt": "Reverse a list in Python.",
        "chosen": [
            {"role": "user", "content": "Reverse a list in Python."},
            {"role": "assistant", "content": "Use xs[::-1] or xs.reverse() in place."},
        ],
        "rejected": [
            {"role": "user", "content": "Reverse a list in Python."},
            {"role": "assistant", "content": "Python lists cannot be reversed at all."},
        ],
        "category": "coding",
    },
]


@pytest.fixture()
def prefs(tmp_path: Path) -> Path:
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    return path


def test_every_defect_is_found(prefs: Path) -> None:
    report = check_preferences(read_preference_pairs(prefs), sample=3, seed=0)
    assert report.n_pairs == 9
    assert [(f.record, f.detail) for f in report.empty] == [(3, "chosen is empty")]
    assert [f.record for f in report.near_identical] == [4, 5]
    assert report.near_identical[0].detail == "identical after whitespace"
    assert report.near_identical[1].detail.startswith("similarity 0.9")
    assert [(f.record, f.detail) for f in report.too_short] == [(6, "rejected has 1 word")]
    assert [(f.record, f.detail) for f in report.too_long] == [(7, "chosen has 2100 words")]
    assert [(f.record, f.detail) for f in report.duplicate_prompts] == [(8, "same prompt as record 1")]
    assert report.coverage_field == "category"
    assert report.coverage == {"stem": 3, "writing": 3, "math": 2, "coding": 1}
    assert report.issue_counts() == {
        "empty": 1, "very short": 1, "very long": 1, "near-identical": 2, "duplicate prompt": 1,
    }
    # The one 2100-word reply makes chosen far longer on average.
    assert report.length_bias and report.length_ratio > 2


def test_length_statistics_and_bias() -> None:
    from evalsuite.trainers._data import PreferencePair

    def pair(i: int, chosen_words: int, rejected_words: int) -> PreferencePair:
        return PreferencePair(i, ({"role": "user", "content": f"q{i}"},), "a " * chosen_words, "b " * rejected_words, False)

    balanced = check_preferences([pair(1, 10, 10), pair(2, 20, 10), pair(3, 10, 20)])
    assert balanced.chosen_words.mean == pytest.approx(40 / 3) and balanced.chosen_words.median == 10
    assert balanced.length_ratio == pytest.approx(1.0) and not balanced.length_bias
    assert balanced.chosen_longer_share == pytest.approx(1 / 3)
    assert balanced.coverage == {} and balanced.coverage_field is None
    biased = check_preferences([pair(1, 30, 10), pair(2, 50, 20)])
    assert biased.length_ratio == pytest.approx(80 / 30) and biased.length_bias
    reverse = check_preferences([pair(1, 5, 30)])
    assert reverse.length_bias  # rejected much longer is a bias too


def test_sample_is_seeded_and_bounded(prefs: Path) -> None:
    pairs = read_preference_pairs(prefs)
    first = [p.record for p in check_preferences(pairs, sample=4, seed=1).sample]
    again = [p.record for p in check_preferences(pairs, sample=4, seed=1).sample]
    assert first == again and len(first) == 4 and first == sorted(first)
    assert len(check_preferences(pairs, sample=50).sample) == 9
    assert check_preferences(pairs, sample=0).sample == []


def test_configurable_word_limits(prefs: Path) -> None:
    report = check_preferences(read_preference_pairs(prefs), min_words=1, max_words=5000)
    assert report.too_short == [] and report.too_long == []


def test_near_identical_threshold() -> None:
    assert near_identical("same  text", "same text") == 1.0
    assert near_identical(PARAGRAPH, PARAGRAPH.replace("glucose", "glucoze")) is not None
    assert near_identical("The answer is 4.", "I do not know the answer.") is None


def test_clean_drops_empty_near_identical_and_repeated_prompts(prefs: Path) -> None:
    result = clean_preferences(read_preference_pairs(prefs))
    assert result.dropped == {"empty": [3], "near_identical": [4, 5], "duplicate_prompt": [8]}
    assert [p.record for p in result.kept] == [1, 2, 6, 7, 9]


def _invoke(args: list[str]) -> Result:
    # A wide terminal so rich does not wrap the phrases the tests look for.
    return CliRunner().invoke(data_group, args, env={"COLUMNS": "200"})


def test_cli_check_prints_the_checklist(prefs: Path) -> None:
    result = _invoke(["check", str(prefs), "--sample", "2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    for expected in ("9 pairs", "near-identical", "duplicate prompt", "very long", "LENGTH BIAS", "Coverage by category", "Random sample (2)"):
        assert expected in result.output


def test_cli_out_writes_the_cleaned_records_and_says_why(prefs: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean" / "prefs.clean.jsonl"
    result = _invoke(["check", str(prefs), "--out", str(out), "--sample", "0"])
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in out.read_text().splitlines()]
    # The original records, untouched (the UltraFeedback one keeps its message lists).
    assert written == [RECORDS[i - 1] for i in (1, 2, 6, 7, 9)]
    assert "Wrote 5 of 9 pairs" in result.output
    for reason, count in (("empty prompt or reply", 1), ("chosen ≈ rejected", 2), ("duplicate prompt (first kept)", 1)):
        line = next(line for line in result.output.splitlines() if reason in line)
        assert f" {count} " in line


def test_cli_refuses_to_overwrite_its_input(prefs: Path) -> None:
    result = _invoke(["check", str(prefs), "--out", str(prefs)])
    assert isinstance(result.exception, InputError)


def test_malformed_file_names_the_file_and_record(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(RECORDS[0]) + "\n" + json.dumps({"prompt": "x", "answer": "y"}) + "\n")
    result = _invoke(["check", str(bad)])
    assert isinstance(result.exception, InputError)
    message = str(result.exception)
    assert "bad.jsonl" in message and "record 2" in message and "[answer, prompt]" in message


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    result = _invoke(["check", str(tmp_path / "nope.jsonl")])
    assert isinstance(result.exception, InputError) and "nope.jsonl" in str(result.exception)
