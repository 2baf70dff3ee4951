"""Trainers: data loading and normalisation, beta sweeps, and 2-step runs of every variant on a tiny local model.

The training tests are ``slow`` (seconds each on CPU) but run in CI: one tiny model (hidden 64, 2 layers) is built
once per session and every variant trains two steps on eight crafted pairs, with and without LoRA; each checkpoint
is reloaded the way generation will load it and made to generate.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evalsuite.errors import InputError
from evalsuite.manifest import read_manifest, resolve_base, resolve_path
from evalsuite.trainers import (
    STABLE_METRICS,
    VARIANTS,
    TrainOptions,
    get_variant,
    metrics_row,
    read_metrics,
    resolve_betas,
    train_variant,
)
from evalsuite.trainers._data import training_rows

PAIRS = [
    {
        "prompt": f"What is {i} plus {i}?",
        "chosen": f"{i} plus {i} is {2 * i}, since adding a number to itself doubles it.",
        "rejected": f"It is {2 * i + 1}.",
        "category": "math" if i % 2 else "reasoning",
    }
    for i in range(8)
]


def _ultrafeedback(i: int) -> dict[str, Any]:
    question = f"Name a colour number {i}."
    return {
        "prompt": question,
        "prompt_id": f"id{i}",
        "chosen": [{"role": "user", "content": question}, {"role": "assistant", "content": f"Blue, colour {i}."}],
        "rejected": [{"role": "user", "content": question}, {"role": "assistant", "content": "I cannot."}],
        "score_chosen": 8.0,
        "score_rejected": 2.0,
    }


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("trl")
    from evalsuite.demo.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "sft", seed=0)


@pytest.fixture(scope="session")
def prefs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_jsonl(tmp_path_factory.mktemp("data") / "prefs.jsonl", PAIRS)


# ---------------------------------------------------------------------------------------------- import cost


def test_importing_trainers_and_cli_loads_no_training_library() -> None:
    code = (
        "import sys\n"
        "import evalsuite.manifest, evalsuite.trainers, evalsuite.trainers.health, evalsuite.trainers.data_check\n"
        "import evalsuite.cli._train, evalsuite.cli._data\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------- variants, betas


def test_variant_registry_defaults() -> None:
    assert set(VARIANTS) == {"sft", "dpo", "ipo", "simpo", "kto", "online-dpo"}
    assert (VARIANTS["dpo"].loss_type, VARIANTS["dpo"].default_beta, VARIANTS["dpo"].grid) == ("sigmoid", 0.1, (0.05, 0.1, 0.5))
    assert (VARIANTS["ipo"].loss_type, VARIANTS["ipo"].default_beta, VARIANTS["ipo"].grid) == ("ipo", 0.1, (0.05, 0.1, 0.5))
    assert (VARIANTS["simpo"].trainer, VARIANTS["simpo"].default_beta, VARIANTS["simpo"].grid) == ("cpo", 2.0, (1.0, 2.0, 5.0))
    assert (VARIANTS["kto"].data_shape, VARIANTS["kto"].default_beta) == ("unpaired", 0.1)
    assert TrainOptions().simpo_gamma == 0.5 and TrainOptions().lr == 1e-6
    with pytest.raises(InputError, match="unknown training variant"):
        get_variant("orpo")


def test_resolve_betas() -> None:
    dpo, sft = VARIANTS["dpo"], VARIANTS["sft"]
    assert resolve_betas(dpo, None) == [0.1]
    assert resolve_betas(dpo, None, grid=True) == [0.05, 0.1, 0.5]
    assert resolve_betas(dpo, [0.5, 0.1, 0.5]) == [0.5, 0.1]
    assert resolve_betas(VARIANTS["simpo"], None) == [2.0]
    assert resolve_betas(sft, None) == [None]
    with pytest.raises(InputError, match="takes no beta"):
        resolve_betas(sft, [0.1])
    with pytest.raises(InputError, match="both given"):
        resolve_betas(dpo, [0.1], grid=True)
    with pytest.raises(InputError, match="positive"):
        resolve_betas(dpo, [0.0])


def test_options_are_validated_before_anything_loads(tmp_path: Path, prefs_file: Path) -> None:
    with pytest.raises(InputError, match="batch of at least 2"):
        train_variant("kto", model="x", data=str(prefs_file), options=TrainOptions(batch_size=1), out_dir=tmp_path)
    with pytest.raises(InputError, match="--merge"):
        train_variant("dpo", model="x", data=str(prefs_file), options=TrainOptions(merge=True), out_dir=tmp_path)
    with pytest.raises(InputError, match="model directory not found"):
        train_variant("dpo", model=str(tmp_path / "nope"), data=str(prefs_file), options=TrainOptions(), out_dir=tmp_path)


# ---------------------------------------------------------------------------------------------- metrics mapping


def test_trl_metric_names_map_to_stable_names() -> None:
    logs = {
        "loss": 0.6,
        "rewards/margins": 0.2,
        "rewards/chosen": 0.15,
        "rewards/rejected": -0.05,
        "logps/chosen": -80.0,
        "logps/rejected": -90.0,
        "rewards/accuracies": 0.75,
        "kl": 0.1,
        "grad_norm": 1.5,
        "logits/chosen": 0.0,  # not kept
    }
    row = metrics_row(logs, step=7)
    assert row == {
        "step": 7,
        "loss": 0.6,
        "margin": 0.2,
        "chosen_reward": 0.15,
        "rejected_reward": -0.05,
        "chosen_logp": -80.0,
        "rejected_logp": -90.0,
        "accuracy": 0.75,
        "kl": 0.1,
        "grad_norm": 1.5,
    }
    assert metrics_row({"train_runtime": 3.0, "train_loss": 0.5}, step=2) is None  # end-of-run summary
    assert metrics_row({"eval_loss": 0.5}, step=2) is None
    sparse = metrics_row({"loss": float("nan")}, step=1)
    assert sparse is not None and sparse["loss"] is None and set(STABLE_METRICS) <= set(sparse)


# ---------------------------------------------------------------------------------------------- data loading


def test_ultrafeedback_shape_becomes_conversational_rows(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "uf.jsonl", [_ultrafeedback(i) for i in range(3)])
    rows = training_rows(str(path), variant="dpo")
    assert rows[0] == {
        "prompt": [{"role": "user", "content": "Name a colour number 0."}],
        "chosen": [{"role": "assistant", "content": "Blue, colour 0."}],
        "rejected": [{"role": "assistant", "content": "I cannot."}],
    }


def test_plain_strings_become_chat_rows_or_stay_plain(prefs_file: Path) -> None:
    chat = training_rows(str(prefs_file), variant="ipo")
    assert chat[1]["prompt"] == [{"role": "user", "content": "What is 1 plus 1?"}]
    assert chat[1]["chosen"] == [{"role": "assistant", "content": PAIRS[1]["chosen"]}]
    plain = training_rows(str(prefs_file), variant="ipo", chat=False)
    assert plain[1] == {"prompt": "What is 1 plus 1?", "chosen": PAIRS[1]["chosen"], "rejected": "It is 3."}


def test_multi_turn_data_needs_a_chat_template(tmp_path: Path) -> None:
    conversation = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Tell me a joke."},
    ]
    record = {
        "chosen": conversation + [{"role": "assistant", "content": "Why did the chicken..."}],
        "rejected": conversation + [{"role": "assistant", "content": "No."}],
    }
    path = _write_jsonl(tmp_path / "multi.jsonl", [record])
    [row] = training_rows(str(path), variant="dpo")
    assert row["prompt"] == conversation and row["rejected"] == [{"role": "assistant", "content": "No."}]
    with pytest.raises(InputError, match="chat template"):
        training_rows(str(path), variant="dpo", chat=False)


def test_kto_unpairs_each_pair_into_a_desirable_and_an_undesirable_row(prefs_file: Path) -> None:
    rows = training_rows(str(prefs_file), variant="kto", chat=False)
    assert len(rows) == 2 * len(PAIRS)
    assert [r["label"] for r in rows[:4]] == [True, False, True, False]
    assert sorted(r["completion"] for r in rows if r["label"]) == sorted(p["chosen"] for p in PAIRS)
    assert sorted(r["completion"] for r in rows if not r["label"]) == sorted(p["rejected"] for p in PAIRS)
    # Each row's neighbour (which KTO borrows for its KL estimate) answers a different prompt.
    assert all(a["prompt"] != b["prompt"] for a, b in zip(rows, rows[1:]))
    # Every rejected row keeps its own prompt.
    by_prompt = {p["prompt"]: p for p in PAIRS}
    assert all(by_prompt[r["prompt"]]["rejected"] == r["completion"] for r in rows if not r["label"])


def test_kto_accepts_already_unpaired_rows(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "kto.jsonl",
        [{"prompt": "Q1", "completion": "Good.", "label": True}, {"prompt": "Q2", "completion": "Bad.", "label": False}],
    )
    rows = training_rows(str(path), variant="kto", chat=False)
    assert rows == [{"prompt": "Q1", "completion": "Good.", "label": True}, {"prompt": "Q2", "completion": "Bad.", "label": False}]


def test_sft_reads_prompt_completion_or_messages(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "sft.jsonl",
        [
            {"prompt": "Say hi.", "completion": "Hi!"},
            {"messages": [{"role": "user", "content": "Say bye."}, {"role": "assistant", "content": "Bye!"}]},
        ],
    )
    rows = training_rows(str(path), variant="sft")
    assert rows[1] == {"prompt": [{"role": "user", "content": "Say bye."}], "completion": [{"role": "assistant", "content": "Bye!"}]}
    assert training_rows(str(path), variant="sft", chat=False)[0] == {"prompt": "Say hi.", "completion": "Hi!"}


def test_load_preference_data_returns_a_dataset(prefs_file: Path) -> None:
    pytest.importorskip("datasets")
    from evalsuite.trainers import load_preference_data

    dataset = load_preference_data(str(prefs_file), variant="dpo")
    assert len(dataset) == len(PAIRS) and set(dataset.column_names) == {"prompt", "chosen", "rejected"}


def test_malformed_record_names_file_record_fields_and_expectation(tmp_path: Path) -> None:
    rows = [PAIRS[0], PAIRS[1], {"question": "What?", "good": "This.", "bad": "That."}, {"also": "bad"}]
    path = _write_jsonl(tmp_path / "broken.jsonl", rows)
    with pytest.raises(InputError) as caught:
        training_rows(str(path), variant="dpo")
    message = str(caught.value)
    assert "broken.jsonl" in message and "record 3" in message
    assert "[bad, good, question]" in message and "prompt + chosen + rejected" in message


def test_broken_json_line_and_blank_lines_are_located(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(PAIRS[0]) + "\n\n" + '{"prompt": "x", "chosen": \n')
    with pytest.raises(InputError, match=r"bad\.jsonl.*record 2 \(line 3\) is not valid JSON"):
        training_rows(str(path), variant="dpo")
    path.write_text("\n" + json.dumps({"prompt": "x", "chosen": "y"}) + "\n")
    with pytest.raises(InputError, match=r"record 1 \(line 2\) does not fit"):
        training_rows(str(path), variant="dpo")


def test_missing_or_empty_data_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        training_rows(str(tmp_path / "nope.jsonl"), variant="dpo")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="no records"):
        training_rows(str(tmp_path / "empty.jsonl"), variant="dpo")


# ---------------------------------------------------------------------------------------------- training runs


def _generate(model_dir: Path, base: Path | None) -> int:
    """Reload a checkpoint as generation will (adapter over base, or full weights) and count new tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    from evalsuite.demo.tiny import load_tokenizer

    if base is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(model_dir))
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = load_tokenizer(model_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 plus 2?"}], tokenize=False, add_generation_prompt=True
    )
    batch = tokenizer([prompt], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    return int(out.shape[1] - batch["input_ids"].shape[1])


def _weights_changed(trained: Path, base: Path) -> bool:
    from safetensors.torch import load_file

    before, after = load_file(base / "model.safetensors"), load_file(trained / "model.safetensors")
    return any(not bool((before[k] == after[k]).all()) for k in before)


FAST = dict(max_steps=2, batch_size=4, lr=1e-4, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("variant", ["dpo", "ipo", "simpo", "kto"])
def test_variant_trains_two_steps_and_reloads(
    variant: str, lora: bool, tiny_model: Path, prefs_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "checkpoints"
    entries = train_variant(
        variant,
        model=str(tiny_model),
        data=str(prefs_file),
        options=TrainOptions(**FAST, lora=lora, lora_r=4, lora_alpha=8),
        out_dir=out,
        progress=False,
    )
    spec = VARIANTS[variant]
    name = f"{variant}-b{spec.default_beta:g}"
    assert [e.name for e in entries] == [name]

    [entry] = read_manifest(out / "manifest.json")
    assert (entry.name, entry.variant, entry.beta, entry.path) == (name, variant, spec.default_beta, name)
    assert entry.adapter is lora and entry.extra["steps"] == 2 and entry.extra["loss_type"] == spec.loss_type
    checkpoint = resolve_path(out / "manifest.json", entry)
    assert checkpoint == (out / name).resolve()
    if lora:
        assert resolve_base(out / "manifest.json", entry) == tiny_model.resolve()
        assert (checkpoint / "adapter_config.json").is_file()
    else:
        assert entry.base is None and _weights_changed(checkpoint, tiny_model)
    assert isinstance(entry.flags, list)  # two steps are too few for trend flags; the list is still recorded

    metrics = read_metrics(checkpoint / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    for row in metrics:
        assert set(STABLE_METRICS) <= set(row)
        assert math.isfinite(row["loss"])
        for key in ("margin", "chosen_reward", "rejected_reward", "chosen_logp", "rejected_logp"):
            assert isinstance(row[key], float), (key, row)
    if variant == "kto":
        assert all(isinstance(m["kl"], float) for m in metrics)  # KTO logs its KL estimate; no pair accuracy
    else:
        assert all(isinstance(m["accuracy"], float) for m in metrics)

    assert _generate(checkpoint, tiny_model if lora else None) == 3


@pytest.mark.slow
def test_sft_trains_through_the_cli(tiny_model: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from evalsuite.cli._train import train_cmd

    data = _write_jsonl(
        tmp_path / "sft.jsonl", [{"prompt": p["prompt"], "completion": p["chosen"]} for p in PAIRS]
    )
    out = tmp_path / "runs"
    args = ["sft", "--model", str(tiny_model), "--data", str(data), "--out", str(out), "--max-steps", "2", "--lr", "1e-4", "--quiet"]
    result = CliRunner().invoke(train_cmd, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "sft" in result.output and "full weights" in result.output
    [entry] = read_manifest(out / "manifest.json")
    assert (entry.name, entry.variant, entry.beta, entry.adapter) == ("sft", "sft", None, False)
    metrics = read_metrics(out / "sft" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2] and all(m["margin"] is None for m in metrics)
    assert _weights_changed(out / "sft", tiny_model)
    assert _generate(out / "sft", None) == 3


@pytest.mark.slow
def test_beta_sweep_with_merged_lora(tiny_model: Path, prefs_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    manifest = tmp_path / "elsewhere" / "manifest.json"
    entries = train_variant(
        "dpo",
        model=str(tiny_model),
        data=str(prefs_file),
        betas=[0.5, 0.05],
        options=TrainOptions(**FAST, lora=True, lora_r=4, lora_alpha=8, merge=True),
        out_dir=out,
        manifest=manifest,
        progress=False,
    )
    assert [e.name for e in entries] == ["dpo-b0.5", "dpo-b0.05"]
    from evalsuite.manifest import expand_name

    swept = expand_name(read_manifest(manifest), "dpo")
    assert [e.name for e in swept] == ["dpo-b0.05", "dpo-b0.5"]
    for entry in swept:
        # Merged: full weights, no adapter, the adapter kept beside them; outside the manifest's folder: absolute.
        assert entry.adapter is False and entry.base is None and entry.extra["lora_merged"] is True
        assert Path(entry.path).is_absolute() and (Path(entry.path) / "adapter" / "adapter_config.json").is_file()
        assert _weights_changed(Path(entry.path), tiny_model)
        assert _generate(Path(entry.path), None) == 3


# ---------------------------------------------------------------------------------------------- precision (dtype)


@pytest.mark.parametrize(
    ("requested", "lora", "cuda", "bf16_ok", "expected"),
    [
        ("auto", True, True, True, "bf16"),  # LoRA on a bf16 GPU: frozen base (= reference) in bf16
        ("auto", False, True, True, "fp32"),  # full weights keep fp32 master weights (bf16 autocast still on)
        ("auto", True, True, False, "fp32"),  # older GPU
        ("auto", True, False, False, "fp32"),  # CPU stays fp32
        ("auto", False, False, False, "fp32"),
        ("bf16", False, True, True, "bf16"),  # an explicit choice is honoured
        ("bf16", True, False, False, "bf16"),  # also on CPU
        ("fp16", True, True, False, "fp16"),
        ("fp32", True, True, True, "fp32"),
    ],
)
def test_dtype_decision(requested: str, lora: bool, cuda: bool, bf16_ok: bool, expected: str) -> None:
    from evalsuite.trainers._train import resolve_dtype

    assert resolve_dtype(requested, lora=lora, cuda=cuda, bf16_supported=bf16_ok) == expected


def test_dtype_choices_that_cannot_train_are_input_errors_before_anything_loads(tmp_path: Path, prefs_file: Path) -> None:
    from evalsuite.trainers._train import resolve_dtype

    with pytest.raises(InputError, match="cannot compute in bf16"):
        resolve_dtype("bf16", lora=True, cuda=True, bf16_supported=False)
    with pytest.raises(InputError, match="fp16 full-weight"):
        TrainOptions(dtype="fp16").validate(get_variant("dpo"))
    TrainOptions(dtype="fp16", lora=True).validate(get_variant("dpo"))
    with pytest.raises(InputError, match=r"unknown dtype 'half'.*auto, bf16, fp16, fp32"):
        train_variant("dpo", model=str(tmp_path / "absent"), data=str(prefs_file), options=TrainOptions(dtype="half"),
                      out_dir=tmp_path)


def test_config_dtypes_map_to_option_values() -> None:
    import torch

    from evalsuite.trainers._train import dtype_flag

    assert [dtype_flag(v) for v in (torch.bfloat16, "bfloat16", "float16", "torch.float32", "fp32", None, "int8")] == [
        "bf16", "bf16", "fp16", "fp32", "fp32", None, None
    ]


def test_cast_saved_weights_casts_floats_and_config_only(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from evalsuite.trainers._train import cast_saved_weights, stored_dtype

    weights = {"w": torch.randn(4, 4), "b": torch.randn(4), "ids": torch.arange(3)}
    save_file(weights, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text(json.dumps({"dtype": "float32", "hidden_size": 4}))
    assert stored_dtype(tmp_path) == "fp32"
    assert cast_saved_weights(tmp_path, "bf16") is True
    cast = load_file(tmp_path / "model.safetensors")
    assert cast["w"].dtype == cast["b"].dtype == torch.bfloat16 and cast["ids"].dtype == torch.int64
    assert torch.equal(cast["w"], weights["w"].to(torch.bfloat16)) and torch.equal(cast["ids"], weights["ids"])
    assert json.loads((tmp_path / "config.json").read_text()) == {"dtype": "bfloat16", "hidden_size": 4}
    assert stored_dtype(tmp_path) == "bf16"
    assert cast_saved_weights(tmp_path, "bf16") is False  # already there: nothing rewritten


@pytest.fixture(scope="session")
def tiny_bf16_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model stored in bf16 (config dtype bfloat16), as most real SFT checkpoints are."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("tiny-bf16") / "sft"
    shutil.copytree(tiny_model, out)
    AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16).save_pretrained(out)
    return out


@pytest.mark.slow
def test_full_weights_trained_in_fp32_are_saved_in_the_bf16_base_dtype(
    tiny_bf16_model: Path, prefs_file: Path, tmp_path: Path
) -> None:
    from evalsuite.trainers._train import base_dtype, stored_dtype

    assert base_dtype(str(tiny_bf16_model)) == "bf16" and stored_dtype(tiny_bf16_model) == "bf16"
    (entry,) = train_variant("dpo", model=str(tiny_bf16_model), data=str(prefs_file), out_dir=tmp_path / "ckpt",
                             options=TrainOptions(max_steps=1, batch_size=4, lr=1e-3, seed=0), progress=False)
    checkpoint = Path(entry.path)
    assert (entry.extra["dtype"], entry.extra["saved_dtype"]) == ("fp32", "bf16")  # CPU: fp32 master weights
    assert stored_dtype(checkpoint) == "bf16"
    assert json.loads((checkpoint / "config.json").read_text())["dtype"] == "bfloat16"
    assert _weights_changed(checkpoint, tiny_bf16_model)  # the step survived the cast back to bf16
    assert _generate(checkpoint, None) == 3


@pytest.mark.slow
def test_lora_over_a_bf16_base_loaded_in_bf16_keeps_the_adapter_fp32(
    tiny_bf16_model: Path, prefs_file: Path, tmp_path: Path
) -> None:
    from evalsuite.trainers._train import stored_dtype

    options = TrainOptions(max_steps=1, batch_size=4, lr=1e-3, seed=0, lora=True, lora_r=4, lora_alpha=8, dtype="bf16")
    (entry,) = train_variant("dpo", model=str(tiny_bf16_model), data=str(prefs_file), out_dir=tmp_path / "ckpt",
                             options=options, progress=False)
    assert (entry.extra["dtype"], entry.extra["saved_dtype"]) == ("bf16", "fp32")
    assert stored_dtype(Path(entry.path)) == "fp32" and stored_dtype(tiny_bf16_model) == "bf16"  # base untouched
    assert _generate(Path(entry.path), tiny_bf16_model) == 3


def test_train_cli_dtype_flag_reaches_the_options(tmp_path: Path, prefs_file: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "evalsuite", "train", "dpo", "--model", str(tmp_path), "--data", str(prefs_file),
         "--full", "--dtype", "fp16"], capture_output=True, text=True, cwd=tmp_path,
    )
    assert out.returncode == 2 and "fp16 full-weight training cannot work" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
