"""Type-check evalsuite/ and trainers/ with mypy, as the installed package lays them out; exit code = mypy's.

mypy resolves a module by its folder, and ``evalsuite.trainers`` lives in ``trainers/`` (setuptools' package-dir),
which mypy cannot map, nor can it follow the editable install's import hook. So this mirrors both folders into
``build/typecheck/evalsuite/`` (hard links where the file system allows, else copies; modification times kept, so
mypy's cache in ``build/typecheck/.mypy_cache`` stays valid between runs), runs ``python -m mypy`` there with the
``[tool.mypy]`` settings of pyproject.toml, and prints its report with the paths of this checkout.

    python scripts/typecheck.py          # what tests/test_typecheck.py runs
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / "build" / "typecheck"
# package folder in the tree -> folder of this checkout
SOURCES = {Path("evalsuite"): ROOT / "evalsuite", Path("evalsuite") / "trainers": ROOT / "trainers"}


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def mirror() -> None:
    """Lay out ``build/typecheck/evalsuite`` as the installed package: every .py/.pyi file and py.typed."""
    package = TREE / "evalsuite"
    if package.exists():
        shutil.rmtree(package)
    for rel, src in SOURCES.items():
        for path in src.rglob("*"):
            if path.suffix not in (".py", ".pyi") and path.name != "py.typed":
                continue
            if "__pycache__" in path.parts or (rel == Path("evalsuite") and path.relative_to(src).parts[0] == "trainers"):
                continue
            target = TREE / rel / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(path, target)


def to_checkout(line: str) -> str:
    """A mypy report line with the tree's paths turned back into this checkout's."""
    for rel, src in sorted(SOURCES.items(), key=lambda item: -len(item[0].parts)):
        prefix = f"{rel.as_posix()}/"
        if line.startswith(prefix):
            return f"{src.relative_to(ROOT).as_posix()}/{line[len(prefix):]}"
    return line


def main() -> int:
    started = time.perf_counter()
    mirror()
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", ".mypy_cache",
         "-p", "evalsuite"],
        cwd=TREE,
        capture_output=True,
        text=True,
    )
    for line in (proc.stdout + proc.stderr).splitlines():
        print(to_checkout(line))
    print(f"typecheck: mypy took {time.perf_counter() - started:.1f} s")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
