"""The results contract: typed ``Results`` read every results.json this project has written, write back every field,
and feed every reader (markdown, CSV, plots, gate, terminal table). Per-turn results, judge health per judge x
template x turn, games mode and p-values that never print as 0, each pinned on the typed document."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, run_cli, write_config

from evalsuite.errors import InputError
from evalsuite.judge.swap import build_matches
from evalsuite.records import Judgment, Match
from evalsuite.report.gate import GateOptions, run_gate
from evalsuite.report.markdown import render_markdown
from evalsuite.report.results import Comparison, Results, RunInfo, StatsOptions, format_p, load_results
from evalsuite.report.build import build_results, orient_to
from evalsuite.report.tables import results_csv
from evalsuite.stats import cluster_bootstrap, paired_difference

DATA = Path(__file__).parent / "data" / "results"
PINNED = sorted(DATA.glob("*.json"))


def _same(written: Any, read_back: Any, path: str = "") -> list[str]:
    """Differences between a document and its round trip: every key kept, every value equal with the same type."""
    if isinstance(written, dict):
        out = []
        for k, v in written.items():
            if k not in read_back:
                out.append(f"{path}/{k}: dropped")
            else:
                out += _same(v, read_back[k], f"{path}/{k}")
        return out
    if isinstance(written, list):
        if not isinstance(read_back, list) or len(written) != len(read_back):
            return [f"{path}: list changed"]
        return [d for i, (a, b) in enumerate(zip(written, read_back)) for d in _same(a, b, f"{path}[{i}]")]
    if written != read_back or type(written) is not type(read_back):
        return [f"{path}: {written!r} -> {read_back!r}"]
    return []


# --- the pinned files -------------------------------------------------------------------------------------------


def test_pinned_files_are_there() -> None:
    names = {p.name for p in PINNED}
    assert {"compare_ae10c14.json", "compare_1d5c495.json", "import_fastchat_ae10c14.json"} <= names


@pytest.mark.parametrize("path", PINNED, ids=lambda p: p.stem)
def test_every_pinned_file_loads_and_writes_back_every_field(path: Path) -> None:
    written = json.loads(path.read_text(encoding="utf-8"))
    results = load_results(path)
    assert isinstance(results, Results) and all(isinstance(c, Comparison) for c in results.comparisons)
    assert _same(written, results.to_json()) == []
    # and the typed object survives its own JSON unchanged
    assert Results.from_json(json.loads(results.dumps())) == results


def test_the_current_release_file_reads_into_typed_fields() -> None:
    r = load_results(DATA / "compare_ae10c14.json")
    assert (r.baseline, r.candidates, r.info.mode, r.info.pairs) == ("sft", ("dpo-b0.1", "dpo-b0.5"), "strict", "all")
    # a file from before the effect floor: read with none, so its stored marks stay what they were
    assert r.stats == StatsOptions(n_resamples=1000, bt_rounds=200, confidence=0.95, alpha=0.05, seed=7, min_effect=0.0)
    c = r.comparison("dpo-b0.1")
    assert c is not None and (c.n, c.wins, c.ties, c.losses, c.win_rate) == (24, 12, 12, 0, 0.75)
    assert len(c.items) == 24 and c.items[0].turn in (1, 2) and c.diagnosis == ()
    # written as 0.0 before bounds were stored: read as the bound it was, printed with the file's resolution
    assert c.p_bootstrap == 0.0 and c.p_bootstrap_bound and format_p(c.p_bootstrap, True, 1000) == "<0.001"
    assert r.sweeps[0].best == "dpo-b0.1" and r.variant_pairs[0].direct is not None
    assert r.info.usage is not None and r.info.usage.judge.prompt_tokens > 0
    assert r.info.generation is not None and len(r.info.generation) == 3 and r.info.judging is not None
    assert r.health_by_group == () and r.comparisons[0].per_turn == ()  # written before either existed


def test_an_earlier_release_and_an_import_load_with_defaults() -> None:
    old = load_results(DATA / "compare_1d5c495.json")
    assert all(c.diversity is None and c.diagnosis == () for c in old.comparisons)
    imp = load_results(DATA / "import_fastchat_ae10c14.json")
    assert imp.info.note and imp.info.usage is None and imp.info.generation is None and imp.info.created is None
    assert imp.info.benchmark.question_ids is None and imp.comparisons[0].model == "alpaca_mt"


@pytest.mark.parametrize("path", PINNED, ids=lambda p: p.stem)
def test_every_reader_takes_a_pinned_file(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evalsuite.cli._run import print_summary

    r = load_results(path)
    md = render_markdown(r)
    assert f"# Leaderboard: candidates vs `{r.baseline}`" in md and "## Judge health" in md
    assert all(f"`{c.model}`" in md for c in r.comparisons)
    assert " 0.000 " not in md  # a p of 0.0 from an old file prints as a bound
    lines = results_csv(r).splitlines()
    assert lines[0].startswith("model,baseline,n,wins") and len(lines) == 1 + len(r.comparisons)
    checks = run_gate(r, GateOptions(r.baseline, [r.comparisons[0].model], 0.5, "point"), r)
    assert len(checks) == 2 and "no significant drop" in checks[1].message
    print_summary(r)
    assert "win rate" in capsys.readouterr().out
    pytest.importorskip("matplotlib")
    from evalsuite.report.plots import write_plots

    assert write_plots(r, tmp_path / "plots")


def test_load_results_refuses_missing_broken_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no results file"):
        load_results(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON"):
        load_results(tmp_path / "broken.json")
    (tmp_path / "foreign.json").write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(InputError, match="not a results document"):
        load_results(tmp_path / "foreign.json")
    res = run_cli("report", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1


def test_keys_a_release_does_not_know_are_kept() -> None:
    doc = json.loads((DATA / "compare_ae10c14.json").read_text(encoding="utf-8"))
    doc["from_the_future"] = {"x": 1}
    doc["comparisons"][0]["new_statistic"] = 0.25
    back = Results.from_json(doc).to_json()
    assert back["from_the_future"] == {"x": 1} and back["comparisons"][0]["new_statistic"] == 0.25


def test_no_string_key_lookups_into_results_outside_the_results_module() -> None:
    """The contract lives in one module: readers use typed fields, not ``results["..."]`` / ``results.get(...)``."""
    pattern = re.compile(r"\b(results|res|old|comp|comps|c)(\[[\"']|\.get\([\"'])")
    offenders = []
    for path in sorted((ROOT / "evalsuite").rglob("*.py")):
        if path.name == "results.py" and path.parent.name == "report":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line) and ("results" in line or "comp" in line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


# --- building typed results ---------------------------------------------------------------------------------------


def _m(q: str, turn: int, x: str, score: float | None, y: str = "sft", cat: str = "writing") -> Match:
    return Match(q, cat, turn, x, y, score, False, score is None)


def _turn_split(n: int = 40) -> list[Match]:
    """A candidate that wins turn 1 on 3 questions in 4 and loses turn 2 on 3 in 4 (the per-turn story a pooled
    50% hides)."""
    out = []
    for i in range(n):
        out.append(_m(f"q{i:03d}", 1, "dpo", 1.0 if i % 4 else 0.0))
        out.append(_m(f"q{i:03d}", 2, "dpo", 0.0 if i % 4 else 1.0))
    return out


def test_per_turn_win_rates_and_their_paired_difference() -> None:
    opts = StatsOptions(n_resamples=2000, bt_rounds=20)
    r = build_results(_turn_split(), baseline="sft", candidates=["dpo"], lengths={}, options=opts)
    c = r.comparisons[0]
    assert c.win_rate == 0.5  # pooled: nothing to see
    t1, t2 = c.turn(1), c.turn(2)
    assert t1 is not None and t2 is not None
    assert (t1.n, t1.wins, t1.losses, t1.win_rate) == (40, 30, 10, 0.75)
    assert (t2.n, t2.wins, t2.losses, t2.win_rate) == (40, 10, 30, 0.25)
    # one item per question on a turn: the CI is a plain bootstrap over questions
    ids = np.array([f"q{i:03d}" for i in range(40)])
    s1 = np.array([1.0 if i % 4 else 0.0 for i in range(40)])
    direct = cluster_bootstrap(s1, ids, n_resamples=2000, seed=0)
    assert (t1.ci_low, t1.ci_high) == (round(direct.ci_low, 6), round(direct.ci_high, 6))
    d = c.turn_difference
    expected = paired_difference(1.0 - s1, s1, ids, n_resamples=2000, seed=0)
    assert d is not None and d.n_questions == 40 and d.diff == -0.5
    assert (d.ci_low, d.ci_high) == (round(expected.ci_low, 6), round(expected.ci_high, 6)) and d.ci_high is not None
    assert d.ci_high < 0 and d.p_value is not None and d.p_value < 0.01
    md = render_markdown(r)
    assert "## Win rate by turn" in md and "| `dpo` | 75.0% [" in md and "-50.0 pts [" in md
    assert results_csv(r).splitlines()[1].split(",")[CSV_INDEX["turn1_win_rate"]] == "0.75"


CSV_INDEX = {name: i for i, name in enumerate(__import__("evalsuite.report.tables", fromlist=["CSV_COLUMNS"]).CSV_COLUMNS)}


def test_a_turn_without_its_twin_has_no_difference() -> None:
    ms = [_m("q1", 1, "dpo", 1.0), _m("q2", 1, "dpo", 0.0)]
    c = build_results(ms, baseline="sft", candidates=["dpo"], lengths={}, options=StatsOptions(200, 10)).comparisons[0]
    assert [t.turn for t in c.per_turn] == [1] and c.turn_difference is None


def test_p_values_never_print_as_zero() -> None:
    # every question won: no resample on the far side of 50%
    ms = [_m(f"q{i}", t, "dpo", 1.0) for i in range(30) for t in (1, 2)]
    r = build_results(ms, baseline="sft", candidates=["dpo"], lengths={}, options=StatsOptions(n_resamples=10_000, bt_rounds=20))
    c = r.comparisons[0]
    assert (c.p_bootstrap, c.p_bootstrap_bound, c.p_holm, c.p_holm_bound) == (0.0001, True, 0.0001, True)
    doc = r.to_json()["comparisons"][0]
    assert isinstance(doc["p_bootstrap"], float) and doc["p_bootstrap_bound"] is True  # numeric in results.json
    md = render_markdown(r)
    assert "| <0.0001 |" in md and "0.000 " not in md
    t1 = c.turn(1)
    assert t1 is not None and t1.p_value_bound and format_p(t1.p_value, t1.p_value_bound) == "<0.0001"
    assert format_p(0.0004) == "<0.001" and format_p(0.04) == "0.040" and format_p(None) == "–"


def test_terminal_table_prints_the_bound(capsys: pytest.CaptureFixture[str]) -> None:
    from evalsuite.cli._run import print_summary

    ms = [_m(f"q{i}", t, "dpo", 1.0) for i in range(30) for t in (1, 2)]
    print_summary(build_results(ms, baseline="sft", candidates=["dpo"], lengths={},
                                options=StatsOptions(n_resamples=10_000, bt_rounds=20)))
    out = capsys.readouterr().out
    assert "<0.0001" in out and " 0.000 " not in out


def _j(q: str, turn: int, a: str, b: str, v: str, template: str = "pairwise") -> Judgment:
    return Judgment("judge", template, "h" * 12, q, turn, a, b, f"[[{v}]]", v, reason="parse" if v == "error" else None)  # type: ignore[arg-type]


def test_health_is_per_judge_template_and_turn_in_results_and_leaderboard() -> None:
    # fair on turn 1, always the first-shown answer on turn 2
    js = []
    for i in range(10):
        q = f"q{i}"
        js += [_j(q, 1, "dpo", "sft", "A"), _j(q, 1, "sft", "dpo", "B")]
        js += [_j(q, 2, "dpo", "sft", "A", "multi"), _j(q, 2, "sft", "dpo", "A", "multi")]
    ms = build_matches(js, {f"q{i}": "writing" for i in range(10)}, "strict", orient_to("sft", ["dpo"]))
    r = build_results(ms, baseline="sft", candidates=["dpo"], lengths={}, options=StatsOptions(500, 10))
    groups = {(g.template, g.turn): g.health for g in r.health_by_group}
    assert set(groups) == {("pairwise", 1), ("multi", 2)}
    assert (groups[("pairwise", 1)].consistency, groups[("pairwise", 1)].first_position_win_share) == (1.0, 0.5)
    assert (groups[("multi", 2)].consistency, groups[("multi", 2)].first_position_win_share) == (0.0, 1.0)
    md = render_markdown(r)
    assert "| `judge` | `multi` | 2 | 20 | 0.0% | 100.0% |" in md and "| `judge` | `pairwise` | 1 | 20 | 100.0% | 50.0% |" in md
    back = Results.from_json(r.to_json())
    assert back.health_by_group == r.health_by_group


def test_games_mode_fits_bradley_terry_on_games_and_keeps_a_game_whose_twin_failed() -> None:
    js = []
    for i in range(12):
        q = f"q{i}"
        js += [_j(q, 1, "dpo", "sft", "A"), _j(q, 1, "sft", "dpo", "B" if i % 3 else "A")]
    # four more questions where the dpo-first order failed to parse: only their sft-first game remains, dpo wins it
    for i in range(12, 16):
        js += [_j(f"q{i}", 1, "dpo", "sft", "error"), _j(f"q{i}", 1, "sft", "dpo", "B")]
    cats = {f"q{i}": "writing" for i in range(16)}
    opts = StatsOptions(n_resamples=500, bt_rounds=50)
    by_mode = {}
    for mode in ("average", "games"):
        ms = build_matches(js, cats, mode, orient_to("sft", ["dpo"]))  # type: ignore[arg-type]
        by_mode[mode] = build_results(ms, baseline="sft", candidates=["dpo"], lengths={}, options=opts, info=RunInfo(mode=mode))
    avg, games = by_mode["average"].comparisons[0], by_mode["games"].comparisons[0]
    assert (avg.n, avg.errors) == (12, 4) and (games.n, games.errors) == (16, 0)
    assert games.win_rate is not None and avg.win_rate is not None and games.win_rate > avg.win_rate
    r_avg, r_games = by_mode["average"].rating("dpo"), by_mode["games"].rating("dpo")
    assert r_avg is not None and r_games is not None and r_avg.rating is not None and r_games.rating is not None
    assert r_games.rating > r_avg.rating  # the four surviving games count
    assert "`games` reconciliation: each order is one game" in render_markdown(by_mode["games"])


def test_games_mode_without_errors_rates_like_average() -> None:
    """The Bradley-Terry likelihood is linear in the outcome, so two games (a, b) weigh exactly like one match scored
    (a + b) / 2 twice: with every order judged, games and average give the same ratings (README, Judging)."""
    js = []
    for i in range(12):
        q = f"q{i}"
        js += [_j(q, 1, "dpo", "sft", "A"), _j(q, 1, "sft", "dpo", ["B", "A", "tie"][i % 3])]
    cats = {f"q{i}": "writing" for i in range(12)}
    ratings = {}
    for mode in ("average", "games"):
        ms = build_matches(js, cats, mode, orient_to("sft", ["dpo"]))  # type: ignore[arg-type]
        r = build_results(ms, baseline="sft", candidates=["dpo"], lengths={}, options=StatsOptions(200, 50), info=RunInfo(mode=mode))
        ratings[mode] = r.rating("dpo")
    assert ratings["games"] is not None and ratings["average"] is not None
    assert ratings["games"].rating == pytest.approx(ratings["average"].rating, abs=0.11)


def test_compare_in_games_mode_end_to_end(tmp_path: Path, questions: Path) -> None:
    from evalsuite.testing.fake_server import FakeOpenAIServer

    strengths = {"sft": 0.0, "dpo": 1.0}
    with FakeOpenAIServer(strengths=strengths) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, strengths, questions)
        res = run_cli("compare", "sft", "dpo", "--mode", "games", "--config", str(cfg), "--run-dir", "run", "--quiet",
                      "--resamples", "500", "--bt-rounds", "50", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    r = load_results(tmp_path / "run" / "results.json")
    assert r.info.mode == "games" and r.rating("dpo") is not None
    assert [t.turn for t in r.comparisons[0].per_turn] == [1, 2] and r.health_by_group
    assert "(`games` reconciliation" in (tmp_path / "run" / "leaderboard.md").read_text(encoding="utf-8")


def test_a_template_edited_mid_run_shows_as_two_health_rows_with_their_hashes() -> None:
    def j(q: str, a: str, b: str, v: str, h: str) -> Judgment:
        return Judgment("judge", "pairwise", h, q, 1, a, b, f"[[{v}]]", v)  # type: ignore[arg-type]

    js = [j("q1", "dpo", "sft", "A", "aaaaaaaa1111"), j("q1", "sft", "dpo", "B", "aaaaaaaa1111"),
          j("q2", "dpo", "sft", "A", "bbbbbbbb2222"), j("q2", "sft", "dpo", "A", "bbbbbbbb2222")]
    ms = build_matches(js, {"q1": "writing", "q2": "writing"}, "strict", orient_to("sft", ["dpo"]))
    r = build_results(ms, baseline="sft", candidates=["dpo"], lengths={}, options=StatsOptions(200, 10))
    assert [(g.template_hash, g.health.consistency) for g in r.health_by_group] == [("aaaaaaaa1111", 1.0), ("bbbbbbbb2222", 0.0)]
    md = render_markdown(r)
    assert "`pairwise` (aaaaaaaa) | 1 |" in md and "`pairwise` (bbbbbbbb) | 1 |" in md
