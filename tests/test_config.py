"""evalsuite.toml: the README's example loads as documented; overrides and unknown keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT

from evalsuite.config import load_config, resolve_models
from evalsuite.errors import InputError


def _readme_toml() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"### Configuration: `evalsuite.toml`\s+```toml\n(.*?)```", text, re.S)
    assert block, "the README's configuration example is missing"
    return block.group(1)


def test_the_readme_example_loads_as_documented(tmp_path: Path) -> None:
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text(_readme_toml())
    config = load_config(cfg)
    assert config.bench.name == "mtb-style"
    sft, dpo = resolve_models(config, ["sft", "dpo"])
    assert (sft.backend, sft.base_url, sft.model, sft.api_key_env) == ("openai", "http://127.0.0.1:8000/v1", "sft", "MY_KEY")
    assert dpo.model == "dpo" and dpo.temperature is None  # MT-Bench per-category default
    assert config.judge.model == "judge" and config.judge.concurrency == 32
    assert config.judging.mode == "strict" and config.judging.pairs == "baseline"
    assert config.checkpoint_backend == "hf" and config.checkpoint_options == {"max_tokens": 1024}


def test_every_key_can_be_overridden(tmp_path: Path) -> None:
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text(_readme_toml())
    config = load_config(cfg, ["judge.concurrency=64", "models.dpo.max_tokens=512", 'judging.mode="average"', "bench.limit=2"])
    assert config.judge.concurrency == 64 and config.models["dpo"].max_tokens == 512
    assert config.judging.mode == "average" and config.bench.limit == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [("models.dpo.temprature=0.1", "temprature"), ("benhc.name=\"x\"", "unknown section"), ("judge.mode=\"best\"", "mode"),
     ("bench.colour=1", "[bench]"), ("train.epochs=3", "[train]")],
)
def test_mistakes_are_input_errors(tmp_path: Path, override: str, message: str) -> None:
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text(_readme_toml())
    with pytest.raises(InputError, match=re.escape(message)):
        load_config(cfg, [override])


def test_vllm_keys_are_typed_fields(tmp_path: Path) -> None:
    from evalsuite.backends.vllm import vllm_dtype

    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text(
        '[models.sft]\nbackend = "vllm"\nmodel = "ckpt/sft"\npython = ".venv-vllm/bin/python"\ndtype = "bf16"\n'
        "enable_lora = true\nmax_lora_rank = 64\ntensor_parallel_size = 2\n"
        "[models.sft.engine]\nmax_model_len = 4096\ngpu_memory_utilization = 0.85\nenforce_eager = true\n"
        '[judge]\nbackend = "vllm"\nmodel = "ckpt/judge"\npython = "/opt/vllm/bin/python"\nverdict_mode = "logprob"\n'
        "engine = { max_model_len = 8192 }\n"
    )
    config = load_config(cfg)
    sft = config.models["sft"]
    assert (sft.python, sft.enable_lora, sft.max_lora_rank, sft.tensor_parallel_size) == (".venv-vllm/bin/python", True, 64, 2)
    assert sft.engine == {"max_model_len": 4096, "gpu_memory_utilization": 0.85, "enforce_eager": True}
    assert sft.extra == {} and vllm_dtype(sft) == "bfloat16"
    assert config.judge.python == "/opt/vllm/bin/python" and config.judge.engine == {"max_model_len": 8192}
    # overrides reach the engine table too
    assert load_config(cfg, ["models.sft.engine.max_model_len=2048"]).models["sft"].engine["max_model_len"] == 2048


@pytest.mark.parametrize(
    ("override", "message"),
    [("models.dpo.engine=4096", "engine = 4096 is not a table"), ("models.dpo.python=3", "python = 3 is not a string"),
     ("models.dpo.enable_lora=1", "enable_lora = 1 is not a boolean"),
     ("models.dpo.max_lora_rank=true", "max_lora_rank = true is not a whole number"),
     ("models.dpo.engine_args={}", "enable_lora, engine, label, max_lora_rank")],
)
def test_vllm_key_mistakes_are_input_errors(tmp_path: Path, override: str, message: str) -> None:
    cfg = tmp_path / "evalsuite.toml"
    cfg.write_text(_readme_toml())
    with pytest.raises(InputError, match=re.escape(message)):
        load_config(cfg, [override])
    if "engine_args" in override:  # the unknown-key message lists every accepted key, the vLLM ones included
        with pytest.raises(InputError, match=r"python, .*tensor_parallel_size"):
            load_config(cfg, [override])
