"""``evalsuite demo --tiny``: the whole pipeline on tiny random-weight models, on CPU, with no network (a smoke run).

Builds a tiny random-weight base model and tokenizer, fine-tunes it into ``sft`` on bundled data, trains ``dpo`` and
``simpo`` at two betas each (LoRA), generates on a subset of the bundled benchmark with the ``hf`` backend, judges
with a local tiny judge read through verdict-token probabilities (both orders), and writes the leaderboard.
Tiny random models make the verdicts noise: the demo shows the machinery, not a result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from evalsuite._resources import demo_data_dir
from evalsuite.bench import BenchSpec
from evalsuite.config import Config, JudgingOptions, ModelSpec, resolve_models

if TYPE_CHECKING:
    from evalsuite.report.results import Results

TINY_NOTE = (
    "Demo on tiny random-weight models trained for a few steps on CPU: the judge is as tiny as the contestants, so "
    "every verdict here is noise. The figures show the pipeline working, not that any variant is better; the judge "
    "health table shows what a useless judge looks like (position consistency, first-position win share)."
)
REAL_COMMANDS = """\
Run the same pipeline on real checkpoints:
  evalsuite data check prefs.jsonl
  evalsuite train dpo   --model path/to/sft --data prefs.jsonl --grid --lora --out checkpoints
  evalsuite train simpo --model path/to/sft --data prefs.jsonl --grid --lora --out checkpoints
  # evalsuite.toml: [models.sft] backend = "vllm" (or "hf"), model = "path/to/sft"; [train] backend = "vllm";
  #                 [judge] backend = "openai", base_url = ..., model = ..., api_key_env = ...
  evalsuite compare sft dpo simpo
  evalsuite gate --baseline sft --candidate dpo --min-win-rate 0.5 --rule lower-bound"""


@dataclass(frozen=True)
class TinyDemoOptions:
    out: Path = Path("runs/demo-tiny")
    questions_per_category: int = 1
    sft_steps: int = 40
    pref_steps: int = 12
    max_new_tokens: int = 32
    seed: int = 0


def run_tiny_demo(options: TinyDemoOptions, *, say: Callable[[str], None], progress: Callable[[str, int], Any]) -> Results:
    from evalsuite.pipeline.compare import run_compare
    from evalsuite.demo.tiny import build_tiny_model
    from evalsuite.report.results import StatsOptions
    from evalsuite.trainers import TrainOptions, train_variant

    out = options.out
    ckpt = out / "checkpoints"
    manifest = ckpt / "manifest.json"
    t0 = time.perf_counter()

    def step(msg: str) -> None:
        say(f"[{time.perf_counter() - t0:6.1f}s] {msg}")

    data_dir = demo_data_dir()
    step("building a tiny Qwen2 base model and BPE tokenizer (random weights)")
    base = build_tiny_model(out / "base", hidden_size=64, num_layers=2, num_heads=4, seed=options.seed)
    judge_dir = build_tiny_model(out / "judge", hidden_size=64, num_layers=2, num_heads=4, seed=options.seed + 1)

    common = TrainOptions(batch_size=8, logging_steps=1, seed=options.seed, max_length=256)
    step(f"supervised fine-tuning -> sft ({options.sft_steps} steps on {data_dir / 'sft.jsonl'})")
    train_variant("sft", model=str(base), data=str(data_dir / "sft.jsonl"), out_dir=ckpt, manifest=manifest, progress=False,
                  options=replace(common, lr=1e-3, max_steps=options.sft_steps))
    sft_path = str(ckpt / "sft")
    for variant, betas in (("dpo", [0.1, 0.5]), ("simpo", [2.0, 5.0])):
        step(f"{variant} at beta {', '.join(f'{b:g}' for b in betas)} with LoRA ({options.pref_steps} steps each)")
        train_variant(variant, model=sft_path, data=str(data_dir / "prefs.jsonl"), betas=betas, out_dir=ckpt, manifest=manifest,
                      progress=False, options=replace(common, lr=5e-4, max_steps=options.pref_steps, lora=True, lora_r=8, lora_alpha=16))

    config = Config(
        path=None,
        bench=BenchSpec(name="mtb-style", limit=options.questions_per_category),
        models={},
        judge=ModelSpec(name="judge", backend="hf", model=str(judge_dir), verdict_mode="logprob", max_tokens=4, batch_size=8,
                        seed=options.seed, extra={"label": "tiny-judge"}),
        # strict (MT-Bench) reconciliation: a position-biased judge turns into ties and inconsistencies, not into
        # "significant" differences of a few parts per million between near-identical soft verdicts
        judging=JudgingOptions(mode="strict"),
        run_dir=out / "run",
        manifest=manifest,
        checkpoint_backend="hf",
        checkpoint_options={"max_tokens": options.max_new_tokens, "batch_size": 16, "seed": options.seed},
        seed=options.seed,
    )
    baseline = resolve_models(config, ["sft"])[0]
    candidates = resolve_models(config, ["dpo", "simpo"])
    step(f"generating and judging: {baseline.name} vs {', '.join(c.name for c in candidates)} "
         f"on {options.questions_per_category} question(s) per category, both turns, both orders")
    outcome = run_compare(config, baseline, candidates, progress=progress,
                          stats_options=StatsOptions(n_resamples=10_000, bt_rounds=1_000, seed=options.seed), note=TINY_NOTE)
    step(f"done: {outcome.leaderboard_path}")
    return outcome.results


