"""FastChat and AlpacaEval files in and out of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli, shared_data, write_config

from evalsuite.interop.fastchat import pair_records, read_fastchat_answers, read_fastchat_pair_judgments
from evalsuite.store import RunStore
from evalsuite.testing.fake_server import FakeOpenAIServer


@pytest.mark.parametrize("name", ["gpt-4", "claude-v1", "vicuna-13b-v1.3", "llama-13b"])
def test_import_real_fastchat_answers(tmp_path: Path, name: str) -> None:
    src = shared_data("mt_bench", "model_answer", f"{name}.jsonl")
    answers = read_fastchat_answers(src, model="m")
    assert len(answers) == 80
    assert all(a.model == "m" and len(a.turns) == 2 for a in answers)
    with RunStore(tmp_path) as store:
        store.put_answers(answers)
        stored = store.answers("m")
    assert len(stored) == 80 and stored["81"].turns == answers[[a.question_id for a in answers].index("81")].turns


def test_import_answers_cli_then_judge_and_export_round_trip(tmp_path: Path, questions: Path) -> None:
    qs = [json.loads(line) for line in questions.read_text().splitlines()]
    for m in ("base", "cand"):
        with (tmp_path / f"{m}.jsonl").open("w") as fh:
            for q in qs:
                fh.write(json.dumps({"question_id": q["question_id"], "model_id": "whatever",
                                     "choices": [{"index": 0, "turns": [f"«{m}» one {q['question_id']}", f"«{m}» two"]}]}) + "\n")
    for m in ("base", "cand"):
        res = run_cli("import-answers", str(tmp_path / f"{m}.jsonl"), "--model", m, "--run-dir", "run", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    with FakeOpenAIServer(strengths={"base": 0.0, "cand": 2.0}) as srv:
        cfg = write_config(tmp_path / "evalsuite.toml", srv.base_url, [], questions)
        res = run_cli("judge", "base", "cand", "--config", str(cfg), "--run-dir", "run", "--quiet", "--resamples", "500", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert srv.stats()["by_model"] == {"judge": len(qs) * 2 * 2}  # judged, nothing generated
    res = run_cli("export", "--run-dir", "run", "--out", "fc", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    pairs = [json.loads(line) for line in (tmp_path / "fc" / "model_judgment" / "judge_pair.jsonl").read_text().splitlines()]
    assert len(pairs) == len(qs) * 2
    rec = pairs[0]
    assert set(rec) >= {"question_id", "model_1", "model_2", "g1_winner", "g2_winner", "judge", "g1_judgment", "g2_judgment", "turn"}
    assert {rec["g1_winner"], rec["g2_winner"]} <= {"model_1", "model_2", "tie", "error"}
    # the user prompts are re-rendered from the template: g1 shows model_1's answer first
    g1, g2 = rec["g1_user_prompt"], rec["g2_user_prompt"]
    assert g1 and g2 and g1 != g2
    assert g1.index(f"«{rec['model_1']}»") < g1.index(f"«{rec['model_2']}»")
    assert g2.index(f"«{rec['model_2']}»") < g2.index(f"«{rec['model_1']}»")
    # the exported pair file imports back to the same judgments
    back = read_fastchat_pair_judgments(tmp_path / "fc" / "model_judgment" / "judge_pair.jsonl")
    with RunStore(tmp_path / "run") as store:
        original = {(j.question_id, j.turn, j.model_a, j.model_b): j.verdict for j in store.judgments()}
    assert {(j.question_id, j.turn, j.model_a, j.model_b): j.verdict for j in back} == original
    answers = (tmp_path / "fc" / "model_answer" / "cand.jsonl").read_text().splitlines()
    assert len(answers) == len(qs) and json.loads(answers[0])["choices"][0]["turns"][0].startswith("«cand»")


def test_g1_shows_model_1_first(tmp_path: Path) -> None:
    from evalsuite.records import Judgment

    def j(a: str, b: str, v: str) -> Judgment:
        return Judgment("judge", "t", "h", "1", 1, a, b, f"... [[{v}]]", v)  # type: ignore[arg-type]

    # model_1 = "a" (name order). g1: a first, picks A -> a wins; g2: b first, picks A -> b wins
    rec = pair_records([j("a", "b", "A"), j("b", "a", "A")])[0]
    assert (rec["model_1"], rec["g1_winner"], rec["g2_winner"]) == ("a", "model_1", "model_2")


def test_import_real_gpt4_pair_judgments_and_report(tmp_path: Path) -> None:
    src = shared_data("mt_bench", "gpt4_pair_judgments", "gpt-4_pair.jsonl")
    questions = shared_data("mt_bench", "question.jsonl")
    res = run_cli("import-judgments", str(src), "--format", "fastchat", "--baseline", "llama-adapter-question-mt",
                  "--questions", str(questions), "--run-dir", "imp", "--resamples", "1000", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    results = json.loads((tmp_path / "imp" / "results.json").read_text())
    c = results["comparisons"][0]
    # recount from the file with MT-Bench's rule: both orders agree -> that winner, else tie; error rows excluded
    wins = ties = losses = errors = 0
    for line in src.read_text().splitlines():
        r = json.loads(line)
        g1, g2 = r["g1_winner"], r["g2_winner"]
        if "error" in (g1, g2):
            errors += 1
            continue
        cand_first = "model_1" if r["model_1"] == c["model"] else "model_2"
        if g1 == g2 == cand_first:
            wins += 1
        elif g1 == g2 and g1 != "tie":
            losses += 1
        else:
            ties += 1
    assert (c["wins"], c["ties"], c["losses"], c["errors"]) == (wins, ties, losses, errors)
    md = run_cli("report", "--run-dir", "imp", cwd=tmp_path)
    assert md.returncode == 0 and c["model"] in md.stdout


def test_import_alpaca_eval_reproduces_the_leaderboard(tmp_path: Path) -> None:
    src = shared_data("alpaca_eval", "annotations", "vicuna-13b.json")
    res = run_cli("import-judgments", str(src), "--format", "alpaca-eval", "--run-dir", "ae", "--resamples", "1000", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    c = json.loads((tmp_path / "ae" / "results.json").read_text())["comparisons"][0]
    assert c["model"] == "vicuna-13b" and c["n"] == 805
    assert round(100 * c["win_rate"], 2) == 70.43
