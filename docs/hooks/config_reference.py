"""MkDocs hook: renders the configuration reference into ``configuration.md`` from evalsuite's typed config.

Every table of ``evalsuite.toml`` is a dataclass whose fields carry their type, default and help
(:func:`evalsuite.config.config_tables`); :func:`evalsuite.config.config_reference` turns them into one Markdown table
per section, and this hook puts that where the page says ``<!-- config-reference -->``. A key added to the code is
documented by the next build; a page that lost the marker fails the build.

Registered in mkdocs.yml as ``hooks: [docs/hooks/config_reference.py]``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

MARKER = "<!-- config-reference -->"
PAGE = "configuration.md"


def _reference() -> str:
    try:
        from evalsuite.config import config_reference
    except ImportError:  # building from a checkout where evalsuite is not installed: read it from the source tree
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from evalsuite.config import config_reference
    return config_reference(heading_level=3)


def on_page_markdown(markdown: str, *, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"{PAGE} has no {MARKER} line: the configuration reference has nowhere to go")
    return markdown.replace(MARKER, _reference())
