"""evalsuite: LLM-as-judge evaluation for post-training.

The Python API lives in :mod:`evalsuite.api` (``compare``, ``gate``, ``import_judgments``, ``load_results``);
``gate``, ``import_judgments`` and ``load_results`` are re-exported here and load on first use, so ``import evalsuite``
imports nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module it lives in; imported on first access
_LAZY = {"gate": "evalsuite.api", "import_judgments": "evalsuite.api", "load_results": "evalsuite.api"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'evalsuite' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", "gate", "import_judgments", "load_results"]
