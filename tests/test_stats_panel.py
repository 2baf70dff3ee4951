"""Judge panel statistics: kappas against worked examples and scikit-learn, weights from simulated faulty judges.

The simulated judges score each match in both orders and are reconciled by MT-Bench's strict rule (X wins iff both
orders pick X), as the pipeline does: a sound judge mostly picks the better answer, a position-biased one picks
whatever is shown first, a noisy one draws A, B or tie uniformly.
"""

from __future__ import annotations

import doctest
from collections.abc import Hashable

import numpy as np
import pytest

from evalsuite.stats import _panel
from evalsuite.stats import PanelWeight, cohen_kappa, fleiss_kappa, match_label, panel_scores, panel_weights


def cohen_table(yes_yes: int, yes_no: int, no_yes: int, no_no: int) -> tuple[list[int], list[int]]:
    """Two raters' labels (0 = yes, 1 = no) from a 2 x 2 table of counts (rater 1 in rows)."""
    pairs = [(0, 0)] * yes_yes + [(0, 1)] * yes_no + [(1, 0)] * no_yes + [(1, 1)] * no_no
    return [a for a, _ in pairs], [b for _, b in pairs]


def test_doctests() -> None:
    assert doctest.testmod(_panel).failed == 0


def test_match_label() -> None:
    assert [match_label(s) for s in (1.0, 0.75, 0.5 + 1e-12, 0.5, 0.5 - 1e-12, 0.25, 0.0)] == [0, 0, 1, 1, 1, 2, 2]
    assert match_label(0.5 + 1e-6) == 0 and match_label(0.5 - 1e-6) == 2


def test_cohen_kappa_worked_examples() -> None:
    # 50 applicants: p_o = 35/50 = 0.7; p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = 0.2 / 0.5 = 0.4.
    assert cohen_kappa(*cohen_table(20, 5, 10, 15), n_labels=2) == pytest.approx(0.4)
    # Same raw agreement 0.6, different margins: p_e = 0.6 * 0.7 + 0.4 * 0.3 = 0.54 -> 0.06 / 0.46;
    # p_e = 0.6 * 0.3 + 0.4 * 0.7 = 0.46 -> 0.14 / 0.54.
    assert cohen_kappa(*cohen_table(45, 15, 25, 15), n_labels=2) == pytest.approx(0.06 / 0.46)
    assert cohen_kappa(*cohen_table(25, 35, 5, 35), n_labels=2) == pytest.approx(0.14 / 0.54)
    # Three labels by hand: 6 items, 5 agree (p_o = 5/6); margins (2, 2, 2) and (3, 2, 1): p_e = 12/36 = 1/3.
    assert cohen_kappa([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 0, 2]) == pytest.approx((5 / 6 - 1 / 3) / (2 / 3))
    assert cohen_kappa([0, 1], [1, 0]) == pytest.approx(-1.0)


def test_cohen_kappa_undefined_and_bad_input() -> None:
    assert cohen_kappa([], []) is None and cohen_kappa([1], [1]) is None  # fewer than 2 items
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) is None  # chance agreement is 1
    with pytest.raises(ValueError, match="equally long"):
        cohen_kappa([0, 1], [0])
    with pytest.raises(ValueError, match="labels must be"):
        cohen_kappa([0, 3], [0, 1])


def test_cohen_kappa_matches_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for n in (5, 40, 300):
        a = rng.integers(0, 3, n)
        b = np.where(rng.random(n) < 0.6, a, rng.integers(0, 3, n))
        assert cohen_kappa(a.tolist(), b.tolist()) == pytest.approx(metrics.cohen_kappa_score(a, b), abs=1e-12)


# Fleiss' worked example as Wikipedia gives it: 10 items, 14 raters each, 5 categories.
FLEISS_TABLE = np.array([
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
])


def test_fleiss_kappa_worked_example() -> None:
    # p_j = (20, 28, 39, 21, 32) / 140; P_bar = 0.378; P_e = sum p_j^2 = 0.2128 (both rounded in the source).
    shares = np.array([20, 28, 39, 21, 32]) / 140
    per_item = ((FLEISS_TABLE**2).sum(axis=1) - 14) / (14 * 13)
    assert per_item.mean() == pytest.approx(0.378, abs=5e-4) and shares @ shares == pytest.approx(0.213, abs=5e-4)
    expected = (per_item.mean() - shares @ shares) / (1 - shares @ shares)
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(expected) == pytest.approx(0.210, abs=5e-4)
    # Perfect agreement is 1; two raters who always split is below 0.
    assert fleiss_kappa(np.array([[3, 0, 0], [0, 3, 0], [0, 0, 3]])) == pytest.approx(1.0)
    assert (fleiss_kappa(np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]])) or 0) < 0


def test_fleiss_kappa_matches_statsmodels_and_edge_cases() -> None:
    inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
    rng = np.random.default_rng(5)
    table = np.stack([rng.multinomial(4, rng.dirichlet([1, 1, 1])) for _ in range(50)])
    assert fleiss_kappa(table) == pytest.approx(inter_rater.fleiss_kappa(table), abs=1e-12)
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(inter_rater.fleiss_kappa(FLEISS_TABLE), abs=1e-12)
    assert fleiss_kappa(np.array([[2, 0, 0]])) is None  # one item
    assert fleiss_kappa(np.array([[2, 0], [2, 0]])) is None  # every rating in one category
    with pytest.raises(ValueError, match="same number of raters"):
        fleiss_kappa(np.array([[2, 0], [1, 0]]))


# ---------------------------------------------------------------------- weights

BETTER = {0: "X", 1: None, 2: "Y"}  # simulated truth per item: X better, equal, Y better


def simulate(kind: str, truth: np.ndarray, rng: np.random.Generator) -> tuple[dict[Hashable, float], float]:
    """(match scores, position consistency) of one simulated judge over items (question i, turn 1, "x", "y")."""
    scores: dict[Hashable, float] = {}
    agree = 0
    for i, t in enumerate(truth):
        picks = []
        for x_first in (True, False):
            u = rng.random()
            if kind == "sound":
                if BETTER[t] is None:
                    pick = "tie" if u < 0.6 else ("X" if u < 0.8 else "Y")
                else:
                    better = BETTER[t]
                    pick = better if u < 0.85 else ("tie" if u < 0.95 else ("Y" if better == "X" else "X"))
            elif kind == "position":
                first = "X" if x_first else "Y"
                pick = first if u < 0.95 else "tie"
            else:  # noisy
                pick = "X" if u < 1 / 3 else ("tie" if u < 2 / 3 else "Y")
            picks.append(pick)
        agree += picks[0] == picks[1]
        scores[(f"q{i}", 1, "x", "y")] = 1.0 if picks == ["X", "X"] else (0.0 if picks == ["Y", "Y"] else 0.5)
    return scores, agree / len(truth)


def panel(kinds: dict[str, str], n: int = 300, seed: int = 0
          ) -> tuple[dict[str, dict[Hashable, float]], dict[str, float | None], dict[Hashable, float]]:
    rng = np.random.default_rng(seed)
    truth = rng.choice(3, size=n, p=[0.45, 0.1, 0.45])
    sims = {name: simulate(kind, truth, rng) for name, kind in kinds.items()}
    human = {(f"q{i}", 1, "x", "y"): {0: 1.0, 1: 0.5, 2: 0.0}[int(t)] for i, t in enumerate(truth)}
    return {k: s for k, (s, _) in sims.items()}, {k: c for k, (_, c) in sims.items()}, human


def by_name(weights: tuple[PanelWeight, ...]) -> dict[str, PanelWeight]:
    return {w.name: w for w in weights}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sound_judges_get_the_weight_position_and_noise_judges_about_none(seed: int) -> None:
    scores, consistency, _ = panel({"sound": "sound", "sound-2": "sound", "position": "position", "noisy": "noisy"},
                                   seed=seed)
    w = by_name(panel_weights(scores, consistency))
    assert list(w) == list(scores) and sum(x.weight for x in w.values()) == pytest.approx(1.0)
    assert {x.source for x in w.values()} == {"agreement"}
    assert w["sound"].weight > 0.4 and w["sound-2"].weight > 0.4
    assert w["position"].weight < 0.05 and w["noisy"].weight < 0.05
    assert (w["position"].consistency or 0) < 0.1 and abs(w["noisy"].kappa or 0) < 0.1
    # kappa: the mean of its kappas with each other judge (the sound pair's is high, with the others about 0)
    assert (w["sound"].kappa or 0) > 0.1 and w["sound"].consistency == consistency["sound"]
    # Each weight is the mean of max(0, pairwise kappa) times consistency, normalised (significance_z=0: every kappa
    # above 0 counts).
    plain = by_name(panel_weights(scores, consistency, significance_z=0))
    names = list(scores)

    def pair_kappa(a: str, b: str) -> float:
        common = [i for i in scores[a] if i in scores[b]]
        return max(0.0, cohen_kappa([match_label(scores[a][i]) for i in common],
                                    [match_label(scores[b][i]) for i in common]) or 0.0)

    raw = {a: sum(pair_kappa(a, b) for b in names if b != a) / (len(names) - 1) * (consistency[a] or 0.0)
           for a in names}
    assert [x.weight for x in plain.values()] == pytest.approx([r / sum(raw.values()) for r in raw.values()])


def test_human_labels_find_a_lone_sound_judge() -> None:
    scores, consistency, human = panel({"sound": "sound", "position": "position", "noisy": "noisy"})
    labelled = dict(list(human.items())[::2])  # humans labelled half of the matches
    w = by_name(panel_weights(scores, consistency, human=labelled))
    assert {x.source for x in w.values()} == {"human"}
    assert w["sound"].weight > 0.85 and w["position"].weight < 0.1 and w["noisy"].weight < 0.1
    assert w["sound"].agreement is not None and w["sound"].agreement > 0.6
    # Without the humans, agreement alone cannot tell a lone sound judge from a coin-flipper: each one's
    # leave-one-out reference is mostly the other, so their kappas are about the same (and about 0).
    alone = by_name(panel_weights(scores, consistency))
    assert abs((alone["sound"].kappa or 0) - (alone["noisy"].kappa or 0)) < 0.05


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_kappa_must_clear_chance_to_count(seed: int) -> None:
    # A lone sound judge, a position judge and a coin-flipper: nobody agrees beyond chance (a chance kappa clears
    # 2.33 standard errors about 1% of the time), so no weight comes from agreement, none from sampling noise; the
    # fallback weighs by position consistency, which still puts the sound judge first and the slot-reader last.
    scores, consistency, _ = panel({"sound": "sound", "position": "position", "noisy": "noisy"}, seed=seed)
    w = panel_weights(scores, consistency)
    assert {x.source for x in w} == {"consistency"}
    assert all(abs(x.kappa or 0) < 0.1 for x in w)
    ws = by_name(w)
    assert ws["sound"].weight > ws["noisy"].weight > ws["position"].weight
    assert ws["sound"].weight == pytest.approx(consistency["sound"] / sum(consistency.values()))
    # The plain max(0, kappa) normalises whatever sign the noise took: here sound and coin-flipper share one
    # kappa (each one's reference is the other's labels), so either both get 0 or the coin-flipper gets ~30%.
    plain = by_name(panel_weights(scores, consistency, significance_z=0))
    assert plain["sound"].kappa == pytest.approx(plain["noisy"].kappa or 0)


def test_chance_standard_error_matches_statsmodels() -> None:
    inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
    rng = np.random.default_rng(11)
    for n in (30, 200):
        a = rng.integers(0, 3, n)
        b = np.where(rng.random(n) < 0.3, a, rng.integers(0, 3, n))
        table = np.zeros((3, 3))
        np.add.at(table, (a, b), 1)
        kappa = cohen_kappa(a.tolist(), b.tolist())
        assert kappa is not None
        assert _panel._chance_z(a.tolist(), b.tolist(), kappa) == pytest.approx(
            inter_rater.cohens_kappa(table).z_value, rel=1e-9)


def test_fixed_weights_are_taken_as_given_and_normalised_with_the_rest() -> None:
    scores, consistency, _ = panel({"sound": "sound", "sound-2": "sound", "noisy": "noisy"}, n=150)
    w = by_name(panel_weights(scores, consistency, fixed={"noisy": 0.5}, significance_z=0))
    assert w["noisy"].source == "fixed" and w["sound"].source == "agreement"
    assert w["noisy"].weight > 0.4  # 0.5 on the scale of a computed weight, normalised with the sound pair's
    assert w["noisy"].kappa is not None  # its agreement is still measured and reported
    every = by_name(panel_weights(scores, consistency, fixed={"sound": 2.0, "sound-2": 1.0, "noisy": 1.0}))
    assert [x.weight for x in every.values()] == pytest.approx([0.5, 0.25, 0.25])
    with pytest.raises(ValueError, match="not in the panel"):
        panel_weights(scores, consistency, fixed={"ghost": 1.0})
    with pytest.raises(ValueError, match="finite and >= 0"):
        panel_weights(scores, consistency, fixed={"noisy": -1.0})


def test_all_zero_weights_fall_back_to_consistency_then_equal() -> None:
    items = [(f"q{i}", 1, "x", "y") for i in range(20)]
    one = {k: (1.0 if i % 2 else 0.0) for i, k in enumerate(items)}
    other = {k: 1.0 - v for k, v in one.items()}  # disagrees on every match: kappa -1
    w = panel_weights({"a": one, "b": other}, {"a": 0.6, "b": 0.2})
    assert [(x.weight, x.source) for x in w] == [(pytest.approx(0.75), "consistency"), (pytest.approx(0.25), "consistency")]
    assert w[0].kappa == pytest.approx(-1.0) and w[0].agreement == 0.0
    assert [x.weight for x in panel_weights({"a": one, "b": other}, {"a": 1.0, "b": None})] == [0.5, 0.5]  # None: 1
    solo = panel_weights({"only": one}, {"only": 0.9})  # a panel of one: nobody to agree with
    assert solo == (PanelWeight("only", 1.0, None, None, 0.9, "consistency"),)
    # every consistency 0 too: nothing tells the judges apart, so they count the same
    assert [(x.weight, x.source) for x in panel_weights({"a": one, "b": other}, {"a": 0.0, "b": 0.0})] == \
        [(0.5, "equal"), (0.5, "equal")]
    with pytest.raises(ValueError, match=r"judge 'a', item .* must be in \[0, 1\]"):
        panel_weights({"a": {"q": 1.5}}, {})
    with pytest.raises(ValueError, match="consistency"):
        panel_weights({"a": one}, {"a": 2.0})


def test_panel_scores_weighted_mean_over_the_judges_that_scored() -> None:
    scores = {"a": {"i1": 1.0, "i2": 0.5, "i3": 0.0}, "b": {"i1": 0.0, "i2": 1.0}, "c": {"i4": 1.0}}
    merged = panel_scores(scores, {"a": 0.75, "b": 0.25, "c": 0.0})
    assert merged == pytest.approx({"i1": 0.75, "i2": 0.625, "i3": 0.0})
    assert "i4" not in merged  # only a zero-weight judge scored it
    assert list(merged) == ["i1", "i2", "i3"]
    with pytest.raises(ValueError, match="no weight for judges c"):
        panel_scores(scores, {"a": 0.5, "b": 0.5})
    with pytest.raises(ValueError, match="finite and >= 0"):
        panel_scores(scores, {"a": 0.5, "b": float("nan"), "c": 0.0})
