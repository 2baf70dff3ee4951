"""Time to fingerprint a large weights file (evalsuite.generate.identity): first look, and a memoised second look.

    python scripts/bench_fingerprint.py              # a 1 GiB file of random bytes in a temporary folder
    python scripts/bench_fingerprint.py --size-mib 4096 --safetensors

The first look reads the sampled blocks (and, with --safetensors, a probe per tensor) after the file's pages are
dropped from the OS page cache (posix_fadvise), so they come from disk. The second look only stats the file. The file is deleted afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import tempfile
import time
from pathlib import Path

from evalsuite.generate.identity import MIB, _file_digest, fingerprint_files, sampled_ranges, weights_fingerprint


def write_random(path: Path, size: int, *, tensors: int) -> None:
    """``size`` bytes of random data; with ``tensors`` > 0 a safetensors header listing that many equal tensors first."""
    with path.open("wb") as fh:
        body = size
        if tensors:
            per = (size // tensors) // 4 * 4
            header: dict[str, object] = {
                f"layers.{i}.weight": {"dtype": "F32", "shape": [per // 4], "data_offsets": [i * per, (i + 1) * per]}
                for i in range(tensors)
            }
            blob = json.dumps(header).encode("utf-8")
            blob += b" " * (-len(blob) % 8)
            fh.write(struct.pack("<Q", len(blob)) + blob)
            body = per * tensors
        block = os.urandom(8 * MIB)  # random, so no filesystem compresses it; repeated to save the time of urandom
        written = 0
        while written < body:
            n = min(len(block), body - written)
            fh.write(block[:n])
            written += n


def evict_from_page_cache(path: Path) -> bool:
    """Ask the kernel to drop the file's cached pages, so the first look reads from disk; False where unsupported."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--safetensors", action="store_true", help="a safetensors file of 300 tensors (a 7B has 291)")
    parser.add_argument("--dir", default=None, help="where to write the file (default: the system's temporary folder)")
    args = parser.parse_args()

    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / ("model.safetensors" if args.safetensors else "model.bin")
        write_random(path, size, tensors=300 if args.safetensors else 0)
        real_size = path.stat().st_size
        cold = evict_from_page_cache(path)
        _file_digest.cache_clear()
        started = time.perf_counter()
        first = weights_fingerprint(path)
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        again = weights_fingerprint(path)
        again_s = time.perf_counter() - started
        assert first == again and first is not None
        sampled = sum(n for _, n in sampled_ranges(real_size))
        probes = " + a 4 KiB probe at the start and middle of each of 300 tensors" if args.safetensors else ""
        print(f"fingerprint of a {real_size / MIB:.0f} MiB {path.suffix} file: {first_s * 1000:.1f} ms first look{' from disk' if cold else ''} "
              f"(reads {sampled / MIB:.1f} MiB sampled{probes}), {again_s * 1000:.2f} ms memoised; "
              f"{len(fingerprint_files(path))} file, digest {first[:12]}")
        evict_from_page_cache(path)
        started = time.perf_counter()
        full = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(8 * MIB):
                full.update(chunk)
        print(f"for comparison, a full SHA-256 of the same file from disk: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
