"""Weights fingerprints: what a local checkpoint or adapter holds, cheaply, so a cache key changes when its files do.

A local model's identity in every cache key (answers, judge verdicts, labeling) used to be its path; retraining into
the same folder then reused stale answers. The fingerprint covers the files that determine a model's outputs (weights,
configs, tokenizer and chat template) by their relative name, size and a SHA-256 over sampled bytes:

- a file up to :data:`WHOLE_FILE_LIMIT` is hashed whole (configs, tokenizers, most LoRA adapters);
- a larger file contributes its first and last MiB and :data:`INTERIOR_BLOCKS` evenly spaced blocks between them;
- a ``.safetensors`` file also contributes its header (every tensor's name, dtype, shape and offsets) and a small
  probe at the start and the middle of every tensor, so a run that changed only some tensors (a LoRA merged into
  the attention projections) is still seen.

So a 14 GB checkpoint costs tens of MiB of reads, not 14 GB. What sampling cannot see is an edit confined to bytes
no probe reads (one weight changed by hand); training moves every element of the tensors it touches, which is seen.
File digests are memoised per process on (path, size, mtime_ns): a second look at unchanged files only stats them.
The content, not the mtime, is what is hashed, so touching or copying a checkpoint does not change its fingerprint.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

MIB = 1 << 20
WHOLE_FILE_LIMIT = 8 * MIB  # hashed whole up to this size
EDGE_BLOCK = MIB  # first and last block of a larger file
INTERIOR_BLOCKS = 16  # evenly spaced blocks between them
INTERIOR_BLOCK = 64 * 1024
TENSOR_PROBE = 4096  # bytes read at the start and the middle of each safetensors tensor
MAX_SAFETENSORS_HEADER = 100 * MIB  # safetensors' own limit; a larger length means the file is not safetensors

# Files whose content decides what a checkpoint answers. Weights by suffix; configs, tokenizer and chat template by name.
WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".bin", ".pt", ".gguf")
OUTPUT_FILES: frozenset[str] = frozenset({
    "config.json", "generation_config.json", "adapter_config.json",
    "model.safetensors.index.json", "pytorch_model.bin.index.json",
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "vocab.txt", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
    "chat_template.jinja", "chat_template.json",
})
# Saved beside the weights by a trainer, but they do not change what the model answers (and differ on every run).
TRAINING_STATE_FILES: frozenset[str] = frozenset({"training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt"})
# transformers saves extra named chat templates in this subfolder; any other subfolder (checkpoint-500/) is ignored.
CHAT_TEMPLATE_DIR = "additional_chat_templates"


@dataclass(frozen=True)
class FileFingerprint:
    """One file's part of a fingerprint: its name relative to the checkpoint folder, its size, its sampled digest."""

    name: str
    size: int
    digest: str


def determines_output(name: str) -> bool:
    """Whether a file of this name (relative to the checkpoint folder) is part of the fingerprint.

    >>> [determines_output(n) for n in ("model-00001-of-00004.safetensors", "adapter_model.bin", "config.json")]
    [True, True, True]
    >>> [determines_output(n) for n in ("training_args.bin", "metrics.jsonl", "README.md", "optimizer.pt")]
    [False, False, False, False]
    >>> determines_output("additional_chat_templates/tool_use.jinja"), determines_output("checkpoint-2/config.json")
    (True, False)
    """
    folder, _, base = name.rpartition("/")
    if folder:
        return folder == CHAT_TEMPLATE_DIR and base.endswith(".jinja")
    if base in TRAINING_STATE_FILES:
        return False
    return base in OUTPUT_FILES or base.endswith(WEIGHT_SUFFIXES)


def sampled_ranges(size: int) -> list[tuple[int, int]]:
    """The (offset, length) ranges of a file of ``size`` bytes that its digest reads: all of it when small, else the
    first and last :data:`EDGE_BLOCK` and :data:`INTERIOR_BLOCKS` evenly spaced blocks between them.

    >>> sampled_ranges(10)
    [(0, 10)]
    >>> r = sampled_ranges(1 << 30)
    >>> r[0], r[-1], len(r), sum(n for _, n in r) // 1024
    ((0, 1048576), (1072693248, 1048576), 18, 3072)
    >>> all(a + n <= b for (a, n), (b, _) in zip(r, r[1:]))  # in order, never overlapping
    True
    """
    if size <= WHOLE_FILE_LIMIT:
        return [(0, size)]
    inner_start, inner_end = EDGE_BLOCK, size - EDGE_BLOCK
    span = inner_end - inner_start - INTERIOR_BLOCK
    interior = [(inner_start + span * (i + 1) // (INTERIOR_BLOCKS + 1), INTERIOR_BLOCK) for i in range(INTERIOR_BLOCKS)]
    return [(0, EDGE_BLOCK), *interior, (inner_end, EDGE_BLOCK)]


def safetensors_probes(header: dict[str, object], data_start: int) -> list[tuple[int, int]]:
    """(offset, length) probes at the start and the middle of every tensor listed in a safetensors header.

    >>> safetensors_probes({"__metadata__": {}, "w": {"data_offsets": [0, 10000]}, "b": {"data_offsets": [10000, 10010]}}, 100)
    [(100, 4096), (5100, 4096), (10100, 10), (10105, 5)]
    """
    probes: list[tuple[int, int]] = []
    for name, entry in header.items():
        if name == "__metadata__" or not isinstance(entry, dict):
            continue
        begin, end = (int(x) for x in entry["data_offsets"])
        for start in (begin, begin + (end - begin) // 2):
            length = min(TENSOR_PROBE, end - start)
            if length > 0:
                probes.append((data_start + start, length))
    return sorted(probes)


def _read_ranges(handle: BinaryIO, ranges: list[tuple[int, int]], update: Callable[[bytes], object]) -> None:
    for offset, length in ranges:
        handle.seek(offset)
        remaining = length
        while remaining:
            chunk = handle.read(min(remaining, MIB))
            if not chunk:
                break  # shorter than its size said (being rewritten): the size in the entry still differs
            update(chunk)
            remaining -= len(chunk)


def _safetensors_header(handle: BinaryIO, size: int) -> tuple[dict[str, object], int] | None:
    """The parsed header of a safetensors file and where its data starts; None when the file is not one."""
    handle.seek(0)
    prefix = handle.read(8)
    if len(prefix) < 8:
        return None
    (length,) = struct.unpack("<Q", prefix)
    if length > min(MAX_SAFETENSORS_HEADER, size - 8):
        return None
    try:
        header = json.loads(handle.read(length))
    except ValueError:
        return None
    return (header, 8 + length) if isinstance(header, dict) else None


@functools.lru_cache(maxsize=4096)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """The sampled SHA-256 of one file; (size, mtime_ns) are in the arguments only so the memo sees a rewrite."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        _read_ranges(handle, sampled_ranges(size), digest.update)
        if size > WHOLE_FILE_LIMIT and path.endswith(".safetensors"):
            parsed = _safetensors_header(handle, size)
            if parsed is not None:
                header, data_start = parsed
                digest.update(json.dumps(header, sort_keys=True).encode("utf-8"))
                _read_ranges(handle, safetensors_probes(header, data_start), digest.update)
    return digest.hexdigest()


def file_fingerprint(path: Path, name: str) -> FileFingerprint:
    """One file's entry, under the relative ``name`` it has in its checkpoint."""
    stat = path.stat()
    return FileFingerprint(name, stat.st_size, _file_digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns))


def fingerprint_files(path: str | Path) -> list[FileFingerprint]:
    """The entries of every output-determining file of a local checkpoint or adapter folder (or of one weights file,
    e.g. a ``.gguf``), sorted by name; empty when ``path`` is not on this machine."""
    root = Path(path).expanduser()
    if root.is_file():
        return [file_fingerprint(root, root.name)]
    if not root.is_dir():
        return []
    names = [entry.name for entry in os.scandir(root) if entry.is_file()]
    extra = root / CHAT_TEMPLATE_DIR
    if extra.is_dir():
        names += [f"{CHAT_TEMPLATE_DIR}/{entry.name}" for entry in os.scandir(extra) if entry.is_file()]
    return [file_fingerprint(root / name, name) for name in sorted(names) if determines_output(name)]


def combine(entries: list[FileFingerprint]) -> str:
    """One digest for a checkpoint from its file entries (names, sizes and digests, in name order).

    >>> combine([]) == combine([]), combine([FileFingerprint("a", 1, "x")]) == combine([FileFingerprint("a", 2, "x")])
    (True, False)
    """
    blob = json.dumps([[e.name, e.size, e.digest] for e in sorted(entries, key=lambda e: e.name)])
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def weights_fingerprint(path: str | Path) -> str | None:
    """The fingerprint of a local checkpoint folder, adapter folder or weights file; None for a name that is not a
    path on this machine (a hub id: its ``revision`` identifies it instead).

    >>> weights_fingerprint("HuggingFaceTB/SmolLM2-135M-Instruct-not-here") is None
    True
    """
    target = Path(path).expanduser()
    if not target.exists():
        return None
    return combine(fingerprint_files(target))


__all__ = [
    "FileFingerprint",
    "OUTPUT_FILES",
    "WEIGHT_SUFFIXES",
    "combine",
    "determines_output",
    "file_fingerprint",
    "fingerprint_files",
    "sampled_ranges",
    "safetensors_probes",
    "weights_fingerprint",
]
