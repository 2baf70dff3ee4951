"""Project configuration: ``evalsuite.toml`` parsed into typed specs; command-line flags override any key."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """Where a model lives and how to sample it. Used for answer models and for the judge."""

    name: str  # evalsuite's name for it: "sft", "dpo-b0.1", "judge"
    backend: str = "openai"  # key of evalsuite.backends.BACKENDS
    model: str = ""  # name sent to the endpoint, or a local checkpoint path / hub id
    base_url: str | None = None
    api_key_env: str | None = None  # secrets only ever come from the environment
    adapter: str | None = None  # LoRA adapter directory applied on `model` (hf, vllm)
    max_tokens: int = 1024
    temperature: float | None = None  # None: MT-Bench per-category default
    concurrency: int = 16
    timeout: float = 120.0
    max_retries: int = 5
    seed: int = 0
    dtype: str = "auto"
    device: str = "auto"
    batch_size: int = 16
    tensor_parallel_size: int = 1
    verdict_mode: str = "text"  # judge only: "text" parses the verdict, "logprob" reads verdict-token probabilities
    price_input: float | None = None  # USD per 1M prompt tokens, for cost accounting
    price_output: float | None = None  # USD per 1M completion tokens
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))
