"""Labeling cost and accuracy: judge calls per usable pair for K = 4 and K = 8 with all pairs vs the pivot schedule,
and the share of written pairs whose chosen sample really is the better one.

Samples with known qualities: each prompt gets K answers, sample k of prompt p written as ``«pPkK» words...`` and
stored as imported answers (so no policy is asked); the fake server's scripted judge knows each marker's strength
(qualities drawn N(0, spread^2) on the logit scale, seeded) and picks a verdict with P(first) = sigmoid(s_first - s_second +
position_bias) * (1 - tie_rate). Everything else is the real ``evalsuite.pipeline.label.label``: both orders of every scheduled
pair through the openai backend, swap reconciliation, the checklist, the run store.

    .venv/bin/python scripts/bench_labeling.py [--prompts 150] [--spread 1] [--tie-rate 0.1] [--position-bias 0.3] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import time
from pathlib import Path

from rich.console import Console

from evalsuite.config import ModelSpec
from evalsuite.pipeline.label import LabelOptions, label, sample_name
from evalsuite.progress import StageProgress
from evalsuite.records import Answer, Question
from evalsuite.store import RunStore
from evalsuite.testing.fake_server import FakeOpenAIServer

QUIET = Console(file=io.StringIO())  # the stage summaries would interleave with the table
WORDS = ("alpha beta gamma delta river stone cloud light north south east west paper glass metal wood field "
         "garden window bridge market lamp").split()


def build(n_prompts: int, k: int, seed: int, spread: float) -> tuple[list[Question], dict[str, float], dict[str, dict[str, Answer]]]:
    rng = random.Random(seed * 1000 + k)
    prompts = [Question(f"p{i}", "general", (f"Prompt {i}: write two sentences about {rng.choice(WORDS)}.",))
               for i in range(n_prompts)]
    strengths: dict[str, float] = {}
    answers: dict[str, dict[str, Answer]] = {}
    for q in prompts:
        for j in range(k):
            marker = f"{q.question_id}k{j}"
            strengths[marker] = rng.gauss(0.0, spread)
            text = f"«{marker}» " + " ".join(rng.choice(WORDS) for _ in range(12)) + "."
            answers.setdefault(sample_name("pol", j), {})[q.question_id] = Answer(
                sample_name("pol", j), q.question_id, (text,), backend="import")
    return prompts, strengths, answers


def run(k: int, schedule: str, args: argparse.Namespace, root: Path) -> dict[str, float]:
    prompts, strengths, answers = build(args.prompts, k, args.seed, args.spread)
    with FakeOpenAIServer(strengths=strengths, tie_rate=args.tie_rate, position_bias=args.position_bias,
                          seed=args.seed) as srv:
        policy = ModelSpec(name="pol", backend="openai", base_url=srv.base_url, model="pol")
        judge = ModelSpec(name="judge", backend="openai", base_url=srv.base_url, model="judge", max_tokens=64,
                          temperature=0.0, concurrency=64)
        out = root / f"pairs-k{k}-{schedule}.jsonl"
        with RunStore(root / f"store-k{k}-{schedule}") as store:
            store.put_questions(prompts)
            store.put_answers([a for by_q in answers.values() for a in by_q.values()])
            t0 = time.perf_counter()
            report = label(prompts, policy, judge, store, out, LabelOptions(samples=k, schedule=schedule),
                           progress=lambda t, n: StageProgress(t, n, enabled=False, console=QUIET))
            seconds = time.perf_counter() - t0
        calls = srv.stats()["total_requests"]
    import json

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    correct = best_worst = 0
    for row in rows:
        qid = row["prompt_id"]
        s = [strengths[f"{qid}k{j}"] for j in range(k)]
        c, r = s[row["chosen_sample"]], s[row["rejected_sample"]]
        correct += c > r
        best_worst += c == max(s) and r == min(s)
    n = len(rows)
    return {"calls": calls, "kept": n, "prompts": len(prompts), "calls_per_pair": calls / n if n else float("nan"),
            "correct": correct / n if n else float("nan"), "best_worst": best_worst / n if n else float("nan"),
            "consistency": report.consistency or 0.0, "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=150)
    p.add_argument("--tie-rate", type=float, default=0.1)
    p.add_argument("--position-bias", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spread", type=float, default=1.0, help="SD of the sample qualities (logit scale)")
    args = p.parse_args()
    print(f"scripted judge: qualities N(0, {args.spread:g}^2) on the logit scale, tie rate {args.tie_rate}, position bias "
          f"{args.position_bias}; {args.prompts} prompts; seed {args.seed}")
    print(f"{'K':>2} {'schedule':<10} {'judge calls':>11} {'usable pairs':>13} {'calls/pair':>10} "
          f"{'chosen better':>13} {'best & worst':>12} {'consistency':>11} {'seconds':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for k in (4, 8):
            for schedule in ("all-pairs", "pivot"):
                r = run(k, schedule, args, Path(tmp))
                print(f"{k:>2} {schedule:<10} {r['calls']:>11.0f} {r['kept']:>6.0f}/{r['prompts']:<6.0f} "
                      f"{r['calls_per_pair']:>10.1f} {100 * r['correct']:>12.1f}% {100 * r['best_worst']:>11.1f}% "
                      f"{100 * r['consistency']:>10.1f}% {r['seconds']:>8.1f}")


if __name__ == "__main__":
    main()
