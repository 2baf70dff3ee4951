"""Online DPO with evalsuite's judge as the reward: TRL's ``OnlineDPOTrainer`` samples two completions per prompt
from the policy as it trains, and :class:`JudgeReward` labels each pair by asking the configured judge in **both
orders** and reconciling them (the project's swap rule, ``judge/swap.py``) — position bias cannot pick the chosen
completion.

The reward contract (TRL 1.16, ``trl.experimental.online_dpo``): the trainer calls ``reward(prompts=2 * prompts,
completions=..., completion_ids=..., **kwargs)`` with the first completion of every prompt in the first half and the
second in the second half, and takes the completion with the higher reward as chosen (the first on a tie).
:class:`JudgeReward` returns X's reconciled score for the first (1 win, 0.5 tie or inconsistent, 0 loss; soft with
``average`` mode or log-prob verdicts) and one minus it for the second; ``None`` (TRL: NaN, no preference) when a call
failed.

Every judge call is committed to a run store beside the checkpoint (``<run>/judge/``), keyed like any other judge call,
so a repeated (prompt, pair) is never asked twice and every label stays inspectable. Checkpoint, ``metrics.jsonl``
(stable names) and manifest entry follow the other variants' conventions (``_train.py``). torch, transformers and TRL
load inside :func:`train_online_dpo` only.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from evalsuite.config import JudgingOptions, ModelSpec
from evalsuite.errors import InputError
from evalsuite.manifest import DEFAULT_MANIFEST_NAME, CheckpointEntry, checkpoint_name, upsert_entry, utc_now
from evalsuite.records import Answer, Question
from evalsuite.trainers._distributed import check_launch, shard_recorder, wait_for_ranks, world_record
from evalsuite.trainers._metrics import TRL_METRIC_NAMES, metrics_writer, read_metrics
from evalsuite.trainers._runtime import (
    DTYPES,
    TrainOptions,
    base_dtype,
    cast_saved_weights,
    check_model,
    common_args,
    device_dtype,
    free_memory,
    load_tokenizer,
    local_or_id,
    peft_config,
    quiet_training_output,
    stored_dtype,
    training_progress,
)
from evalsuite.trainers._variants import VariantSpec, resolve_betas

# OnlineDPOTrainer's log keys -> the stable metric names of metrics.jsonl: the offline trainers' map, with the KL
# under its online key and the judge's scores added.
ONLINE_METRIC_NAMES: dict[str, str] = {
    **{key: name for key, name in TRL_METRIC_NAMES.items() if key != "kl"},
    "objective/kl": "kl",
    "objective/scores_margin": "judge_margin",  # reward of chosen minus rejected, as the judge scored them
    "objective/scores": "judge_score",
}
DEFAULT_MAX_NEW_TOKENS = 64


def _text(value: Any) -> str:
    """A prompt or completion as text: a string, or the content of the last message of a conversation."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))
    return str(value)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class JudgeReward:
    """TRL reward callable backed by evalsuite's judge: each prompt's two completions judged in both orders."""

    def __init__(self, judge: ModelSpec, store_dir: str | Path, judging: JudgingOptions | None = None,
                 backend: Any = None) -> None:
        from evalsuite.backends import make_backend
        from evalsuite.judge import judge_label
        from evalsuite.store import RunStore

        self.__name__ = "evalsuite_judge"  # TRL names each reward function in its logs
        self.judge = judge
        self.judging = judging or JudgingOptions()
        self.label = judge_label(judge)
        self.store = RunStore(store_dir)
        self._own_backend = backend is None
        self.backend = backend or make_backend(judge)
        self.calls = 0
        self.errors = 0

    def close(self) -> None:
        if self._own_backend:
            self.backend.close()
        self.store.close()

    def preferences(self, triples: Sequence[tuple[str, str, str]]) -> list[float | None]:
        """For each (prompt, first, second): the first completion's reconciled score against the second."""
        from evalsuite.judge import ask_judge, plan_requests
        from evalsuite.judge.swap import build_matches
        from rich.console import Console

        from evalsuite.progress import StageProgress

        items: list[tuple[Question, str, str] | None] = []
        answers: dict[str, dict[str, Answer]] = {}
        questions: dict[str, Question] = {}
        for prompt, first, second in triples:
            if first == second:
                items.append(None)  # identical completions: nothing to prefer
                continue
            q = Question(f"o{_digest(prompt)}", "general", (prompt,))
            a, b = f"c{_digest(first)}", f"c{_digest(second)}"
            questions[q.question_id] = q
            answers.setdefault(a, {})[q.question_id] = Answer(a, q.question_id, (first,))
            answers.setdefault(b, {})[q.question_id] = Answer(b, q.question_id, (second,))
            items.append((q, a, b))
        self.store.put_questions(questions.values())
        done = self.store.judgment_index(self.label)
        requests = []
        seen: set[str] = set()
        for item in items:
            if item is None:
                continue
            q, a, b = item
            reqs, _, _ = plan_requests(self.judge, "pairwise", [(a, b)], [q], answers, done, self.judging.template)
            for r in reqs:
                if r.key not in seen:
                    seen.add(r.key)
                    requests.append(r)
        if requests:
            quiet = Console(file=io.StringIO())  # one judge stage per training step: no summary line each time
            made, errs = ask_judge(self.judge, requests, self.store, f"online-dpo: judge ({self.label})",
                                   lambda t, n: StageProgress(t, n, enabled=False, console=quiet), self.backend)
            self.calls += made
            self.errors += errs
        wanted = {(q.question_id, frozenset((a, b))) for it in items if it is not None for q, a, b in [it]}
        stored = [j for j in self.store.judgments(self.label)
                  if (j.question_id, frozenset((j.model_a, j.model_b))) in wanted]
        categories = {qid: "general" for qid in questions}
        matches = {(m.question_id, m.model_x, m.model_y): m
                   for m in build_matches(stored, categories, self.judging.mode)}  # type: ignore[arg-type]
        out: list[float | None] = []
        for item in items:
            if item is None:
                out.append(0.5)
                continue
            q, a, b = item
            m = matches.get((q.question_id, a, b))
            if m is not None:
                out.append(m.score)
                continue
            m = matches.get((q.question_id, b, a))
            out.append(None if m is None or m.score is None else 1.0 - m.score)
        return out

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        n = len(prompts) // 2
        triples = [(_text(prompts[i]), _text(completions[i]), _text(completions[i + n])) for i in range(n)]
        scores = self.preferences(triples)
        return [*scores, *[None if s is None else 1.0 - s for s in scores]]


def _judge_from_project() -> tuple[ModelSpec, JudgingOptions]:
    """The ``[judge]`` of ./evalsuite.toml (``evalsuite train`` has no --config): the judge every other verb uses."""
    from evalsuite.config import DEFAULT_CONFIG, load_config

    if not Path(DEFAULT_CONFIG).is_file():
        raise InputError("online-dpo needs a judge and there is no evalsuite.toml here",
                         fix="run from the project folder whose evalsuite.toml has a [judge] table")
    config = load_config(None)
    return config.judge, config.judging


def train_online_dpo(
    spec: VariantSpec,
    *,
    model: str,
    data: str,
    betas: Sequence[float] | None,
    options: TrainOptions,
    out_dir: str | Path,
    manifest: str | Path | None = None,
    progress: bool = True,
    grid: bool = False,
    judge: ModelSpec | None = None,
    judging: JudgingOptions | None = None,
    judge_backend: Any = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> list[CheckpointEntry]:
    """Train online DPO from ``model`` on the prompts in ``data`` (a labeling prompts file), one run per beta, with
    ``judge`` (default: ./evalsuite.toml's ``[judge]``) as the reward; register each checkpoint in the manifest."""
    from evalsuite.bench.prompts import read_prompts
    from evalsuite.models import resolve_model_path

    run_betas = resolve_betas(spec, betas, grid=grid)
    options.validate(spec)
    if options.merge:
        raise InputError("--merge is not supported for online-dpo", fix="drop --merge (merge the adapter afterwards)")
    model = resolve_model_path(model)  # an alias ("smollm2") becomes its checkpoint directory; a path is unchanged
    check_launch(model, data)  # launched ranks agree on what they train before any can stop alone
    check_model(model)
    prompts = read_prompts(data)
    if judge is None:
        judge, judging = _judge_from_project()
    out = Path(out_dir)
    manifest_path = Path(manifest) if manifest is not None else out / DEFAULT_MANIFEST_NAME

    import datasets

    entries: list[CheckpointEntry] = []
    with quiet_training_output():
        tokenizer = load_tokenizer(model)
        chat = tokenizer.chat_template is not None
        rows = [{"prompt": [{"role": "user", "content": q.turns[0]}] if chat else q.turns[0]} for q in prompts]
        dataset = datasets.Dataset.from_list(rows)
        for beta in run_betas:
            entry = _train_online_one(spec, beta, model=model, data=data, dataset=dataset, tokenizer=tokenizer,
                                      options=options, out=out, judge=judge, judging=judging,
                                      judge_backend=judge_backend, max_new_tokens=max_new_tokens, progress=progress)
            if entry is not None:
                upsert_entry(manifest_path, entry)
                entries.append(entry)
            wait_for_ranks()  # the entry is on disk before any rank goes on
    return entries


def _train_online_one(
    spec: VariantSpec,
    beta: float | None,
    *,
    model: str,
    data: str,
    dataset: Any,
    tokenizer: Any,
    options: TrainOptions,
    out: Path,
    judge: ModelSpec,
    judging: JudgingOptions | None,
    judge_backend: Any,
    max_new_tokens: int,
    progress: bool,
) -> CheckpointEntry | None:
    """One beta of :func:`train_online_dpo`: train, save, check health; the entry on the main process, else None."""
    import torch
    import trl
    from transformers import AutoModelForCausalLM, PrinterCallback

    from evalsuite.store.names import path_inside
    from evalsuite.trainers.health import training_flags

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*trl.experimental")
        from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

    name = checkpoint_name(spec.name, beta)
    run_dir = path_inside(out, name)  # a checkpoint folder never lands outside --out, whatever its name
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = run_dir / "metrics.jsonl"
    dtype = device_dtype(options)
    common = common_args(options, run_dir, dtype=dtype)
    config = OnlineDPOConfig(**common, beta=[beta], loss_type=spec.loss_type, max_new_tokens=max_new_tokens)
    reward = JudgeReward(judge, run_dir / "judge", judging, backend=judge_backend)
    policy = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, DTYPES[dtype]))
    rows_per_rank: list[int] = []
    try:
        with training_progress(f"train {name}", enabled=progress) as bar:
            trainer = OnlineDPOTrainer(
                model=policy, reward_funcs=reward, args=config, train_dataset=dataset, processing_class=tokenizer,
                peft_config=peft_config(options) if options.lora else None,
                callbacks=[metrics_writer(metrics_path, ONLINE_METRIC_NAMES), shard_recorder(rows_per_rank), *bar],
            )
            # With its tqdm bar off, transformers prints every log dict instead; metrics.jsonl already has them.
            trainer.remove_callback(PrinterCallback)
            result = trainer.train()
        trainer.save_model(str(run_dir))
        is_main = trainer.is_world_process_zero()
        steps = trainer.state.global_step
        world = world_record(trainer, rows_per_rank)
    finally:
        reward.close()
    del trainer, policy
    free_memory()
    if not is_main:
        return None
    tokenizer.save_pretrained(run_dir)
    if not options.lora:
        cast_saved_weights(run_dir, base_dtype(model))
    metrics = read_metrics(metrics_path)
    expected = {"loss": "loss", "margin": "rewards/margins", "chosen_reward": "rewards/chosen",
                "rejected_reward": "rewards/rejected", "accuracy": "rewards/accuracies", "kl": "objective/kl"}
    flags = training_flags(metrics, beta=beta, reference=True,
                           expected=expected if steps >= options.logging_steps else None)
    return CheckpointEntry(
        name=name, variant=spec.name, beta=beta, path=str(run_dir.resolve()),
        base=local_or_id(model) if options.lora else None, adapter=options.lora,
        metrics=str(metrics_path.resolve()), flags=[f.to_dict() for f in flags], created=utc_now(),
        extra={
            "init_model": local_or_id(model), "data": local_or_id(data), "rows": len(dataset), "steps": steps,
            "train_runtime": round(float(result.metrics.get("train_runtime", 0.0)), 2),
            "loss_type": spec.loss_type, "dtype": dtype, "saved_dtype": stored_dtype(run_dir),
            "options": asdict(options), "trl_version": trl.__version__, "max_new_tokens": max_new_tokens,
            "judge": reward.label, "judge_calls": reward.calls, "judge_errors": reward.errors,
            "judge_mode": (judging or JudgingOptions()).mode,
            **world,  # world_size, per_device_batch, grad_accum, global_batch, rows_per_rank, distributed_type, backend
        },
    )


__all__ = ["DEFAULT_MAX_NEW_TOKENS", "ONLINE_METRIC_NAMES", "JudgeReward", "train_online_dpo"]
