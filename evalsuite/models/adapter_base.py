"""Does a LoRA adapter fit the base model it is applied to? Checked from small files only (the two ``config.json``s,
``adapter_config.json`` and the safetensors header), before any engine loads, so an adapter trained on another model
is one line naming the adapter file instead of a shape error deep inside PEFT or vLLM. Standard library only."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

from evalsuite.errors import InputError

# Dimensions that must agree between the base an adapter was trained on and the base it is applied to.
_DIMS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size")
_LAYER = re.compile(r"\.layers\.(\d+)\.")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors file's JSON header (the weights are not read).

    >>> import tempfile, os
    >>> header = json.dumps({"a.lora_A.weight": {"dtype": "F32", "shape": [8, 576], "data_offsets": [0, 0]}}).encode()
    >>> with tempfile.NamedTemporaryFile(suffix=".safetensors", delete=False) as f:
    ...     _ = f.write(struct.pack("<Q", len(header)) + header)
    >>> safetensors_shapes(Path(f.name)); os.unlink(f.name)
    {'a.lora_A.weight': [8, 576]}
    """
    with path.open("rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise ValueError("shorter than a safetensors header")
        (length,) = struct.unpack("<Q", raw)
        if length > 100_000_000:
            raise ValueError("implausible safetensors header length")
        header = json.loads(handle.read(length))
    return {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}


def _in_features(config: dict[str, Any]) -> set[int]:
    """Input widths of a decoder's linear layers: what a LoRA A matrix's second dimension can be."""
    widths = {config.get("hidden_size"), config.get("intermediate_size")}
    heads, head_dim = config.get("num_attention_heads"), config.get("head_dim")
    if isinstance(heads, int) and isinstance(head_dim, int):
        widths.add(heads * head_dim)  # o_proj reads the concatenated heads
    return {w for w in widths if isinstance(w, int)}


def check_adapter_base(adapter: str | Path, base: str | Path, *, model_name: str) -> None:
    """Raise ``InputError`` when the adapter in ``adapter`` was made for a different model than ``base``. Nothing is
    checked when ``base`` has no readable local ``config.json`` (a hub id): the engine's own error then applies."""
    adapter_dir = Path(adapter).expanduser()
    base_config = _read_json(Path(base).expanduser() / "config.json")
    if base_config is None:
        return
    adapter_config_path = adapter_dir / "adapter_config.json"
    fix = f"apply the adapter to the model it was trained on, or retrain it on {base}"
    adapter_config = _read_json(adapter_config_path) or {}
    trained_on = adapter_config.get("base_model_name_or_path")
    if isinstance(trained_on, str) and trained_on:
        trained_dir = Path(trained_on).expanduser()
        if not trained_dir.is_absolute():
            trained_dir = adapter_dir / trained_dir if (adapter_dir / trained_dir).is_dir() else trained_dir
        trained_config = _read_json(trained_dir / "config.json")
        if trained_config is not None:
            differ = [d for d in _DIMS if d in trained_config and d in base_config and trained_config[d] != base_config[d]]
            if differ:
                what = ", ".join(f"{d} {trained_config[d]} vs {base_config[d]}" for d in differ)
                raise InputError(
                    f"{adapter_config_path}: adapter of model {model_name!r} was trained on {trained_on}, not on {base} "
                    f"({what})",
                    fix=fix,
                )
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        return
    try:
        shapes = safetensors_shapes(weights)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{weights}: unreadable adapter weights ({exc})", fix="retrain or re-save the adapter") from exc
    widths = _in_features(base_config)
    layers = base_config.get("num_hidden_layers")
    vocab = base_config.get("vocab_size")
    lora_widths: dict[int, str] = {}  # input width of each LoRA A matrix -> one tensor that has it
    for name, shape in shapes.items():
        problem = None
        match = _LAYER.search(name)
        if isinstance(layers, int) and match and int(match.group(1)) >= layers:
            problem = f"layer {match.group(1)} but the base has {layers} layers"
        elif "lora_embedding_A" in name and len(shape) == 2 and isinstance(vocab, int) and shape[1] != vocab:
            problem = f"vocabulary {shape[1]}, the base has {vocab}"
        elif "lora_A" in name and len(shape) == 2:
            lora_widths.setdefault(shape[1], name)
        if problem:
            raise InputError(
                f"{weights}: adapter of model {model_name!r} does not fit base {base} ({name}: {problem})", fix=fix
            )
    # Not every architecture's config names every layer width (an MLP may be sized by a factor), so only an adapter
    # none of whose LoRA matrices reads a width the base has is called foreign: another model's hidden size.
    if widths and lora_widths and not widths & set(lora_widths):
        width, name = min(lora_widths.items())
        raise InputError(
            f"{weights}: adapter of model {model_name!r} does not fit base {base} ({name}: input width {width}, "
            f"the base's layers take {sorted(widths)})",
            fix=fix,
        )
