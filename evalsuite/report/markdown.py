"""The markdown leaderboard (GitHub-flavoured): ``evalsuite.report.leaderboard``'s model written as markdown."""

from __future__ import annotations

from evalsuite.report.leaderboard import Block, Leaderboard, Note, Paragraph, Section, Table, build_leaderboard
from evalsuite.report.results import Results, format_p

__all__ = ["format_p", "leaderboard_markdown", "render_markdown"]


def _cell(text: str) -> str:
    """A table cell: a ``|`` inside it (a model name can hold one) must not end the cell.

    >>> _cell("a|b")
    'a\\\\|b'
    """
    return text.replace("|", "\\|")


def table_markdown(t: Table) -> list[str]:
    sep = ["---:" if a == "r" else ":---" for a in t.align]
    return [
        "| " + " | ".join(_cell(h) for h in t.header) + " |",
        "| " + " | ".join(sep) + " |",
        *("| " + " | ".join(_cell(c) for c in r) + " |" for r in t.rows),
    ]


def block_markdown(block: Block) -> list[str]:
    """One block and the blank line after it."""
    if isinstance(block, Table):
        return table_markdown(block) + [""]
    if isinstance(block, Note):
        return [f"> **{block.label}.** {block.text}", ""]
    assert isinstance(block, Paragraph)
    return [block.text, ""]


def section_markdown(section: Section) -> list[str]:
    return [f"## {section.title}", "", *(line for b in section.blocks for line in block_markdown(b))]


def leaderboard_markdown(board: Leaderboard) -> str:
    lines = [f"# {board.title}", ""]
    lines += [line for b in board.intro for line in block_markdown(b)]
    lines += [line for s in board.sections for line in section_markdown(s)]
    lines += ["---", "", board.footer, ""]
    return "\n".join(lines)


def render_markdown(results: Results) -> str:
    """The leaderboard of ``results`` as markdown (``leaderboard.md``, ``evalsuite report``)."""
    return leaderboard_markdown(build_leaderboard(results))
