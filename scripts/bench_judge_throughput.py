"""Judge throughput against a local OpenAI-compatible endpoint with a fixed reply latency L and concurrency C.

Prints, per (L, C): judgments per second, the ratio to the ceiling C / L, and the client process's CPU time per
judgment, for
  - evalsuite's judge stage (async openai SDK, aiohttp transport, both orders in flight together, every call
    committed to SQLite as it lands),
  - the bare SDK loop (the same calls through the SDK's generic POST, evalsuite's call path, with nothing around
    them), to isolate evalsuite's own CPU per judgment; and the same with the typed `chat.completions.create`,
  - a thread-pool judge that runs the two orders one after the other in each worker (the way FastChat's
    `gen_judgment.py --parallel` works), with the SDK's default sync client.
The server runs in its own process (`python -m evalsuite.testing.fake_server`), so its CPU is not counted.

    python scripts/bench_judge_throughput.py                    # L = 1 s and 100 ms, C = 64, 2,048 judgments
    python scripts/bench_judge_throughput.py --latency 0.1 --judgments 4000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import evalsuite.backends.openai  # noqa: F401  (the SDK import happens at CLI start-up, not per run: keep it out of the timings)
from evalsuite.backends import NullProgress
from evalsuite.config import JudgingOptions, ModelSpec
from evalsuite.judge import plan_judge_requests, run_judge
from evalsuite.records import Answer, Question
from evalsuite.store import RunStore


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "evalsuite.testing.fake_server", "--latency", str(latency),
         "--strength", "sft=0", "--strength", "dpo=0.5", "--judge", "judge"],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        proc.kill()
        raise SystemExit(f"fake server did not start: {line!r}")
    return proc, line.split(" ", 1)[1]


def workload(n_judgments: int) -> tuple[list[Question], dict[str, dict[str, Answer]]]:
    n_q = n_judgments // 4  # 2 turns x 2 orders per question
    words = " ".join(f"w{i}" for i in range(120))  # ~a paragraph per answer, like a real reply
    questions = [Question(f"b{i:05d}", "writing", (f"Write about topic {i}.", f"Now shorten it, {i}.")) for i in range(n_q)]
    answers = {
        m: {q.question_id: Answer(m, q.question_id, (f"«{m}» {words} {q.question_id} one", f"«{m}» {words} {q.question_id} two"), backend="import")
            for q in questions}
        for m in ("sft", "dpo")
    }
    return questions, answers


def null_progress(description: str, total: int) -> Any:
    class _Ctx(NullProgress):
        def __enter__(self) -> "_Ctx":
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

    return _Ctx()


def bench_evalsuite(url: str, concurrency: int, questions: list[Question], answers: dict[str, dict[str, Answer]]) -> tuple[int, float, float]:
    judge = ModelSpec(name="judge", backend="openai", model="judge", base_url=url, concurrency=concurrency, max_tokens=256)
    with tempfile.TemporaryDirectory() as tmp, RunStore(tmp) as store:
        store.put_questions(questions)
        for m in answers:
            store.put_answers(list(answers[m].values()))
        c0, t0 = cpu_seconds(), time.perf_counter()
        summary = run_judge(judge, [("dpo", "sft")], questions, store, JudgingOptions(), progress=null_progress)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        assert len(store.judgments()) == summary.requested
    return summary.requested, wall, cpu


def planned_messages(url: str, questions: list[Question], answers: dict[str, dict[str, Answer]]) -> list[tuple[dict[str, str], ...]]:
    judge = ModelSpec(name="judge", backend="openai", model="judge", base_url=url)
    reqs, _, _ = plan_judge_requests(judge, [("dpo", "sft")], questions, answers, {}, JudgingOptions())
    return [r.messages for r in reqs]


def bench_bare_sdk(url: str, concurrency: int, messages: list[tuple[dict[str, str], ...]], *, typed: bool = False) -> tuple[int, float, float]:
    """The same calls with nothing around them: `typed` uses chat.completions.create, else the SDK's generic POST
    (evalsuite's call path), so `evalsuite - bare` is evalsuite's own CPU."""
    import openai

    async def run() -> None:
        async with openai.AsyncOpenAI(base_url=url, api_key="x", http_client=openai.DefaultAioHttpClient()) as client:
            queue: asyncio.Queue[tuple[dict[str, str], ...]] = asyncio.Queue()
            for m in messages:
                queue.put_nowait(m)

            async def worker() -> None:
                while not queue.empty():
                    m = queue.get_nowait()
                    if typed:
                        await client.chat.completions.create(model="judge", messages=list(m), temperature=0.0, max_tokens=256)
                    else:
                        body = {"model": "judge", "messages": list(m), "temperature": 0.0, "max_tokens": 256}
                        await client.post("/chat/completions", body=body, cast_to=dict)

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    c0, t0 = cpu_seconds(), time.perf_counter()
    asyncio.run(run())
    return len(messages), time.perf_counter() - t0, cpu_seconds() - c0


def bench_thread_pool(url: str, concurrency: int, messages: list[tuple[dict[str, str], ...]]) -> tuple[int, float, float]:
    import openai

    client = openai.OpenAI(base_url=url, api_key="x")
    pairs = [(messages[i], messages[i + 1]) for i in range(0, len(messages) - 1, 2)]

    def play_pair(pair: tuple[tuple[dict[str, str], ...], tuple[dict[str, str], ...]]) -> None:
        for m in pair:  # order 1, then order 2, in the same worker
            client.chat.completions.create(model="judge", messages=list(m), temperature=0.0, max_tokens=256)

    c0, t0 = cpu_seconds(), time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(play_pair, pairs))
    return 2 * len(pairs), time.perf_counter() - t0, cpu_seconds() - c0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, action="append", help="reply latency in seconds (repeatable; default 1.0 and 0.1)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--judgments", type=int, default=2048, help="a multiple of 4 x C keeps every wave full")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    latencies = args.latency or [1.0, 0.1]
    questions, answers = workload(args.judgments)
    rows: list[dict[str, Any]] = []
    for latency in latencies:
        proc, url = start_server(latency)
        try:
            messages = planned_messages(url, questions, answers)
            ceiling = args.concurrency / latency
            runs: list[tuple[str, Callable[[], tuple[int, float, float]]]] = [
                ("evalsuite", lambda: bench_evalsuite(url, args.concurrency, questions, answers)),
                ("bare SDK", lambda: bench_bare_sdk(url, args.concurrency, messages)),
                ("bare typed", lambda: bench_bare_sdk(url, args.concurrency, messages, typed=True)),
                ("thread pool", lambda: bench_thread_pool(url, args.concurrency, messages)),
            ]
            for name, fn in runs:
                n, wall, cpu = fn()
                rows.append({"judge": name, "latency_s": latency, "concurrency": args.concurrency, "judgments": n,
                             "per_s": n / wall, "of_ceiling": n / wall / ceiling, "cpu_ms_per_judgment": 1000 * cpu / n})
        finally:
            proc.terminate()
            proc.wait()

    print(f"{'judge':<12} {'L (s)':>6} {'C':>4} {'n':>6} {'judg/s':>8} {'of C/L':>7} {'CPU ms/judg':>12}")
    for r in rows:
        print(f"{r['judge']:<12} {r['latency_s']:>6g} {r['concurrency']:>4} {r['judgments']:>6} {r['per_s']:>8.1f} "
              f"{r['of_ceiling']:>7.3f} {r['cpu_ms_per_judgment']:>12.3f}")
    for latency in latencies:
        by = {r["judge"]: r for r in rows if r["latency_s"] == latency}
        own = by["evalsuite"]["cpu_ms_per_judgment"] - by["bare SDK"]["cpu_ms_per_judgment"]
        print(f"L = {latency:g} s: evalsuite / thread pool = {by['evalsuite']['per_s'] / by['thread pool']['per_s']:.2f}x; "
              f"evalsuite's own CPU per judgment on top of the SDK's = {own:.3f} ms")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
