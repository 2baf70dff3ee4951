"""Tiny local models for tests, demos and benchmarks: a byte-level BPE tokenizer trained on bundled text and a
random-weight Qwen2 (or Llama) causal LM, built on this machine in under a second, never downloaded.

The model's answers are noise; what it offers is a real ``transformers`` checkpoint (config, weights, tokenizer,
chat template) that every local code path (``hf`` backend, trainers, LoRA adapters) can load exactly as it would a
real one. torch, transformers and tokenizers are imported inside the functions so importing this module is cheap.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from evalsuite._resources import benchmarks_dir, demo_data_dir

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

EOS_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (EOS_TOKEN, IM_START, IM_END)

# ChatML, as Qwen2 uses it; the generation prompt opens the assistant turn so a reply (or a verdict prefix) follows.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


_SUBJECTS = ("The model", "A judge", "The assistant", "This answer", "The user", "Our baseline", "The candidate")
_VERBS = ("explains", "compares", "writes", "solves", "summarises", "rates", "prefers", "checks")
_OBJECTS = (
    "the proof", "a short poem", "the Python function", "both answers", "the second turn", "a travel plan",
    "the equation 3x + 5 = 20", "an email to a colleague", "the reference answer", "the verdict [[A]]",
)
_ENDINGS = (".", " carefully.", " in two steps.", " with an example.", "?", " and says why.", " [[B]].", " [[C]].")
# Syllables for made-up words: they give BPE enough distinct pairs to reach ~1000 tokens without any real corpus.
_SYLLABLES = (
    "ka", "lo", "mi", "ne", "ru", "ta", "shi", "ver", "gon", "dal", "pe", "qui", "zor", "bel", "an", "ex", "ion",
    "ing", "ed", "ly", "st", "tr", "ch", "th", "ou", "ar", "or", "en", "is", "al",
)


def _strings_in(record: Any) -> Iterator[str]:
    """Every string anywhere in a JSON record (questions, turns, references)."""
    if isinstance(record, str):
        yield record
    elif isinstance(record, dict):
        for value in record.values():
            yield from _strings_in(value)
    elif isinstance(record, list):
        for value in record:
            yield from _strings_in(value)


TINY_DEMO_DATA = ("prefs.jsonl", "sft.jsonl")  # the files of demo_data_dir() the tiny tokenizer reads, in this order


def _bundled_texts() -> list[str]:
    texts: list[str] = []
    # The bundled benchmarks, then the tiny demo's training data: the same files in a checkout and in a wheel install.
    # Named, not globbed, in the demo folder: a data file added there for another purpose (the SmolLM2 judge's
    # replies) must not change this tokenizer, hence every tiny model and what tests train on it.
    demo_files = [demo_data_dir() / name for name in TINY_DEMO_DATA]
    # Sorted so the corpus, hence the tokenizer, is the same on every machine.
    for path in [*sorted(benchmarks_dir().rglob("*.jsonl")), *demo_files]:
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                texts.extend(_strings_in(json.loads(line)))
            except json.JSONDecodeError:
                continue
    return texts


def _generated_texts(n: int = 600, seed: int = 0) -> list[str]:
    rng = random.Random(seed)

    def word() -> str:
        return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4)))

    texts = []
    for _ in range(n):
        made_up = " ".join(word() for _ in range(rng.randint(2, 8)))
        texts.append(
            f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} about {made_up}, "
            f"{rng.randint(0, 9999)} times{rng.choice(_ENDINGS)}"
        )
    return texts


def default_corpus() -> list[str]:
    """Bundled benchmark/demo text when present, always topped up with generated sentences (verdict tokens included)."""
    return _bundled_texts() + _generated_texts()


def build_tiny_tokenizer(texts: Iterable[str] | None = None, vocab_size: int = 1000) -> "PreTrainedTokenizerFast":
    """Train a byte-level BPE tokenizer with ChatML special tokens and chat template; left padding, pad = eos."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = list(texts) if texts is not None else default_corpus()
    tokenizer = Tokenizer(models.BPE())
    # Byte-level: any input text encodes (no unknown token), and decoding inverts encoding exactly.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        additional_special_tokens=[IM_START, IM_END],
        padding_side="left",
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def load_tokenizer(path: str | Path) -> "PreTrainedTokenizerFast":
    """Load a saved tokenizer as ``PreTrainedTokenizerFast`` (AutoTokenizer would swap in Qwen2's own class)."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    tokenizer.padding_side = "left"  # decoder-only batched generation needs the prompt flush against the reply
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_tiny_model(
    out_dir: str | Path,
    *,
    texts: Iterable[str] | None = None,
    arch: str = "qwen2",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    vocab_size: int = 1000,
    seed: int = 0,
) -> Path:
    """Save a random-weight causal LM and its tokenizer into ``out_dir``; same seed and texts, same weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    architectures = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}
    if arch not in architectures:
        from evalsuite.errors import InputError

        raise InputError(f"unknown tiny-model arch {arch!r}", fix=f"use one of {', '.join(sorted(architectures))}")
    out = Path(out_dir)
    tokenizer = build_tiny_tokenizer(texts, vocab_size=vocab_size)
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    config_cls, model_cls = architectures[arch]
    config = config_cls(
        # The model's vocabulary is exactly the tokenizer's, so every sampled id decodes (a small corpus may give
        # BPE fewer tokens than asked for).
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=4096,  # two MT-Bench turns plus a judge template fit
        tie_word_embeddings=False,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    torch.manual_seed(seed)
    model = model_cls(config)
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = eos_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@dataclass(frozen=True)
class TinyVLLMModel:
    """A tiny checkpoint vLLM's CPU build can serve, and optionally a PEFT LoRA adapter over it."""

    base: Path
    adapter: Path | None


def build_tiny_adapter(base_dir: str | Path, out_dir: str | Path, *, rank: int = 8, seed: int = 1) -> Path:
    """Save a PEFT LoRA adapter (q/k/v/o projections) over ``base_dir`` with random, non-zero B matrices.

    LoRA B starts at zero, which would make the adapter a no-op; it is perturbed so adapter replies differ.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"
    )
    model = get_peft_model(base, config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    out = Path(out_dir)
    model.save_pretrained(out)
    return out


def build_tiny_vllm_model(out_dir: str | Path, *, with_adapter: bool = True, seed: int = 0) -> TinyVLLMModel:
    """A tiny Qwen2 that vLLM's CPU attention accepts (head_dim 64: hidden 128, 2 heads) in ``out_dir/base``, plus a
    rank-8 LoRA adapter in ``out_dir/adapter`` when ``with_adapter``. Built locally in seconds; replies are noise.
    """
    out = Path(out_dir)
    base = build_tiny_model(out / "base", hidden_size=128, num_heads=2, num_layers=2, seed=seed)
    adapter = build_tiny_adapter(base, out / "adapter", rank=8, seed=seed + 1) if with_adapter else None
    return TinyVLLMModel(base=base, adapter=adapter)


__all__ = [
    "CHAT_TEMPLATE", "TinyVLLMModel", "build_tiny_adapter", "build_tiny_model", "build_tiny_tokenizer",
    "build_tiny_vllm_model", "default_corpus", "load_tokenizer",
]
