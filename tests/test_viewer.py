"""The HTML viewer's builder, without a browser: the embedded JSON cannot close its script block, links are stable
and unique, matches come sorted for review, the leaderboard shows the markdown's figures, and the CLI writes it."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import run_cli, write_config, write_questions

from evalsuite.pipeline import RESULTS_FILE
from evalsuite.judge.swap import build_matches
from evalsuite.records import Judgment, Question
from evalsuite.report.html import VIEWER_FILE, build_viewer, embed_json, leaderboard_html, match_id, viewer_data, write_viewer
from evalsuite.report.leaderboard import build_leaderboard
from evalsuite.report.markdown import render_markdown
from evalsuite.report.results import StatsOptions
from evalsuite.report.build import build_results, orient_to
from evalsuite.store import RunStore
from evalsuite.testing.fake_server import FakeOpenAIServer

PAYLOAD = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"></div><!-- </script >'

# (question, turn, candidate) -> (verdict with the candidate first, verdict with the baseline first)
VERDICTS = {
    ("q1", 1, "dpo"): ("A", "B"),      # win
    ("q1", 2, "dpo"): ("A", "A"),      # inconsistent (tie under strict)
    ("q2", 1, "dpo"): ("B", "A"),      # loss
    ("q2", 2, "dpo"): ("error", "A"),  # parse error
    ("q3", 1, "dpo"): ("tie", "tie"),  # tie
    ("q3", 2, "dpo"): ("A", "B"),
    ("q1", 1, "simpo"): ("B", "A"),
    ("q1", 2, "simpo"): ("B", "B"),    # inconsistent
    ("q2", 1, "simpo"): ("B", "A"),
    ("q2", 2, "simpo"): ("A", "B"),
    ("q3", 1, "simpo"): ("A", "B"),
    ("q3", 2, "simpo"): ("tie", "A"),  # inconsistent
}


def _judgment(q: str, turn: int, a: str, b: str, verdict: str) -> Judgment:
    raw = "no verdict here" if verdict == "error" else f"Judging {a} vs {b}. [[{'C' if verdict == 'tie' else verdict}]]"
    return Judgment("judge", "pair-v1", "h", q, turn, a, b, raw, verdict, "parse" if verdict == "error" else None)  # type: ignore[arg-type]


def make_run(run_dir: Path, *, payload: str = PAYLOAD) -> dict:
    """A small run written through the store API, with ``payload`` in a question, an answer and a judge output."""
    questions = [
        Question("q1", "writing", ("Write a poem.", "Shorter.")),
        Question("q2", "math", ("What is 2+2? " + payload, "And 3+3?"), ("4", "6")),
        Question("q3", "coding", ("Sort a list.", "In place."), ("sorted(x)", "x.sort()")),
    ]
    judgments = []
    for (q, turn, cand), (v1, v2) in VERDICTS.items():
        judgments += [_judgment(q, turn, cand, "sft", v1), _judgment(q, turn, "sft", cand, v2)]
    judgments[0] = replace(judgments[0], raw="I think " + payload + " [[A]]")
    with RunStore(run_dir) as store:
        store.put_questions(questions)
        for model in ("sft", "dpo", "simpo"):
            for q in questions:
                for turn in (1, 2):
                    text = f"{model} answers {q.question_id} turn {turn}"
                    if (model, q.question_id, turn) == ("dpo", "q2", 1):
                        text = "Here is my answer: " + payload
                    store.put_answer_turn(model=model, question_id=q.question_id, turn=turn, text=text, cache_key="k",
                                          backend="test", settings={})
        store.put_judgments(judgments)
    categories = {q.question_id: q.category for q in questions}
    matches = build_matches(judgments, categories, "strict", orient_to("sft", ["dpo", "simpo"]))
    results = build_results(
        matches, baseline="sft", candidates=["dpo", "simpo"], lengths={}, options=StatsOptions(n_resamples=200, bt_rounds=20),
        meta={"judge": "judge", "mode": "strict", "benchmark": {"name": "t", "n_questions": 3, "categories": sorted(categories),
                                                              "question_ids": ["q1", "q2", "q3"]}},
    )
    (run_dir / RESULTS_FILE).write_text(results.dumps(), encoding="utf-8")
    return results


def _data_block(page: str) -> str:
    m = re.search(r'<script type="application/json" id="viewer-data">(.*?)</script>', page, re.S)
    assert m is not None
    return m.group(1)


def test_embedded_json_cannot_close_its_script_block_and_reads_back_unchanged() -> None:
    value = {"a": PAYLOAD, "b": ["</SCRIPT>", "<!--", "-->", "&amp;", "\u2028", "\\</script>"]}
    text = embed_json(value)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == value


def test_model_text_is_in_the_page_only_as_escaped_json(tmp_path: Path) -> None:
    results = make_run(tmp_path)
    page = Path(write_viewer(tmp_path, results, plots=False)).read_text(encoding="utf-8")
    assert PAYLOAD not in page
    outside = page.replace(_data_block(page), "")
    assert "onerror" not in outside and "__pwned" not in outside  # model text lives only inside the JSON block
    assert page.count("</script>") == 2 and page.count("<script") == 2  # the data block and the code, nothing more
    assert "innerHTML" not in page  # the JS inserts model text with textContent only
    data = json.loads(_data_block(page))
    assert data["answers"]["dpo"]["q2"][0] == "Here is my answer: " + PAYLOAD
    assert data["questions"]["q2"]["turns"][0].endswith(PAYLOAD)
    assert any(PAYLOAD in (m["xy"] or {}).get("raw", "") for m in data["matches"])


def test_matches_are_those_of_the_results_sorted_for_review_with_stable_unique_links(tmp_path: Path) -> None:
    results = make_run(tmp_path)
    with RunStore(tmp_path) as store:
        data = viewer_data(store, results)
        again = viewer_data(store, results)
    ms = data["matches"]
    by_c = {c.model: c for c in results.comparisons}
    assert len(ms) == sum(c.n + c.errors for c in by_c.values()) == 12
    assert sum(m["inconsistent"] for m in ms) == sum(c.inconsistent for c in by_c.values()) == 3
    for cand in ("dpo", "simpo"):
        mine = [m for m in ms if m["x"] == cand]
        assert sum(m["result"] == "loss" for m in mine) == by_c[cand].losses
        assert sum(m["result"] == "error" for m in mine) == by_c[cand].errors
    # inconsistent first, then losses, then errors, ties and wins
    ranks = [0 if m["inconsistent"] else {"loss": 1, "error": 2, "tie": 3, "win": 4}[m["result"]] for m in ms]
    assert ranks == sorted(ranks) and ranks[0] == 0 and ranks[-1] == 4
    ids = [m["id"] for m in ms]
    assert len(set(ids)) == len(ids) and ids == [m["id"] for m in again["matches"]]
    assert "q2-t2-dpo" in ids and all(re.fullmatch(r"q[A-Za-z0-9._-]+", i) for i in ids)
    err = next(m for m in ms if m["id"] == "q2-t2-dpo")
    assert err["result"] == "error" and err["error"] == "parse" and err["xy"]["verdict"] == "error"
    inc = next(m for m in ms if m["id"] == "q1-t2-dpo")
    assert inc["inconsistent"] and inc["result"] == "tie" and inc["xy"]["favours"] == "dpo" and inc["yx"]["favours"] == "sft"
    assert data["questions"]["q2"]["reference"] == ["4", "6"]


def test_a_capped_page_keeps_the_first_matches_in_review_order_and_says_so(tmp_path: Path) -> None:
    results = make_run(tmp_path)
    with RunStore(tmp_path) as store:
        whole = viewer_data(store, results, max_matches=0)
        capped = viewer_data(store, results, max_matches=4)
    assert whole["matches_total"] == capped["matches_total"] == len(whole["matches"]) == 12
    assert capped["matches"] == whole["matches"][:4]  # inconsistent and losses come first
    kept = {m["question_id"] for m in capped["matches"]}
    assert set(capped["questions"]) == kept and all(set(a) <= kept for a in capped["answers"].values())
    page = build_viewer(results, capped, plots=False)
    assert "Showing the first 4 of 12 matches" in page
    assert "Showing the first" not in build_viewer(results, whole, plots=False)
    res = run_cli("view", "--run-dir", str(tmp_path), "--max-matches", "2", "--out", "v.html", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(json.loads(_data_block((tmp_path / "v.html").read_text(encoding="utf-8")))["matches"]) == 2


def test_match_ids_follow_the_documented_shape() -> None:
    assert match_id("81", 2, "dpo-b0.1", "sft", "sft") == "q81-t2-dpo-b0.1"
    assert match_id("q81", 2, "dpo-b0.1", "sft", "sft") == "q81-t2-dpo-b0.1"
    assert match_id("81", 1, "dpo", "simpo", "sft") == "q81-t1-dpo-vs-simpo"
    assert match_id("a/b c", 1, 'x"<y>', "sft", "sft") == "qa_b_c-t1-x_y"


def test_leaderboard_html_and_markdown_render_one_model(tmp_path: Path) -> None:
    results = make_run(tmp_path)
    md = render_markdown(results)
    lb = leaderboard_html(build_leaderboard(results))
    page = build_viewer(results, {"matches": [], "judge": "judge", "mode": "strict"}, plots=False)
    assert lb in page and page.index(lb) < page.index('id="matches"')  # the leaderboard comes first
    md_rows = [line for line in md.splitlines() if line.startswith("|") and not line.startswith("| ---") and ":---" not in line]
    assert lb.count("<tr>") == len(md_rows)
    for c in results.comparisons:  # the same figures, formatted once in the model
        assert f"<td class=\"right\">{100 * (c.win_rate or 0.0):.1f}%</td>" in lb
        assert f"{c.wins}/{c.ties}/{c.losses}" in lb
    # every section of the markdown is a section of the page, in the same order
    md_sections = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    assert md_sections and re.findall(r"<summary><h2>([^<]*)</h2></summary>", lb) == md_sections


def test_the_viewer_does_not_read_the_markdown_back() -> None:
    import evalsuite.report.html as viewer_module

    source = Path(viewer_module.__file__).read_text(encoding="utf-8")
    assert "render_markdown" not in source and "splitlines" not in source


def test_plots_are_inline_when_matplotlib_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results = make_run(tmp_path)
    page = build_viewer(results, {"matches": [], "judge": "judge", "mode": "strict"})
    assert page.count('src="data:image/png;base64,') >= 1
    assert "http://" not in page and "https://" not in page  # nothing fetched from anywhere


def test_view_command_writes_the_file_and_names_a_missing_run(tmp_path: Path) -> None:
    make_run(tmp_path / "run")
    res = run_cli("view", "--run-dir", "run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "run" / VIEWER_FILE).is_file()
    res = run_cli("view", "--run-dir", "run", "--out", "elsewhere/v.html", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "elsewhere" / "v.html").read_text(encoding="utf-8")
    assert json.loads(_data_block(page))["baseline"] == "sft"
    bad = run_cli("view", "--run-dir", "nothing-here", cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "results" in bad.stderr


def test_compare_writes_the_viewer_beside_the_leaderboard_unless_told_not_to(tmp_path: Path) -> None:
    strengths = {"sft": 0.0, "dpo": 1.0}
    questions = write_questions(tmp_path / "questions.jsonl", n=4)
    with FakeOpenAIServer(strengths=strengths) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, strengths, questions)
        args = ("compare", "sft", "dpo", "--config", str(cfg), "--quiet", "--resamples", "200", "--bt-rounds", "20")
        res = run_cli(*args, "--run-dir", "run", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        off = run_cli(*args, "--run-dir", "off", "--no-viewer", cwd=tmp_path)
        assert off.returncode == 0, off.stderr
    page = tmp_path / "run" / VIEWER_FILE
    assert (tmp_path / "run" / "leaderboard.md").is_file() and page.is_file() and str(page.name) in res.stderr
    assert len(json.loads(_data_block(page.read_text(encoding="utf-8")))["matches"]) == 4 * 2
    assert (tmp_path / "off" / "leaderboard.md").is_file() and not (tmp_path / "off" / VIEWER_FILE).exists()
    # report --format html prints the same page (and rewrites the same file)
    rep = run_cli("report", "--run-dir", "off", "--format", "html", cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == (tmp_path / "off" / VIEWER_FILE).read_text(encoding="utf-8")
    assert rep.stdout.startswith("<!DOCTYPE html>")
