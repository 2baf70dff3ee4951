"""Atomic file writes: a reader (or a run resumed after a crash) sees the old file or the new one, never half of one.

The data goes to a sibling temporary file in the same folder (so the rename stays on one file system), is flushed
to disk, and then replaces the target with ``os.replace``, which is atomic on POSIX and Windows. The temporary file
is created with the permissions an ordinary write would give (``0o666`` less the umask) and removed if anything
fails, Ctrl-C included.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text"]


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (creating its folder); returns the path.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     p = atomic_write_bytes(Path(tmp) / "sub" / "a.bin", b"one")
    ...     _ = atomic_write_bytes(p, b"two")
    ...     p.read_bytes(), sorted(x.name for x in p.parent.iterdir())
    (b'two', ['a.bin'])
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`); newlines are written as given."""
    return atomic_write_bytes(path, text.encode(encoding))
