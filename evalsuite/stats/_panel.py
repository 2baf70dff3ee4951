"""Judge panels: match labels, Cohen's and Fleiss' kappa, each judge's weight, and the panel's match scores.

A panel is several judges scoring the same matches; ``scores[judge][item]`` is one judge's reconciled match score of
an item (1 = model X wins, 0.5 = tie, 0 = model Y wins; ``item`` is any hashable key, the report uses
(question_id, turn, model_x, model_y)). The panel's score of an item is the weighted mean of the scores of the judges
that scored it (``panel_scores``); the statistics downstream resample questions as for one judge, so judges that
disagree on a question widen the CI instead of vanishing into a pooled count.

Weights (``panel_weights``). Arena-Hard v2 pools its judges' battles with equal weight, and the PoLL paper (Verga et
al. 2024, "Replacing Judges with Juries") votes with equal weight too; both assume every judge is sound. A judge
that answers by position or flips coins then moves the panel as much as a sound one. So by default each judge j
weighs

    weight_j = mean over the other judges k of max(0, kappa_jk) * consistency_j, normalised to sum 1,

where ``kappa_jk`` is Cohen's kappa between j's and k's labels on the items both scored (never j with itself; each
other judge on its own rather than their mean, which the bad judges would smear: two sound judges among a slot
reader and a coin-flipper would not recognise each other in it), and ``consistency_j`` is its
position consistency (the share of its matches whose two orders agree; None counts as 1). Kappa and not raw
agreement, because a judge that calls nearly everything a tie agrees often by chance; the consistency factor,
because a judge that reads only the position turns every match into an inconsistent tie, which the others may well
"agree" with when the matches are close. A judge that reads position (consistency about 0) or flips coins (kappa
about 0) thus weighs about nothing.

A kappa counts only when it is above chance: at least ``significance_z`` (default 2.33, a one-sided 1% test)
standard errors of kappa under chance agreement (Fleiss, Cohen and Everitt 1969) above 0; below that it counts as
0. Without this, a panel in which nobody agrees beyond chance would normalise sampling noise into weights: a
kappa of +0.004 beside negative ones would take all the weight. ``significance_z=0`` gives the plain
``max(0, kappa)``.

Agreement can only find the sound judges when they are most of the panel: a lone sound judge beside a coin-flipper
has nobody to agree with. Human labels settle it: with ``human`` (item -> human score in [0, 1]) the reference is
the humans' label instead of the rest of the panel (source ``"human"``, the same formula otherwise). ``fixed``
weights are taken as given (source ``"fixed"``), on the same scale as a computed one (1 = perfect agreement and
consistency), and normalised together with the others. When every weight comes out 0 (nobody agrees beyond
chance, a two-judge panel that disagrees throughout, a panel of one, judges without any item in common), the panel
falls back to weights in proportion to position consistency alone (source ``"consistency"``): a lone sound judge
beside a slot-reader and a coin-flipper still weighs most, because only its two orders agree. When that is silent
too (every consistency 0), the weights are equal (source ``"equal"``).

Labels: 0 = X wins (score > 0.5), 1 = tie (0.5), 2 = Y wins (< 0.5); ``match_label`` maps a score to one.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

N_LABELS = 3  # X wins, tie, Y wins
_TIE_TOLERANCE = 1e-9  # a mean of judges' scores that should be exactly 0.5 may be off in the last bits

Item = TypeVar("Item", bound=Hashable)  # an item key; generic because Mapping is invariant in its key type


def match_label(score: float) -> int:
    """A match score in [0, 1] as a label: 0 = X wins (> 0.5), 1 = tie (0.5), 2 = Y wins (< 0.5).

    >>> [match_label(s) for s in (1.0, 0.75, 0.5, 0.25, 0.0)]
    [0, 0, 1, 2, 2]
    """
    if abs(score - 0.5) <= _TIE_TOLERANCE:
        return 1
    return 0 if score > 0.5 else 2


def cohen_kappa(labels_1: Sequence[int], labels_2: Sequence[int], n_labels: int = N_LABELS) -> float | None:
    """Cohen's kappa (p_o - p_e) / (1 - p_e) of two raters' labels (integers in [0, n_labels)) of the same items.

    None when fewer than 2 items or when chance agreement is already 1 (both raters give one and the same label
    throughout), where kappa is undefined.

    >>> cohen_kappa([0, 0, 1, 1], [0, 0, 1, 1])
    1.0
    >>> cohen_kappa([0, 1, 0, 1], [0, 0, 1, 1])
    0.0
    """
    a = np.asarray(labels_1, dtype=np.int64)
    b = np.asarray(labels_2, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"cohen_kappa needs two equally long label lists, got {a.shape} and {b.shape}")
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_labels):
        raise ValueError(f"labels must be integers in [0, {n_labels})")
    n = a.size
    if n < 2:
        return None
    confusion = np.zeros((n_labels, n_labels))
    np.add.at(confusion, (a, b), 1.0)
    observed = np.trace(confusion) / n
    expected = float(confusion.sum(axis=1) @ confusion.sum(axis=0)) / n**2
    if expected >= 1.0 - 1e-12:
        return None
    return float((observed - expected) / (1.0 - expected))


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa of an items x categories table: ``counts[i, j]`` raters put item i in category j.

    Every row must sum to the same number of raters (at least 2). None when fewer than 2 items or when chance
    agreement is 1 (every rating in one category).
    """
    c = np.asarray(counts, dtype=float)
    if c.ndim != 2 or c.shape[1] < 1:
        raise ValueError(f"fleiss_kappa needs an items x categories table, got shape {c.shape}")
    if (c < 0).any() or not np.isfinite(c).all():
        raise ValueError("fleiss_kappa counts must be finite and non-negative")
    if c.shape[0] < 2:
        return None
    raters = c.sum(axis=1)
    if not np.allclose(raters, raters[0]):
        raise ValueError("fleiss_kappa needs the same number of raters per item (rows with equal sums)")
    n = float(raters[0])
    if n < 2:
        return None
    shares = c.sum(axis=0) / (c.shape[0] * n)  # p_j: share of all ratings in category j
    per_item = ((c**2).sum(axis=1) - n) / (n * (n - 1))  # P_i: agreeing rater pairs of item i
    expected = float(shares @ shares)
    if expected >= 1.0 - 1e-12:
        return None
    return float((per_item.mean() - expected) / (1.0 - expected))


def _chance_z(labels_1: Sequence[int], labels_2: Sequence[int], kappa: float, n_labels: int = N_LABELS) -> float:
    """kappa over its standard error under chance agreement: Var0 = (p_e + p_e^2 - sum_k r_k c_k (r_k + c_k)) /
    (n (1 - p_e)^2), r and c the two raters' label shares (Fleiss, Cohen and Everitt 1969)."""
    n = len(labels_1)
    r = np.bincount(np.asarray(labels_1, dtype=np.int64), minlength=n_labels) / n
    c = np.bincount(np.asarray(labels_2, dtype=np.int64), minlength=n_labels) / n
    expected = float(r @ c)
    var0 = (expected + expected**2 - float(np.sum(r * c * (r + c)))) / (n * (1.0 - expected) ** 2)
    if var0 <= 0:
        return math.inf if kappa > 0 else 0.0
    return kappa / math.sqrt(var0)


@dataclass(frozen=True)
class PanelWeight:
    """One judge's weight in a panel and what it rests on.

    ``agreement``: the share of its labels equal to the reference's (the rest of the panel, or the humans);
    ``kappa``: Cohen's kappa with that reference (None: undefined or fewer than 2 items shared); ``consistency``:
    its position consistency as given; ``source``: ``"agreement"`` (mean kappa with each other judge), ``"human"``, ``"fixed"`` or
    ``"consistency"`` (the fallback when every weight came out 0: in proportion to position consistency) or
    ``"equal"`` (when that is 0 too).
    """

    name: str
    weight: float
    agreement: float | None
    kappa: float | None
    consistency: float | None
    source: str


def _check_score(value: float, where: str) -> None:
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"{where}: a match score must be in [0, 1], got {value!r}")


def panel_weights(
    scores: Mapping[str, Mapping[Item, float]],
    consistency: Mapping[str, float | None],
    fixed: Mapping[str, float] | None = None,
    human: Mapping[Item, float] | None = None,
    *,
    significance_z: float = 2.33,
) -> tuple[PanelWeight, ...]:
    """Each judge's weight (module docstring), in the order of ``scores``; the weights sum to 1.

    ``consistency[judge]``: its position consistency in [0, 1] (missing or None counts as 1); ``fixed``: weights
    taken as given for those judges; ``human``: human scores of some items, which replace the rest of the panel as
    the reference; ``significance_z``: how many chance standard errors a kappa must clear to count.
    """
    fixed = dict(fixed or {})
    for name, s in scores.items():
        for item, value in s.items():
            _check_score(value, f"judge {name!r}, item {item!r}")
    for item, value in (human or {}).items():
        _check_score(value, f"human label of item {item!r}")
    unknown = sorted(set(fixed) - set(scores))
    if unknown:
        raise ValueError(f"fixed weights for judges not in the panel: {', '.join(unknown)}")
    for name, w in fixed.items():
        if not (math.isfinite(w) and w >= 0):
            raise ValueError(f"fixed weight of judge {name!r} must be finite and >= 0, got {w!r}")
    for name, c in consistency.items():
        if c is not None and not 0.0 <= c <= 1.0:
            raise ValueError(f"position consistency of judge {name!r} must be in [0, 1] or None, got {c!r}")

    rows: list[tuple[str, float, float | None, float | None, float | None, str]] = []
    for name, own in scores.items():
        # the references: the humans, else every other judge on its own (a mean of the others would be smeared by
        # the bad ones: two sound judges among a slot reader and a coin-flipper would not recognise each other)
        references = ([{item: human[item] for item in own if item in human}] if human is not None else
                      [{item: theirs[item] for item in own if item in theirs} for other, theirs in scores.items()
                       if other != name])
        kappas, counted, agreements = [], [], []
        for reference in references:
            labels = [match_label(own[item]) for item in reference]
            ref_labels = [match_label(value) for value in reference.values()]
            k = cohen_kappa(labels, ref_labels)
            if k is None:
                continue
            kappas.append(k)
            agreements.append(float(np.mean(np.equal(labels, ref_labels))))
            counted.append(k if k > 0 and _chance_z(labels, ref_labels, k) >= significance_z else 0.0)
        kappa = float(np.mean(kappas)) if kappas else None
        agreement = float(np.mean(agreements)) if agreements else None
        c = consistency.get(name)
        if name in fixed:
            raw, source = fixed[name], "fixed"
        else:
            raw = (float(np.mean(counted)) if counted else 0.0) * (1.0 if c is None else c)
            source = "human" if human is not None else "agreement"
        rows.append((name, raw, agreement, kappa, c, source))

    total = sum(raw for _, raw, *_ in rows)
    if total <= 0:
        # nobody earned a weight by agreement: position consistency alone still tells a judge that reads the answers
        # (its two orders agree) from one that reads the slot or flips coins; equal only when that is silent too
        kept = [1.0 if c is None else c for _, _, _, _, c, _ in rows]
        if sum(kept) <= 0:
            return tuple(PanelWeight(name, 1.0 / len(rows), agreement, kappa, c, "equal")
                         for name, _, agreement, kappa, c, _ in rows)
        return tuple(PanelWeight(name, k / sum(kept), agreement, kappa, c, "consistency")
                     for (name, _, agreement, kappa, c, _), k in zip(rows, kept))
    return tuple(PanelWeight(name, raw / total, agreement, kappa, c, source)
                 for name, raw, agreement, kappa, c, source in rows)


def panel_scores(scores: Mapping[str, Mapping[Item, float]], weights: Mapping[str, float]) -> dict[Item, float]:
    """The panel's score of each item: the weighted mean over the judges that scored it.

    The weights of those judges are renormalised per item, so an item one judge missed is scored by the rest. An
    item that only zero-weight judges scored gets no panel score (it is left out) rather than the voice of a judge
    the panel weighed at nothing. Items come in the order they are first met.
    """
    missing = sorted(set(scores) - set(weights))
    if missing:
        raise ValueError(f"panel_scores: no weight for judges {', '.join(missing)}")
    for name in scores:
        w = weights[name]
        if not (math.isfinite(w) and w >= 0):
            raise ValueError(f"panel_scores: weight of judge {name!r} must be finite and >= 0, got {w!r}")
    sums: dict[Item, list[float]] = {}
    for name, s in scores.items():
        w = weights[name]
        for item, value in s.items():
            _check_score(value, f"judge {name!r}, item {item!r}")
            acc = sums.setdefault(item, [0.0, 0.0])
            acc[0] += w * value
            acc[1] += w
    return {item: total / weight for item, (total, weight) in sums.items() if weight > 0}


__all__ = ["N_LABELS", "PanelWeight", "cohen_kappa", "fleiss_kappa", "match_label", "panel_scores", "panel_weights"]
