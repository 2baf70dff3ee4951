"""The tiny local model: built offline, reloadable through the standard transformers entry points, chat-ready."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from evalsuite.demo.tiny import build_tiny_model, build_tiny_tokenizer, load_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def test_tokenizer_has_chatml_specials_and_left_padding() -> None:
    tokenizer = build_tiny_tokenizer(vocab_size=500)
    assert len(tokenizer) == 500
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.padding_side == "left"
    for special in ("<|im_start|>", "<|im_end|>"):
        assert len(tokenizer.encode(special, add_special_tokens=False)) == 1
    text = "Solve 3x + 5 = 20, then say [[A]]. Ünïcode too."
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text  # byte-level: lossless


def test_reload_renders_chat_template_with_generation_prompt(tiny_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_dir)
    assert isinstance(tokenizer, transformers.PreTrainedTokenizerFast)
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id is not None
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Why?"},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
        "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n"
    )
    without = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert not without.endswith("<|im_start|>assistant\n")


def test_reloaded_model_generates(tiny_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.vocab_size == len(tokenizer)  # every sampled id decodes
    batch = tokenizer(["short", "a somewhat longer prompt"], return_tensors="pt", padding=True)
    pad = tokenizer.pad_token_id
    out = model.generate(**batch, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=pad)
    assert out.shape == (2, batch["input_ids"].shape[1] + 4)
    assert batch["attention_mask"][0, 0] == 0  # left padding


def test_same_seed_same_weights_and_llama_arch(tmp_path: Path) -> None:
    a = build_tiny_model(tmp_path / "a", hidden_size=32, num_layers=1, seed=3)
    b = build_tiny_model(tmp_path / "b", hidden_size=32, num_layers=1, seed=3)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    llama = build_tiny_model(tmp_path / "llama", arch="llama", hidden_size=32, num_layers=1)
    model = transformers.AutoModelForCausalLM.from_pretrained(llama)
    assert type(model).__name__ == "LlamaForCausalLM"


def test_import_is_cheap() -> None:
    import subprocess
    import sys

    code = "import sys, evalsuite.demo.tiny; print('torch' in sys.modules or 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
