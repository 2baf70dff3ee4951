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

Multi-GPU, DeepSpeed and FSDP come from ``accelerate``, not from this module::

    accelerate launch --num_processes 8 -m evalsuite.cli train dpo --model ./sft --data prefs.jsonl --grid

(add ``--config_file`` for DeepSpeed/FSDP). Only the main process writes metrics and the manifest.

torch, transformers, TRL, PEFT and datasets are imported inside the functions that train, so importing this module
(and ``evalsuite.trainers``) stays cheap.
"""

from __future__ import annotations

import gc
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.errors import InputError
from evalsuite.jsonl import iter_jsonl
from evalsuite.manifest import DEFAULT_MANIFEST_NAME, CheckpointEntry, checkpoint_name, upsert_entry, utc_now
from evalsuite.trainers._variants import VariantSpec, get_variant, resolve_betas
from evalsuite.trainers.health import training_flags

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, TrainerCallback, TrainingArguments

# The stable metric names of metrics.jsonl; every line carries all of them (null when the trainer did not log it).
STABLE_METRICS: tuple[str, ...] = (
    "loss",
    "margin",
    "chosen_reward",
    "rejected_reward",
    "chosen_logp",
    "rejected_logp",
    "accuracy",
    "kl",
)
# TRL 1.16 log keys (DPOTrainer, KTOTrainer, experimental CPOTrainer, SFTTrainer) -> stable names.
TRL_METRIC_NAMES: dict[str, str] = {
    "loss": "loss",
    "rewards/margins": "margin",
    "rewards/chosen": "chosen_reward",
    "rewards/rejected": "rejected_reward",
    "logps/chosen": "chosen_logp",
    "logps/rejected": "rejected_logp",
    "rewards/accuracies": "accuracy",
    "kl": "kl",
    # Kept when logged, outside the stable set.
    "grad_norm": "grad_norm",
    "learning_rate": "learning_rate",
    "epoch": "epoch",
    "nll_loss": "nll_loss",
    "mean_token_accuracy": "token_accuracy",
    "entropy": "entropy",
}
# The stable metrics each trainer family (VariantSpec.trainer) logs through TRL_METRIC_NAMES. One that no step of a
# run logged is a `metrics-missing` health flag, so a TRL release that renames a key cannot silence the checks. (KTO's
# margin needs desirable and undesirable rows in one batch, so it is not expected of every run.)
TRAINER_METRICS: dict[str, tuple[str, ...]] = {
    "dpo": ("loss", "margin", "chosen_reward", "rejected_reward", "chosen_logp", "rejected_logp", "accuracy"),
    "cpo": ("loss", "margin", "chosen_reward", "rejected_reward", "chosen_logp", "rejected_logp", "accuracy"),
    "kto": ("loss", "chosen_reward", "rejected_reward", "chosen_logp", "rejected_logp", "kl"),
    "sft": ("loss",),
}


def expected_metrics(trainer: str) -> dict[str, str]:
    """Stable name -> the TRL log key it is read from, for every metric ``trainer`` is expected to log."""
    source = {stable: key for key, stable in TRL_METRIC_NAMES.items()}
    return {name: source[name] for name in TRAINER_METRICS[trainer]}


# Weight precisions a run can load in: option value -> torch dtype name.
DTYPES: dict[str, str] = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
DTYPE_CHOICES: tuple[str, ...] = ("auto", *DTYPES)


def resolve_dtype(requested: str, *, lora: bool, cuda: bool, bf16_supported: bool) -> str:
    """The precision to load the policy in (with LoRA also the frozen base, i.e. the reference): bf16, fp16 or fp32.

    ``auto``: bf16 for LoRA runs on a GPU that supports it, fp32 otherwise (CPU, older GPU, full weights: see the
    module docstring). An explicit choice is honoured, except what cannot train: bf16 on a GPU without it, and fp16
    full weights (the fp16 loss scaler needs fp32 master weights to unscale into).

    >>> resolve_dtype("auto", lora=True, cuda=True, bf16_supported=True)
    'bf16'
    >>> resolve_dtype("auto", lora=False, cuda=True, bf16_supported=True)
    'fp32'
    >>> resolve_dtype("auto", lora=True, cuda=False, bf16_supported=False)
    'fp32'
    >>> resolve_dtype("bf16", lora=False, cuda=False, bf16_supported=False)
    'bf16'
    """
    if requested not in DTYPE_CHOICES:
        raise InputError(f"unknown dtype {requested!r}", fix=f"use one of {', '.join(DTYPE_CHOICES)}")
    if requested == "auto":
        return "bf16" if lora and cuda and bf16_supported else "fp32"
    if requested == "fp16" and not lora:
        raise InputError(
            "fp16 full-weight training cannot work: the fp16 loss scaler needs fp32 master weights",
            fix="use --dtype bf16 or fp32, or train a LoRA adapter (--lora)",
        )
    if requested == "bf16" and cuda and not bf16_supported:
        raise InputError("this GPU cannot compute in bf16", fix="use --dtype fp32 (or fp16 with --lora)")
    return requested


def dtype_flag(value: object) -> str | None:
    """A config's dtype (``torch.bfloat16``, ``"bfloat16"``, ``"bf16"``) as an option value; None when unknown or unset.

    >>> dtype_flag("bfloat16"), dtype_flag("torch.float16"), dtype_flag(None), dtype_flag("float8_e4m3fn")
    ('bf16', 'fp16', None, None)
    """
    name = str(value).removeprefix("torch.") if value is not None else ""
    if name in DTYPES:
        return name
    return next((flag for flag, torch_name in DTYPES.items() if torch_name == name), None)


def base_dtype(model: str) -> str:
    """The dtype the checkpoint ``model`` is stored in, from its config (``dtype``, or ``torch_dtype`` before
    transformers 5); fp32 when the config does not say (transformers' own default)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model)
    for key in ("dtype", "torch_dtype"):
        flag = dtype_flag(config.to_dict().get(key))
        if flag is not None:
            return flag
    return "fp32"


@dataclass
class TrainOptions:
    """Settings shared by every run of a sweep (the beta is per run)."""

    lr: float = 1e-6
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 4  # per device
    grad_accum: int = 1
    max_length: int = 512  # prompt + reply tokens
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] | None = None  # None -> PEFT's "all-linear" (every linear layer but the output head)
    merge: bool = False  # merge the LoRA adapter into full weights after training
    seed: int = 0
    logging_steps: int = 1
    simpo_gamma: float = 0.5
    bf16: bool | None = None  # bf16 autocast (mixed precision); None: on when the GPU supports it
    dtype: str = "auto"  # weights as loaded: auto | bf16 | fp16 | fp32 (see resolve_dtype)
    gradient_checkpointing: bool | None = None  # None: on with a GPU (saves memory), off on CPU (only slows)
    report_to: str = "none"
    # a frozen reference checkpoint other than the starting model (iterate's reference = "sft"); DPO/IPO/KTO only
    reference_model: str | None = None

    def validate(self, spec: VariantSpec) -> None:
        if not self.lr > 0:
            raise InputError(f"learning rate must be positive, got {self.lr:g}", fix="pass --lr > 0")
        if self.max_steps <= 0 and not self.epochs > 0:
            raise InputError("neither epochs nor max steps is positive", fix="pass --epochs > 0 or --max-steps > 0")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise InputError(
                "batch size and gradient accumulation must be at least 1", fix="fix --batch-size/--grad-accum"
            )
        if spec.trainer == "kto" and self.batch_size < 2:
            # KTO estimates its KL term from mismatched rows within a batch.
            raise InputError("KTO needs a per-device batch of at least 2", fix="pass --batch-size 2 or more")
        if self.merge and not self.lora:
            raise InputError("--merge applies to LoRA training only", fix="add --lora or drop --merge")
        # Device-independent checks now, before anything loads; the GPU's own abilities are checked when training.
        resolve_dtype(self.dtype, lora=self.lora, cuda=False, bf16_supported=False)


def metrics_row(logs: Mapping[str, Any], step: int,
                names: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """One metrics.jsonl line from a trainer log, or None for logs that are not a training step (eval, summary).

    ``names`` maps the trainer's log keys to the stable names (default: the offline TRL trainers' keys).
    """
    if "loss" not in logs:
        return None
    key_names = TRL_METRIC_NAMES if names is None else names
    row: dict[str, Any] = {"step": int(step)}
    row.update({name: None for name in STABLE_METRICS})
    for key, value in logs.items():
        name = key_names.get(key)
        if name is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        # JSON has no NaN/inf; a diverged value is recorded as null rather than an unreadable line.
        row[name] = number if math.isfinite(number) else None
    return row


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a metrics.jsonl file."""
    return [obj for _, obj in iter_jsonl(path)]


def _metrics_writer(path: Path) -> "TrainerCallback":
    from transformers import TrainerCallback

    class MetricsWriter(TrainerCallback):
        """Appends each training log to metrics.jsonl as it arrives, so a crashed run keeps its history."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                path.write_text("", encoding="utf-8")  # a re-run replaces the history, it does not append to it

        def on_log(
            self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kwargs: Any
        ) -> None:
            if not logs or not state.is_world_process_zero:
                return
            row = metrics_row(logs, state.global_step)
            if row is not None:
                with path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")

    return MetricsWriter()


def _load_tokenizer(model: str) -> "PreTrainedTokenizerBase":
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    # A local tokenizer.json loads faithfully as the generic fast class; AutoTokenizer may swap in an
    # architecture's own class (Qwen2) whose pre-tokenizer differs from what was saved.
    if (Path(model) / "tokenizer.json").is_file():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(model)
    else:
        tokenizer = AutoTokenizer.from_pretrained(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _check_model(model: str) -> None:
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise InputError(
                "not a model directory (no config.json)", where=str(path), fix="point --model at the SFT checkpoint"
            )
        return
    # Not local: only an "owner/name" hub id is worth handing to transformers.
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise InputError("model directory not found", where=model, fix="point --model at the SFT checkpoint directory")


def _device_dtype(options: TrainOptions) -> str:
    """``resolve_dtype`` for this machine's device."""
    import torch

    cuda = torch.cuda.is_available()
    bf16_supported = bool(cuda and torch.cuda.is_bf16_supported())
    return resolve_dtype(options.dtype, lora=options.lora, cuda=cuda, bf16_supported=bf16_supported)


def _common_args(options: TrainOptions, run_dir: Path, *, progress: bool, dtype: str = "fp32") -> dict[str, Any]:
    import torch
    from transformers import TrainingArguments

    on_gpu = torch.cuda.is_available()
    gpu_bf16 = bool(on_gpu and torch.cuda.is_bf16_supported())
    bf16 = options.bf16 if options.bf16 is not None else gpu_bf16 and dtype != "fp16"
    checkpointing = options.gradient_checkpointing if options.gradient_checkpointing is not None else on_gpu
    return {
        "output_dir": str(run_dir),
        "learning_rate": options.lr,
        "num_train_epochs": options.epochs,
        "max_steps": options.max_steps,
        "per_device_train_batch_size": options.batch_size,
        "gradient_accumulation_steps": options.grad_accum,
        "max_length": options.max_length,
        "logging_steps": options.logging_steps,
        "seed": options.seed,
        # TRL's configs default bf16 to True, which a CPU or an older GPU cannot run: always decide it here.
        "bf16": bf16,
        # fp16 weights (LoRA only) on a GPU: fp16 autocast with loss scaling over the fp32 adapter.
        "fp16": bool(on_gpu and dtype == "fp16" and not bf16),
        # transformers 5 renamed gradient_checkpointing; the old name (TRL's default) now warns on every run.
        (
            "activation_checkpointing"
            if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
            else "gradient_checkpointing"
        ): checkpointing,
        "report_to": options.report_to,
        # Only the final model is saved; intermediate checkpoints of a sweep would multiply disk use.
        "save_strategy": "no",
        "disable_tqdm": not progress,
        "dataloader_pin_memory": on_gpu,
    }


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


def _peft_config(options: TrainOptions) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM",
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=options.lora_targets or "all-linear",
    )


def _merge_adapter(base: str, adapter_dir: Path, out: Path, tokenizer: "PreTrainedTokenizerBase") -> None:
    """Fold the adapter into the base weights, reloaded from disk (works the same after any distributed run)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    # dtype="auto" keeps the base checkpoint's own precision for the merged weights.
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype="auto"), str(adapter_dir))
    merged.merge_and_unload().save_pretrained(out)
    tokenizer.save_pretrained(out)


# safetensors' dtype codes -> option values.
_SAFETENSORS_DTYPES: dict[str, str] = {"BF16": "bf16", "F16": "fp16", "F32": "fp32"}


def stored_dtype(folder: Path) -> str | None:
    """The dtype of the floating tensors saved in ``folder`` (safetensors), ``"mixed"`` when they differ; None when
    there are none."""
    from safetensors import safe_open

    found: set[str] = set()
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as fh:
            for key in fh.keys():
                code = fh.get_slice(key).get_dtype()
                if code in _SAFETENSORS_DTYPES or code.startswith(("F", "BF")):
                    found.add(_SAFETENSORS_DTYPES.get(code, code.lower()))
    if not found:
        return None
    return found.pop() if len(found) == 1 else "mixed"


def cast_saved_weights(folder: Path, dtype: str) -> bool:
    """Rewrite the full-weight checkpoint in ``folder`` (safetensors) so its floating tensors and its config are in
    ``dtype``; True when anything changed. Done on the files, so it works the same after any distributed save."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    target = getattr(torch, DTYPES[dtype])
    changed = False
    sizes = 0
    for shard in sorted(folder.glob("*.safetensors")):
        tensors: dict[str, Any] = {}
        shard_changed = False
        with safe_open(str(shard), framework="pt") as fh:
            metadata = fh.metadata() or {"format": "pt"}
            for key in fh.keys():
                tensor = fh.get_tensor(key)
                if tensor.is_floating_point() and tensor.dtype != target:
                    tensor = tensor.to(target)
                    shard_changed = True
                tensors[key] = tensor
                sizes += tensor.numel() * tensor.element_size()
        if shard_changed:
            save_file(tensors, str(shard), metadata=metadata)
            changed = True
        del tensors
    index = folder / "model.safetensors.index.json"
    if changed and index.is_file():
        data = json.loads(index.read_text(encoding="utf-8"))
        data.setdefault("metadata", {})["total_size"] = sizes
        index.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    config_path = folder / "config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        keys = [k for k in ("dtype", "torch_dtype") if k in config] or ["dtype"]
        if any(config.get(k) != DTYPES[dtype] for k in keys):
            config.update({k: DTYPES[dtype] for k in keys})
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            changed = True
    return changed


def _local_or_id(value: str) -> str:
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else value


@contextmanager
def _tqdm_disabled(disabled: bool) -> Iterator[None]:
    """TRL's reference-log-prob pass reads only TQDM_DISABLE; set it for the run and restore it after."""
    previous = os.environ.get("TQDM_DISABLE")
    if disabled:
        os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = previous


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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
    from transformers import AutoModelForCausalLM

    name = checkpoint_name(spec.name, beta)
    run_dir = out_dir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = run_dir / "metrics.jsonl"

    dtype = _device_dtype(options)
    common = _common_args(options, run_dir, progress=progress, dtype=dtype)
    trainer_cls, config = TRAINER_BUILDERS[spec.trainer](spec, beta, options, common)
    # fp32 unless bf16/fp16 was chosen (see resolve_dtype): full weights keep fp32 master weights by default.
    policy = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, DTYPES[dtype]))
    reference: dict[str, Any] = {}
    if options.reference_model and spec.uses_reference:
        reference["ref_model"] = AutoModelForCausalLM.from_pretrained(options.reference_model, dtype=getattr(torch, DTYPES[dtype]))
    with _tqdm_disabled(not progress):
        trainer = trainer_cls(
            model=policy,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[_metrics_writer(metrics_path)],
            peft_config=_peft_config(options) if options.lora else None,
            **reference,
        )
        if not progress:
            from transformers import PrinterCallback

            # With tqdm off, transformers prints every log dict instead; metrics.jsonl already has them.
            trainer.remove_callback(PrinterCallback)
        result = trainer.train()
    adapter_only = options.lora and not options.merge
    weights_dir = run_dir / "adapter" if options.lora and options.merge else run_dir
    trainer.save_model(str(weights_dir))  # every process: FSDP/DeepSpeed gather the weights collectively
    is_main = trainer.is_world_process_zero()
    steps = trainer.state.global_step
    del trainer, policy
    _free_memory()
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
        "init_model": _local_or_id(model),  # the checkpoint training started from
        "data": _local_or_id(data),
        "rows": len(dataset),
        "steps": steps,
        "train_runtime": round(float(result.metrics.get("train_runtime", 0.0)), 2),
        "loss_type": spec.loss_type,
        "dtype": dtype,  # the weights as trained
        "saved_dtype": stored_dtype(run_dir),  # full weights: the base's; a LoRA adapter: as PEFT keeps it (fp32)
        "options": asdict(options),
        "trl_version": trl.__version__,
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
        base=_local_or_id(model) if adapter_only else None,
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

    ``betas`` None runs the variant's default beta (``grid=True``: its default grid). ``data`` is a local
    ``.jsonl``/``.json`` file or a Hugging Face dataset name (``split``). Returns the entries written to
    ``manifest`` (default ``<out_dir>/manifest.json``), with absolute paths; on non-main processes of a
    distributed launch, ``[]``.
    """
    spec = get_variant(variant)
    if spec.trainer == "online":  # prompts + the judge as reward instead of preference pairs
        from evalsuite.trainers._online import train_online_dpo

        return train_online_dpo(spec, model=model, data=data, betas=betas, options=options, out_dir=out_dir,
                                manifest=manifest, progress=progress, grid=grid)
    run_betas = resolve_betas(spec, betas, grid=grid)
    options.validate(spec)
    _check_model(model)
    out = Path(out_dir)
    manifest_path = Path(manifest) if manifest is not None else out / DEFAULT_MANIFEST_NAME

    from evalsuite.trainers._data import load_preference_data

    tokenizer = _load_tokenizer(model)
    if not progress:
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    # Train through the chat template whenever the model has one: evalsuite generates through it too.
    dataset = load_preference_data(data, split=split, variant=spec.name, chat=tokenizer.chat_template is not None)

    entries: list[CheckpointEntry] = []
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
