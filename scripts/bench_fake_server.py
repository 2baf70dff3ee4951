"""Throughput self-check of the fake OpenAI server, measured alone (raw aiohttp client, not the SDK).

Starts ``python -m evalsuite.testing.fake_server`` as a subprocess (latency 0.1 s), fires N chat requests at
concurrency C, and prints requests/s and the server process's CPU seconds per request. On a machine with >= 2
cores the server is pinned to one core and this client to another, matching the budget the benchmarks assume
(>= 800 requests/s with 100 ms latency on one server core).

    python scripts/bench_fake_server.py [--requests 3000] [--concurrency 128] [--latency 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import aiohttp


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from psutil when installed, else /proc/PID/stat (Linux)."""
    try:
        import psutil
    except ImportError:
        with open(f"/proc/{pid}/stat") as f:
            # The command name (field 2) may contain spaces, so split after its closing parenthesis.
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # fields 14 and 15 of stat, 0-based after ")"
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def _fire(base_url: str, n: int, concurrency: int) -> tuple[float, int]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    failures = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            # Distinct prompts so every request is a distinct body, as in a real run.
            payload = {"model": "sft" if i % 2 else "dpo",
                       "messages": [{"role": "user", "content": f"Question {i}: explain topic {i % 97}."}]}
            async with session.post(f"{base_url}/chat/completions", json=payload) as resp:
                await resp.read()
                if resp.status != 200:
                    failures += 1

    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm the connection pool so connection setup is not charged to the measured window.
        await asyncio.gather(*(session.get(f"{base_url}/models") for _ in range(concurrency)))
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return time.perf_counter() - t0, failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--latency", type=float, default=0.1)
    args = ap.parse_args(argv)

    pin = hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2
    cores = sorted(os.sched_getaffinity(0)) if pin else []
    cmd = [sys.executable, "-m", "evalsuite.testing.fake_server", "--port", "0", "--latency", str(args.latency),
           "--strength", "sft=0", "--strength", "dpo=0.5", "--judge", "judge"]
    # Run from the repository root's import path so the script works from any directory without an install.
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("READY "):
            raise SystemExit(f"server did not start: {line!r}")
        base_url = line.split()[1]
        if pin:
            os.sched_setaffinity(proc.pid, {cores[0]})
            os.sched_setaffinity(0, {cores[1]})
        cpu0, client_cpu0 = _cpu_seconds(proc.pid), time.process_time()
        elapsed, failures = asyncio.run(_fire(base_url, args.requests, args.concurrency))
        cpu, client_cpu = _cpu_seconds(proc.pid) - cpu0, time.process_time() - client_cpu0
        ideal = args.concurrency / args.latency if args.latency > 0 else float("inf")
        result = {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "latency_s": args.latency,
            "failures": failures,
            "elapsed_s": round(elapsed, 3),
            "requests_per_s": round(args.requests / elapsed, 1),
            "ideal_requests_per_s": round(ideal, 1),
            "server_cpu_s": round(cpu, 3),
            "server_cpu_ms_per_request": round(1000 * cpu / args.requests, 4),
            # Share of one core the server used; 1 / cpu-per-request is what that core could serve if saturated.
            "server_core_busy_share": round(cpu / elapsed, 3),
            "server_capacity_requests_per_s_est": round(args.requests / cpu, 0) if cpu > 0 else None,
            # If the client's core is saturated, requests/s measures the client, not the server.
            "client_cpu_ms_per_request": round(1000 * client_cpu / args.requests, 4),
            "pinned": f"server->cpu{cores[0]}, client->cpu{cores[1]}" if pin else "no (fewer than 2 cores)",
        }
        print(json.dumps(result, indent=2))
        return 1 if failures else 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
