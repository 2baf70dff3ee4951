"""Style-controlled win rates (Arena-Hard v2's "style control"): how much of a model's win rate is its answers' length
and markdown, and what is left when both answers are styled alike.

Features (``style_features``): an answer's length in tokens and its markdown counts: headers (``#`` to ``######``
then a space at a line start), list items (``1.``, ``-``, ``*`` or ``+`` then a space, after optional indentation) and
bold spans (``**text**`` or ``__text__`` within a line). Markdown is counted outside fenced code blocks (a line
opening with three or more backticks or tildes up to a line closing with at least as many of the same character; an
unclosed fence runs to the end, as a renderer shows it); length counts the whole answer, code included.

Per battle (model_a vs model_b) the four style columns are differences normalised to [-1, 1]:
length (La - Lb) / (La + Lb) (0 when both are empty), and for each markdown count its density d = count / (L + 1),
(da - db) / (da + db + 1). Each column is standardised by a ``StyleReference`` (mean and sample std, ddof=1).

Model: P(a beats b) = sigmoid(theta_a - theta_b + sum_k beta_k * z_k), one term per model (the baseline's fixed at 0)
and one coefficient per standardised style column z_k = (x_k - mean_k) / std_k, fitted together by maximum likelihood
on the fractional outcomes (a tie is half a win each side) with a negligible ridge (``_RIDGE``) that keeps a model who
wins every battle finite. The mean only shifts the model terms (in Arena-Hard every battle is contender vs baseline,
so it is a constant shared by all rows), so the fit uses the uncentred x_k / std_k, which makes it the same whichever
side of a battle is called a; the mean enters the reported figures:

- win rate *at mean style difference* = sigmoid(theta_m + sum_k beta_k * mean_k / std_k): standardised columns at 0,
  Arena-Hard's reported number (the style gap of a typical contender to the baseline is kept);
- win rate *at zero style difference* = sigmoid(theta_m): the raw differences at 0, the two answers styled alike.

``reference=None`` computes mean and std from these battles the way Arena-Hard does: over the battles against the
baseline, each taken as contender minus baseline (Arena-Hard has no other battles). A given reference is used as is,
so numbers computed against it are on a fixed scale; when it also carries ``coefficients`` those are held fixed and
only the model terms are fitted, so with battles against the baseline a model's figures do not move when another
model is added (their CIs too, on the same questions). The fitted reference, with its coefficients, comes back in
``StyleControl.reference``: passing it on freezes scale and coefficients; ``replace(ref, coefficients=None)`` only the
scale.

A style column without spread (every answer's header density equal, e.g. no answer uses headers, or a reference std
of 0) carries no information and is not identifiable: it is dropped from the fit and its coefficient reported as 0
with a [0, 0] interval.

CIs: question-clustered bootstrap (a drawn question brings all its battles), percentile intervals; the reference stays
fixed across rounds (as in Arena-Hard, which standardises once). All rounds are fitted together by batched damped
Newton warm-started at the point estimate: no optimizer call per round. A model absent from a round's draw is left out
of that round. Arena-Hard's own bootstrap differs: it resamples battles (not questions), 100 rounds, reports the median
round and a 90% interval.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from evalsuite.errors import InputError

STYLE_FEATURES = ("length", "header", "list", "bold")

# Ridge on all parameters, in battles (not per battle): finite estimates under complete separation, a bias of about
# 1e-4 / (battles of a model) logits otherwise, and a model's own terms do not depend on how many other battles exist.
_RIDGE = 1e-4
_NEWTON_MAX_ITER = 100
_NEWTON_TOL = 1e-10  # largest parameter step (logits) at which every round counts as converged
_MAX_HALVINGS = 40
# Rounds are fitted in blocks of at most this many (round, battle) weights: 32 MiB per (rounds, battles) array.
_BLOCK_ELEMENTS = 1 << 22
# The design's row outer products (battles x parameters^2) are kept up to this many elements: 256 MiB.
_OUTER_ELEMENTS = 1 << 25
# A column whose values (or reference std) spread less than this is constant: no style signal to fit.
_MIN_SPREAD = 1e-12

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
_HEADER = re.compile(r"^#{1,6}\s", re.MULTILINE)
# \s* may cross blank lines, so an item is counted once however many blank lines precede it.
_ORDERED_ITEM = re.compile(r"^\s*\d+\.\s", re.MULTILINE)
_BULLET_ITEM = re.compile(r"^\s*[-*+]\s", re.MULTILINE)
_BOLD_STARS = re.compile(r"\*\*[^*\n]+\*\*")
_BOLD_UNDERSCORES = re.compile(r"__[^_\n]+__")

# Token approximation: one match per pre-token, in the spirit of tiktoken's splitting (see approximate_token_count).
_CJK = "\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff"
_PRE_TOKEN = re.compile(
    rf"(?P<latin>[^\S\n]?[A-Za-z]+)"
    rf"|(?P<cjk>[{_CJK}])"
    rf"|(?P<script>[^\S\n]?[^\W\d_A-Za-z{_CJK}]+)"
    r"|(?P<digits>\d{1,3})"
    r"|(?P<punct>[^\S\n]?[^\s\w]+\n*)"
    r"|(?P<space>\s*\n|[^\S\n]+)"
)


@dataclass(frozen=True)
class StyleFeatures:
    """One answer's style: its length in tokens and its markdown header, list-item and bold counts."""

    length: int
    header: int
    list: int
    bold: int


@dataclass(frozen=True)
class StyleReference:
    """The standardisation of the four style-difference columns (``STYLE_FEATURES`` order): mean and sample std.

    ``coefficients``, when set, are style coefficients (per standardised unit) to hold fixed instead of fitting them.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    coefficients: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        n = len(STYLE_FEATURES)
        columns = [self.mean, self.std] + ([self.coefficients] if self.coefficients is not None else [])
        if any(len(c) != n for c in columns):
            raise ValueError(f"a style reference has one value per style feature {STYLE_FEATURES}")
        if not all(math.isfinite(v) for c in columns for v in c) or min(self.std) < 0.0:
            raise ValueError("a style reference needs finite means and coefficients and finite stds >= 0")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready object: ``{"features": [...], "mean": [...], "std": [...], "coefficients": [...] | null}``."""
        return {
            "features": list(STYLE_FEATURES),
            "mean": list(self.mean),
            "std": list(self.std),
            "coefficients": None if self.coefficients is None else list(self.coefficients),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "style reference") -> StyleReference:
        """Read what ``to_json`` wrote; anything else is an ``InputError`` naming ``where`` (e.g. the file)."""
        fix = "write it with StyleReference.to_json (keys features, mean, std, coefficients)"
        if not isinstance(data, Mapping) or list(data.get("features", ())) != list(STYLE_FEATURES):
            raise InputError(f"not a style reference for the features {list(STYLE_FEATURES)}", where=where, fix=fix)
        try:
            coefficients = data.get("coefficients")
            return cls(
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                coefficients=None if coefficients is None else tuple(float(v) for v in coefficients),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"bad style reference ({exc})", where=where, fix=fix) from None


@dataclass(frozen=True)
class StyleCoefficient:
    """One style column's coefficient (logits per standard deviation of the column) with its bootstrap CI."""

    name: str
    estimate: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class StyleWinRate:
    """A model's style-controlled win rate against the baseline, at the mean and at zero style difference."""

    model: str
    win_rate_at_mean: float
    ci_low_at_mean: float
    ci_high_at_mean: float
    win_rate_at_zero: float
    ci_low_at_zero: float
    ci_high_at_zero: float


@dataclass(frozen=True)
class StyleControl:
    """Result of ``style_controlled_win_rates``: one win rate per non-baseline model (name order), one coefficient
    per ``STYLE_FEATURES`` name, the reference used (with the coefficients it ended with) and the battle count."""

    win_rates: tuple[StyleWinRate, ...]
    coefficients: tuple[StyleCoefficient, ...]
    reference: StyleReference
    n_battles: int


def approximate_token_count(text: str) -> int:
    """Offline stand-in for a tiktoken count, tracking ``o200k_base`` (gpt-4o's encoding, Arena-Hard's length unit).

    Pre-tokens are counted the way BPE tends to merge them: a Latin word (with its leading space) is one token, plus
    one per 4 letters beyond 10; a CJK character 0.8; a word of another script one per 3 characters (at least 1);
    a digit group of up to 3 one; a punctuation run (with the newlines right after it) one per 3 characters; a run of
    whitespace one. On Arena-Hard-Auto's 2,250 published answers (English prose, code, CJK and other scripts) the
    ratio to o200k has median 1.00 with 90% of answers within 0.90 to 1.11 (to cl100k: median 0.99, 0.75 to 1.08,
    undercounting scripts that cl100k splits finely); ``scripts/check_arena_hard_style.py`` measures it again. Pass a
    real tokenizer's count to ``style_features`` where exact lengths matter.

    >>> approximate_token_count("Hello, world!")
    4
    >>> approximate_token_count("")
    0
    """
    total = 0.0
    for match in _PRE_TOKEN.finditer(text):
        kind, piece = match.lastgroup, match.group().strip()
        if kind == "latin":
            total += 1.0 + max(0, len(piece) - 10) / 4.0
        elif kind == "cjk":
            total += 0.8
        elif kind == "script":
            total += max(1.0, len(piece) / 3.0)
        elif kind == "punct":
            total += math.ceil(len(piece) / 3.0)
        else:
            total += 1.0
    return round(total)


def strip_fenced_code(text: str) -> str:
    """The text without its fenced code blocks (fence lines included); an unclosed fence runs to the end.

    >>> strip_fenced_code("intro\\n```python\\n# not a header\\n```\\nafter")
    'intro\\nafter'
    """
    kept: list[str] = []
    fence = ""  # the opening fence while inside a block
    for line in text.splitlines(keepends=True):
        opening = _FENCE.match(line)
        if not fence:
            if opening:
                fence = opening.group(1)
            else:
                kept.append(line)
        elif line.strip() and set(line.strip()) == {fence[0]} and len(line.strip()) >= len(fence):
            fence = ""
    return "".join(kept)


def style_features(text: str, count_tokens: Callable[[str], int] | None = None) -> StyleFeatures:
    """An answer's style: length in tokens (``count_tokens``, else ``approximate_token_count``) over the whole text,
    markdown counts outside fenced code. Missing text (``""``) has all four at 0.

    >>> style_features("## Plan\\n\\n1. **Fast** path\\n- slow path\\n```\\n# comment\\n- not an item\\n```")
    StyleFeatures(length=24, header=1, list=2, bold=1)
    """
    text = text or ""
    prose = strip_fenced_code(text)
    length = count_tokens(text) if count_tokens is not None else approximate_token_count(text)
    return StyleFeatures(
        length=int(length),
        header=len(_HEADER.findall(prose)),
        list=len(_ORDERED_ITEM.findall(prose)) + len(_BULLET_ITEM.findall(prose)),
        bold=len(_BOLD_STARS.findall(prose)) + len(_BOLD_UNDERSCORES.findall(prose)),
    )


def style_differences(features_a: Sequence[StyleFeatures], features_b: Sequence[StyleFeatures]) -> np.ndarray:
    """The (n, 4) raw style-difference columns of n battles, a minus b, each in [-1, 1] (module docstring)."""
    if len(features_a) != len(features_b):
        raise ValueError("features_a and features_b must give one answer's features per battle")
    fa = np.array([[f.length, f.header, f.list, f.bold] for f in features_a], dtype=np.float64).reshape(-1, 4)
    fb = np.array([[f.length, f.header, f.list, f.bold] for f in features_b], dtype=np.float64).reshape(-1, 4)
    if fa.size and (fa.min() < 0 or fb.min() < 0):
        raise ValueError("style features are counts and cannot be negative")
    diff = np.empty_like(fa)
    total = fa[:, 0] + fb[:, 0]
    diff[:, 0] = np.divide(fa[:, 0] - fb[:, 0], total, out=np.zeros_like(total), where=total > 0)
    density_a = fa[:, 1:] / (fa[:, :1] + 1.0)
    density_b = fb[:, 1:] / (fb[:, :1] + 1.0)
    diff[:, 1:] = (density_a - density_b) / (density_a + density_b + 1.0)
    return diff


def style_controlled_win_rates(
    model_a: Sequence[str],
    model_b: Sequence[str],
    score_a: np.ndarray,
    features_a: Sequence[StyleFeatures],
    features_b: Sequence[StyleFeatures],
    clusters: np.ndarray,
    *,
    baseline: str,
    reference: StyleReference | None = None,
    n_rounds: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> StyleControl:
    """Fit the style-controlled Bradley-Terry model (module docstring) and bootstrap it by question.

    ``score_a`` is model_a's score per battle in [0, 1] (tie 0.5; a strong verdict counted k times is k battles);
    ``features_a``/``features_b`` the two answers' ``StyleFeatures``; ``clusters`` the question of each battle.
    CIs are the (1 - confidence)/2 and (1 + confidence)/2 quantiles over ``n_rounds`` question-clustered rounds.
    """
    if n_rounds < 1:
        raise ValueError(f"n_rounds must be >= 1, got {n_rounds}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    names_a = np.asarray(model_a, dtype=object)
    names_b = np.asarray(model_b, dtype=object)
    scores = np.asarray(score_a, dtype=np.float64)
    cluster_ids = np.asarray(clusters)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError("score_a must be a non-empty 1-D array")
    if not (names_a.shape == names_b.shape == cluster_ids.shape == scores.shape):
        raise ValueError("model_a, model_b, score_a and clusters must have one entry per battle")
    if not np.all(np.isfinite(scores)) or scores.min() < 0.0 or scores.max() > 1.0:
        raise ValueError("score_a must be finite scores in [0, 1] (drop error battles first)")
    if np.any(names_a == names_b):
        raise ValueError("a model cannot play itself")
    x = style_differences(features_a, features_b)
    if x.shape[0] != scores.size:
        raise ValueError("features_a and features_b must give one answer's features per battle")

    models, model_index = np.unique(np.concatenate([names_a, names_b]).astype(str), return_inverse=True)
    model_names = [str(m) for m in models]
    if baseline not in model_names:
        raise ValueError(f"baseline {baseline!r} played no battle; models are {model_names}")
    n = scores.size
    ia, ib = model_index[:n], model_index[n:]
    base = model_names.index(baseline)
    unreachable = _not_connected(base, ia, ib, model_names)
    if unreachable:
        raise ValueError(f"models {unreachable} have no chain of battles to the baseline {baseline!r}")

    if reference is None:
        reference = _reference_from(x, ia, ib, base)
    std = np.array(reference.std)
    mean = np.array(reference.mean)
    active = (std > _MIN_SPREAD) & (x.max(axis=0) - x.min(axis=0) > _MIN_SPREAD)
    scaled = np.where(active, x / np.where(active, std, 1.0), 0.0)  # x_k / std_k; the mean is in the model terms

    free = np.array([k for k in range(len(model_names)) if k != base], dtype=np.intp)
    incidence = np.zeros((n, len(model_names)))
    incidence[np.arange(n), ia] = 1.0
    incidence[np.arange(n), ib] = -1.0
    frozen = reference.coefficients
    if frozen is None:
        design = np.hstack([incidence[:, free], scaled[:, active]])
        offset = np.zeros(n)
    else:
        design = incidence[:, free]
        offset = scaled @ np.where(active, np.array(frozen), 0.0)

    params_hat = _fit(design, offset, scores, np.ones((1, n)), np.zeros(design.shape[1]))[0]

    _, cluster_index = np.unique(cluster_ids, return_inverse=True)
    cluster_index = cluster_index.ravel()
    n_clusters = int(cluster_index.max()) + 1
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_ELEMENTS // n)
    params_rounds = np.empty((n_rounds, params_hat.size))
    played = np.empty((n_rounds, free.size), dtype=bool)  # did the model play in the round
    for start in range(0, n_rounds, block):
        # Each block's rounds are drawn when fitted (the same stream of draws as all at once), so no (rounds,
        # questions) matrix is held: 1,000 rounds of 100,000 questions would be 0.8 GB.
        rows = min(block, n_rounds - start)
        draws = rng.integers(0, n_clusters, size=(rows, n_clusters))
        offsets = (draws + n_clusters * np.arange(rows)[:, None]).ravel()
        cluster_weights = np.bincount(offsets, minlength=rows * n_clusters).reshape(rows, n_clusters)
        weights = cluster_weights[:, cluster_index].astype(np.float64)  # (rounds, battles)
        params_rounds[start : start + block] = _fit(design, offset, scores, weights, params_hat)
        played[start : start + block] = (weights @ np.abs(incidence[:, free])) > 0

    n_free = free.size
    beta_hat = np.zeros(len(STYLE_FEATURES))
    beta_rounds = np.zeros((n_rounds, len(STYLE_FEATURES)))
    if frozen is None:
        beta_hat[active] = params_hat[n_free:]
        beta_rounds[:, active] = params_rounds[:, n_free:]
    else:
        beta_hat[active] = np.array(frozen)[active]
        beta_rounds[:, active] = beta_hat[active]
    # Logit shift from zero raw style difference to the mean one: sum_k beta_k * mean_k / std_k.
    shift_hat = float(beta_hat[active] @ (mean[active] / std[active]))
    shift_rounds = beta_rounds[:, active] @ (mean[active] / std[active])

    theta_rounds = np.where(played, params_rounds[:, :n_free], np.nan)
    alpha = (1.0 - confidence) / 2.0
    quantiles = [alpha, 1.0 - alpha]
    at_zero_ci = np.nanquantile(expit(theta_rounds), quantiles, axis=0)
    at_mean_ci = np.nanquantile(expit(theta_rounds + shift_rounds[:, None]), quantiles, axis=0)
    win_rates = tuple(
        StyleWinRate(
            model=model_names[k],
            win_rate_at_mean=float(expit(params_hat[j] + shift_hat)),
            ci_low_at_mean=float(at_mean_ci[0, j]),
            ci_high_at_mean=float(at_mean_ci[1, j]),
            win_rate_at_zero=float(expit(params_hat[j])),
            ci_low_at_zero=float(at_zero_ci[0, j]),
            ci_high_at_zero=float(at_zero_ci[1, j]),
        )
        for j, k in enumerate(free.tolist())
    )
    beta_ci = np.quantile(beta_rounds, quantiles, axis=0)
    coefficients = tuple(
        StyleCoefficient(name, float(beta_hat[k]), float(beta_ci[0, k]), float(beta_ci[1, k]))
        for k, name in enumerate(STYLE_FEATURES)
    )
    fitted = reference if frozen is not None else StyleReference(
        mean=reference.mean, std=reference.std, coefficients=tuple(float(b) for b in beta_hat)
    )
    return StyleControl(win_rates=win_rates, coefficients=coefficients, reference=fitted, n_battles=n)


def _reference_from(x: np.ndarray, ia: np.ndarray, ib: np.ndarray, base: int) -> StyleReference:
    """Mean and sample std (ddof=1) of the style differences of the battles against the baseline, contender minus
    baseline; a column that cannot have a spread (fewer than two such battles) gets std 0."""
    against = (ia == base) | (ib == base)
    oriented = np.where((ia == base)[:, None], -x, x)[against]
    mean = oriented.mean(axis=0)
    std = oriented.std(axis=0, ddof=1) if oriented.shape[0] > 1 else np.zeros(x.shape[1])
    return StyleReference(mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))


def _not_connected(base: int, ia: np.ndarray, ib: np.ndarray, names: list[str]) -> list[str]:
    """Models with no chain of battles to the baseline (union-find over the distinct pairings)."""
    parent = list(range(len(names)))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for i, j in {(int(i), int(j)) for i, j in zip(ia, ib)}:
        parent[root(i)] = root(j)
    base_root = root(base)
    return [name for k, name in enumerate(names) if root(k) != base_root]


def _objective(
    params: np.ndarray, design: np.ndarray, offset: np.ndarray, outcome: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """(Negative log-likelihood + ridge) / total weight, for every round: ``params`` (R, P), ``weights`` (R, N).

    Dividing by the total only scales the objective (numbers near 1 for the line search); the minimum is that of the
    unscaled sum, so a model's terms depend on its own battles only (when the style coefficients are held fixed).
    """
    logit = params @ design.T + offset
    # -[y log sigmoid(d) + (1 - y) log sigmoid(-d)] = softplus(d) - y d, overflow-free.
    nll = np.logaddexp(0.0, logit) - outcome * logit
    return ((weights * nll).sum(axis=1) + 0.5 * _RIDGE * (params**2).sum(axis=1)) / weights.sum(axis=1)


def _fit(
    design: np.ndarray, offset: np.ndarray, outcome: np.ndarray, weights: np.ndarray, start: np.ndarray
) -> np.ndarray:
    """Minimise the objective for every round (row of ``weights``) at once by damped Newton from ``start``.

    One batched solve of all rounds' (P, P) Newton systems per step; a vectorised backtracking (Armijo) line search
    halves the step only for the rounds whose objective did not fall enough (separated data stays stable).
    """
    n_rounds, n_params = weights.shape[0], design.shape[1]
    total = weights.sum(axis=1, keepdims=True)
    # Row outer products of the design, flattened: the Hessian of every round is one matrix product away. Past
    # _OUTER_ELEMENTS (a few hundred thousand battles) they are not kept, and each round's Hessian is its own
    # weighted Gram matrix (same arithmetic, memory of the design only).
    outer = (None if design.shape[0] * n_params * n_params > _OUTER_ELEMENTS
             else (design[:, :, None] * design[:, None, :]).reshape(design.shape[0], n_params * n_params))
    ridge = _RIDGE / total[:, :, None] * np.eye(n_params)  # (R, P, P)
    params = np.tile(start, (n_rounds, 1))
    value = _objective(params, design, offset, outcome, weights)
    for _ in range(_NEWTON_MAX_ITER):
        p = expit(params @ design.T + offset)
        grad = (weights * (p - outcome)) @ design / total + _RIDGE * params / total
        curvature = weights * p * (1.0 - p) / total
        if outer is not None:
            hess = (curvature @ outer).reshape(n_rounds, n_params, n_params) + ridge
        else:
            hess = np.stack([(design.T * c) @ design for c in curvature]) + ridge
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        decrement = (grad * step).sum(axis=1)  # g^T H^-1 g >= 0
        t = np.ones(n_rounds)
        for _ in range(_MAX_HALVINGS):
            candidate = params - t[:, None] * step
            new_value = _objective(candidate, design, offset, outcome, weights)
            slack = 1e-14 * np.maximum(1.0, np.abs(value))  # rounding once the decrement is at machine precision
            short = new_value > value - 1e-4 * t * decrement + slack
            if not short.any():
                break
            t = np.where(short, 0.5 * t, t)
        params, value = candidate, new_value
        if np.max(np.abs(t[:, None] * step)) < _NEWTON_TOL:
            break
    return params
