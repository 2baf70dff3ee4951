"""Project configuration: ``evalsuite.toml`` parsed into typed specs; command-line flags override any key."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Sequence


@dataclass(frozen=True)
class ModelSpec:
    """Where a model lives and how to sample it. Used for answer models and for the judge."""

    name: str  # evalsuite's name for it: "sft", "dpo-b0.1", "judge"
    backend: str = "openai"  # key of evalsuite.backends.BACKENDS
    model: str = ""  # name sent to the endpoint, or a local checkpoint path / hub id
    base_url: str | None = None
    api_key_env: str | None = None  # secrets only ever come from the environment
    adapter: str | None = None  # LoRA adapter directory applied on `model` (hf, vllm)
    # the model version behind `model` (a hub revision, an endpoint model's version or date): part of every cache key
    revision: str | None = None
    max_tokens: int = 1024
    temperature: float | None = None  # None: MT-Bench per-category default
    concurrency: int = 16
    timeout: float = 120.0
    max_retries: int = 5
    seed: int = 0
    dtype: str = "auto"
    device: str = "auto"
    batch_size: int = 16
    # vllm: the worker's interpreter (a venv of vLLM's own, e.g. ".venv-vllm/bin/python"); None: this interpreter
    python: str | None = None
    # vllm: keyword arguments of vllm.LLM, passed as given ([models.X.engine] max_model_len, gpu_memory_utilization, ...)
    engine: dict[str, Any] = field(default_factory=dict)
    enable_lora: bool = False  # vllm: load LoRA support even when no adapter is named up front
    max_lora_rank: int | None = None  # vllm: None: the largest rank among the adapters, rounded up to one vLLM takes
    tensor_parallel_size: int = 1
    verdict_mode: str = "text"  # judge only: "text" parses the verdict, "logprob" reads verdict-token probabilities
    price_input: float | None = None  # USD per 1M prompt tokens, for cost accounting
    price_output: float | None = None  # USD per 1M completion tokens
    # USD per 1M tokens of calls answered through a batch file (--batch); None: half the live price, as OpenAI bills
    price_batch_input: float | None = None
    price_batch_output: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))


# ---------------------------------------------------------------------------------------------------------------------
# evalsuite.toml

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from evalsuite.bench import BenchSpec  # noqa: E402
from evalsuite.errors import InputError  # noqa: E402

DEFAULT_CONFIG = "evalsuite.toml"
_MODEL_FIELDS = ModelSpec.field_names() - {"name", "extra"}
_BENCH_FIELDS = frozenset(BenchSpec.__dataclass_fields__)


@dataclass(frozen=True)
class JudgingOptions:
    template: str | None = None  # a template name or file; None: picked per category and turn
    mode: str = "strict"  # swap reconciliation: strict | average | games
    pairs: str = "baseline"  # baseline: each candidate vs the baseline; all: every pair of models too


@dataclass(frozen=True)
class IterateOptions:
    """``[iterate]``: iterative preference optimisation (label -> train -> compare, round after round)."""

    prompts: str = ""  # labeling prompts (JSONL); never the evaluation benchmark
    rounds: int = 2
    samples: int = 4  # K answers per prompt
    variant: str = "dpo"  # a paired variant: dpo, ipo, simpo
    beta: float | None = None  # None: the variant's default
    lr: float = 1e-6
    reference: str = "previous"  # previous: round r trains from (and against) round r-1; sft: against the SFT model
    baseline: str = "sft"  # the SFT model every round starts from and is compared with
    temperature: float = 1.0  # labeling samples
    schedule: str = "auto"  # judging schedule of the labeling step (see evalsuite.label)
    max_tokens: int | None = None  # labeling replies; None: the policy's max_tokens
    max_steps: int = -1
    epochs: float = 1.0
    batch_size: int = 4
    lora: bool = False  # LoRA merged into full weights after each round (the next round starts from them)
    max_length: int = 512
    seed: int = 0
    alpha: float = 0.05  # a round must beat the one before with the CI's lower bound above 50% at this level
    early_stop: bool = True
    dir: str = "runs/iterate"  # state, labeling store, pairs and evaluation runs
    checkpoints: str | None = None  # None: <manifest folder>/iterate


@dataclass(frozen=True)
class Config:
    path: Path | None
    bench: BenchSpec
    models: dict[str, ModelSpec]
    judge: ModelSpec
    judging: JudgingOptions
    run_dir: Path
    manifest: Path
    checkpoint_backend: str  # backend for manifest checkpoints: hf (CPU/GPU) or vllm (GPU)
    checkpoint_options: dict[str, Any] = field(default_factory=dict)  # ModelSpec fields for every manifest checkpoint
    seed: int = 0
    raw: dict[str, Any] = field(default_factory=dict)
    iterate: IterateOptions = field(default_factory=IterateOptions)

    def model_names(self) -> list[str]:
        return sorted(self.models)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``models.dpo.max_tokens=512`` -> (["models", "dpo", "max_tokens"], 512); the value is read as TOML, else a string."""
    if "=" not in text:
        raise InputError(f"override {text!r} is not KEY=VALUE", fix="e.g. --set judge.concurrency=64")
    key, value = text.split("=", 1)
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return [k for k in key.strip().split(".") if k], parsed


def apply_override(raw: dict[str, Any], keys: list[str], value: Any) -> None:
    node = raw
    for k in keys[:-1]:
        nxt = node.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise InputError(f"cannot set {'.'.join(keys)}: {k} is not a table", fix="check the key path")
        node = nxt
    node[keys[-1]] = value


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), *, run_dir: str | Path | None = None) -> Config:
    """Read ``evalsuite.toml`` (or ``path``), apply ``--set`` overrides, and check every key."""
    cfg_path: Path | None = Path(path) if path else (Path(DEFAULT_CONFIG) if Path(DEFAULT_CONFIG).is_file() else None)
    raw: dict[str, Any] = {}
    if cfg_path is not None:
        if not cfg_path.is_file():
            raise InputError(f"no such config file {str(cfg_path)!r}", fix="pass --config PATH or create evalsuite.toml")
        try:
            raw = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"invalid TOML ({exc})", where=str(cfg_path), fix="fix the syntax") from None
    for ov in overrides:
        apply_override(raw, *parse_override(ov))
    where = str(cfg_path) if cfg_path else "config"
    known_sections = {"bench", "models", "judge", "run", "train", "judging", "iterate"}
    unknown = sorted(set(raw) - known_sections)
    if unknown:
        raise InputError(f"unknown section(s) {unknown}", where=where, fix=f"use {sorted(known_sections)}")

    bench_raw = dict(raw.get("bench", {}))
    bad = sorted(set(bench_raw) - _BENCH_FIELDS)
    if bad:
        raise InputError(f"unknown [bench] key(s) {bad}", where=where, fix=f"use {sorted(_BENCH_FIELDS)}")
    if "categories" in bench_raw:
        cats = bench_raw["categories"]
        bench_raw["categories"] = tuple(cats.split(",") if isinstance(cats, str) else cats)
    if "path" in bench_raw and "name" not in bench_raw:
        bench_raw["name"] = None
    bench = BenchSpec(**bench_raw)

    models = {name: model_spec(name, table, where=where) for name, table in raw.get("models", {}).items()}
    judge_table = dict(raw.get("judge", {}))
    judging_keys = set(JudgingOptions.__dataclass_fields__)
    judging_raw = {k: judge_table.pop(k) for k in list(judge_table) if k in judging_keys - _MODEL_FIELDS}
    judging_raw.update(raw.get("judging", {}))
    judge_table.setdefault("max_tokens", 2048)
    judge_table.setdefault("temperature", 0.0)
    judge_table.setdefault("concurrency", 32)
    judge = model_spec("judge", judge_table, where=where)
    try:
        judging = JudgingOptions(**judging_raw)
    except TypeError as exc:
        raise InputError(f"bad [judging] key: {exc}", where=where, fix=f"use {sorted(judging_keys)}") from None
    if judging.mode not in ("strict", "average", "games"):
        raise InputError(f"judge.mode {judging.mode!r}", where=where, fix="use strict, average or games")
    if judging.pairs not in ("baseline", "all"):
        raise InputError(f"judge.pairs {judging.pairs!r}", where=where, fix="use baseline or all")

    run = raw.get("run", {})
    train = raw.get("train", {})
    rd = Path(run_dir or run.get("dir", "runs/default"))
    manifest = Path(train.get("manifest", "checkpoints/manifest.json"))
    return Config(
        path=cfg_path,
        bench=bench,
        models=models,
        judge=judge,
        judging=judging,
        run_dir=rd,
        manifest=manifest,
        checkpoint_backend=str(train.get("backend", "hf")),
        checkpoint_options=_checkpoint_options(train, where),
        seed=int(run.get("seed", 0)),
        raw=raw,
        iterate=iterate_options(raw.get("iterate", {}), where),
    )


def iterate_options(table: dict[str, Any], where: str = "config") -> IterateOptions:
    """``[iterate]`` checked: known keys, the right types, a known reference."""
    known = set(IterateOptions.__dataclass_fields__)
    unknown = sorted(set(table) - known)
    if unknown:
        raise InputError(f"unknown [iterate] key(s) {unknown}", where=where, fix=f"use {sorted(known)}")
    values = dict(table)
    for key in ("lr", "beta", "temperature", "epochs", "alpha"):
        if isinstance(values.get(key), int) and not isinstance(values[key], bool):
            values[key] = float(values[key])
    try:
        opts = IterateOptions(**values)
    except TypeError as exc:
        raise InputError(f"bad [iterate] key: {exc}", where=where, fix="check the key types") from None
    if opts.reference not in ("previous", "sft"):
        raise InputError(f"iterate.reference {opts.reference!r}", where=where, fix='use "previous" or "sft"')
    return opts


def _checkpoint_options(train: dict[str, Any], where: str) -> dict[str, Any]:
    """[train] keys that are ModelSpec fields (max_tokens, batch_size, device, ...) apply to every trained checkpoint."""
    allowed = _MODEL_FIELDS - {"backend", "model", "adapter", "base_url", "api_key_env"}
    unknown = sorted(set(train) - allowed - {"backend", "manifest"})
    if unknown:
        raise InputError(f"unknown [train] key(s) {unknown}", where=where, fix=f"use manifest, backend or {sorted(allowed)}")
    return {k: v for k, v in train.items() if k in allowed}


def model_spec(name: str, table: dict[str, Any], *, where: str = "config") -> ModelSpec:
    if not isinstance(table, dict):
        raise InputError(f"[models.{name}] must be a table", where=where, fix="see the README's config example")
    values = dict(table)
    extra = {k: values.pop(k) for k in list(values) if k not in _MODEL_FIELDS}
    unknown = sorted(k for k in extra if k != "label")
    if unknown:
        raise InputError(
            f"unknown key(s) {unknown} for model {name!r}", where=where, fix=f"use {sorted(_MODEL_FIELDS)}"
        )
    values.setdefault("model", name)
    _check_types(name, values, where)
    try:
        return ModelSpec(name=name, extra=extra, **values)
    except TypeError as exc:
        raise InputError(f"model {name!r}: {exc}", where=where, fix="check the key types") from None


# Keys whose wrong type would only surface deep inside a backend (or a vLLM worker): checked when the config loads.
_TYPED_KEYS: dict[str, tuple[type, ...]] = {
    "python": (str,), "engine": (dict,), "enable_lora": (bool,), "max_lora_rank": (int,),
    "tensor_parallel_size": (int,), "dtype": (str,),
}

_TYPE_NAMES = {str: "string", int: "whole number", bool: "boolean (true/false)", dict: "table"}


def _check_types(name: str, values: dict[str, Any], where: str) -> None:
    for key, types in _TYPED_KEYS.items():
        value = values.get(key)
        if value is None:
            continue
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            wanted = " or ".join(_TYPE_NAMES[t] for t in types)
            raise InputError(f"model {name!r}: {key} = {value!r} is not a {wanted}", where=where, fix=f"write {key} as a {wanted}")
    if "engine" in values:
        values["engine"] = dict(values["engine"])


def resolve_models(config: Config, names: Sequence[str]) -> list[ModelSpec]:
    """Expand user-facing names: a [models] entry, or a manifest checkpoint / variant (``dpo`` -> every trained beta)."""
    from evalsuite.manifest import expand_name, read_manifest, resolve_base, resolve_path

    entries = None
    out: list[ModelSpec] = []
    for name in names:
        if name in config.models:
            out.append(config.models[name])
            continue
        if entries is None:
            entries = read_manifest(config.manifest)
        found = expand_name(entries, name)
        if not found:
            known = sorted(set(config.models) | {e.name for e in entries} | {e.variant for e in entries})
            raise InputError(
                f"unknown model {name!r}",
                where=str(config.path or "config"),
                fix=f"define [models.{name}] or train it (evalsuite train); known: {', '.join(known) or 'none'}",
            )
        for e in found:
            path = str(resolve_path(config.manifest, e))
            # training health travels with the model, so the leaderboard can show each checkpoint's flags
            extra = {"flags": list(e.flags), "variant": e.variant, "beta": e.beta}
            if e.adapter:
                base = str(resolve_base(config.manifest, e) or "")
                out.append(ModelSpec(name=e.name, backend=config.checkpoint_backend, model=base, adapter=path, extra=extra,
                                     **config.checkpoint_options))
            else:
                out.append(ModelSpec(name=e.name, backend=config.checkpoint_backend, model=path, extra=extra,
                                     **config.checkpoint_options))
    seen: set[str] = set()
    unique = []
    for s in out:
        if s.name not in seen:
            seen.add(s.name)
            unique.append(s)
    return unique
