"""Train SFT/DPO/IPO/SimPO/KTO checkpoints with TRL (+ PEFT LoRA), one run per beta, and register them in the manifest.

Each run lands in ``<out_dir>/<variant>-b<beta>/`` (``sft/`` for SFT): the LoRA adapter (or full weights, or merged
weights with ``merge``), the tokenizer, and ``metrics.jsonl`` with one line per logged step under stable names
(:data:`STABLE_METRICS`). Health flags from :mod:`evalsuite.trainers.health` and an entry in the manifest
(``<out_dir>/manifest.json`` by default) follow each run.

Reference model: with LoRA, TRL uses the adapter-off base as the reference (no second copy in memory); with full
weights, reference log-probs are precomputed once before training (``precompute_ref_log_probs=True``), so no frozen
copy is kept either. SimPO needs no reference.

Precision (``TrainOptions.dtype``, ``--dtype``; :func:`resolve_dtype` decides): LoRA runs on a GPU with bf16 load the
frozen base (which is also the reference) in bf16, half the memory of fp32; PEFT keeps the adapter itself in fp32.
Full-weight runs keep fp32 master weights unless told otherwise, with bf16 autocast on such a GPU: AdamW steps at
preference-tuning rates (1e-6) are below bf16's resolution and would mostly round away. On CPU everything is fp32.
Whatever the run computed in, full weights are saved in the base checkpoint's own dtype (:func:`base_dtype`).

Several processes (GPUs, machines; DDP, FSDP, DeepSpeed) come from ``accelerate``, not from this module::

    accelerate launch --num_processes 8 -m evalsuite train dpo --model ./sft --data prefs.jsonl --grid

(or ``evalsuite train ... --accelerate-config FILE``). Before anything loads the ranks check that they train the
same model on the same data; each trains on its own shard; only the main process writes the tokenizer, metrics, the
health verdict and the manifest entry, which records the world size and the global batch; the other ranks wait for
it and return nothing. What that takes lives in ``_distributed.py``.

While it trains, a run shows one evalsuite progress bar (steps, rate, time left, latest loss) and nothing from the
libraries underneath (their bars, info logs and deprecation warnings are off inside training). What this module
shares with online DPO lives in ``_runtime.py`` (options, precision, arguments, loading, saving, output) and
``_metrics.py`` (metrics.jsonl); both are re-exported here.

torch, transformers, TRL, PEFT and datasets are imported inside the functions that train, so importing this module
(and ``evalsuite.trainers``) stays cheap.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.manifest import DEFAULT_MANIFEST_NAME, CheckpointEntry, checkpoint_name, upsert_entry, utc_now
from evalsuite.trainers._distributed import (
    check_launch,
    remove_shared_dataset,
    shard_recorder,
    shared_dataset,
    wait_for_ranks,
    world_record,
)
from evalsuite.trainers._metrics import (
    STABLE_METRICS,
    TRAINER_METRICS,
    TRL_METRIC_NAMES,
    expected_metrics,
    metrics_row,
    metrics_writer,
    read_metrics,
)
from evalsuite.trainers._runtime import (
    DTYPE_CHOICES,
    DTYPES,
    TrainOptions,
    base_dtype,
    cast_saved_weights,
    check_model,
    common_args,
    device_dtype,
    dtype_flag,
    free_memory,
    load_tokenizer,
    local_or_id,
    peft_config,
    quiet_training_output,
    resolve_dtype,
    stored_dtype,
    training_progress,
)
from evalsuite.trainers._variants import VariantSpec, get_variant, resolve_betas
from evalsuite.trainers.health import training_flags

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, TrainingArguments

Builder = Callable[[VariantSpec, "float | None", TrainOptions, dict[str, Any]], "tuple[type, TrainingArguments]"]


def _build_dpo(
    spec: VariantSpec, beta: float | None, options: TrainOptions, common: dict[str, Any]
) -> tuple[type, Any]:
    from trl import DPOConfig, DPOTrainer

    # Full weights: precompute the reference log-probs once instead of keeping a frozen copy in memory.
    config = DPOConfig(**common, beta=beta, loss_type=spec.loss_type, precompute_ref_log_probs=not options.lora)
    return DPOTrainer, config


def _build_cpo(
    spec: VariantSpec, beta: float | None, options: TrainOptions, common: dict[str, Any]
) -> tuple[type, Any]:
    with warnings.catch_warnings():
        # Deliberate: TRL 1.16 ships SimPO only through the experimental CPO trainer.
        warnings.filterwarnings("ignore", message=".*trl.experimental")
        from trl.experimental.cpo import CPOConfig, CPOTrainer

    # SimPO = CPO's simpo loss without the behaviour-cloning term (cpo_alpha=0); DPOConfig's "simpo" fails in TRL 1.16.
    config = CPOConfig(
        **common,
        beta=beta,
        loss_type=spec.loss_type,
        cpo_alpha=0.0,
        simpo_gamma=options.simpo_gamma,
        remove_unused_columns=False,  # its collator needs the raw columns (TRL sets it anyway, with a warning)
    )
    return CPOTrainer, config


def _build_kto(
    spec: VariantSpec, beta: float | None, options: TrainOptions, common: dict[str, Any]
) -> tuple[type, Any]:
    from trl import KTOConfig, KTOTrainer

    config = KTOConfig(**common, beta=beta, loss_type=spec.loss_type, precompute_ref_log_probs=not options.lora)
    return KTOTrainer, config


def _build_sft(
    spec: VariantSpec, beta: float | None, options: TrainOptions, common: dict[str, Any]
) -> tuple[type, Any]:
    from trl import SFTConfig, SFTTrainer

    return SFTTrainer, SFTConfig(**common)


# Trainer family (VariantSpec.trainer) -> builder of (trainer class, config).
TRAINER_BUILDERS: dict[str, Builder] = {"dpo": _build_dpo, "cpo": _build_cpo, "kto": _build_kto, "sft": _build_sft}


def _merge_adapter(base: str, adapter_dir: Path, out: Path, tokenizer: "PreTrainedTokenizerBase") -> None:
    """Fold the adapter into the base weights, reloaded from disk (works the same after any distributed run)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    # dtype="auto" keeps the base checkpoint's own precision for the merged weights.
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype="auto"), str(adapter_dir))
    merged.merge_and_unload().save_pretrained(out)
    tokenizer.save_pretrained(out)



def _train_one(
    spec: VariantSpec,
    beta: float | None,
    *,
    model: str,
    data: str,
    dataset: Any,
    tokenizer: "PreTrainedTokenizerBase",
    options: TrainOptions,
    out_dir: Path,
    progress: bool,
) -> CheckpointEntry | None:
    import torch
    import trl
    from transformers import AutoModelForCausalLM, PrinterCallback

    from evalsuite.store.names import path_inside

    name = checkpoint_name(spec.name, beta)
    run_dir = path_inside(out_dir, name)  # a checkpoint folder never lands outside --out, whatever its name
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = run_dir / "metrics.jsonl"

    dtype = device_dtype(options)
    common = common_args(options, run_dir, dtype=dtype)
    trainer_cls, config = TRAINER_BUILDERS[spec.trainer](spec, beta, options, common)
    # fp32 unless bf16/fp16 was chosen (see resolve_dtype): full weights keep fp32 master weights by default.
    policy = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, DTYPES[dtype]))
    reference: dict[str, Any] = {}
    if options.reference_model and spec.uses_reference:
        reference["ref_model"] = AutoModelForCausalLM.from_pretrained(options.reference_model, dtype=getattr(torch, DTYPES[dtype]))
    rows_per_rank: list[int] = []
    with training_progress(f"train {name}", enabled=progress) as bar:
        trainer = trainer_cls(
            model=policy,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[metrics_writer(metrics_path), shard_recorder(rows_per_rank), *bar],
            peft_config=peft_config(options) if options.lora else None,
            **reference,
        )
        # With its tqdm bar off, transformers prints every log dict instead; metrics.jsonl already has them.
        trainer.remove_callback(PrinterCallback)
        result = trainer.train()
    adapter_only = options.lora and not options.merge
    weights_dir = run_dir / "adapter" if options.lora and options.merge else run_dir
    trainer.save_model(str(weights_dir))  # every process: FSDP/DeepSpeed gather the weights collectively
    is_main = trainer.is_world_process_zero()
    steps = trainer.state.global_step
    world = world_record(trainer, rows_per_rank)
    del trainer, policy
    free_memory()
    if not is_main:
        return None
    tokenizer.save_pretrained(run_dir)
    if options.lora and options.merge:
        _merge_adapter(model, weights_dir, run_dir, tokenizer)
    if not adapter_only:
        # Full (or merged) weights go out in the base checkpoint's dtype, whatever the run computed in.
        cast_saved_weights(run_dir, base_dtype(model))

    metrics = read_metrics(metrics_path)
    flags = training_flags(
        metrics,
        beta=beta,
        reference=spec.uses_reference,  # DPO, IPO, KTO: health reads the log-ratio to the reference (reward / beta)
        # A run shorter than one logging interval logs nothing, and that is not a renamed key.
        expected=expected_metrics(spec.trainer) if steps >= options.logging_steps else None,
    )
    extra: dict[str, Any] = {
        "init_model": local_or_id(model),  # the checkpoint training started from
        "data": local_or_id(data),
        "rows": len(dataset),
        "steps": steps,
        "train_runtime": round(float(result.metrics.get("train_runtime", 0.0)), 2),
        "loss_type": spec.loss_type,
        "dtype": dtype,  # the weights as trained
        "saved_dtype": stored_dtype(run_dir),  # full weights: the base's; a LoRA adapter: as PEFT keeps it (fp32)
        "options": asdict(options),
        "trl_version": trl.__version__,
        **world,  # world_size, per_device_batch, grad_accum, global_batch, rows_per_rank, distributed_type, backend
    }
    if spec.trainer == "cpo":
        extra["simpo_gamma"] = options.simpo_gamma
    if options.lora and options.merge:
        extra["lora_merged"] = True
    return CheckpointEntry(
        name=name,
        variant=spec.name,
        beta=beta,
        path=str(run_dir.resolve()),
        base=local_or_id(model) if adapter_only else None,
        adapter=adapter_only,
        metrics=str(metrics_path.resolve()),
        flags=[flag.to_dict() for flag in flags],
        created=utc_now(),
        extra=extra,
    )


def train_variant(
    variant: str,
    *,
    model: str,
    data: str,
    betas: Sequence[float] | None = None,
    options: TrainOptions,
    out_dir: str | Path,
    manifest: str | Path | None = None,
    progress: bool = True,
    grid: bool = False,
    split: str = "train",
) -> list[CheckpointEntry]:
    """Train ``variant`` from the SFT checkpoint ``model`` on ``data``, once per beta, and register each checkpoint.

    ``model`` is a checkpoint directory, a hub id, or an alias such as "smollm2" (:mod:`evalsuite.models`).
    ``betas`` None runs the variant's default beta (``grid=True``: its default grid). ``data`` is a local
    ``.jsonl``/``.json`` file or a Hugging Face dataset name (``split``). Returns the entries written to
    ``manifest`` (default ``<out_dir>/manifest.json``), with absolute paths; on non-main processes of a
    distributed launch, ``[]``. ``progress``: a bar per run with its latest loss (a summary line when stderr is
    not a terminal); False shows nothing. Library bars, info logs and deprecation warnings never show.
    """
    from evalsuite.models import resolve_model_path

    spec = get_variant(variant)
    if spec.trainer == "online":  # prompts + the judge as reward instead of preference pairs
        from evalsuite.trainers._online import train_online_dpo

        return train_online_dpo(spec, model=model, data=data, betas=betas, options=options, out_dir=out_dir,
                                manifest=manifest, progress=progress, grid=grid)
    run_betas = resolve_betas(spec, betas, grid=grid)
    options.validate(spec)
    model = resolve_model_path(model)  # an alias ("smollm2") becomes its checkpoint directory; a path is unchanged
    # Launched ranks agree on what they train before any of them can stop alone on a missing file.
    fingerprint = check_launch(model, data)
    check_model(model)
    out = Path(out_dir)
    manifest_path = Path(manifest) if manifest is not None else out / DEFAULT_MANIFEST_NAME
    shared_data = out / f".data-{spec.name}-{fingerprint['hash']}"  # used by launched ranks only

    from evalsuite.trainers._data import load_preference_data

    entries: list[CheckpointEntry] = []
    with quiet_training_output():
        tokenizer = load_tokenizer(model)
        # Train through the chat template whenever the model has one: evalsuite generates through it too.
        dataset = load_preference_data(data, split=split, variant=spec.name, chat=tokenizer.chat_template is not None)
        dataset = shared_dataset(dataset, shared_data)
        for beta in run_betas:
            entry = _train_one(
                spec,
                beta,
                model=model,
                data=data,
                dataset=dataset,
                tokenizer=tokenizer,
                options=options,
                out_dir=out,
                progress=progress,
            )
            if entry is not None:
                upsert_entry(manifest_path, entry)
                entries.append(entry)
            wait_for_ranks()  # the entry is on disk before any rank goes on (the next beta, or the caller)
        remove_shared_dataset(shared_data)
    return entries


__all__ = [
    "STABLE_METRICS",
    "TRAINER_BUILDERS",
    "TRAINER_METRICS",
    "TRL_METRIC_NAMES",
    "DTYPES",
    "DTYPE_CHOICES",
    "TrainOptions",
    "expected_metrics",
    "base_dtype",
    "cast_saved_weights",
    "dtype_flag",
    "resolve_dtype",
    "stored_dtype",
    "metrics_row",
    "read_metrics",
    "train_variant",
]
