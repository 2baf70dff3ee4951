#!/usr/bin/env python3
"""Check evalsuite's style control (``evalsuite.stats.style_controlled_win_rates``) against Arena-Hard-Auto's own code.

Builds a deterministic set of synthetic battles (a baseline and four contenders with different answer styles and
strengths, 100 questions, both answer orders, a judge that likes length and markdown), then runs both sides:

- Arena-Hard: their ``utils/add_markdown_info.py`` counts each answer's markdown and tokens (the answer-file
  ``metadata``), their ``show_result.load_judgments`` turns the verdicts into battles (both games, a strong verdict
  weighing 3) and their ``print_leaderboard_with_style_features`` with ``-f length markdown`` (the only correct
  combination) builds, standardises and fits the style features. Its bootstrap is swapped for one full-data fit by
  their ``fit_pairwise_model`` (their settings: L-BFGS, lr 0.1, 50 iterations), so the point estimates are comparable:
  their reported number is the median of 100 battle-level bootstrap rounds, printed too, for information.
- evalsuite: ``style_features`` (same token counter) and ``style_controlled_win_rates`` on the same verdicts, with the
  baseline as answer A in the first game (the fit must not care which side is A).

Prints both point estimates (win rates at the mean style difference, the four coefficients) and their largest
absolute difference, which must be <= 1e-3 (exit 1 otherwise), and writes the battles and Arena-Hard's figures to
``tests/data/arena_hard_style/`` for ``tests/test_stats_style.py``. Where the Arena-Hard checkout has answer files
with their ``metadata``, it also reports how our markdown counts and token approximation match them.

Needs torch, pandas, tqdm and an importable ``tiktoken`` (their module imports it; no encoding is downloaded).
Token counts: ``bpe_openai``'s offline o200k encoding (gpt-4o's, what Arena-Hard uses) when installed, else
evalsuite's ``approximate_token_count``; both sides always get the same counts.

    python scripts/check_arena_hard_style.py --arena-hard /path/to/arena-hard-auto   # a checkout or a bare repo
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evalsuite.stats import (  # noqa: E402
    STYLE_FEATURES,
    StyleFeatures,
    approximate_token_count,
    style_controlled_win_rates,
    style_features,
)

PINNED = ROOT / "tests" / "data" / "arena_hard_style"
TOLERANCE = 1e-3
BASELINE = "baseline-model"
CATEGORY = "synthetic"
BENCH = "synthetic-bench"
JUDGE = "synthetic-judge"
N_QUESTIONS = 100
STRONG_WEIGHT = 3  # Arena-Hard counts a strong verdict (A>>B) as three battles
CONVERGED = {"lr": 1.0, "max_epochs": 500}  # their fit_pairwise_model run to convergence


@dataclass(frozen=True)
class Profile:
    """How a synthetic model answers: paragraphs per answer, markdown habits, and its true quality (logits)."""

    paragraphs: float
    header: float
    lists: float
    bold: float
    code: float
    quality: float


PROFILES = {
    BASELINE: Profile(paragraphs=3, header=0.25, lists=0.4, bold=0.25, code=0.3, quality=0.0),
    "plain-strong": Profile(paragraphs=3, header=0.05, lists=0.15, bold=0.05, code=0.3, quality=0.6),
    "markdown-heavy": Profile(paragraphs=4, header=0.9, lists=0.9, bold=0.8, code=0.3, quality=0.0),
    "terse": Profile(paragraphs=1, header=0.0, lists=0.1, bold=0.0, code=0.15, quality=-0.2),
    "verbose": Profile(paragraphs=7, header=0.4, lists=0.6, bold=0.3, code=0.4, quality=0.0),
}

TOPICS = [
    "database indexing", "unit testing", "HTTP caching", "memory leaks", "sorting algorithms", "rate limiting",
    "password hashing", "log rotation", "feature flags", "schema migrations", "retry policies", "string encoding",
    "thread pools", "config files", "error handling", "date arithmetic", "floating point", "queue backpressure",
    "binary search", "dependency pinning",
]
SENTENCES = [
    "The main idea behind {t} is to trade a little extra work now for a lot less work later.",
    "In practice, {t} matters most when the data grows faster than anyone planned for.",
    "A common mistake with {t} is to tune it before measuring where the time actually goes.",
    "Start with the simplest version of {t} that could work, then add complexity only when a test demands it.",
    "Most teams discover the limits of {t} during an incident, which is the most expensive time to learn them.",
    "It helps to write down what {t} is supposed to guarantee, because that makes the edge cases visible.",
    "For small projects, {t} can stay very simple; the defaults of a mature library are usually enough.",
    "When {t} goes wrong, the symptoms often appear far away from the cause, so good logging pays off.",
    "The cost of {t} is rarely in the code itself but in keeping its assumptions true as the system changes.",
    "If you are unsure, compare two approaches to {t} on a realistic workload and keep the numbers.",
    "Remember that {t} interacts with everything around it, so change one thing at a time.",
    "A short checklist for {t} catches more problems than a long design document that nobody rereads.",
]
ITEMS = [
    "measure before changing anything", "keep the configuration in one place", "write a test for the failure",
    "document the default values", "watch the error rate after deploying", "prefer the standard library",
    "name things after what they hold", "fail loudly on bad input", "log the inputs that caused an error",
    "review the change with a colleague",
]
CODE = [
    "def handle(request):", "    # validate the input first", "    if not request:", "        raise ValueError",
    "    - this line is inside code, not a list", "    return process(request)",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arena-hard", type=Path, required=True, help="Arena-Hard-Auto checkout or bare git repo")
    parser.add_argument("--no-write", action="store_true", help=f"do not rewrite {PINNED.relative_to(ROOT)}")
    args = parser.parse_args(argv)

    count_tokens, counter_name = _token_counter()
    answers, judgments = _synthetic_benchmark()
    with _arena_hard_code(args.arena_hard) as (code_dir, commit):
        theirs = _run_arena_hard(code_dir, answers, judgments, count_tokens)
        real = _real_answer_figures(args.arena_hard, count_tokens)

    features = {key: style_features(text, count_tokens) for key, text in answers.items()}
    mismatched = [key for key, f in features.items() if _as_list(f) != theirs["features"][key]]
    battles = _battles(judgments)
    ours = _run_ours(battles, features, n_rounds=1000, confidence=0.90)

    print(f"token counter: {counter_name}; Arena-Hard commit {commit}")
    print(f"answers whose features differ from Arena-Hard's metadata: {len(mismatched)} of {len(features)}")
    print(f"battles: {len(battles)} rows over {N_QUESTIONS} questions ({ours.n_battles} after expanding 3x verdicts)")
    raw = _raw_win_rates(battles)
    print(f"{'':24}{'AH shipped':>12}{'AH converged':>13}{'evalsuite':>11}{'|diff|':>10}   "
          "evalsuite 90% CI (question bootstrap), at zero style difference, raw")
    differences: list[float] = []
    shipped_gap = 0.0
    for rate in ours.win_rates:
        shipped, their = theirs["shipped"]["win_rates"][rate.model], theirs["converged"]["win_rates"][rate.model]
        differences.append(abs(their - rate.win_rate_at_mean))
        shipped_gap = max(shipped_gap, abs(shipped - rate.win_rate_at_mean))
        print(f"win rate {rate.model:<15}{shipped:12.6f}{their:13.6f}{rate.win_rate_at_mean:11.6f}"
              f"{differences[-1]:10.2e}   [{rate.ci_low_at_mean:.3f}, {rate.ci_high_at_mean:.3f}], "
              f"{rate.win_rate_at_zero:.3f}, {raw[rate.model]:.3f}")
    for k, coefficient in enumerate(ours.coefficients):
        shipped, their = theirs["shipped"]["coefficients"][k], theirs["converged"]["coefficients"][k]
        differences.append(abs(their - coefficient.estimate))
        shipped_gap = max(shipped_gap, abs(shipped - coefficient.estimate))
        print(f"coef {coefficient.name:<19}{shipped:12.6f}{their:13.6f}{coefficient.estimate:11.6f}"
              f"{differences[-1]:10.2e}   [{coefficient.ci_low:.3f}, {coefficient.ci_high:.3f}]")
    worst = max(differences)
    print(f"largest difference to Arena-Hard's fit as shipped (lr 0.1, 50 L-BFGS iterations): {shipped_gap:.2e}")
    print("Arena-Hard's own report (median of 100 battle-level bootstrap rounds, 5%-95%): "
          + "; ".join(f"{m} {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" for m, v in theirs["bootstrap"].items()))
    for line in real:
        print(line)
    print(f"max abs difference of the point estimates (converged fit): {worst:.2e} (tolerance {TOLERANCE:g})")

    if not args.no_write:
        _write_pinned(battles, features, theirs, commit, counter_name)
        print(f"wrote {PINNED.relative_to(ROOT)}/battles.json and arena_hard.json")
    ok = worst <= TOLERANCE and not mismatched
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


def _token_counter() -> tuple[Callable[[str], int], str]:
    try:
        import bpe_openai
    except ImportError:
        return approximate_token_count, "evalsuite approximate_token_count (bpe_openai not installed)"
    encoding = bpe_openai.encoding_for_model("gpt-4o")
    return (lambda text: len(encoding.encode(text, disallowed_special=()))), "o200k_base (bpe_openai, offline)"


def _synthetic_benchmark() -> tuple[dict[tuple[str, str], str], list[dict[str, Any]]]:
    """Answers keyed by (model, uid) and Arena-Hard-format judgments (game 1: baseline is A; game 2: model is A)."""
    rng = np.random.default_rng(20250801)
    answers: dict[tuple[str, str], str] = {}
    uids = [f"q{k:03d}" for k in range(N_QUESTIONS)]
    for k, uid in enumerate(uids):
        topic = TOPICS[k % len(TOPICS)]
        for model, profile in PROFILES.items():
            answers[(model, uid)] = _answer(rng, profile, topic)
    judgments: list[dict[str, Any]] = []
    for uid in uids:
        base = style_features(answers[(BASELINE, uid)])
        for model, profile in PROFILES.items():
            if model == BASELINE:
                continue
            mine = style_features(answers[(model, uid)])
            # The judge: true quality, plus a liking for longer and more marked-up answers.
            edge = profile.quality + 1.2 * _relative(mine.length, base.length) + 20.0 * _markdown_gap(mine, base)
            game1 = _label(edge - 0.1 + rng.logistic(), model_is_a=False)  # a small preference for answer A
            game2 = _label(edge + 0.1 + rng.logistic(), model_is_a=True)
            judgments.append({"uid": uid, "model": model, "category": CATEGORY,
                              "games": [{"score": game1}, {"score": game2}]})
    return answers, judgments


def _answer(rng: np.random.Generator, profile: Profile, topic: str) -> str:
    blocks: list[str] = []
    n_paragraphs = max(1, int(rng.poisson(profile.paragraphs)))
    use_headers = rng.random() < profile.header
    for p in range(n_paragraphs):
        if use_headers and (p == 0 or rng.random() < 0.5):
            blocks.append(f"{'#' * int(rng.integers(2, 4))} {['Overview', 'Details', 'Trade-offs', 'Steps'][p % 4]}")
        sentences = [SENTENCES[int(i)].format(t=topic) for i in rng.choice(len(SENTENCES), int(rng.integers(2, 5)))]
        if rng.random() < profile.bold:
            words = sentences[0].split(" ")
            at = int(rng.integers(0, len(words) - 2))
            mark = "**" if rng.random() < 0.85 else "__"
            words[at : at + 2] = [f"{mark}{words[at]} {words[at + 1]}{mark}"]
            sentences[0] = " ".join(words)
        blocks.append(" ".join(sentences))
        if rng.random() < profile.lists / 2:
            items = rng.choice(len(ITEMS), int(rng.integers(3, 7)), replace=False)
            numbered = rng.random() < 0.5
            blocks.append("\n".join(f"{f'{j + 1}.' if numbered else '-'} {ITEMS[int(i)].capitalize()}."
                                    for j, i in enumerate(items)))
    if rng.random() < profile.code:
        blocks.append("```python\n" + "\n".join(CODE) + "\n```")
    return "\n\n".join(blocks)


def _relative(a: float, b: float) -> float:
    return (a - b) / (a + b) if a + b else 0.0


def _markdown_gap(mine: StyleFeatures, base: StyleFeatures) -> float:
    """Summed per-element gaps of markdown density (count per token), each as (d1 - d2) / (d1 + d2 + 1)."""
    gap = 0.0
    for count_mine, count_base in ((mine.header, base.header), (mine.list, base.list), (mine.bold, base.bold)):
        d1, d2 = count_mine / (mine.length + 1), count_base / (base.length + 1)
        gap += (d1 - d2) / (d1 + d2 + 1)
    return gap


def _label(strength: float, *, model_is_a: bool) -> str:
    """A five-level verdict from the judge's latent preference for the contender."""
    winner, loser = ("A", "B") if model_is_a else ("B", "A")
    if strength > 2.0:
        return f"{winner}>>{loser}"
    if strength > 0.4:
        return f"{winner}>{loser}"
    if strength > -0.4:
        return "A=B"
    if strength > -2.0:
        return f"{loser}>{winner}"
    return f"{loser}>>{winner}"


def _verdict(label: str) -> tuple[float, int]:
    """(score of answer A, how many battles it counts as) for a five-level verdict."""
    first, relation, second = label[0], label[1:-1], label[-1]
    if relation == "=":
        return 0.5, 1
    a_wins = (relation.startswith(">") and first == "A") or (relation.startswith("<") and second == "A")
    return (1.0 if a_wins else 0.0), (STRONG_WEIGHT if len(relation) == 2 else 1)


def _battles(judgments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per game: game 1 with the baseline as model_a, game 2 with the contender as model_a."""
    rows: list[dict[str, Any]] = []
    for record in judgments:
        for game, (model_a, model_b) in zip(record["games"], [(BASELINE, record["model"]),
                                                              (record["model"], BASELINE)]):
            score, count = _verdict(game["score"])
            rows.append({"question": record["uid"], "model_a": model_a, "model_b": model_b,
                         "score_a": score, "count": count})
    return rows


def _run_ours(
    battles: list[dict[str, Any]], features: dict[tuple[str, str], StyleFeatures], *, n_rounds: int, confidence: float
) -> Any:
    rows = [row for row in battles for _ in range(row["count"])]
    return style_controlled_win_rates(
        [r["model_a"] for r in rows],
        [r["model_b"] for r in rows],
        np.array([r["score_a"] for r in rows]),
        [features[(r["model_a"], r["question"])] for r in rows],
        [features[(r["model_b"], r["question"])] for r in rows],
        np.array([r["question"] for r in rows]),
        baseline=BASELINE,
        n_rounds=n_rounds,
        confidence=confidence,
    )


@contextlib.contextmanager
def _arena_hard_code(path: Path) -> Iterator[tuple[Path, str]]:
    """A folder holding their ``show_result.py`` and ``utils/``: the checkout itself, or a ``git archive`` of HEAD."""
    commit = _git(path, "rev-parse", "HEAD") or "unknown"
    if (path / "show_result.py").exists():
        yield path, commit
        return
    with tempfile.TemporaryDirectory(prefix="arena-hard-") as tmp:
        archive = subprocess.run(["git", "-C", str(path), "archive", "HEAD", "show_result.py", "utils"],
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp), commit


def _git(path: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


class _Encoder:
    """The ``encode`` that their ``add_markdown_meta`` calls, over our token counter (a list of the right length)."""

    def __init__(self, count_tokens: Callable[[str], int]) -> None:
        self.count_tokens = count_tokens

    def encode(self, text: str, disallowed_special: Any = ()) -> list[int]:
        return [0] * self.count_tokens(text)


def _run_arena_hard(
    code_dir: Path,
    answers: dict[tuple[str, str], str],
    judgments: list[dict[str, Any]],
    count_tokens: Callable[[str], int],
) -> dict[str, Any]:
    import pandas as pd
    import torch

    sys.path.insert(0, str(code_dir))
    try:
        markdown = importlib.import_module("utils.add_markdown_info")
        math_utils = importlib.import_module("utils.math_utils")
        show_result = importlib.import_module("show_result")
    finally:
        sys.path.remove(str(code_dir))
    show_result.JUDGE_SETTINGS[CATEGORY] = {"baseline": BASELINE, "system_prompt": ""}
    captured: dict[str, Any] = {}

    def full_data_fit(features: Any, outcomes: Any, loss_type: str = "bt", num_round: int = 100) -> Any:
        captured["features"], captured["outcomes"] = features, outcomes
        coefs, _ = math_utils.fit_pairwise_model(features, outcomes, loss_type=loss_type)
        captured["coefs"] = coefs
        return coefs[None, :], None

    def win_rates(coefs: Any, models: list[str], baseline_model: str) -> Any:
        probs = math_utils.to_winrate_probabilities(coefs, models, baseline_model=baseline_model)
        captured["win_rates"] = dict(zip(models, probs[0].tolist()))
        return probs

    encoder = _Encoder(count_tokens)
    with tempfile.TemporaryDirectory(prefix="arena-hard-data-") as tmp, contextlib.chdir(tmp):
        answer_dir = Path("data", BENCH, "model_answer")
        judgment_dir = Path("data", BENCH, "model_judgment", JUDGE)
        answer_dir.mkdir(parents=True)
        judgment_dir.mkdir(parents=True)
        their_features: dict[tuple[str, str], list[int]] = {}
        for model in PROFILES:
            frame = pd.DataFrame([
                {"uid": uid, "model": model, "messages": [{"role": "user", "content": "question"},
                                                          {"role": "assistant", "content": {"answer": text}}]}
                for (m, uid), text in answers.items() if m == model
            ])
            # Their add_markdown_info.py main, per answer file: markdown counts, then the token length.
            meta = frame[["uid", "messages"]].copy()
            meta["markdown_meta"] = markdown.get_element_counts(frame, column="messages")
            frame["metadata"] = meta.apply(lambda row: markdown.add_markdown_meta(row, encoder), axis=1)
            frame.to_json(answer_dir / f"{model}.jsonl", orient="records", lines=True)
            for uid, metadata in zip(frame["uid"], frame["metadata"]):
                their_features[(model, uid)] = [v if isinstance(v, int) else sum(v.values()) for v in metadata.values()]
        for model in PROFILES:
            if model != BASELINE:
                pd.DataFrame([j for j in judgments if j["model"] == model]).to_json(
                    judgment_dir / f"{model}.jsonl", orient="records", lines=True)

        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            battles = show_result.load_judgments([JUDGE], BENCH)
            original = show_result.bootstrap_pairwise_model, show_result.to_winrate_probabilities
            show_result.bootstrap_pairwise_model, show_result.to_winrate_probabilities = full_data_fit, win_rates
            try:
                show_result.print_leaderboard_with_style_features(battles, BENCH, CATEGORY, ["length", "markdown"])
            finally:
                show_result.bootstrap_pairwise_model, show_result.to_winrate_probabilities = original
            # Their reported figure: median and 5%-95% of 100 battle-level bootstrap rounds (seeded here).
            np.random.seed(0)
            torch.manual_seed(0)
            rounds, _ = math_utils.bootstrap_pairwise_model(captured["features"], captured["outcomes"], "bt")
    models = list(captured["win_rates"])
    n_models = len(models)
    # Their L-BFGS as shipped (lr 0.1, 50 iterations) stops short of the optimum by a few 1e-3 here; the same function
    # with lr 1 and 500 iterations converges (to float32 precision), and that is the figure the check compares.
    converged, _ = math_utils.fit_pairwise_model(captured["features"], captured["outcomes"], "bt", **CONVERGED)
    converged_rates = math_utils.to_winrate_probabilities(converged[None, :n_models], models, baseline_model=BASELINE)
    round_rates = math_utils.to_winrate_probabilities(rounds[:, :n_models], models, baseline_model=BASELINE).numpy()
    return {
        "features": their_features,
        "shipped": {
            "win_rates": {m: float(p) for m, p in captured["win_rates"].items() if m != BASELINE},
            "coefficients": [float(c) for c in captured["coefs"][n_models:]],
        },
        "converged": {
            "win_rates": {m: float(p) for m, p in zip(models, converged_rates[0].tolist()) if m != BASELINE},
            "coefficients": [float(c) for c in converged[n_models:]],
        },
        "bootstrap": {
            m: tuple(float(np.quantile(round_rates[:, k], q)) for q in (0.5, 0.05, 0.95))
            for k, m in enumerate(models) if m != BASELINE
        },
        "n_battles": int(captured["features"].shape[0]),
    }


def _real_answer_figures(path: Path, count_tokens: Callable[[str], int]) -> list[str]:
    """Our features against the ``metadata`` of their answer files (real model answers) where it is present, and
    ``approximate_token_count`` against o200k over every answer (needs bpe_openai; else only where metadata is)."""
    files = [name for name in _git(path, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
             if "/model_answer/" in name and name.endswith(".jsonl")]
    reference = _exact_counters()
    with_meta = equal_length = 0
    markdown_off = {"header": 0, "list": 0, "bold": 0}
    ratios: dict[str, list[float]] = {}
    for name in files:
        for line in _git(path, "show", f"HEAD:{name}").split("\n"):  # not splitlines: answers hold U+2028
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a large-file pointer, or a file absent from this copy
            content = record.get("messages", [{}])[-1].get("content")
            if not isinstance(content, dict) or not content.get("answer"):
                continue
            answer = content["answer"]
            approx = approximate_token_count(answer)
            meta = record.get("metadata")
            if meta:
                theirs = [v if isinstance(v, int) else sum(v.values()) for v in meta.values()]
                ours = style_features(answer, count_tokens)
                with_meta += 1
                equal_length += int(ours.length == theirs[0])
                for k, field in enumerate(("header", "list", "bold"), start=1):
                    markdown_off[field] += int(getattr(ours, field) != theirs[k])
                if "o200k_base" not in reference and theirs[0]:
                    ratios.setdefault("o200k_base (their metadata)", []).append(approx / theirs[0])
            for encoding, count in reference.items():
                ratios.setdefault(encoding, []).append(approx / max(1, count(answer)))
    lines = [
        f"real answers with Arena-Hard metadata: {with_meta}; token length equal to theirs: {equal_length}; "
        f"markdown counts differing (header/list/bold): {markdown_off['header']}/{markdown_off['list']}/"
        f"{markdown_off['bold']}"
    ]
    for encoding, values in ratios.items():
        r = np.array(values)
        lines.append(f"approximate_token_count / {encoding} over {r.size} real answers: median {np.median(r):.3f}, "
                     f"5%-95% {np.quantile(r, 0.05):.3f}-{np.quantile(r, 0.95):.3f}")
    return lines


def _exact_counters() -> dict[str, Callable[[str], int]]:
    try:
        import bpe_openai
    except ImportError:
        return {}
    counters: dict[str, Callable[[str], int]] = {}
    for name in ("o200k_base", "cl100k_base"):
        encoding = bpe_openai.get_encoding(name)
        counters[name] = lambda text, e=encoding: len(e.encode(text, disallowed_special=()))
    return counters


def _raw_win_rates(battles: list[dict[str, Any]]) -> dict[str, float]:
    """Each contender's plain mean score against the baseline (strong verdicts counted three times)."""
    totals: dict[str, list[float]] = {}
    for row in battles:
        model, score = (row["model_a"], row["score_a"]) if row["model_b"] == BASELINE else (
            row["model_b"], 1.0 - row["score_a"])
        entry = totals.setdefault(model, [0.0, 0.0])
        entry[0] += score * row["count"]
        entry[1] += row["count"]
    return {m: s / n for m, (s, n) in totals.items()}


def _as_list(f: StyleFeatures) -> list[int]:
    return [f.length, f.header, f.list, f.bold]


def _write_pinned(
    battles: list[dict[str, Any]],
    features: dict[tuple[str, str], StyleFeatures],
    theirs: dict[str, Any],
    commit: str,
    counter_name: str,
) -> None:
    PINNED.mkdir(parents=True, exist_ok=True)
    uids = sorted({uid for _, uid in features})
    models = sorted({m for m, _ in features})
    battle_data = {
        "about": "synthetic battles written by scripts/check_arena_hard_style.py; features per model and question "
                 f"in the order {list(STYLE_FEATURES)}; a row is [question, model_a, model_b, score_a, count]",
        "baseline": BASELINE,
        "questions": uids,
        "features": {m: [_as_list(features[(m, uid)]) for uid in uids] for m in models},
        "battles": [[r["question"], r["model_a"], r["model_b"], r["score_a"], r["count"]] for r in battles],
    }
    their_data = {
        "about": "Arena-Hard-Auto's point estimates on battles.json: their show_result.py style control with "
                 "-f length markdown, fitted once on all battles by their fit_pairwise_model",
        "arena_hard_commit": commit,
        "token_counter": counter_name,
        "fit": f"fit_pairwise_model(lr={CONVERGED['lr']}, max_epochs={CONVERGED['max_epochs']})",
        "win_rates_at_mean": theirs["converged"]["win_rates"],
        "coefficients": dict(zip(STYLE_FEATURES, theirs["converged"]["coefficients"])),
        "as_shipped": {
            "fit": "fit_pairwise_model defaults (lr=0.1, max_epochs=50): stops short of the optimum",
            "win_rates_at_mean": theirs["shipped"]["win_rates"],
            "coefficients": dict(zip(STYLE_FEATURES, theirs["shipped"]["coefficients"])),
        },
        "n_battles": theirs["n_battles"],
    }
    # One battle (or one model's feature list) per line: small, and diffs read row by row.
    compact = json.dumps(battle_data, separators=(", ", ": ")).replace("]], ", "]],\n").replace("], [", "],\n [")
    (PINNED / "battles.json").write_text(compact + "\n")
    (PINNED / "arena_hard.json").write_text(json.dumps(their_data, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
