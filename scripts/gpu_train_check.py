"""GPU check for the training and local-generation paths: a few LoRA steps of DPO, IPO, SimPO and KTO, then ``hf``
generation, then vLLM (generation for a base and a LoRA adapter in one engine, and logprob judge calls), on a
~100M-parameter random-weight Qwen2 built on the machine (nothing is downloaded).

Prints training tokens/s per variant and generation tokens/s (batched vs one at a time) with peak GPU memory.
Trains through ``evalsuite.trainers.train_variant`` (DPOTrainer with loss_type "sigmoid"/"ipo",
trl.experimental.cpo.CPOTrainer with loss_type "simpo" and cpo_alpha 0, KTOTrainer; LoRA through PEFT), so it checks
the project's own trainer layer on a GPU: bf16, activation checkpointing, LoRA, metrics and the manifest. The model is random and the data synthetic: losses are meaningless, speed is not.

    python scripts/gpu_train_check.py [--steps 20] [--batch-size 8] [--variants dpo,ipo,simpo,kto]
                                      [--sections train,hf,vllm] [--vllm-python PATH]

The vLLM section runs evalsuite's ``vllm`` backend (worker subprocess) under whatever vLLM the machine has: the
interpreter given by ``--vllm-python`` or ``$EVALSUITE_VLLM_PYTHON``, else ``.venv-vllm/bin/python``, else this
interpreter, else ``python3`` on PATH, the first that imports ``vllm``. It says which one it used, and skips the
section (saying so) when none does: vLLM's CUDA wheel does not travel with the project.

Without CUDA it exits with code 2 and says so. ``--cpu-smoke`` runs the same code on the CPU with the tiny model and
2 steps, only to check that the TRL/PEFT calls work; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # CPOTrainer lives in trl.experimental

BIG = {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 2560}  # ~100M parameters
TOPICS = ("binary search", "photosynthesis", "compound interest", "the Monty Hall problem", "gradient descent",
          "a haiku about rain", "the French revolution", "a polite refusal email")


def _reply(rng: random.Random, good: bool) -> str:
    words = ("clear", "step", "because", "therefore", "example", "check", "answer", "first", "then", "so")
    n = rng.randint(40, 90) if good else rng.randint(10, 40)
    return " ".join(rng.choice(words) for _ in range(n)) + ("." if good else "")


def preference_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Conversational pairs (TRL's prompt / chosen / rejected message-list format)."""
    rng = random.Random(seed)
    return [
        {
            "prompt": [{"role": "user", "content": f"Explain {rng.choice(TOPICS)} in detail, please."}],
            "chosen": [{"role": "assistant", "content": _reply(rng, True)}],
            "rejected": [{"role": "assistant", "content": _reply(rng, False)}],
        }
        for _ in range(n)
    ]


def unpaired_rows(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """KTO's unpaired format: each pair becomes one desirable and one undesirable example."""
    rows = []
    for pair in pairs:
        rows.append({"prompt": pair["prompt"], "completion": pair["chosen"], "label": True})
        rows.append({"prompt": pair["prompt"], "completion": pair["rejected"], "label": False})
    return rows


def tokens_per_example(tokenizer: Any, rows: list[dict[str, Any]], keys: tuple[str, ...]) -> float:
    """Mean tokens the policy reads per training example (prompt + each reply), from the chat template."""
    total = 0
    for row in rows:
        for key in keys:
            text = tokenizer.apply_chat_template(row["prompt"] + row[key], tokenize=False)
            total += len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return total / len(rows)


def run_variant(variant: str, base: Path, tokenizer: Any, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Train through evalsuite's own trainer layer (evalsuite.trainers.train_variant: TRL + PEFT underneath), so this
    check covers the project's bf16, activation-checkpointing and LoRA settings, not just the libraries."""
    import json

    import torch

    from evalsuite.trainers import TrainOptions, read_metrics, train_variant

    cuda = torch.cuda.is_available()
    pairs = preference_rows(args.steps * args.batch_size, seed=1)
    data = out / f"{variant}-prefs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    rows, keys = (unpaired_rows(pairs), ("completion",)) if variant == "kto" else (pairs, ("chosen", "rejected"))
    options = TrainOptions(lr=5e-5, max_steps=args.steps, batch_size=args.batch_size, max_length=args.max_length,
                           lora=True, lora_r=16, lora_alpha=32, lora_dropout=0.0, logging_steps=1, seed=0,
                           dtype=args.dtype)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    started = time.perf_counter()
    (entry,) = train_variant(variant, model=str(base), data=str(data), options=options, out_dir=out / "ckpt",
                             manifest=out / "ckpt" / "manifest.json", progress=False)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - started  # includes model loading and saving the adapter
    losses = [m["loss"] for m in read_metrics(Path(entry.path) / "metrics.jsonl") if m.get("loss") is not None]
    result = {
        "wall_s": wall,
        "tokens_per_s": args.steps * args.batch_size * tokens_per_example(tokenizer, rows, keys) / wall,
        "samples_per_s": args.steps * args.batch_size / wall,
        "first_loss": losses[0] if losses else float("nan"),
        "last_loss": losses[-1] if losses else float("nan"),
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0,
        "dtype": entry.extra.get("dtype", "?"),  # the base's weights as trained (auto: bf16 on a bf16 GPU)
    }
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def time_generation(base: Path, args: argparse.Namespace) -> None:
    import torch

    from evalsuite.backends import ChatRequest, NullProgress
    from evalsuite.backends.hf import HFBackend
    from evalsuite.config import ModelSpec

    prompts = [f"Explain {TOPICS[i % len(TOPICS)]} to reader number {i}." for i in range(args.gen_prompts)]
    requests = [ChatRequest(key=f"g{i}", messages=({"role": "user", "content": p},), max_tokens=args.new_tokens)
                for i, p in enumerate(prompts)]
    print(f"\nhf generation: {len(requests)} prompts x {args.new_tokens} new tokens (min = max), greedy, dtype auto")
    for batch_size in (1, 16, 64):
        if batch_size == 1 and args.cpu_smoke is False:
            subset = requests[:16]  # one at a time is slow; 16 prompts are enough for its rate
        else:
            subset = requests
        spec = ModelSpec(name="gen", backend="hf", model=str(base), batch_size=batch_size,
                         extra={"min_new_tokens": args.new_tokens})
        backend = HFBackend.from_spec(spec)
        backend.run(subset[:1], lambda r, res: None, NullProgress())  # warm-up: load, CUDA kernels
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        counts: list[int] = []
        started = time.perf_counter()
        backend.run(subset, lambda r, res: counts.append(res.completion_tokens), NullProgress())
        wall = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
        print(f"  batch {batch_size:>3}: {len(subset):>3} prompts, {sum(counts):>6} tokens in {wall:7.2f} s = "
              f"{sum(counts) / wall:9.1f} tokens/s, peak GPU {peak:7.0f} MiB")
        del backend
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def find_vllm(explicit: str | None) -> tuple[str, str] | None:
    """(interpreter, vLLM version) of the first candidate that imports vllm, or None."""
    root = Path(__file__).resolve().parents[1]
    candidates = [explicit, os.environ.get("EVALSUITE_VLLM_PYTHON"), str(root / ".venv-vllm" / "bin" / "python"),
                  sys.executable, shutil.which("python3")]
    seen: set[str] = set()
    for python in candidates:
        if not python or python in seen or not Path(python).exists():
            continue
        seen.add(python)
        probe = subprocess.run([python, "-c", "import vllm; print(vllm.__version__)"], capture_output=True, text=True,
                               timeout=600)
        if probe.returncode == 0:
            return python, probe.stdout.strip().splitlines()[-1]
    return None


def time_vllm(base: Path, args: argparse.Namespace, workdir: Path) -> None:
    """vLLM through evalsuite's own backend: base + LoRA adapter generation in one engine, then logprob verdicts."""
    import torch

    from evalsuite.backends import ChatRequest, NullProgress
    from evalsuite.backends.vllm import VLLMBackend
    from evalsuite.config import ModelSpec
    from evalsuite.demo.tiny import build_tiny_adapter

    found = find_vllm(args.vllm_python)
    if found is None:
        print("\nvLLM: no interpreter on this machine imports vllm (tried --vllm-python, $EVALSUITE_VLLM_PYTHON, "
              ".venv-vllm, this python, python3): vLLM section skipped.")
        return
    python, version = found
    print(f"\nvLLM {version} found under {python}; through evalsuite's vllm backend:")
    adapter = build_tiny_adapter(base, workdir / "adapter", rank=16)
    engine: dict[str, Any] = {"max_model_len": 2048, "enforce_eager": True}
    if torch.cuda.is_available():
        engine["gpu_memory_utilization"] = 0.4
    else:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    spec = ModelSpec(name="vllm", backend="vllm", model=str(base), python=python, engine=engine, enable_lora=True,
                     max_lora_rank=16, temperature=0.0, max_tokens=args.new_tokens)
    prompts = [f"Explain {TOPICS[i % len(TOPICS)]} to reader number {i}." for i in range(args.gen_prompts)]
    requests = [ChatRequest(key=f"v{i}-{which}", messages=({"role": "user", "content": p},), max_tokens=args.new_tokens,
                            meta={"adapter": str(adapter) if which == "lora" else None})
                for i, p in enumerate(prompts) for which in ("base", "lora")]
    judge = [ChatRequest(key=f"j{i}", messages=({"role": "user", "content": f"Which is better, A or B, for {p} "
                                                 "Answer [[A]], [[B]] or [[C]]."},), max_tokens=1,
                         logprob_choices=("A", "B", "C"))
             for i, p in enumerate(prompts)]
    backend = VLLMBackend.from_spec(spec)
    try:
        started = time.perf_counter()
        backend.run(requests[:1], lambda r, res: None, NullProgress())  # engine load + warm-up
        print(f"  engine load + first call: {time.perf_counter() - started:.1f} s")
        results: list[Any] = []
        started = time.perf_counter()
        backend.run(requests, lambda r, res: results.append(res), NullProgress())
        wall = time.perf_counter() - started
        tokens, errors = sum(r.completion_tokens for r in results), sum(r.error is not None for r in results)
        print(f"  generation, base + adapter in one batch: {len(requests)} prompts, {tokens} tokens in {wall:.2f} s = "
              f"{tokens / wall:.1f} tokens/s, {errors} errors")
        verdicts: list[Any] = []
        started = time.perf_counter()
        backend.run(judge, lambda r, res: verdicts.append(res), NullProgress())
        wall = time.perf_counter() - started
        with_probs = sum(bool(r.choice_probs) for r in verdicts)
        print(f"  judge, logprob verdicts: {len(judge)} calls in {wall:.2f} s = {len(judge) / wall:.1f} calls/s, "
              f"{with_probs} with verdict probabilities")
    finally:
        backend.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--variants", default="dpo,ipo,simpo,kto")
    parser.add_argument("--gen-prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp16", "fp32"),
                        help="weights as loaded for training (evalsuite train --dtype)")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model, 2 steps, on CPU: API check only")
    parser.add_argument("--sections", default="train,hf,vllm", help="which parts to run (comma-separated)")
    parser.add_argument("--vllm-python", default=None, help="interpreter with vLLM for the vLLM section")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("gpu_train_check: no CUDA device is available (torch.cuda.is_available() is False); "
              "run it on a GPU machine, or pass --cpu-smoke to only check the code path.", file=sys.stderr)
        return 2
    if args.cpu_smoke:
        args.steps, args.batch_size, args.gen_prompts, args.new_tokens = 2, 2, 4, 4

    from transformers import AutoModelForCausalLM

    from evalsuite.demo.tiny import build_tiny_model, build_tiny_vllm_model, load_tokenizer

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (smoke run, figures meaningless)"
    print(f"device: {device}; torch {torch.__version__}")
    sections = {x.strip() for x in args.sections.split(",") if x.strip()}
    with tempfile.TemporaryDirectory(prefix="evalsuite-gpu-check-") as tmp:
        base = build_tiny_model(Path(tmp) / "base", **({} if args.cpu_smoke else BIG))
        tokenizer = load_tokenizer(base)
        params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(base).parameters())
        print(f"model: random-weight Qwen2, {params:,} parameters; tokenizer vocab {len(tokenizer)}")
        if "vllm" in sections and args.cpu_smoke:
            # vLLM's CPU attention needs head_dim 64; the ~100M model has it, the smoke run's tiny one does not
            vllm_base = build_tiny_vllm_model(Path(tmp) / "vllm", with_adapter=False).base
        else:
            vllm_base = base
        if "train" in sections:
            train(base, tokenizer, args, Path(tmp))
        if "hf" in sections:
            time_generation(base, args)
        if "vllm" in sections:
            time_vllm(vllm_base, args, Path(tmp))
    return 0


def train(base: Path, tokenizer: Any, args: argparse.Namespace, workdir: Path) -> None:
    print(f"training: LoRA r=16 all-linear, {args.steps} steps x batch {args.batch_size}, "
          f"max_length {args.max_length}")
    print(f"{'variant':8} {'wall s':>8} {'tokens/s':>10} {'samples/s':>10} {'loss first':>11} {'loss last':>10} "
          f"{'peak GPU MiB':>13} {'weights':>8}")
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        r = run_variant(variant, base, tokenizer, args, workdir)
        print(f"{variant:8} {r['wall_s']:>8.2f} {r['tokens_per_s']:>10.0f} {r['samples_per_s']:>10.2f} "
              f"{r['first_loss']:>11.4f} {r['last_loss']:>10.4f} {r['peak_mib']:>13.0f} {r['dtype']:>8}", flush=True)
    print("tokens/s counts the tokens of each example the policy reads (prompt + chosen + rejected for pairs, "
          "prompt + completion for KTO); reference-model and KTO KL passes are extra work not counted.")


if __name__ == "__main__":
    sys.exit(main())
