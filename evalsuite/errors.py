"""Errors the CLI turns into exit code 2 with a one-line message naming the file or record and the fix, and the map
from an optional package that is not installed to the extra (``pip install 'evalsuite[train]'``) that brings it."""

from __future__ import annotations

import importlib.util
from typing import Sequence


class InputError(Exception):
    """Bad input or configuration: the message says what, where, and how to fix it."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None) -> None:
        parts = [f"{where}: {message}" if where else message]
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__(" — ".join(parts))


# import name -> the extra of pyproject.toml's [project.optional-dependencies] that installs it
# (tests/test_cli_errors.py checks this against pyproject.toml, so a new optional dependency cannot be missed)
EXTRAS: dict[str, str] = {
    "torch": "train", "transformers": "train", "trl": "train", "peft": "train", "datasets": "train",
    "accelerate": "train", "tokenizers": "train", "vllm": "vllm", "matplotlib": "plots", "ppi_py": "calibrate",
}


class MissingExtra(InputError):
    """An optional package is not installed: the message names the package, what needs it, and the extra to install."""

    def __init__(self, package: str, *, needed_for: str | None = None) -> None:
        extra = EXTRAS[package]
        self.package, self.extra = package, extra
        what = f"{needed_for} needs {package}" if needed_for else f"{package} is needed"
        super().__init__(f"{what}, which is not installed (evalsuite's [{extra}] extra)",
                         fix=f"pip install 'evalsuite[{extra}]'")


def missing_extra(exc: ImportError, needed_for: str | None = None) -> MissingExtra | None:
    """The :class:`MissingExtra` for an import that failed because an optional package is absent; None for any other
    import error (a broken install, a missing core dependency), which should surface as it is."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    root = exc.name.split(".")[0]
    return MissingExtra(root, needed_for=needed_for) if root in EXTRAS else None


def require_extra(extra: str, needed_for: str) -> None:
    """Raise :class:`MissingExtra` unless every package of ``extra`` can be imported (nothing is imported here)."""
    require_packages([p for p, e in EXTRAS.items() if e == extra], needed_for)


def require_packages(packages: Sequence[str], needed_for: str) -> None:
    """Raise :class:`MissingExtra` for the first of ``packages`` (keys of :data:`EXTRAS`) that cannot be imported."""
    for package in packages:
        if not _importable(package):
            raise MissingExtra(package, needed_for=needed_for)


def _importable(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a None entry in sys.modules, or a package whose spec cannot be read
        return False


__all__ = ["EXTRAS", "InputError", "MissingExtra", "missing_extra", "require_extra", "require_packages"]
