"""Style control and judge panels from ``compare`` through results.json, the leaderboard, the viewer and the gate, on
the test endpoint (loopback HTTP, the real ``openai`` client): a style-biased judge inflates a candidate that is
only styled, style control takes it back and ``gate --metric style`` fails it; a panel of a sound judge, a slot
reader and a coin-flipper weighs the sound one most; AlpacaEval's real annotations get style control on import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, write_questions

from evalsuite import api
from evalsuite.cli import main
from evalsuite.errors import InputError
from evalsuite.report.html import write_viewer
from evalsuite.report.markdown import render_markdown
from evalsuite.report.results import Results, StatsOptions, load_results
from evalsuite.testing.fake_server import FakeOpenAIServer, JudgeProfile

FAST = StatsOptions(n_resamples=500, bt_rounds=100)
N_Q = 40


def _config(path: Path, base_url: str, questions: Path, models: list[str], judges: list[str], run_dir: Path,
            judging: str = "") -> Path:
    lines = ["[bench]", f'path = "{questions}"', "", "[run]", f'dir = "{run_dir}"', "", "[judging]", judging, ""]
    for m in models:
        lines += [f"[models.{m}]", f'base_url = "{base_url}"', "concurrency = 8", ""]
    for j in judges:
        lines += ["[judge]" if len(judges) == 1 else f"[judges.{j}]", f'model = "{j}"', f'base_url = "{base_url}"', ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _gate(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = 0
    try:
        main(["gate", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture(scope="module")
def style_run(tmp_path_factory: pytest.TempPathFactory) -> Results:
    tmp = tmp_path_factory.mktemp("style")
    questions = write_questions(tmp / "q.jsonl", 80)
    with FakeOpenAIServer(strengths={"sft": 0.0, "styled": 0.0, "better": 1.0},
                          styles={"styled": "mixed", "better": "mixed"},
                          judge_profiles={"style-judge": JudgeProfile(style_logit=3.0)}) as srv:
        cfg = _config(tmp / "c.toml", srv.base_url, questions, ["sft", "styled", "better"], ["style-judge"], tmp / "run")
        return api.compare("sft", ["styled", "better"], config=cfg, stats=FAST)


def test_style_control_takes_back_what_style_bought(style_run: Results) -> None:
    styled, better = style_run.comparison("styled"), style_run.comparison("better")
    assert styled is not None and better is not None
    assert styled.win_rate is not None and styled.win_rate > 0.6 and styled.ci_low is not None and styled.ci_low > 0.5
    assert styled.style_win_rate is not None and styled.style_ci_low is not None and styled.style_ci_high is not None
    # the styled candidate is exactly as strong as sft: style control takes most of its advantage back (not all:
    # the judge counts words and markdown elements, style control fits token length and markdown densities)
    assert styled.style_win_rate < styled.win_rate - 0.1
    assert better.style_win_rate is not None and styled.style_win_rate < better.style_win_rate
    assert better.style_win_rate is not None and better.style_ci_low is not None and better.style_ci_low > 0.5
    assert styled.style_ci_low <= styled.style_win_rate <= styled.style_ci_high
    assert styled.style_win_rate_at_mean is not None
    coefficients = {k.name: k for k in style_run.style_coefficients}
    assert list(coefficients) == ["length", "header", "list", "bold"]
    assert sum(k.estimate or 0 for k in coefficients.values()) > 0.3  # the judge pays for style (markdown is collinear)
    assert style_run.style is not None and style_run.style.n_battles > 0 and "approximated" in style_run.style.length_unit


def test_style_figures_reach_results_json_leaderboard_viewer_and_gate(
        style_run: Results, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = Path(style_run.info.run_dir or "")
    raw = json.loads((run_dir / "results.json").read_text())
    comp = next(c for c in raw["comparisons"] if c["model"] == "styled")
    assert {"style_win_rate", "style_ci_low", "style_ci_high"} <= set(comp)
    assert set(raw["style_coefficients"]) == {"length", "header", "list", "bold"}
    assert load_results(run_dir / "results.json") == style_run  # the contract round-trips
    board = (run_dir / "leaderboard.md").read_text()
    assert "SC win rate" in board and "## Style control" in board and "Style feature" in board
    page = write_viewer(run_dir, style_run).read_text()
    assert "Style control" in page and "SC win rate" in page
    args = ["--run-dir", str(run_dir), "--baseline", "sft", "--candidate", "styled", "--rule", "point",
            "--min-win-rate", "0.7"]
    code, out = _gate(monkeypatch, capsys, *args)
    assert code == 0 and "PASS styled: win rate" in out  # the raw win rate passes a style-only candidate
    code, out = _gate(monkeypatch, capsys, *args, "--metric", "style")
    assert code == 1 and "FAIL styled: style-controlled win rate" in out
    code, out = _gate(monkeypatch, capsys, "--run-dir", str(run_dir), "--baseline", "sft", "--candidate", "better",
                      "--metric", "style")
    assert code == 0 and "PASS better" in out
    code, out = _gate(monkeypatch, capsys, "--run-dir", str(run_dir), "--baseline", "sft", "--candidate", "styled",
                      "--metric", "style", "--alpha", "0.1")
    assert code == 2 and len(out.strip().splitlines()) == 1 and "stored at 95%" in out


def test_frozen_style_reference_keeps_a_model_still_when_another_is_added(tmp_path: Path) -> None:
    questions = write_questions(tmp_path / "q.jsonl", N_Q)
    with FakeOpenAIServer(strengths={"sft": 0.0, "styled": 0.0, "other": 0.5},
                          styles={"styled": "mixed", "other": "markdown"},
                          judge_profiles={"style-judge": JudgeProfile(style_share=0.5)}) as srv:
        first = _config(tmp_path / "a.toml", srv.base_url, questions, ["sft", "styled", "other"], ["style-judge"],
                        tmp_path / "first")
        one = api.compare("sft", ["styled"], config=first, stats=FAST)
        ref = tmp_path / "first" / "results.json"
        second = _config(tmp_path / "b.toml", srv.base_url, questions, ["sft", "styled", "other"], ["style-judge"],
                         tmp_path / "second", judging=f'style_reference = "{ref}"')
        two = api.compare("sft", ["styled", "other"], config=second, stats=FAST)
        unfrozen = api.compare("sft", ["styled", "other"], config=first, run_dir=tmp_path / "third", stats=FAST)
    a, b = one.comparison("styled"), two.comparison("styled")
    assert a is not None and b is not None and a.style_win_rate is not None
    assert b.style_win_rate == pytest.approx(a.style_win_rate, abs=1e-6)
    assert two.style is not None and two.style.reference_source == str(ref)
    assert two.style.reference_mean == one.style.reference_mean if one.style else False
    c = unfrozen.comparison("styled")
    assert c is not None and unfrozen.style is not None and unfrozen.style.reference_mean != two.style.reference_mean
    assert c.style_win_rate_at_mean != a.style_win_rate_at_mean  # Arena-Hard's way: the other model moves it


@pytest.fixture(scope="module")
def panel_run(tmp_path_factory: pytest.TempPathFactory) -> Results:
    tmp = tmp_path_factory.mktemp("panel")
    questions = write_questions(tmp / "q.jsonl", N_Q)
    profiles = {"sound": JudgeProfile(), "slot": JudgeProfile(position_bias=4.0), "coin": JudgeProfile(noise=1.0)}
    with FakeOpenAIServer(strengths={"sft": 0.0, "dpo": 1.5}, judge_profiles=profiles) as srv:
        cfg = _config(tmp / "c.toml", srv.base_url, questions, ["sft", "dpo"], list(profiles), tmp / "run")
        return api.compare("sft", ["dpo"], config=cfg, stats=FAST)


def test_panel_weighs_the_sound_judge_most_and_reports_every_member(panel_run: Results) -> None:
    judges = {j.name: j for j in panel_run.judges}
    assert list(judges) == ["sound", "slot", "coin"]
    assert abs(sum(j.weight or 0 for j in judges.values()) - 1) < 1e-3
    assert (judges["sound"].weight or 0) > (judges["coin"].weight or 0) > (judges["slot"].weight or 0)
    assert (judges["slot"].weight or 0) < 0.1
    c = panel_run.comparisons[0]
    assert set(c.per_judge) == {"sound", "slot", "coin"}
    sound = c.per_judge["sound"]
    assert sound.win_rate is not None and sound.win_rate > 0.6 and sound.n == N_Q * 2
    assert c.win_rate is not None and 0.5 < c.win_rate < sound.win_rate  # the panel: mostly the sound judge
    agreement = panel_run.judge_agreement
    assert agreement is not None and len(agreement.pairs) == 3 and agreement.n_items == N_Q * 2
    assert panel_run.info.judge == "sound+slot+coin"
    groups = {g.judge for g in panel_run.health_by_group}
    assert groups == {"sound", "slot", "coin"}  # health per member


def test_panel_reaches_leaderboard_viewer_and_results_json(panel_run: Results) -> None:
    run_dir = Path(panel_run.info.run_dir or "")
    raw = json.loads((run_dir / "results.json").read_text())
    assert [j["name"] for j in raw["judges"]] == ["sound", "slot", "coin"]
    assert set(raw["comparisons"][0]["per_judge"]["sound"]) == {"win_rate", "ci_low", "ci_high", "n"}
    assert "fleiss_kappa" in raw["judge_agreement"]
    board = render_markdown(panel_run)
    assert "## Judge panel" in board and "A panel of 3 judges" in board and "Fleiss' κ" in board
    page = write_viewer(run_dir, panel_run).read_text()
    assert "Judge panel" in page
    data = page[page.index('id="viewer-data"'):]
    for label in ("sound", "slot", "coin"):  # every member's matches are in the viewer
        assert f'"judge": "{label}"' in data or f'"judge":"{label}"' in data


ALPACA = ROOT.parent / "shared" / "data" / "alpaca_eval" / "annotations"


@pytest.mark.skipif(not ALPACA.is_dir(), reason="../shared/data is absent (a user's clone)")
def test_alpaca_eval_import_gets_style_control_from_the_outputs(tmp_path: Path) -> None:
    path = next(p for p in sorted(ALPACA.glob("*.json")) if "vicuna" in p.name)
    results = api.import_judgments(path, "alpaca-eval", run_dir=tmp_path / "ae", options=FAST).results
    c = results.comparisons[0]
    assert c.style_win_rate is not None and c.style_ci_low is not None and c.style_ci_low < c.style_win_rate
    assert results.style is not None and results.style.n_battles == c.n


def test_human_labels_weigh_the_panel_by_agreement_with_the_humans(panel_run: Results, tmp_path: Path) -> None:
    """Human votes that follow the sound judge's verdicts: with [judging] human_labels (the judgments are stored)
    the weights come from agreement with the humans, the sound judge taking most of it."""
    from evalsuite.store import RunStore

    run_dir = Path(panel_run.info.run_dir or "")
    with RunStore(run_dir) as store:
        sound = [j for j in store.judgments("sound") if j.model_a == "dpo"]  # one order of each match
    winner = {"A": "model_a", "B": "model_b", "tie": "tie"}
    votes = tmp_path / "human.jsonl"
    votes.write_text("".join(json.dumps({"question_id": j.question_id, "turn": j.turn, "model_a": j.model_a,
                                         "model_b": j.model_b, "winner": winner[j.verdict], "judge": "human"}) + "\n"
                             for j in sound if j.verdict in winner), encoding="utf-8")
    config = run_dir.parent / "c.toml"
    human_config = tmp_path / "human.toml"
    human_config.write_text(config.read_text().replace("[judging]\n", f'[judging]\nhuman_labels = "{votes}"\n', 1))
    results = api.compare("sft", ["dpo"], config=human_config, stats=FAST)
    judges = {j.name: j for j in results.judges}
    assert {j.weight_source for j in judges.values()} == {"human"}
    assert (judges["sound"].weight or 0) > 0.8 and (judges["slot"].weight or 0) < 0.05
    missing = tmp_path / "none.toml"
    missing.write_text(config.read_text().replace("[judging]\n", '[judging]\nhuman_labels = "absent.jsonl"\n', 1))
    with pytest.raises(InputError, match="no such vote file"):
        api.compare("sft", ["dpo"], config=missing, stats=FAST)


def test_panel_weights_come_from_agreement_when_questions_differ(tmp_path: Path) -> None:
    """Each answer with a quality of its own (answer_spread): the sound judge agrees with what the others see beyond
    chance and takes most of the weight from agreement; the coin-flipper agrees with nobody and gets none."""
    questions = write_questions(tmp_path / "q.jsonl", N_Q)
    profiles = {"sound": JudgeProfile(), "slot": JudgeProfile(position_bias=4.0), "coin": JudgeProfile(noise=1.0)}
    with FakeOpenAIServer(strengths={"sft": 0.0, "dpo": 1.0}, judge_profiles=profiles, answer_spread=3.0) as srv:
        cfg = _config(tmp_path / "c.toml", srv.base_url, questions, ["sft", "dpo"], list(profiles), tmp_path / "run")
        results = api.compare("sft", ["dpo"], config=cfg, stats=FAST)
    judges = {j.name: j for j in results.judges}
    assert {j.weight_source for j in judges.values()} == {"agreement"}
    assert (judges["sound"].weight or 0) > 0.5 and (judges["coin"].weight or 0) < 0.05
    assert (judges["sound"].agreement or 0) > (judges["coin"].agreement or 0)
