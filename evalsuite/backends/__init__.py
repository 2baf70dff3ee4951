"""Model backends, chosen by name from a registry: ``openai`` (any OpenAI-compatible server), ``hf`` (transformers),
``vllm`` (a vLLM engine in a worker subprocess, under the interpreter of vLLM's own venv if need be). Heavy libraries
load only when a backend runs. Every backend has ``run`` and ``close``; whoever builds one closes it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from evalsuite.backends._base import ChatBackend, ChatRequest, ChatResult, NullProgress, OnDone, Progress
from evalsuite.errors import InputError

if TYPE_CHECKING:
    from evalsuite.config import ModelSpec

# name -> "module:attribute"; the class must offer ``from_spec(spec: ModelSpec) -> ChatBackend``.
BACKENDS: dict[str, str] = {
    "openai": "evalsuite.backends.openai:OpenAIBackend",
    "hf": "evalsuite.backends.hf:HFBackend",
    "vllm": "evalsuite.backends.vllm:VLLMBackend",
}


def make_backend(spec: "ModelSpec") -> ChatBackend:
    target = BACKENDS.get(spec.backend)
    if target is None:
        raise InputError(
            f"unknown backend {spec.backend!r} for model {spec.name!r}",
            fix=f"use one of {', '.join(sorted(BACKENDS))}",
        )
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = {"hf": "train", "vllm": "vllm"}.get(spec.backend, "")
        raise InputError(
            f"backend {spec.backend!r} for model {spec.name!r} needs a missing package ({exc.name})",
            fix=f"pip install 'evalsuite[{extra}]'" if extra else "reinstall evalsuite",
        ) from exc
    return getattr(module, attr).from_spec(spec)


__all__ = ["BACKENDS", "ChatBackend", "ChatRequest", "ChatResult", "NullProgress", "OnDone", "Progress", "make_backend"]
