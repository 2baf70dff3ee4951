"""Style control (Arena-Hard v2): markdown counting outside code, what the controlled win rates mean on judges with a
known preference, the frozen reference, degenerate columns, the clustered bootstrap, and agreement with Arena-Hard's
own numbers pinned by scripts/check_arena_hard_style.py."""

from __future__ import annotations

import doctest
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

import evalsuite.stats._style
from evalsuite.errors import InputError
from evalsuite.stats import (
    STYLE_FEATURES,
    StyleControl,
    StyleFeatures,
    StyleReference,
    style_controlled_win_rates,
    style_differences,
    style_features,
)

PINNED = Path(__file__).parent / "data" / "arena_hard_style"
BASE = "base"


def test_doctests() -> None:
    assert doctest.testmod(evalsuite.stats._style).failed == 0


def test_markdown_is_counted_outside_fenced_code_only() -> None:
    text = "\n".join([
        "# Title", "## Part", "###### Deep", "####### seven is not a header", "#hashtag", "",
        "1. first", "  2. second, indented", "- bullet", "* star", "+ plus", "---", "-not an item",
        "Some **bold** and __also bold__ and **not", "closed** across lines.",
        "```python", "# comment", "- not an item", "**not bold**", "```",
        "~~~", "## not a header", "~~~",
        "after the code: **bold**",
    ])
    assert style_features(text) == StyleFeatures(length=style_features(text).length, header=3, list=5, bold=3)


def test_an_unclosed_fence_hides_the_rest_and_length_counts_the_code() -> None:
    text = "Intro **bold**\n````\n# inside\n```\n- still inside\n"
    features = style_features(text, count_tokens=len)
    assert (features.header, features.list, features.bold) == (0, 0, 1)
    assert features.length == len(text)  # the whole answer, code included
    assert style_features("") == StyleFeatures(0, 0, 0, 0)


def test_style_differences_are_arena_hards_normalised_columns() -> None:
    a, b = StyleFeatures(300, 2, 6, 3), StyleFeatures(100, 0, 1, 0)
    x = style_differences([a, b], [b, a])
    density_a, density_b = np.array([2, 6, 3]) / 301, np.array([0, 1, 0]) / 101
    expected = np.concatenate([[200 / 400], (density_a - density_b) / (density_a + density_b + 1)])
    np.testing.assert_allclose(x[0], expected)
    np.testing.assert_allclose(x[1], -expected)
    np.testing.assert_array_equal(style_differences([StyleFeatures(0, 0, 0, 0)], [StyleFeatures(0, 0, 0, 0)]), 0.0)


def _style_judge_battles(
    qualities: dict[str, float],
    markdown: dict[str, float],
    *,
    judge: tuple[float, float],
    n_questions: int = 300,
    seed: int = 0,
) -> dict[str, list]:
    """Battles of each model against BASE on every question, both orders, judged by Bernoulli draws with logit
    quality_m + judge[0] * length column + judge[1] * (sum of the markdown columns). ``markdown`` is each model's
    markdown level (list items per answer / 4; BASE: 1); lengths vary around 400 tokens, longer with more markdown."""
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {k: [] for k in ("a", "b", "score", "fa", "fb", "q")}
    for q in range(n_questions):
        base = _answer(rng, 1.0)
        for model, quality in qualities.items():
            mine = _answer(rng, markdown[model])
            x = style_differences([mine], [base])[0]
            p = expit(quality + judge[0] * x[0] + judge[1] * x[1:].sum())
            for flip in (False, True):
                won = float(rng.random() < p)
                if flip:
                    out["a"].append(BASE), out["b"].append(model), out["score"].append(1.0 - won)
                    out["fa"].append(base), out["fb"].append(mine)
                else:
                    out["a"].append(model), out["b"].append(BASE), out["score"].append(won)
                    out["fa"].append(mine), out["fb"].append(base)
                out["q"].append(q)
    return out


def _answer(rng: np.random.Generator, markdown: float) -> StyleFeatures:
    # Each answer's markdown level varies (some answers of a marked-up model are plain), so styles overlap.
    level = markdown * rng.exponential(1.0)
    items = int(rng.poisson(level * 4))
    return StyleFeatures(
        length=int(rng.integers(250, 550)) + 25 * items,
        header=int(rng.poisson(level)),
        list=items,
        bold=int(rng.poisson(level)),
    )


def _fit(battles: dict[str, list], *, n_rounds: int, reference: StyleReference | None = None) -> StyleControl:
    return style_controlled_win_rates(
        battles["a"], battles["b"], np.array(battles["score"]), battles["fa"], battles["fb"], np.array(battles["q"]),
        baseline=BASE, reference=reference, n_rounds=n_rounds,
    )


def _raw(battles: dict[str, list], model: str) -> float:
    scores = [s if a == model else 1.0 - s for a, b, s in zip(battles["a"], battles["b"], battles["score"])
              if model in (a, b)]
    return float(np.mean(scores))


def test_a_judge_that_rewards_only_style_leaves_a_styled_model_at_half_when_styles_match() -> None:
    battles = _style_judge_battles({"styled": 0.0}, {"styled": 4.0}, judge=(2.0, 40.0))
    result = _fit(battles, n_rounds=300)
    (styled,) = result.win_rates
    assert _raw(battles, "styled") > 0.65  # the judge's taste shows in the raw rate
    assert styled.ci_low_at_zero < 0.5 < styled.ci_high_at_zero
    assert abs(styled.win_rate_at_zero - 0.5) < 0.06
    coefficients = {c.name: c for c in result.coefficients}
    assert all(coefficients[name].estimate > 0 for name in STYLE_FEATURES)
    assert coefficients["list"].ci_low > 0  # the column the judge's markdown taste moves most


def test_a_truly_better_model_keeps_its_advantage_after_style_control() -> None:
    battles = _style_judge_battles(
        {"better": 1.0, "styled": 0.0}, {"better": 1.0, "styled": 4.0}, judge=(2.0, 40.0), seed=1
    )
    rates = {r.model: r for r in _fit(battles, n_rounds=300).win_rates}
    assert rates["better"].ci_low_at_zero > 0.6
    assert abs(rates["better"].win_rate_at_zero - expit(1.0)) < 0.06
    assert rates["better"].win_rate_at_zero > rates["styled"].ci_high_at_zero
    assert rates["styled"].win_rate_at_zero < _raw(battles, "styled")


def test_which_side_is_called_a_does_not_matter() -> None:
    battles = _style_judge_battles({"m": 0.3, "n": -0.2}, {"m": 2.0, "n": 0.5}, judge=(1.0, 20.0), n_questions=80)
    swapped = {"a": battles["b"], "b": battles["a"], "score": [1.0 - s for s in battles["score"]],
               "fa": battles["fb"], "fb": battles["fa"], "q": battles["q"]}
    one, other = _fit(battles, n_rounds=50), _fit(swapped, n_rounds=50)
    for r1, r2 in zip(one.win_rates, other.win_rates):
        assert r1.win_rate_at_mean == pytest.approx(r2.win_rate_at_mean, abs=1e-9)
        assert r1.ci_low_at_zero == pytest.approx(r2.ci_low_at_zero, abs=1e-9)
    assert one.reference.mean == pytest.approx(other.reference.mean, abs=1e-12)


def test_a_frozen_reference_keeps_a_model_s_numbers_when_another_model_is_added() -> None:
    three = _style_judge_battles({"m1": 0.4, "m2": 0.0, "m3": -0.5}, {"m1": 2.0, "m2": 3.0, "m3": 0.2},
                                 judge=(1.5, 30.0), n_questions=120)
    keep = [k for k, (a, b) in enumerate(zip(three["a"], three["b"])) if "m3" not in (a, b)]
    two = {key: [values[k] for k in keep] for key, values in three.items()}  # same battles, without m3's
    first = _fit(two, n_rounds=200)
    frozen_two = _fit(two, n_rounds=200, reference=first.reference)
    frozen_three = _fit(three, n_rounds=200, reference=first.reference)
    moved = _fit(three, n_rounds=200)
    for fitted, before, after in zip(first.win_rates, frozen_two.win_rates, frozen_three.win_rates):
        assert before.model == after.model == fitted.model
        assert before.win_rate_at_zero == pytest.approx(fitted.win_rate_at_zero, abs=1e-9)
        for field in ("win_rate_at_mean", "ci_low_at_mean", "ci_high_at_mean", "win_rate_at_zero", "ci_low_at_zero",
                      "ci_high_at_zero"):
            assert getattr(after, field) == pytest.approx(getattr(before, field), abs=1e-9)
    assert [c.estimate for c in frozen_three.coefficients] == pytest.approx(first.reference.coefficients)
    # Refitted (the default), the shared style coefficients and the standardisation move with the new model.
    assert moved.win_rates[0].win_rate_at_zero != pytest.approx(first.win_rates[0].win_rate_at_zero, abs=1e-6)
    assert moved.reference.std != pytest.approx(first.reference.std, abs=1e-9)


def test_a_style_column_without_spread_is_dropped_and_reported_as_zero() -> None:
    battles = _style_judge_battles({"m": 0.5}, {"m": 2.0}, judge=(1.0, 0.0), n_questions=60)
    battles["fa"] = [replace(f, header=0) for f in battles["fa"]]
    battles["fb"] = [replace(f, header=0) for f in battles["fb"]]
    result = _fit(battles, n_rounds=100)
    header = next(c for c in result.coefficients if c.name == "header")
    assert (header.estimate, header.ci_low, header.ci_high) == (0.0, 0.0, 0.0)
    assert result.reference.std[STYLE_FEATURES.index("header")] == 0.0
    assert 0.5 < result.win_rates[0].win_rate_at_zero < 0.8

    # No text at all (errors, empty answers): every column is constant, the fit is the plain Bradley-Terry one.
    empty = [StyleFeatures(0, 0, 0, 0)] * len(battles["a"])
    plain = style_controlled_win_rates(battles["a"], battles["b"], np.array(battles["score"]), empty, empty,
                                       np.array(battles["q"]), baseline=BASE, n_rounds=50)
    assert all(c.estimate == 0.0 for c in plain.coefficients)
    assert plain.win_rates[0].win_rate_at_zero == pytest.approx(_raw(battles, "m"), abs=1e-6)


def test_the_question_clustered_interval_is_wider_than_a_battle_bootstrap_on_clustered_data() -> None:
    rng = np.random.default_rng(3)
    battles: dict[str, list] = {k: [] for k in ("a", "b", "score", "fa", "fb", "q")}
    for q in range(60):
        difficulty = rng.normal(0.0, 2.0)  # shared by all battles of a question: strongly correlated outcomes
        for _ in range(8):
            mine, base = _answer(rng, 2.0), _answer(rng, 1.0)
            battles["a"].append("m"), battles["b"].append(BASE), battles["q"].append(q)
            battles["fa"].append(mine), battles["fb"].append(base)
            battles["score"].append(float(rng.random() < expit(0.3 + difficulty)))
    clustered = _fit(battles, n_rounds=400).win_rates[0]
    by_battle = style_controlled_win_rates(
        battles["a"], battles["b"], np.array(battles["score"]), battles["fa"], battles["fb"],
        np.arange(len(battles["a"])), baseline=BASE, n_rounds=400,
    ).win_rates[0]
    assert by_battle.win_rate_at_zero == pytest.approx(clustered.win_rate_at_zero)
    assert clustered.ci_high_at_zero - clustered.ci_low_at_zero > 1.3 * (by_battle.ci_high_at_zero -
                                                                          by_battle.ci_low_at_zero)


def test_arena_hard_agreement_on_the_pinned_battles() -> None:
    data = json.loads((PINNED / "battles.json").read_text())
    theirs = json.loads((PINNED / "arena_hard.json").read_text())
    index = {q: k for k, q in enumerate(data["questions"])}
    rows = [row for row in data["battles"] for _ in range(row[4])]  # a strong verdict counts row[4] times
    features = {m: [StyleFeatures(*f) for f in fs] for m, fs in data["features"].items()}
    result = style_controlled_win_rates(
        [r[1] for r in rows], [r[2] for r in rows], np.array([r[3] for r in rows]),
        [features[r[1]][index[r[0]]] for r in rows], [features[r[2]][index[r[0]]] for r in rows],
        np.array([r[0] for r in rows]), baseline=data["baseline"], n_rounds=20,
    )
    assert result.n_battles == theirs["n_battles"]
    assert {r.model: r.win_rate_at_mean for r in result.win_rates} == pytest.approx(
        theirs["win_rates_at_mean"], abs=1e-3)
    assert {c.name: c.estimate for c in result.coefficients} == pytest.approx(theirs["coefficients"], abs=1e-3)


def test_the_reference_round_trips_through_json_and_bad_files_say_so() -> None:
    reference = StyleReference(mean=(0.1, 0.0, 0.01, 0.0), std=(0.3, 0.01, 0.02, 0.0), coefficients=(1, 0, 0.5, 0))
    assert StyleReference.from_json(json.loads(json.dumps(reference.to_json()))) == reference
    with pytest.raises(InputError, match=r"ref\.json: .*fix: write it with StyleReference.to_json"):
        StyleReference.from_json({"features": list(STYLE_FEATURES), "mean": [0, 0], "std": [1, 1]}, where="ref.json")
    with pytest.raises(InputError, match="not a style reference"):
        StyleReference.from_json({"mean": [0] * 4, "std": [1] * 4}, where="ref.json")


def test_bad_battles_are_refused() -> None:
    f = [StyleFeatures(10, 0, 0, 0)] * 2
    with pytest.raises(ValueError, match="baseline 'base' played no battle"):
        style_controlled_win_rates(["x", "y"], ["y", "x"], np.array([1.0, 0.0]), f, f, np.array([0, 1]), baseline=BASE)
    with pytest.raises(ValueError, match="no chain of battles"):
        style_controlled_win_rates(["x", "y"], [BASE, "z"], np.array([1.0, 0.0]), f, f, np.array([0, 1]),
                                   baseline=BASE)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        style_controlled_win_rates(["x", "x"], [BASE, BASE], np.array([1.5, 0.0]), f, f, np.array([0, 1]),
                                   baseline=BASE)


def test_rounds_fitted_in_blocks_give_the_same_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    battles = _style_judge_battles({"m1": 0.4, "m2": 0.0}, {"m1": 2.0, "m2": 3.0}, judge=(1.5, 30.0), n_questions=50)
    whole = _fit(battles, n_rounds=120)
    monkeypatch.setattr(evalsuite.stats._style, "_BLOCK_ELEMENTS", 1000)  # 5 rounds per block
    blocked = _fit(battles, n_rounds=120)
    for r1, r2 in zip(whole.win_rates, blocked.win_rates):
        assert r1.ci_low_at_zero == pytest.approx(r2.ci_low_at_zero, abs=1e-9)
        assert r1.ci_high_at_mean == pytest.approx(r2.ci_high_at_mean, abs=1e-9)


def test_hessians_without_the_outer_products_give_the_same_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Past a few hundred thousand battles the row outer products are not kept; the per-round Gram path is the same fit.
    battles = _style_judge_battles({"m1": 0.4, "m2": 0.0}, {"m1": 2.0, "m2": 3.0}, judge=(1.5, 30.0), n_questions=50)
    kept = _fit(battles, n_rounds=60)
    monkeypatch.setattr(evalsuite.stats._style, "_OUTER_ELEMENTS", 0)
    gram = _fit(battles, n_rounds=60)
    for r1, r2 in zip(kept.win_rates, gram.win_rates):
        assert r1.win_rate_at_zero == pytest.approx(r2.win_rate_at_zero, abs=1e-12)
        assert r1.ci_low_at_zero == pytest.approx(r2.ci_low_at_zero, abs=1e-9)
        assert r1.ci_high_at_mean == pytest.approx(r2.ci_high_at_mean, abs=1e-9)
    assert [c.estimate for c in kept.coefficients] == pytest.approx([c.estimate for c in gram.coefficients], abs=1e-12)


def test_a_model_that_wins_every_battle_gets_a_finite_rate_near_one() -> None:
    battles = _style_judge_battles({"m": 0.0}, {"m": 2.0}, judge=(1.0, 20.0), n_questions=40)
    battles["score"] = [1.0 if a == "m" else 0.0 for a in battles["a"]]
    (rate,) = _fit(battles, n_rounds=50).win_rates
    assert 0.99 < rate.win_rate_at_zero < 1.0 and 0.99 < rate.ci_low_at_mean <= rate.ci_high_at_mean < 1.0
