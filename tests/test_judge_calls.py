"""The judge stage's calls: one planning path for pairwise judging and grading, cache keys that cover every sampling
setting (a judge run with another seed shares no stored call)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from evalsuite.backends import NullProgress
from evalsuite.config import JudgingOptions, ModelSpec
from evalsuite.judge import plan_grade_requests, plan_judge_requests, plan_requests, run_judge
from evalsuite.records import Answer, Question
from evalsuite.store import RunStore
from evalsuite.testing.fake_server import FakeOpenAIServer

QUESTIONS = [
    Question("q1", "writing", ("Write a haiku.", "Now a limerick.")),
    Question("q2", "math", ("2+2?", "And 3+3?"), reference=("4", "6")),
]
ANSWERS = {
    m: {q.question_id: Answer(m, q.question_id, (f"{m} one {q.question_id}", f"{m} two")) for q in QUESTIONS}
    for m in ("sft", "dpo")
}
JUDGE = ModelSpec(name="judge", model="judge", base_url="http://127.0.0.1:9", temperature=0.0, max_tokens=64, seed=0)


class _Bar:
    def __enter__(self) -> NullProgress:
        return NullProgress()

    def __exit__(self, *exc: object) -> None:
        pass


def _progress(title: str, total: int) -> _Bar:
    return _Bar()


def test_every_sampling_setting_is_in_the_key() -> None:
    base, _, _ = plan_judge_requests(JUDGE, [("dpo", "sft")], QUESTIONS, ANSWERS, {}, JudgingOptions())
    assert len(base) == 2 * 2 * 2  # two questions, two turns, both orders
    for change in ({"seed": 1}, {"temperature": 0.7}, {"max_tokens": 65}):
        other, _, _ = plan_judge_requests(replace(JUDGE, **change), [("dpo", "sft")], QUESTIONS, ANSWERS, {}, JudgingOptions())
        assert not {r.key for r in base} & {r.key for r in other}, change
        assert [r.messages for r in other] == [r.messages for r in base]
    # and the request carries the seed its key was made with
    assert {r.seed for r in base} == {0}


def test_grading_and_pairwise_judging_share_one_planner() -> None:
    pairwise = plan_requests(JUDGE, "pairwise", [("dpo", "sft")], QUESTIONS, ANSWERS, {})
    assert pairwise[0] == plan_judge_requests(JUDGE, [("dpo", "sft")], QUESTIONS, ANSWERS, {}, JudgingOptions())[0]
    grades, cached, missing = plan_grade_requests(JUDGE, ["dpo"], QUESTIONS, ANSWERS, {})
    assert (len(grades), cached, missing) == (4, 0, 0)
    assert {(r.meta["model_a"], r.meta["model_b"]) for r in grades} == {("dpo", "")}
    assert {r.meta["template"] for r in grades} == {"single", "single-multi", "single-ref", "single-ref-multi"}
    # a missing answer is counted, not judged, on both paths
    partial = {"dpo": ANSWERS["dpo"], "sft": {"q1": ANSWERS["sft"]["q1"]}}
    assert plan_requests(JUDGE, "pairwise", [("dpo", "sft")], QUESTIONS, partial, {})[2] == 1
    assert plan_requests(JUDGE, "single", [("sft",)], QUESTIONS, partial, {})[2] == 1


def test_two_judge_runs_differing_only_in_seed_share_no_cache_entry(tmp_path: Path) -> None:
    with FakeOpenAIServer(strengths={"sft": 0.0, "dpo": 1.0}) as srv:
        judge = replace(JUDGE, base_url=srv.base_url)
        with RunStore(tmp_path / "run") as store:
            store.put_questions(QUESTIONS)
            store.put_answers([a for by_q in ANSWERS.values() for a in by_q.values()])
            first = run_judge(judge, [("dpo", "sft")], QUESTIONS, store, JudgingOptions(), progress=_progress)
            again = run_judge(judge, [("dpo", "sft")], QUESTIONS, store, JudgingOptions(), progress=_progress)
            reseeded = run_judge(replace(judge, seed=7), [("dpo", "sft")], QUESTIONS, store, JudgingOptions(),
                                 progress=_progress)
            keys = {j.cache_key for j in store.judgments("judge")}
        assert srv.stats()["by_model"] == {"judge": 16}
    assert (first.requested, first.cached) == (8, 0)
    assert (again.requested, again.cached) == (0, 8)  # same settings: every call is cached
    assert (reseeded.requested, reseeded.cached) == (8, 0)  # another seed: every call is asked again
    assert len(keys) == 8  # the store holds the latest judgment per slot, under the new seed's keys


def test_a_large_benchmark_is_judged_in_chunks_of_questions_with_the_same_verdicts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.judge import _calls

    questions = [Question(f"q{i}", "writing", (f"Question {i}?", f"More on {i}.")) for i in range(5)]
    answers = [Answer(m, q.question_id, (f"{m} one {q.question_id}", f"{m} two {q.question_id}"))
               for m in ("sft", "dpo") for q in questions]
    titles: list[str] = []

    def progress(title: str, total: int) -> _Bar:
        titles.append(f"{title}: {total}")
        return _Bar()

    verdicts = []
    with FakeOpenAIServer(strengths={"sft": 0.0, "dpo": 1.0}) as srv:
        judge = replace(JUDGE, base_url=srv.base_url)
        for chunk, run in ((_calls.CHUNK_QUESTIONS, "whole"), (2, "chunked")):
            monkeypatch.setattr(_calls, "CHUNK_QUESTIONS", chunk)
            with RunStore(tmp_path / run) as store:
                store.put_questions(questions)
                store.put_answers(answers)
                summary = run_judge(judge, [("dpo", "sft")], questions, store, JudgingOptions(), progress=progress)
                again = run_judge(judge, [("dpo", "sft")], questions, store, JudgingOptions(), progress=progress)
                verdicts.append(sorted((j.question_id, j.turn, j.model_a, j.verdict) for j in store.judgments("judge")))
            assert (summary.requested, summary.cached, again.requested, again.cached) == (20, 0, 0, 20)
        assert srv.stats()["by_model"] == {"judge": 40}
    assert verdicts[0] == verdicts[1]
    assert titles == ["judge (judge): 20", "judge (judge) questions 1-2 of 5: 8", "judge (judge) questions 3-4 of 5: 8",
                      "judge (judge) questions 5-5 of 5: 4"]
