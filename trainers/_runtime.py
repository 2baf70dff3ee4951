"""What every training run shares, offline (``_train.py``) or online (``_online.py``): the options of a sweep, the
precision a run loads and saves in, TRL's common arguments, loading the tokenizer and checking the model, LoRA
settings, and what a run shows while it trains: evalsuite's progress bar with the latest loss, and nothing else.

torch, transformers, PEFT, datasets and safetensors are imported inside the functions that need them.
"""

from __future__ import annotations

import gc
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.errors import InputError
from evalsuite.trainers._distributed import BAR_ENV, cpu_ranks
from evalsuite.trainers._variants import VariantSpec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, TrainerCallback

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


def load_tokenizer(model: str) -> "PreTrainedTokenizerBase":
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


def check_model(model: str) -> None:
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


def device_dtype(options: TrainOptions) -> str:
    """``resolve_dtype`` for this machine's device."""
    import torch

    cuda = torch.cuda.is_available()
    bf16_supported = bool(cuda and torch.cuda.is_bf16_supported())
    return resolve_dtype(options.dtype, lora=options.lora, cuda=cuda, bf16_supported=bf16_supported)


def common_args(options: TrainOptions, run_dir: Path, *, dtype: str = "fp32") -> dict[str, Any]:
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
        # transformers' own tqdm bar and log printer are replaced by evalsuite's bar (step_progress) and metrics.jsonl
        "disable_tqdm": True,
        "dataloader_pin_memory": on_gpu,
        # Launched ranks without a GPU join over gloo; left to accelerate, each would train alone (_distributed).
        "use_cpu": cpu_ranks(),
    }


def peft_config(options: TrainOptions) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM",
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=options.lora_targets or "all-linear",
    )


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


def local_or_id(value: str) -> str:
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else value


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextmanager
def quiet_training_output() -> Iterator[None]:
    """Only evalsuite's bar and lines while a run loads, trains and saves: transformers' and datasets' progress bars
    and info logs, TRL's own tqdm (it reads only TQDM_DISABLE) and deprecation warnings are off inside, and every
    one of them is as it was afterwards. Warnings and errors that a user must act on are still shown."""
    import datasets
    import transformers

    hf_logging = transformers.utils.logging
    ds_logging = datasets.utils.logging
    saved = (hf_logging.get_verbosity(), ds_logging.get_verbosity(), hf_logging.is_progress_bar_enabled(),
             ds_logging.is_progress_bar_enabled(), os.environ.get("TQDM_DISABLE"))
    hf_logging.set_verbosity_error()
    ds_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    ds_logging.disable_progress_bar()
    os.environ["TQDM_DISABLE"] = "1"
    try:
        with warnings.catch_warnings():
            # Library deprecations (transformers 5 renames, TRL's experimental trainers) are for evalsuite's
            # maintainers, not for someone training a checkpoint.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        hf_verbosity, ds_verbosity, hf_bars, ds_bars, tqdm_disable = saved
        hf_logging.set_verbosity(hf_verbosity)
        ds_logging.set_verbosity(ds_verbosity)
        if hf_bars:
            hf_logging.enable_progress_bar()
        if ds_bars:
            ds_logging.enable_progress_bar()
        if tqdm_disable is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = tqdm_disable


@contextmanager
def training_progress(description: str, *, enabled: bool = True) -> Iterator[list["TrainerCallback"]]:
    """Trainer callbacks that show one run's optimizer steps as an evalsuite progress bar (a bar on a terminal, one
    summary line otherwise) with the latest logged loss in its label; none when not ``enabled``. The bar opens when
    training begins (on the main process only) and is closed on leaving the block, also when training raised."""
    if not enabled:
        yield []
        return
    from rich.console import Console
    from transformers import TrainerCallback

    from evalsuite.progress import StageProgress

    bars: list[StageProgress] = []
    # A launched rank's stderr is the pipe of the evalsuite that launched it, which shows a terminal (_distributed).
    drawn = os.environ.get(BAR_ENV) == "1"

    class StepProgress(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero and not bars:
                console = Console(stderr=True, force_terminal=True) if drawn else None
                bars.append(StageProgress(description, int(state.max_steps), console=console,
                                          enabled=True if drawn else None).__enter__())

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            for bar in bars:
                bar.advance()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            loss = (logs or {}).get("loss")
            if isinstance(loss, (int, float)):
                for bar in bars:
                    bar.describe(f"{description} loss {loss:.4f}")

    try:
        yield [StepProgress()]
    finally:
        for bar in bars:
            bar.__exit__(None, None, None)
