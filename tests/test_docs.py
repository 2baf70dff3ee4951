"""The documentation: the MkDocs site builds strictly, every page is in the navigation, the README's links land on
pages that exist, and no page tells a user to install evalsuite from a registry it is not on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

DOCS = ROOT / "docs"


def _nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:"):]
    return re.findall(r":\s*([\w./-]+\.md)\s*$", nav, re.M)


def test_every_page_is_in_the_navigation_and_every_entry_exists() -> None:
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    nav = _nav_pages()
    assert sorted(nav) == pages


def test_readme_links_land_on_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(((?:docs/|LICENSE)[^)#\s]*)", readme)
    assert "LICENSE" in links and "docs/install.md" in links
    for link in links:
        assert (ROOT / link).exists(), link


def test_no_page_installs_evalsuite_from_a_registry() -> None:
    # `pip install evalsuite` (bare, or with a version) would fetch from PyPI, where this project is not published
    bare = re.compile(r"pip install\s+['\"]?evalsuite(?:\[[^\]]*\])?(?:[=<>~!]=?[\w.]+)?['\"]?(?=\s|$|`)(?!\s*@)")
    for path in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        for line in path.read_text(encoding="utf-8").splitlines():
            if "pip install 'evalsuite[" in line or 'pip install "evalsuite[' in line:
                continue  # an extra's name in prose ("pip install 'evalsuite[train]'"), as the CLI's messages say it
            assert not bare.search(line), f"{path.relative_to(ROOT)}: {line.strip()}"


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
                         timeout=300)
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "interop" / "index.html").read_text(encoding="utf-8")
    assert "LC (AlpacaEval v1)" in page
