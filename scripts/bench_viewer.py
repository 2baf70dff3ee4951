"""Benchmark the HTML viewer on a large run: page load to interactive in headless Chromium.

Synthetic run: 12 candidates and one baseline, 80 questions x 2 turns, every (candidate, question, turn) judged in
both orders = 3,840 judgments (1,920 matches), answers of a few hundred words and judge outputs of ~100 words,
some verdict-less (parse errors). Everything is written through the project's own store API (``RunStore``), the
results are computed by the project's results code, and the page by ``evalsuite.report.html.write_viewer``; no
model is called.

Timed in Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium; ``scripts/install_browser.sh``):
navigation start -> the marker the viewer's JS sets once the first rows are rendered and the filters are wired
(``window.__viewerReady``, a ``performance.now()`` reading, i.e. milliseconds since navigation start). Each load is a
fresh navigation of the file:// URL. Prints figures; it is not a timed test. Target: under 2 s.

    python scripts/bench_viewer.py [--repeats 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from evalsuite.judge.swap import build_matches
from evalsuite.records import CATEGORIES, REFERENCE_CATEGORIES, Judgment, Question
from evalsuite.report.html import write_viewer
from evalsuite.report.results import Results, StatsOptions
from evalsuite.report.build import build_results, orient_to
from evalsuite.store import RunStore

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
N_CANDIDATES, N_QUESTIONS, N_TURNS = 12, 80, 2
BASELINE = "sft"
JUDGE = "judge-model"
TARGET_MS = 2000.0
_WORDS = (
    "the model answers each question with care and detail so that readers can follow every step of reasoning while "
    "checking facts against known sources before writing a short summary about results methods data tests limits "
    "errors costs speed memory quality style tone length clarity order scope plan goal risk value proof example"
).split()


@contextlib.contextmanager
def chromium_driver(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """Headless Debian Chromium through Selenium with an explicit driver path (Selenium never downloads one), a fresh
    profile, and every background network feature off."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        raise SystemExit(f"needs {CHROMIUM} and {CHROMEDRIVER}: run scripts/install_browser.sh")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="evalsuite-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def load_to_interactive_ms(driver: Any, page: Path, fragment: str = "") -> float:
    """One fresh navigation of ``page``: milliseconds from navigation start to the viewer's ready marker."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    driver.get(page.as_uri() + fragment)
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return window.__viewerReady !== undefined"))
    return float(driver.execute_script("return window.__viewerReady"))


def _text(rng: np.random.Generator, n_words: int) -> str:
    words = rng.choice(_WORDS, size=n_words)
    lines = [" ".join(words[i:i + 14]) for i in range(0, n_words, 14)]
    return ".\n".join(lines) + "."


def synthesize(run_dir: Path, seed: int = 0) -> tuple[Results, int]:
    """Write the synthetic run into ``run_dir``'s store; return its results document and the number of judgments."""
    rng = np.random.default_rng(seed)
    candidates = [f"dpo-b{b:g}" for b in (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)] + [f"simpo-b{b:g}" for b in (0.5, 1.0, 2.0, 2.5, 5.0, 10.0)]
    assert len(candidates) == N_CANDIDATES
    strength = dict(zip(candidates, rng.normal(0.2, 0.5, N_CANDIDATES)))
    questions = []
    for i in range(N_QUESTIONS):
        cat = CATEGORIES[i % len(CATEGORIES)]
        turns = (_text(rng, 40), _text(rng, 20))
        ref = (_text(rng, 60), _text(rng, 30)) if cat in REFERENCE_CATEGORIES else None
        questions.append(Question(f"{81 + i}", cat, turns, ref))
    judgments: list[Judgment] = []
    with RunStore(run_dir) as store:
        store.put_questions(questions)
        for model in [BASELINE, *candidates]:
            for q in questions:
                for turn in range(1, N_TURNS + 1):
                    store.put_answer_turn(model=model, question_id=q.question_id, turn=turn,
                                          text=_text(rng, int(rng.integers(150, 450))), cache_key=f"{model}-{q.question_id}-{turn}",
                                          backend="synthetic", settings={"temperature": 0.7})
        for cand in candidates:
            for q in questions:
                for turn in range(1, N_TURNS + 1):
                    p_cand = 1 / (1 + np.exp(-strength[cand]))
                    for first, second in ((cand, BASELINE), (BASELINE, cand)):
                        u = rng.random()
                        if u < 0.02:
                            verdict, reason, raw = "error", "parse", _text(rng, 120)
                        else:
                            p_first = p_cand if first == cand else 1 - p_cand
                            p_first = min(0.95, p_first + 0.1)  # a judge with a little position bias
                            v = rng.random()
                            verdict = "tie" if v < 0.1 else "A" if v < 0.1 + 0.9 * p_first else "B"
                            reason = None
                            raw = _text(rng, 120) + f" [[{'C' if verdict == 'tie' else verdict}]]"
                        judgments.append(Judgment(JUDGE, "pair-v1", "0123abcd", q.question_id, turn, first, second, raw,
                                                  verdict, reason, prompt_tokens=900, completion_tokens=160))  # type: ignore[arg-type]
        store.put_judgments(judgments)
        answers = {m: store.answers(m) for m in [BASELINE, *candidates]}
    categories = {q.question_id: q.category for q in questions}
    matches = build_matches(judgments, categories, "strict", orient_to(BASELINE, candidates))
    lengths = {m: {(qid, i): len(t) for qid, a in by_q.items() for i, t in enumerate(a.turns, 1)} for m, by_q in answers.items()}
    results = build_results(
        matches, baseline=BASELINE, candidates=candidates, lengths=lengths,
        options=StatsOptions(n_resamples=2_000, bt_rounds=200, seed=seed),
        meta={"judge": JUDGE, "mode": "strict", "templates": ["pair-v1:0123abcd"],
              "benchmark": {"name": "synthetic", "n_questions": N_QUESTIONS, "categories": sorted(set(categories.values())),
                            "question_ids": [q.question_id for q in questions]}},
    )
    return results, len(judgments)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="page loads to time (each a fresh navigation)")
    ap.add_argument("--keep", type=Path, help="write the run and the page here instead of a temporary folder")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="evalsuite-bench-viewer-") as tmp:
        run_dir = args.keep or Path(tmp) / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        results, n_judgments = synthesize(run_dir)
        t0 = time.perf_counter()
        page = write_viewer(run_dir, results)
        build_s = time.perf_counter() - t0
        n_matches = sum(c.n + c.errors for c in results.comparisons)
        print(f"run: {N_CANDIDATES} candidates x {N_QUESTIONS} questions x {N_TURNS} turns = {n_judgments} judgments, "
              f"{n_matches} matches")
        print(f"page: {page.stat().st_size / 1e6:.1f} MB, written in {build_s:.2f} s (store read, plots, JSON)")
        with chromium_driver() as driver:
            version = driver.capabilities.get("browserVersion", "?")
            cold = load_to_interactive_ms(driver, page)  # the browser's first page: renderer start included
            times = [load_to_interactive_ms(driver, page) for _ in range(args.repeats)]
            shown = int(driver.find_element("id", "match-count").get_attribute("data-count"))
            rows = len(driver.find_elements("css selector", "#matches > details.match"))
        assert shown == n_matches, (shown, n_matches)
        med = statistics.median(times)
        print(f"load to interactive (headless Chromium {version}): first load {cold:.0f} ms; then {args.repeats} loads: "
              f"median {med:.0f} ms, min {min(times):.0f} ms, max {max(times):.0f} ms; "
              f"{shown} matches listed, {rows} rows rendered; target < {TARGET_MS:.0f} ms: "
              f"{'met' if max(cold, *times) < TARGET_MS else 'NOT met'}")


if __name__ == "__main__":
    main()
