"""Where the bundled data lives on disk: benchmarks, judge templates and demo data, as real folders.

One lookup for every layout evalsuite runs from:

* a wheel install: ``site-packages/evalsuite/benchmarks``, ``.../evalsuite/prompts``, ``.../evalsuite/demo/data``;
* an editable install or a checkout run without installing: ``benchmarks/`` and ``prompts/`` beside ``evalsuite/``
  (pyproject maps them into the package with ``package-dir``).

``importlib.resources.files()`` is not used: on these folders (namespace packages, no ``__init__.py``) it returns a
``MultiplexedPath`` whose ``str()`` is not a path, and setuptools' editable finder cannot import them at all. The
import system's own answer (the package's search locations) is asked first, then the two layouts above; a folder is
taken only when it holds what it should (``marker``), so a stranger's ``site-packages/benchmarks`` is never used.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from evalsuite.errors import InputError

__all__ = ["BENCHMARKS", "DEMO_DATA", "PROMPTS", "BundledFolder", "benchmarks_dir", "bundled_dir", "candidate_dirs",
           "demo_data_dir", "prompts_dir"]

_PACKAGE_DIR = Path(__file__).resolve().parent  # .../evalsuite


@dataclass(frozen=True)
class BundledFolder:
    """A folder of data shipped with evalsuite."""

    package: str  # import name the wheel installs it under
    subdir: str  # folder inside that package ("" = the package folder itself)
    checkout: str  # the folder relative to the repository root, in a checkout
    marker: str  # glob that matches inside the right folder

    @property
    def installed(self) -> Path:
        """Where a wheel install puts it, derived from this file's own location."""
        parts = self.package.split(".")[1:] + ([self.subdir] if self.subdir else [])
        return _PACKAGE_DIR.joinpath(*parts)


BENCHMARKS = BundledFolder("evalsuite.benchmarks", "", "benchmarks", "*/question.jsonl")
PROMPTS = BundledFolder("evalsuite.prompts", "", "prompts", "*.j2")
DEMO_DATA = BundledFolder("evalsuite.demo", "data", "evalsuite/demo/data", "*.jsonl")


def _spec_locations(package: str) -> list[Path]:
    """The folders the import system would load ``package`` from; empty when it cannot find the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    if spec is None or spec.submodule_search_locations is None:
        return []
    # A namespace package's locations may carry non-path placeholders (setuptools' editable finder adds one).
    return [Path(p) for p in spec.submodule_search_locations if Path(p).is_dir()]


def candidate_dirs(folder: BundledFolder) -> list[Path]:
    """Every place ``folder`` may be, in the order they are tried."""
    found = [p / folder.subdir if folder.subdir else p for p in _spec_locations(folder.package)]
    checkout = _PACKAGE_DIR.parent.joinpath(*folder.checkout.split("/"))
    return list(dict.fromkeys([*found, folder.installed, checkout]))


@functools.cache
def bundled_dir(folder: BundledFolder) -> Path:
    """The folder on disk holding ``folder``'s files; an InputError naming every place tried when none does."""
    tried = candidate_dirs(folder)
    for path in tried:
        if path.is_dir() and any(path.glob(folder.marker)):
            return path
    raise InputError(
        f"evalsuite's bundled {folder.checkout!r} files are missing (looked in {', '.join(str(p) for p in tried)})",
        fix="reinstall evalsuite (pip install --force-reinstall evalsuite) or run from a complete checkout",
    )


def benchmarks_dir() -> Path:
    """The folder of bundled benchmarks: one subfolder per set, each with a ``question.jsonl``."""
    return bundled_dir(BENCHMARKS)


def prompts_dir() -> Path:
    """The folder of built-in judge templates (``*.j2``)."""
    return bundled_dir(PROMPTS)


def demo_data_dir() -> Path:
    """The folder of the demo's training data (``sft.jsonl``, ``prefs.jsonl``)."""
    return bundled_dir(DEMO_DATA)
