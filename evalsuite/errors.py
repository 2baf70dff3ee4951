"""Errors the CLI turns into exit code 2 with a one-line message naming the file or record and the fix."""

from __future__ import annotations


class InputError(Exception):
    """Bad input or configuration: the message says what, where, and how to fix it."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None) -> None:
        parts = [f"{where}: {message}" if where else message]
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__(" — ".join(parts))
