"""The fake OpenAI server, driven through the real ``openai`` SDK: answers, judges, formats, logprobs, errors, faults.

Everything the server says is a function of the request, so these tests assert exact behaviour, not odds; the only
statistical checks (judge follows strengths, fault rates) run over fixed prompts and so are deterministic too.
"""

from __future__ import annotations

import asyncio
import doctest
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Iterator

import openai
import pytest
from openai.types.chat.chat_completion_token_logprob import ChatCompletionTokenLogprob

from evalsuite.testing import fake_server
from evalsuite.testing.fake_server import FakeOpenAIServer, FaultPlan, JudgeProfile

REPO = Path(__file__).resolve().parents[1]
STRENGTHS = {"weak": -2.0, "strong": 2.0, "sft": 0.0, "dpo": 0.5, "twin": 0.0}

PAIRWISE_SYSTEM = (
    "Please act as an impartial judge and compare the two answers. Output your final verdict by strictly following "
    'this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'
)
ARENA_SYSTEM = (
    "Compare the two answers and output one label: Assistant A is significantly better: [[A>>B]]; slightly "
    "better: [[A>B]]; tie: [[A=B]]; Assistant B is slightly better: [[B>A]]; significantly better: [[B>>A]]."
)
SINGLE_SYSTEM = (
    "Rate the response on a scale of 1 to 10 by strictly following this format: \"[[rating]]\", "
    'for example: "Rating: [[5]]".'
)
PAIR_VERDICT = re.compile(r"\[\[([ABC])\]\]")
ARENA_VERDICT = re.compile(r"\[\[(A>>B|A>B|A=B|B>A|B>>A)\]\]")


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def pair_prompt(question: str, answer_a: str, answer_b: str) -> str:
    return (f"[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{answer_a}\n"
            f"[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{answer_b}\n"
            "[The End of Assistant B's Answer]")


def answer(client: openai.OpenAI, model: str, question: str) -> str:
    content = client.chat.completions.create(model=model, messages=[user(question)]).choices[0].message.content
    assert content is not None
    return content


def judge(client: openai.OpenAI, system: str, prompt: str, **kw: object) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(
        model="judge", messages=[{"role": "system", "content": system}, user(prompt)], **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(strengths=STRENGTHS, lengths={"dpo": 12}, seed=1) as srv:
        yield srv


@pytest.fixture
def client(server: FakeOpenAIServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)


# ---------------------------------------------------------------------- answer models


def test_answers_are_deterministic_marked_and_sized(client: openai.OpenAI) -> None:
    msgs = [user("What is entropy?")]
    r1 = client.chat.completions.create(model="sft", messages=msgs, temperature=0.0)
    r2 = client.chat.completions.create(model="sft", messages=msgs, temperature=1.3)
    text = r1.choices[0].message.content
    assert text == r2.choices[0].message.content  # temperature does not matter
    assert text is not None and text.startswith("«sft» ")
    assert len(text.split()) == 1 + 40  # marker + default length
    assert r1.object == "chat.completion" and r1.model == "sft" and r1.choices[0].finish_reason == "stop"
    assert r1.choices[0].message.role == "assistant"
    assert r1.usage is not None and r1.usage.total_tokens == r1.usage.prompt_tokens + r1.usage.completion_tokens

    dpo = answer(client, "dpo", "What is entropy?")
    assert dpo.startswith("«dpo» ") and len(dpo.split()) == 1 + 12  # lengths={"dpo": 12}
    # Turn 2 (turn 1's reply in context) differs from turn 1.
    turn2 = client.chat.completions.create(model="sft", messages=[
        *msgs, {"role": "assistant", "content": text}, user("Now explain it to a child.")]).choices[0].message.content
    assert turn2 is not None and turn2.startswith("«sft» ") and turn2 != text
    # max_tokens truncates (the marker counts as one token) and says so.
    short = client.chat.completions.create(model="sft", messages=msgs, max_tokens=5)
    assert short.choices[0].finish_reason == "length"
    assert short.choices[0].message.content is not None and len(short.choices[0].message.content.split()) == 5


def test_any_model_accepted_when_strengths_is_none() -> None:
    with FakeOpenAIServer(strengths=None) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        assert answer(c, "whatever-model", "hi").startswith("«whatever-model» ")
        assert [m.id for m in c.models.list()] == ["judge"]


# ---------------------------------------------------------------------- judges


def test_judge_follows_strengths_in_both_orders(client: openai.OpenAI) -> None:
    strong_wins = ties = total = 0
    for i in range(50):
        q = f"Question {i}: explain topic number {i}."
        s, w = answer(client, "strong", q), answer(client, "weak", q)
        for a, b, strong_letter in ((s, w, "A"), (w, s, "B")):
            content = judge(client, PAIRWISE_SYSTEM, pair_prompt(q, a, b)).choices[0].message.content or ""
            verdicts = PAIR_VERDICT.findall(content)
            assert len(verdicts) == 1 and content.endswith(f"[[{verdicts[0]}]]")
            assert not content.startswith("[[")  # an explanation comes first
            total += 1
            strong_wins += verdicts[0] == strong_letter
            ties += verdicts[0] == "C"
    # P(strong) = sigmoid(4) * 0.9 = 0.88, P(tie) = 0.1
    assert strong_wins / total > 0.8
    assert 0 < ties / total < 0.2
    # Same request, same verdict.
    q = "Question 0: explain topic number 0."
    prompt = pair_prompt(q, answer(client, "strong", q), answer(client, "weak", q))
    assert len({judge(client, PAIRWISE_SYSTEM, prompt).choices[0].message.content for _ in range(3)}) == 1


def test_position_bias_favours_first_answer() -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, position_bias=2.0, tie_rate=0.0) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        first = 0
        for i in range(40):
            q = f"q{i}"
            content = judge(c, PAIRWISE_SYSTEM, pair_prompt(q, answer(c, "sft", q), answer(c, "twin", q)))
            first += PAIR_VERDICT.findall(content.choices[0].message.content or "")[-1] == "A"
        assert first / 40 > 0.75  # sigmoid(2) = 0.88 for equal strengths


def test_arena5_format_uses_strong_forms_only_for_large_gaps(client: openai.OpenAI) -> None:
    seen_big: set[str] = set()
    seen_small: set[str] = set()
    for i in range(30):
        q = f"Arena question {i}"
        big = judge(client, ARENA_SYSTEM, pair_prompt(q, answer(client, "strong", q), answer(client, "weak", q)))
        small = judge(client, ARENA_SYSTEM, pair_prompt(q, answer(client, "sft", q), answer(client, "dpo", q)))
        for resp, seen in ((big, seen_big), (small, seen_small)):
            content = resp.choices[0].message.content or ""
            verdicts = ARENA_VERDICT.findall(content)
            assert len(verdicts) == 1 and not content.startswith("[[")
            seen.add(verdicts[0])
    assert seen_big <= {"A>>B", "A=B", "B>>A"} and "A>>B" in seen_big  # |4| > 1
    assert seen_small <= {"A>B", "A=B", "B>A"}  # |0.5| <= 1


def test_single_answer_grading_score10(client: openai.OpenAI) -> None:
    def rating(model: str) -> int:
        q = "Explain photosynthesis."
        prompt = f"[Question]\n{q}\n\n[The Start of Assistant's Answer]\n{answer(client, model, q)}\n[The End]"
        content = judge(client, SINGLE_SYSTEM, prompt).choices[0].message.content or ""
        m = re.fullmatch(r"[^\[]+Rating: \[\[(\d+)\]\]", content)
        assert m, content
        return int(m.group(1))

    # N = clip(round(5 + 3 * strength), 1, 10)
    assert rating("strong") == 10 and rating("weak") == 1 and rating("sft") == 5


def test_logprob_mode_returns_verdict_distribution(client: openai.OpenAI) -> None:
    q = "Logprob question"
    prompt = pair_prompt(q, answer(client, "strong", q), answer(client, "weak", q))
    resp = judge(client, PAIRWISE_SYSTEM, prompt, logprobs=True, top_logprobs=5)
    choice = resp.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    tokens = choice.logprobs.content
    assert all(isinstance(t, ChatCompletionTokenLogprob) for t in tokens)
    assert [t.token for t in tokens][0::2] == ["[[", "]]"] and len(tokens) == 3
    assert choice.message.content == "".join(t.token for t in tokens)
    verdict = tokens[1]
    assert verdict.token in {"A", "B", "C"} and verdict.bytes == list(verdict.token.encode())
    assert len(verdict.top_logprobs) == 5  # padded up to k like the real API
    probs = {t.token: math.exp(t.logprob) for t in verdict.top_logprobs if t.token in {"A", "B", "C"}}
    p_a = 1 / (1 + math.exp(-4.0)) * 0.9
    assert probs["A"] == pytest.approx(p_a) and probs["C"] == pytest.approx(0.1)
    assert sum(probs.values()) == pytest.approx(1.0)
    assert verdict.top_logprobs[0].token == "A"  # most likely first
    assert verdict.logprob == pytest.approx(math.log(probs[verdict.token]))

    # Arena format: the verdict token is the whole label, its alternatives the five labels.
    arena = judge(client, ARENA_SYSTEM, prompt, logprobs=True, top_logprobs=5).choices[0]
    assert arena.logprobs is not None and arena.logprobs.content is not None
    labels = {t.token for t in arena.logprobs.content[1].top_logprobs}
    assert labels == {"A>>B", "A>B", "A=B", "B>A", "B>>A"}


# ---------------------------------------------------------------------- errors


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="nope", messages=[user("hi")])
    assert exc.value.status_code == 404 and exc.value.code == "model_not_found" and exc.value.param == "model"
    assert exc.value.body == {"message": "The model 'nope' does not exist", "type": "invalid_request_error",
                              "param": "model", "code": "model_not_found"}


def test_wrong_api_key_is_401() -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, api_key="secret") as srv:
        bad = openai.OpenAI(base_url=srv.base_url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as exc:
            answer(bad, "sft", "hi")
        assert exc.value.code == "invalid_api_key"
        good = openai.OpenAI(base_url=srv.base_url, api_key="secret", max_retries=0)
        assert answer(good, "sft", "hi").startswith("«sft»")
        assert srv.stats()["by_status"] == {401: 1, 200: 1}


# ---------------------------------------------------------------------- faults


def test_429_is_retried_after_retry_after_and_does_not_change_content() -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, faults=FaultPlan(rate_429=1.0, retry_after=0.01)) as srv, \
            FakeOpenAIServer(strengths=STRENGTHS) as clean:
        c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=2)
        t0 = time.perf_counter()
        text = answer(c, "sft", "rate limited question")
        elapsed = time.perf_counter() - t0
        # The SDK's own backoff starts at 0.375-0.5 s; well under that means retry-after(-ms) was honoured.
        assert elapsed < 0.3, elapsed
        st = srv.stats()
        assert st["by_status"] == {429: 1, 200: 1} and st["by_fault"] == {"429": 1} and st["successful"] == 1
        (m1, h1, s1), (m2, h2, s2) = st["log"]
        assert (m1, s1, m2, s2) == ("sft", 429, "sft", 200) and h1 == h2  # two attempts of one request
        clean_client = openai.OpenAI(base_url=clean.base_url, api_key="x", max_retries=0)
        assert text == answer(clean_client, "sft", "rate limited question")


def test_429_headers_and_error_shape() -> None:
    plan = FaultPlan(rate_429=1.0, retry_after=0.25)
    with FakeOpenAIServer(strengths=STRENGTHS, faults=plan) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.RateLimitError) as exc:
            answer(c, "sft", "hi")
        assert exc.value.response.headers["retry-after"] == "0.25"
        assert exc.value.response.headers["retry-after-ms"] == "250"
        assert exc.value.code == "rate_limit_exceeded"


def test_500_is_retried() -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, faults=FaultPlan(rate_500=1.0)) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=2)
        assert answer(c, "dpo", "server error question").startswith("«dpo»")
        st = srv.stats()
        assert st["by_status"] == {500: 1, 200: 1} and st["by_fault"] == {"500": 1}


def test_faulty_attempts_counts_per_request_body() -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, faults=FaultPlan(rate_429=1.0, faulty_attempts=2)) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        for _ in range(2):
            with pytest.raises(openai.RateLimitError):
                answer(c, "sft", "q")
        assert answer(c, "sft", "q").startswith("«sft»")
        with pytest.raises(openai.RateLimitError):  # a different body has its own count
            answer(c, "sft", "another q")
        srv.reset_stats()  # attempts survive a stats reset, so the healed request stays healed
        assert answer(c, "sft", "q").startswith("«sft»")
        assert srv.stats()["by_status"] == {200: 1}


def test_fault_choice_is_deterministic_and_near_rate() -> None:
    def failing(plan: FaultPlan) -> set[int]:
        with FakeOpenAIServer(strengths=STRENGTHS, faults=plan) as srv:
            c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
            out = set()
            for i in range(100):
                try:
                    answer(c, "sft", f"question {i}")
                except openai.RateLimitError:
                    out.add(i)
            return out

    a, b = failing(FaultPlan(rate_429=0.3)), failing(FaultPlan(rate_429=0.3))
    assert a == b and 0.15 < len(a) / 100 < 0.45
    assert failing(FaultPlan(rate_429=0.3, seed=7)) != a


def test_slow_reply_trips_client_timeout() -> None:
    plan = FaultPlan(rate_slow=1.0, slow_seconds=1.0)
    with FakeOpenAIServer(strengths=STRENGTHS, faults=plan) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0, timeout=0.2)
        t0 = time.perf_counter()
        with pytest.raises(openai.APITimeoutError):
            answer(c, "sft", "slow question")
        assert time.perf_counter() - t0 < 0.8
        assert answer(c, "sft", "slow question").startswith("«sft»")  # second attempt is on time
        assert srv.stats()["by_fault"] == {"slow": 1}
        t1 = time.perf_counter()
    assert time.perf_counter() - t1 < 1.0  # stop() does not wait out the sleeping handler


def test_no_verdict_first_attempt_then_verdict() -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, faults=FaultPlan(rate_no_verdict=1.0)) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        q = "no verdict question"
        a = answer(c, "strong", q)  # answer models ignore no_verdict
        assert a.startswith("«strong»")
        prompt = pair_prompt(q, a, answer(c, "weak", q))
        first = judge(c, PAIRWISE_SYSTEM, prompt).choices[0].message.content or ""
        assert "[[" not in first and first
        second = judge(c, PAIRWISE_SYSTEM, prompt).choices[0].message.content or ""
        assert len(PAIR_VERDICT.findall(second)) == 1
        assert srv.stats()["by_fault"] == {"no_verdict": 1}


def test_fault_plan_rejects_rates_over_one() -> None:
    with pytest.raises(ValueError):
        FaultPlan(rate_429=0.6, rate_500=0.6)


# ---------------------------------------------------------------------- stats, concurrency, CLI


def test_stats_endpoint_models_and_reset(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    assert {m.id for m in client.models.list()} == set(STRENGTHS) | {"judge"}
    answer(client, "sft", "stats question")
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/stats") as resp:
        over_http = json.load(resp)
    local = server.stats()
    assert over_http["total_requests"] == local["total_requests"] >= 1
    assert over_http["by_status"] == {str(k): v for k, v in local["by_status"].items()}  # JSON keys are strings
    assert local["log"][-1][0] == "sft"
    server.reset_stats()
    st = server.stats()
    assert st["total_requests"] == 0 and st["log"] == [] and st["by_model"] == {}


def test_max_in_flight_reaches_client_concurrency() -> None:
    async def fire(base_url: str) -> float:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0,
                                      http_client=openai.DefaultAioHttpClient()) as c:
            t0 = time.perf_counter()
            replies = await asyncio.gather(*(
                c.chat.completions.create(model="sft", messages=[user(f"concurrent {i}")]) for i in range(32)))
            assert all((r.choices[0].message.content or "").startswith("«sft»") for r in replies)
            return time.perf_counter() - t0

    with FakeOpenAIServer(strengths=STRENGTHS, latency=0.2) as srv:
        elapsed = asyncio.run(fire(srv.base_url))
        st = srv.stats()
    assert st["max_in_flight"] == 32 and st["successful"] == 32 and st["in_flight"] == 0
    assert elapsed < 0.2 * 4  # concurrent, not serial (serial would be 6.4 s)


def test_cli_prints_ready_and_serves() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "evalsuite.testing.fake_server", "--port", "0", "--strength", "sft=0",
         "--strength", "dpo=0.5", "--judge", "judge", "--tie-rate", "0.1", "--rate-429", "0.0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline() if proc.stdout else ""))
        reader.start()
        reader.join(timeout=10)
        assert lines, "no READY line within 10 s"
        m = re.fullmatch(r"READY (http://127\.0\.0\.1:(\d+)/v1)\n", lines[0])
        assert m, lines[0]
        c = openai.OpenAI(base_url=m.group(1), api_key="x", max_retries=0)
        assert answer(c, "dpo", "cli question").startswith("«dpo» ")
        with pytest.raises(openai.NotFoundError):
            answer(c, "unlisted", "cli question")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out == ""  # exactly one line on stdout


# ---------------------------------------------------------------------- answer styles and judge profiles

MULTI_TURN = (
    "[Begin conversation with assistant A]\n\n[User, message 1]\n{q1}\n\n[Assistant A, reply 1]\n{a1}\n\n"
    "[User, message 2]\n{q2}\n\n[Assistant A, reply 2]\n{a2}\n\n[End conversation with assistant A]\n\n"
    "[Begin conversation with assistant B]\n\n[User, message 1]\n{q1}\n\n[Assistant B, reply 1]\n{b1}\n\n"
    "[User, message 2]\n{q2}\n\n[Assistant B, reply 2]\n{b2}\n\n[End conversation with assistant B]\n\n"
    "Compare the two assistants' replies to the second message, then close with [[A]], [[B]] or [[C]]."
)


def transcript_digest(c: openai.OpenAI) -> str:
    """sha256 of what a fixed set of answer, pairwise, arena, logprob and single-grading requests get back."""
    out: list[str | None] = []
    for i in range(6):
        q = f"golden {i}"
        ans = {m: answer(c, m, q) for m in ("strong", "weak", "sft", "dpo")}
        out.extend(ans.values())
        for system in (PAIRWISE_SYSTEM, ARENA_SYSTEM):
            for a, b in (("sft", "dpo"), ("dpo", "sft"), ("strong", "weak")):
                for kw in ({}, {"logprobs": True, "top_logprobs": 5}):
                    choice = judge(c, system, pair_prompt(q, ans[a], ans[b]), **kw).choices[0]
                    out.append(choice.message.content)
                    out.append(json.dumps(choice.logprobs.model_dump() if choice.logprobs else None, sort_keys=True))
        single = f"[Question]\n{q}\n\n[The Start of Assistant's Answer]\n{ans['dpo']}\n[The End]"
        out.append(judge(c, SINGLE_SYSTEM, single).choices[0].message.content)
    return hashlib.sha256(json.dumps(out).encode()).hexdigest()


# Computed with the server as it was before answer styles and judge profiles existed (commit 479fc34).
GOLDEN_TRANSCRIPT = "40a2ce2e7af5ab9c22930ba27fbe0ac00ff1a6075b5bd5a52b6f7c84a7f9b82c"


def pair_probs(c: openai.OpenAI, model: str, prompt: str) -> dict[str, float]:
    resp = c.chat.completions.create(model=model, logprobs=True, top_logprobs=5, messages=[
        {"role": "system", "content": PAIRWISE_SYSTEM}, user(prompt)])
    content = resp.choices[0].logprobs.content if resp.choices[0].logprobs else None
    assert content is not None
    return {t.token: math.exp(t.logprob) for t in content[1].top_logprobs if t.token in {"A", "B", "C"}}


def verdict(c: openai.OpenAI, model: str, system: str, prompt: str) -> str:
    content = c.chat.completions.create(model=model, messages=[
        {"role": "system", "content": system}, user(prompt)]).choices[0].message.content or ""
    return (ARENA_VERDICT if system is ARENA_SYSTEM else PAIR_VERDICT).findall(content)[-1]


def test_doctests() -> None:
    assert doctest.testmod(fake_server).failed == 0


def test_profile_less_judge_and_plain_answers_are_byte_identical(client: openai.OpenAI) -> None:
    assert transcript_digest(client) == GOLDEN_TRANSCRIPT
    # Styles for another model and profiles for other judges leave "judge" and the plain models as they were.
    with FakeOpenAIServer(strengths=STRENGTHS, lengths={"dpo": 12}, seed=1, styles={"twin": "markdown"},
                          judge_profiles={"biased": JudgeProfile(position_bias=3.0), "noisy": JudgeProfile(noise=1)}
                          ) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        assert transcript_digest(c) == GOLDEN_TRANSCRIPT
        assert {m.id for m in c.models.list()} == set(STRENGTHS) | {"judge", "biased", "noisy"}


def test_markdown_answers_carry_the_plain_answers_words() -> None:
    with FakeOpenAIServer(strengths=STRENGTHS, styles={"twin": "markdown"}, lengths={"twin": 30, "sft": 30}) as md, \
            FakeOpenAIServer(strengths=STRENGTHS, lengths={"twin": 30}) as plain:
        c_md = openai.OpenAI(base_url=md.base_url, api_key="x", max_retries=0)
        c_plain = openai.OpenAI(base_url=plain.base_url, api_key="x", max_retries=0)
        item_counts = set()
        for i in range(12):
            q = f"style question {i}"
            text, plain_text = answer(c_md, "twin", q), answer(c_plain, "twin", q)
            assert re.findall(r"\w+", text) == re.findall(r"\w+", plain_text)  # same words, same order
            lines = text.split("\n")
            assert lines[0] == "«twin»" and lines[1].startswith("## ") and len(lines[1].split()) == 4
            items = [ln for ln in lines if ln.startswith("- ")]
            item_counts.add(len(items))
            assert len(re.findall(r"\*\*[^*]+\*\*", text)) == 1
            assert answer(c_md, "sft", q).startswith("«sft» ")  # other models stay plain
        assert item_counts <= {2, 3, 4} and len(item_counts) > 1
        with pytest.raises(ValueError, match="styles"):
            FakeOpenAIServer(styles={"twin": "html"})


def test_style_judge_prefers_markdown_then_length_in_both_orders() -> None:
    profiles = {"style": JudgeProfile(style_share=1.0, tie_rate=0.0)}
    with FakeOpenAIServer(strengths={"sft": 0.0, "fancy": 0.0, "long": 0.0, "strong": 2.0, "weak": -2.0},
                          styles={"fancy": "markdown"}, lengths={"long": 80}, judge_profiles=profiles) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        for i in range(15):
            q = f"style judge {i}"
            sft, fancy, long = answer(c, "sft", q), answer(c, "fancy", q), answer(c, "long", q)
            for system in (PAIRWISE_SYSTEM, ARENA_SYSTEM):
                assert verdict(c, "style", system, pair_prompt(q, fancy, sft)) in {"A", "A>B"}
                assert verdict(c, "style", system, pair_prompt(q, sft, fancy)) in {"B", "B>A"}
                assert verdict(c, "style", system, pair_prompt(q, long, sft)) in {"A", "A>B"}  # equal markdown
                assert verdict(c, "style", system, pair_prompt(q, sft, long)) in {"B", "B>A"}
        # Logprobs carry the style verdict's certainty; the profile-less judge on the same server ignores style.
        assert pair_probs(c, "style", pair_prompt("q", answer(c, "sft", "q"), answer(c, "fancy", "q"))) == \
            pytest.approx({"A": 0.0, "B": 1.0, "C": 0.0}, abs=1e-12)
        assert pair_probs(c, "judge", pair_prompt("q", answer(c, "sft", "q"), answer(c, "fancy", "q"))) == \
            pytest.approx({"A": 0.45, "B": 0.45, "C": 0.1})
        # Multi-turn: the user's messages carry markdown, which is not the answers'; equal style falls back to
        # strength, so the probabilities are exactly the strength rule's in both orders.
        q1, q2 = "## Plan\n- one\n- two\n**please**", "- and then\n# more"
        s1, s2 = answer(c, "strong", q1), answer(c, "strong", q2)
        w1, w2 = answer(c, "weak", q1), answer(c, "weak", q2)
        p_strong = 1 / (1 + math.exp(-4.0))
        fwd = pair_probs(c, "style", MULTI_TURN.format(q1=q1, q2=q2, a1=s1, a2=s2, b1=w1, b2=w2))
        rev = pair_probs(c, "style", MULTI_TURN.format(q1=q1, q2=q2, a1=w1, a2=w2, b1=s1, b2=s2))
        assert fwd["A"] == pytest.approx(p_strong) and rev["B"] == pytest.approx(p_strong)


def test_position_biased_judge_picks_a_nearly_always() -> None:
    profiles = {"biased": JudgeProfile(position_bias=6.0, tie_rate=0.0)}
    with FakeOpenAIServer(strengths=STRENGTHS, judge_profiles=profiles) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        first = plain_first = total = 0
        for i in range(30):
            q = f"bias {i}"
            s, w = answer(c, "strong", q), answer(c, "weak", q)
            for a, b in ((s, w), (w, s)):
                first += verdict(c, "biased", PAIRWISE_SYSTEM, pair_prompt(q, a, b)) == "A"
                plain_first += verdict(c, "judge", PAIRWISE_SYSTEM, pair_prompt(q, a, b)) == "A"
                total += 1
        assert first / total > 0.9  # sigmoid(6 - 4) = 0.88 even with the weak answer first
        assert 0.3 < plain_first / total < 0.7  # the profile-less judge on the same server follows strength
        probs = pair_probs(c, "biased", pair_prompt("q", answer(c, "weak", "q"), answer(c, "strong", "q")))
        assert probs["A"] == pytest.approx(1 / (1 + math.exp(-2.0))) and probs["C"] == 0


def test_noisy_judge_verdicts_do_not_depend_on_strength() -> None:
    profiles = {"noisy": JudgeProfile(noise=1.0), "noisy2": JudgeProfile(noise=1.0)}
    with FakeOpenAIServer(strengths=STRENGTHS, judge_profiles=profiles) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        strong_wins: Counter[str] = Counter()
        sequences: dict[str, list[str]] = {"noisy": [], "noisy2": []}
        for i in range(40):
            q = f"noise {i}"
            s, w = answer(c, "strong", q), answer(c, "weak", q)
            for name, seq in sequences.items():
                fwd, rev = (verdict(c, name, PAIRWISE_SYSTEM, pair_prompt(q, s, w)),
                            verdict(c, name, PAIRWISE_SYSTEM, pair_prompt(q, w, s)))
                seq += [fwd, rev]
                if name == "noisy":
                    strong_wins[fwd == "A"] += 1
                    strong_wins[rev == "B"] += 1
        assert 0.15 < strong_wins[True] / 80 < 0.5  # a third, not the 0.88 a strength-following judge gives
        assert sequences["noisy"] != sequences["noisy2"]  # judges draw apart (the draw hashes the judge name)
        for a, b in (("strong", "weak"), ("weak", "strong")):
            probs = pair_probs(c, "noisy", pair_prompt("q", answer(c, a, "q"), answer(c, b, "q")))
            assert probs == pytest.approx({"A": 1 / 3, "B": 1 / 3, "C": 1 / 3})
        arena = c.chat.completions.create(model="noisy", logprobs=True, top_logprobs=5, messages=[
            {"role": "system", "content": ARENA_SYSTEM}, user(pair_prompt("q", answer(c, "strong", "q"),
                                                                            answer(c, "weak", "q")))])
        lp = arena.choices[0].logprobs
        assert lp is not None and lp.content is not None
        probs = {t.token: math.exp(t.logprob) for t in lp.content[1].top_logprobs}
        assert probs["A>>B"] == pytest.approx(1 / 3) and probs["A=B"] == pytest.approx(1 / 3)
        assert probs["B>>A"] == pytest.approx(1 / 3)


def test_judge_profile_mixture_and_validation() -> None:
    profile = JudgeProfile(position_bias=1.0, noise=0.3, style_share=0.2, tie_rate=0.2)
    with FakeOpenAIServer(strengths=STRENGTHS, styles={"twin": "markdown"}, judge_profiles={"mixed": profile}) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        probs = pair_probs(c, "mixed", pair_prompt("q", answer(c, "sft", "q"), answer(c, "twin", "q")))
    s_a = 1 / (1 + math.exp(-1.0)) * 0.8  # strength part: equal strengths, bias 1, tie 0.2
    assert probs == pytest.approx({"A": 0.5 * s_a + 0.1, "C": 0.5 * 0.2 + 0.1, "B": 0.5 * (0.8 - s_a) + 0.1 + 0.2})
    assert JudgeProfile.parse("position_bias:3, noise:0.25,tie_rate:none") == JudgeProfile(3.0, 0.25, 0.0, None)
    for bad in ("noise=0.5", "speed:1", "noise:lots"):
        with pytest.raises(ValueError, match="judge profile part"):
            JudgeProfile.parse(bad)
    with pytest.raises(ValueError, match="sum to at most 1"):
        JudgeProfile(noise=0.6, style_share=0.5)
    with pytest.raises(ValueError, match="tie_rate"):
        JudgeProfile(tie_rate=1.5)


def test_cli_styles_and_judge_profiles() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "evalsuite.testing.fake_server", "--port", "0", "--strength", "sft=0",
           "--strength", "fancy=0", "--style", "fancy=markdown", "--judge-profile",
           "style=style_share:1,tie_rate:0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        m = re.fullmatch(r"READY (http://\S+/v1)\n", line)
        assert m, line
        c = openai.OpenAI(base_url=m.group(1), api_key="x", max_retries=0)
        assert {x.id for x in c.models.list()} == {"sft", "fancy", "judge", "style"}
        fancy, sft = answer(c, "fancy", "cli"), answer(c, "sft", "cli")
        assert fancy.startswith("«fancy»\n## ")
        assert verdict(c, "style", PAIRWISE_SYSTEM, pair_prompt("cli", sft, fancy)) == "B"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    bad = subprocess.run([*cmd[:5], "--judge-profile", "x=noise:2"], capture_output=True, text=True, env=env,
                         timeout=30)
    assert bad.returncode != 0 and "noise and style_share" in bad.stderr and bad.stderr.count("\n") == 1
