"""``hf`` backend: a local checkpoint (optionally with a PEFT LoRA adapter) run through transformers, CPU or GPU.

Requests are rendered with the tokenizer's own chat template, grouped by sampling settings, sorted by prompt length
and generated in left-padded batches; follow-ups that ``on_done`` returns (turn 2 after turn 1) form the next
batches. Sampling is plain: greedy at temperature 0, otherwise pure temperature sampling (no top-k/top-p, no
repetition penalty, whatever the checkpoint's ``generation_config`` says) so every model in a comparison is sampled
the same way. Each batch reseeds torch, so a run reproduces exactly on the same hardware and batch size.

Logprob verdict mode (``ChatRequest.logprob_choices``): no sampling; one forward pass over the prompt plus the
verdict prefix ("[["), and the next-token probabilities of each choice's token after the prefix (``choice_token_ids``,
shared with the vLLM worker), renormalised over the choices.

``spec.extra["min_new_tokens"]`` forces replies to a fixed length (benchmarks use it so every mode generates the same
number of tokens). torch, transformers and peft are imported when the model loads (first ``run``), never at import.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from evalsuite.backends._base import ChatRequest, ChatResult, OnDone, Progress
from evalsuite.backends._vllm_worker import choice_token_ids  # standard library only at import
from evalsuite.errors import InputError

if TYPE_CHECKING:
    import torch

    from evalsuite.config import ModelSpec

_DTYPES = {
    "float32": "float32", "fp32": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}
_CLOSING = str.maketrans("[(<{", "])>}")


def check_checkpoint(spec: "ModelSpec") -> None:
    """A local model entry must name a checkpoint that exists: say so before any engine starts loading."""
    if not spec.model:
        raise InputError(f"model {spec.name!r} has no checkpoint", fix="set model = a local checkpoint dir or hub id")
    if looks_like_path(spec.model) and not Path(spec.model).expanduser().is_dir():
        raise InputError(
            f"checkpoint directory {spec.model!r} of model {spec.name!r} does not exist",
            fix="point model at a directory holding config.json, weights and the tokenizer (a trainer's output)",
        )


def resolve_spec_model(spec: "ModelSpec") -> "ModelSpec":
    """A model alias ("smollm2") replaced by its converted checkpoint directory (``evalsuite.models``); a path or hub
    id is kept as written."""
    from evalsuite.models import is_alias, resolve_model_path

    return dataclasses.replace(spec, model=resolve_model_path(spec.model)) if is_alias(spec.model) else spec


def check_adapter(spec: "ModelSpec") -> None:
    """``spec.adapter`` must be a PEFT adapter directory made for ``spec.model`` (cheap: configs and headers only)."""
    if not spec.adapter:
        return
    if not (Path(spec.adapter).expanduser() / "adapter_config.json").is_file():
        raise InputError(
            f"adapter {spec.adapter!r} of model {spec.name!r} is not a PEFT adapter directory",
            fix="point adapter at a directory holding adapter_config.json and the adapter weights",
        )
    from evalsuite.models.adapter_base import check_adapter_base

    check_adapter_base(spec.adapter, spec.model, model_name=spec.name)


def looks_like_path(model: str) -> bool:
    """A hub id is ``owner/name``; anything absolute, dotted, home-based, deeper, or under an existing local folder
    is meant as a path, so a missing one is reported at once instead of being looked up on the hub."""
    if model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model:
        return True
    return "/" in model and Path(model.split("/")[0]).is_dir()


def _closing_of(prefix: str) -> str:
    """"[[" -> "]]", so a logprob verdict reads like the text verdict the parser expects."""
    return prefix[::-1].translate(_CLOSING) if prefix and set(prefix) <= set("[(<{") else ""


@dataclass(frozen=True)
class _Prepared:
    request: ChatRequest
    input_ids: list[int]


class HFBackend:
    """transformers backend; the model loads on the first ``run`` and stays loaded for later runs."""

    name = "hf"

    def __init__(self, spec: "ModelSpec") -> None:
        self.spec = spec
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: Any = None
        self._stop_ids: list[int] = []

    @classmethod
    def from_spec(cls, spec: "ModelSpec") -> "HFBackend":
        spec = resolve_spec_model(spec)
        check_checkpoint(spec)
        check_adapter(spec)
        if spec.batch_size < 1:
            raise InputError(f"batch_size of model {spec.name!r} must be >= 1", fix="set batch_size = 16")
        return cls(spec)

    # ---- loading -------------------------------------------------------------------------------------------------

    def _resolve_device_and_dtype(self) -> tuple["torch.device", "torch.dtype"]:
        import torch

        spec = self.spec
        device_name = spec.device
        if device_name == "auto":
            device_name = "cuda" if torch.cuda.is_available() else "cpu"
        if device_name.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(
                f"model {spec.name!r} asks for device {spec.device!r} but CUDA is unavailable",
                fix="set device = 'cpu' or 'auto'",
            )
        device = torch.device(device_name)
        if spec.dtype == "auto":
            # bf16 halves GPU memory at no quality cost; CPUs run bf16 matmuls slowly, so fp32 there.
            dtype_name = "bfloat16" if device.type == "cuda" else "float32"
        elif spec.dtype in _DTYPES:
            dtype_name = _DTYPES[spec.dtype]
        else:
            raise InputError(
                f"unknown dtype {spec.dtype!r} for model {spec.name!r}", fix="use auto, float32, bfloat16 or float16"
            )
        return device, getattr(torch, dtype_name)

    def _load_tokenizer(self, source: str) -> Any:
        from transformers import AutoTokenizer, PreTrainedTokenizerFast

        local = Path(source).expanduser()
        if (local / "tokenizer.json").is_file():
            # AutoTokenizer would pick the class named by the model config (e.g. Qwen2Tokenizer), which need not
            # match a tokenizer trained elsewhere; the fast tokenizer reads tokenizer.json exactly as saved.
            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(local))
        else:
            tokenizer = AutoTokenizer.from_pretrained(source)
        tokenizer.padding_side = "left"  # batched decoder-only generation: every prompt ends where its reply starts
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if not tokenizer.chat_template:
            raise InputError(
                f"tokenizer of model {self.spec.name!r} ({source}) has no chat template",
                fix="use an SFT/instruct checkpoint, or add chat_template to its tokenizer_config.json",
            )
        return tokenizer

    def _ensure_loaded(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModelForCausalLM

        spec = self.spec
        device, dtype = self._resolve_device_and_dtype()
        source = str(Path(spec.model).expanduser()) if Path(spec.model).expanduser().is_dir() else spec.model
        try:
            with _quiet_loading():
                tokenizer = self._load_tokenizer(source)
                model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"cannot load model {spec.name!r} from {spec.model!r}: {str(exc).splitlines()[0]}",
                fix="point model at a local checkpoint directory, or a hub id reachable from this machine",
            ) from exc
        if spec.adapter:
            from peft import PeftModel

            with _quiet_loading():
                model = PeftModel.from_pretrained(model, str(Path(spec.adapter).expanduser()))
                # Folding the LoRA deltas into the base weights makes generation as fast as the base model's.
                model = model.merge_and_unload()
        model.to(device)
        model.eval()
        stop_ids: set[int] = set()
        configured = model.generation_config.eos_token_id
        stop_ids.update(configured if isinstance(configured, list) else [configured] if configured is not None else [])
        if tokenizer.eos_token_id is not None:
            stop_ids.add(tokenizer.eos_token_id)
        # ChatML models end an assistant turn with <|im_end|>; stop there even if generation_config forgot it.
        im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
        if im_end is not None:
            stop_ids.add(im_end)
        self._model, self._tokenizer, self._device = model, tokenizer, device
        self._stop_ids = sorted(stop_ids)

    # ---- running -------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Drop the model (and its GPU memory); a later ``run`` loads it again."""
        if self._model is None:
            return
        self._model = self._tokenizer = None
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def run(self, requests: Sequence[ChatRequest], on_done: OnDone, progress: Progress) -> None:
        if not requests:
            return
        self._ensure_loaded()
        pending = list(requests)
        while pending:
            follow_ups: list[ChatRequest] = []
            for batch in self._batches(pending):
                logprob = batch[0].request.logprob_choices is not None
                results = self._run_logprob_batch(batch) if logprob else self._run_generate_batch(batch)
                for prepared, result in zip(batch, results):
                    more = list(on_done(prepared.request, result) or ())
                    progress.advance(error=result.error is not None)
                    if more:
                        progress.add_total(len(more))
                        follow_ups.extend(more)
            pending = follow_ups

    def _check_adapter(self, request: ChatRequest) -> None:
        wanted = request.meta.get("adapter")
        served = Path(self.spec.adapter).expanduser().resolve() if self.spec.adapter else None
        if wanted and Path(wanted).expanduser().resolve() != served:
            raise InputError(
                f"request {request.key!r} asks for adapter {wanted!r}, but hf model {self.spec.name!r} serves "
                f"{self.spec.adapter or 'no adapter'}",
                fix="give each adapter its own model entry (adapter = ...) or use the vllm backend",
            )

    def _prepare(self, request: ChatRequest) -> _Prepared:
        self._check_adapter(request)
        text = self._tokenizer.apply_chat_template(list(request.messages), tokenize=False, add_generation_prompt=True)
        if request.logprob_choices:
            text += request.verdict_prefix  # the assistant reply starts with the prefix; the next token is the verdict
        # The template already wrote any BOS/special tokens; adding them again would shift every prompt.
        return _Prepared(request, self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def _batches(self, requests: Sequence[ChatRequest]) -> Iterator[list[_Prepared]]:
        """Group by everything that must be uniform in one ``generate`` call, then chunk by length (less padding)."""
        groups: dict[tuple[Any, ...], list[_Prepared]] = {}
        for request in requests:
            group: tuple[Any, ...]
            if request.logprob_choices:
                group = ("logprob",)
            else:
                seed = request.seed if request.seed is not None else self.spec.seed
                group = ("generate", float(request.temperature), int(request.max_tokens), seed)
            groups.setdefault(group, []).append(self._prepare(request))
        for members in groups.values():
            # The key breaks length ties so batch composition (hence sampled text) never depends on input order.
            members.sort(key=lambda p: (len(p.input_ids), p.request.key))
            size = self.spec.batch_size
            for start in range(0, len(members), size):
                yield members[start : start + size]

    def _pad(self, batch: list[_Prepared]) -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        width = max(len(p.input_ids) for p in batch)
        pad_id = self._tokenizer.pad_token_id
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, prepared in enumerate(batch):
            n = len(prepared.input_ids)
            ids[row, width - n :] = torch.tensor(prepared.input_ids, dtype=torch.long)
            mask[row, width - n :] = 1
        return ids.to(self._device), mask.to(self._device)

    def _run_generate_batch(self, batch: list[_Prepared]) -> list[ChatResult]:
        import torch

        first = batch[0].request
        seed = first.seed if first.seed is not None else self.spec.seed
        sampling = first.temperature > 0
        options: dict[str, Any] = {"do_sample": sampling, "repetition_penalty": 1.0}
        if sampling:
            options.update(temperature=float(first.temperature), top_k=0, top_p=1.0)
        min_new = self.spec.extra.get("min_new_tokens")  # benchmarks force fixed-length replies with it
        if min_new:
            options["min_new_tokens"] = min(int(min_new), first.max_tokens)
        ids, mask = self._pad(batch)
        started = time.perf_counter()
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self._model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=first.max_tokens,
                eos_token_id=self._stop_ids,
                pad_token_id=self._tokenizer.pad_token_id,
                **options,
            )
        latency = (time.perf_counter() - started) / len(batch)
        new_tokens = out[:, ids.shape[1] :].tolist()
        results = []
        for prepared, tokens in zip(batch, new_tokens):
            reply = self._until_stop(tokens)
            text = self._tokenizer.decode(reply, skip_special_tokens=True)
            prompt_tokens = len(prepared.input_ids)
            results.append(ChatResult(text, prompt_tokens=prompt_tokens, completion_tokens=len(reply), latency=latency))
        return results

    def _until_stop(self, tokens: list[int]) -> list[int]:
        """The reply's tokens through the first stop token (counted, as vLLM does); padding after it is not."""
        stops = set(self._stop_ids)
        for i, token in enumerate(tokens):
            if token in stops:
                return tokens[: i + 1]
        return tokens

    def _choice_token_ids(self, prefix: str, choices: tuple[str, ...]) -> list[int]:
        """The token each choice starts with right after ``prefix`` (shared with the vLLM worker)."""
        try:
            return choice_token_ids(lambda text: self._tokenizer.encode(text, add_special_tokens=False), prefix, choices)
        except ValueError as exc:
            raise InputError(
                f"model {self.spec.name!r}: {exc}",
                fix="use verdict choices that start with different tokens, or verdict_mode = 'text'",
            ) from None

    def _run_logprob_batch(self, batch: list[_Prepared]) -> list[ChatResult]:
        import torch

        ids, mask = self._pad(batch)
        # Left padding: positions must count real tokens only, or a padded prompt sees shifted rotary positions.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        started = time.perf_counter()
        with torch.inference_mode():
            logits = self._model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1, :]
        probs = torch.softmax(logits.float(), dim=-1)
        latency = (time.perf_counter() - started) / len(batch)
        results = []
        for row, prepared in enumerate(batch):
            request = prepared.request
            choices = tuple(request.logprob_choices or ())
            token_ids = self._choice_token_ids(request.verdict_prefix, choices)
            raw = probs[row, token_ids].tolist()
            total = sum(raw)
            normalised = [p / total for p in raw] if total > 0 else [1.0 / len(raw)] * len(raw)
            choice_probs = dict(zip(choices, normalised))
            best = max(choices, key=lambda c: choice_probs[c])
            text = f"{request.verdict_prefix}{best}{_closing_of(request.verdict_prefix)}"
            results.append(
                ChatResult(
                    text=text,
                    prompt_tokens=len(prepared.input_ids),
                    completion_tokens=0,
                    latency=latency,
                    choice_probs=choice_probs,
                )
            )
        return results


__all__ = ["HFBackend", "check_adapter", "check_checkpoint", "looks_like_path", "resolve_spec_model"]


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """transformers' "Loading weights" bar and info logs off while a model loads: evalsuite's own bars are the
    output; warnings and errors still show. Restored afterwards."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # library renames, for evalsuite's maintainers to act on
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
