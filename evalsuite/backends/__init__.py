"""Model backends, chosen by name from a registry: ``openai`` (any OpenAI-compatible server), ``hf`` (transformers),
``vllm`` (a vLLM engine in a worker subprocess, under the interpreter of vLLM's own venv if need be). Heavy libraries
load only when a backend runs. Every backend has ``run`` and ``close``; whoever builds one closes it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from evalsuite.backends._base import ChatBackend, ChatRequest, ChatResult, NullProgress, OnDone, Progress
from evalsuite.errors import InputError, missing_extra, require_packages

if TYPE_CHECKING:
    from evalsuite.config import ModelSpec

# name -> "module:attribute"; the class must offer ``from_spec(spec: ModelSpec) -> ChatBackend``.
BACKENDS: dict[str, str] = {
    "openai": "evalsuite.backends.openai:OpenAIBackend",
    "hf": "evalsuite.backends.hf:HFBackend",
    "vllm": "evalsuite.backends.vllm:VLLMBackend",
}

# name -> optional packages it imports in this interpreter (vllm's own run in its worker's interpreter)
NEEDS: dict[str, tuple[str, ...]] = {"hf": ("torch", "transformers")}


def make_backend(spec: "ModelSpec") -> ChatBackend:
    target = BACKENDS.get(spec.backend)
    if target is None:
        raise InputError(
            f"unknown backend {spec.backend!r} for model {spec.name!r}",
            fix=f"use one of {', '.join(sorted(BACKENDS))}",
        )
    module_name, attr = target.split(":")
    needed_for = f"backend {spec.backend!r} of model {spec.name!r}"
    # checked before any call: these backends import their libraries lazily, at the first request
    require_packages(NEEDS.get(spec.backend, ()), needed_for)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = missing_extra(exc, needed_for)
        if missing is None:
            raise
        raise missing from exc
    return getattr(module, attr).from_spec(spec)


__all__ = ["BACKENDS", "ChatBackend", "ChatRequest", "ChatResult", "NullProgress", "OnDone", "Progress", "make_backend"]
