"""Project configuration: ``evalsuite.toml`` parsed into typed specs; command-line flags override any key.

Every table is a dataclass whose fields carry their type and help (:mod:`evalsuite.schema`): :func:`load_config` checks
each value, from the file or from ``--set``, against its field's type before anything runs, and
:func:`config_reference` renders the same fields as the configuration reference (``docs/configuration.md``).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from evalsuite.bench import BenchSpec
from evalsuite.errors import InputError
from evalsuite.store.names import check_model_name
from evalsuite.schema import KeySpec, TypeMismatch, check_value, key, key_factory, keys_of, toml_value

DEFAULT_CONFIG = "evalsuite.toml"


@dataclass(frozen=True)
class ModelSpec:
    """Where a model lives and how to sample it. Used for answer models and for the judge."""

    name: str  # evalsuite's name for it ("sft", "dpo-b0.1", "judge"): the table's name, never a key
    backend: str = key("openai", "A key of the backend registry: `openai` (any OpenAI-compatible server), `hf` "
                                 "(transformers, in process) or `vllm` (a vLLM engine in a worker process).")
    model: str = key("", "Name sent to the endpoint, or a local checkpoint directory or hub id. Default: the table's name.")
    base_url: str | list[str] | None = key(None, "Endpoint of an `openai` backend, e.g. `http://127.0.0.1:8000/v1`; "
                                                 "a list of URLs: one model served by several replicas.")
    api_key_env: str | None = key(None, "Environment variable holding the API key; secrets only ever come from the "
                                        "environment. Unset: a dummy key is sent.")
    adapter: str | None = key(None, "LoRA adapter directory applied on `model` (`hf`, `vllm`).")
    revision: str | None = key(None, "The model version behind `model` (a hub revision, an endpoint model's version or "
                                     "date); part of every cache key, so a new version is asked again.")
    max_tokens: int = key(1024, "Longest reply, in tokens.")
    temperature: float | None = key(None, "Sampling temperature. Unset: MT-Bench's per-category default (writing and "
                                          "roleplay 0.7; extraction, math, coding and reasoning 0.0; stem and "
                                          "humanities 0.1).")
    concurrency: int = key(16, "Requests in flight at once.")
    timeout: float = key(120.0, "Seconds before a request is given up and retried.")
    max_retries: int = key(5, "Retries of a failed request (rate limits, timeouts, server errors).")
    seed: int = key(0, "Sampling seed sent with every request.")
    dtype: str = key("auto", "Weights' dtype for local backends (`auto`, `float32`, `bfloat16`, `float16`).")
    device: str = key("auto", "Device for `hf` (`auto`, `cpu`, `cuda`, `cuda:1`, ...).")
    batch_size: int = key(16, "Prompts generated together by a local backend.")
    python: str | None = key(None, "`vllm`: the worker's interpreter (a venv of vLLM's own, e.g. "
                                   "`.venv-vllm/bin/python`). Unset: this interpreter.")
    engine: dict[str, Any] = key_factory(dict, "`vllm`: keyword arguments of `vllm.LLM`, passed as given "
                                               "(`max_model_len`, `gpu_memory_utilization`, ...).")
    enable_lora: bool = key(False, "`vllm`: load LoRA support even when no adapter is named up front.")
    max_lora_rank: int | None = key(None, "`vllm`: largest LoRA rank to serve. Unset: the largest rank among the "
                                          "adapters, rounded up to one vLLM takes.")
    tensor_parallel_size: int = key(1, "`vllm`: GPUs one engine spans.")
    verdict_mode: str = key("text", "Judge only: `text` parses the verdict from the reply, `logprob` reads the "
                                    "probabilities of the verdict tokens.", choices=("text", "logprob"))
    price_input: float | None = key(None, "USD per 1M prompt tokens, for cost accounting.")
    price_output: float | None = key(None, "USD per 1M completion tokens, for cost accounting.")
    price_batch_input: float | None = key(None, "USD per 1M prompt tokens of calls answered through a batch file "
                                                "(`--batch`). Unset: half of `price_input`, as OpenAI bills.")
    price_batch_output: float | None = key(None, "USD per 1M completion tokens through a batch file. Unset: half of "
                                                 "`price_output`.")
    extra: dict[str, Any] = field(default_factory=dict)  # keys of ModelExtraKeys, and what training attaches

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))


@dataclass(frozen=True)
class ModelExtraKeys:
    """Model keys that are no ModelSpec field: they travel in ``ModelSpec.extra``."""

    label: str | None = key(None, "Name this model goes by in judgment records when it is the judge. Unset: the "
                                  "endpoint model name, or the checkpoint folder's name.")


@dataclass(frozen=True)
class JudgingOptions:
    """How judgments are asked and reconciled: keys of ``[judge]`` (or of a ``[judging]`` table)."""

    template: str | None = key(None, "Judge template name or `.j2` file. Unset: picked per category and turn.")
    mode: str = key("strict", "Swap reconciliation: `strict` (MT-Bench: a win must hold in both orders), `average` "
                              "(the two orders' mean) or `games` (each order one game, as Arena-Hard).",
                    choices=("strict", "average", "games"))
    pairs: str = key("baseline", "`baseline`: each candidate against the baseline; `all`: every pair of models too.",
                     choices=("baseline", "all"))
    panel: tuple[str, ...] = key((), "The `[judges.<name>]` tables that judge, in this order (`--judges` overrides it). "
                                     "Empty: every `[judges.<name>]` table, in file order.")
    human_labels: str | None = key(None, "A file of human votes on some matches (the shape `calibrate --human` reads): "
                                         "a judge panel then weighs each member by its agreement with the humans "
                                         "instead of with the other members.")
    style_reference: str | None = key(None, "An earlier run's `results.json` whose style normalisation style control "
                                            "keeps, so adding a model moves no other model's style-controlled win "
                                            "rate. Unset: this run's battles set it.")


@dataclass(frozen=True)
class PanelKeys:
    """Keys of a ``[judges.<name>]`` table that are no ModelSpec field: they travel in ``ModelSpec.extra``."""

    weight: float | None = key(None, "This judge's fixed weight in the panel's verdict. Unset: computed from its "
                                     "agreement with the other members and its position consistency.")


@dataclass(frozen=True)
class RunOptions:
    """``[run]``: where a run lives and how its statistics are seeded."""

    dir: str = key("runs/default", "Run directory: the store, `results.json`, `leaderboard.md` (`--run-dir` "
                                   "overrides it).")
    seed: int = key(0, "Seed of every resampling (bootstrap CIs, Bradley-Terry); `--seed` overrides it.")


@dataclass(frozen=True)
class CheckpointOptions:
    """``[train]``: how trained checkpoints (the manifest's entries) are found and run."""

    manifest: str = key("checkpoints/manifest.json", "Manifest `evalsuite train` writes: its checkpoints become model "
                                                     "names (`dpo` -> `dpo-b0.05`, `dpo-b0.1`, ...).")
    backend: str = key("hf", "Backend that runs manifest checkpoints: `hf` (CPU or GPU) or `vllm` (GPU).",
                       choices=("hf", "vllm"))


@dataclass(frozen=True)
class IterateOptions:
    """``[iterate]``: iterative preference optimisation (label -> train -> compare, round after round)."""

    prompts: str = key("", "Labeling prompts (JSONL); never the evaluation benchmark. Required by `evalsuite iterate`.")
    rounds: int = key(2, "Rounds of label -> train -> compare.")
    samples: int = key(4, "Answers sampled per prompt (K).")
    variant: str = key("dpo", "A paired variant: `dpo`, `ipo` or `simpo`.")
    beta: float | None = key(None, "Beta of every round. Unset: the variant's default.")
    lr: float = key(1e-6, "Learning rate.")
    reference: str = key("previous", "`previous`: round r trains from, and against, round r-1; `sft`: against the "
                                     "SFT model.", choices=("previous", "sft"))
    baseline: str = key("sft", "The SFT model every round starts from and is compared with.")
    temperature: float = key(1.0, "Sampling temperature of the labeling answers.")
    schedule: str = key("auto", "Judging schedule of the labeling step: `all-pairs`, `pivot`, or `auto` (all pairs "
                                "for up to 4 samples, pivot above).")
    max_tokens: int | None = key(None, "Longest labeling reply. Unset: the policy's `max_tokens`.")
    max_steps: int = key(-1, "Training steps per round; -1: `epochs` decide.")
    epochs: float = key(1.0, "Training epochs per round.")
    batch_size: int = key(4, "Training batch size per device.")
    lora: bool = key(False, "Train a LoRA adapter, merged into full weights after each round (the next round "
                            "starts from them).")
    max_length: int = key(512, "Prompt plus reply tokens in training.")
    seed: int = key(0, "Seed of sampling and training.")
    alpha: float = key(0.05, "A round must beat the one before with the confidence interval's lower bound above "
                             "50% at this level.")
    early_stop: bool = key(True, "Stop at the first round that does not significantly beat the one before.")
    dir: str = key("runs/iterate", "State, labeling store, pairs and evaluation runs.")
    checkpoints: str | None = key(None, "Where round checkpoints go. Unset: `<manifest folder>/iterate`.")
    launcher: str | None = key(None, "Train each round under this launcher, as `<launcher> -m evalsuite train ...` in a "
                                     "subprocess (e.g. `accelerate launch --num_processes 8`; on CPU `accelerate "
                                     "launch --multi_gpu --num_processes 2`); `--launcher` overrides it. Unset: train "
                                     "in iterate's own process.")


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
    # the judge panel in use, by [judges.<name>] table name (empty when only [judge] is used); `judge` is its first
    judges: dict[str, ModelSpec] = field(default_factory=dict)
    defined_judges: dict[str, ModelSpec] = field(default_factory=dict)  # every [judges.<name>] table, in file order

    def model_names(self) -> list[str]:
        return sorted(self.models)

    def with_judges(self, names: Sequence[str], *, what: str = "--judges") -> Config:
        """The config judged by the ``[judges.<name>]`` tables ``names`` (in that order): ``judges`` is that panel
        and ``judge`` its first member. An unknown name, a duplicate vote or a shared judge label is an input error."""
        panel = pick_panel(self.defined_judges, names, where=str(self.path or "config"), what=what)
        return dataclasses.replace(self, judges=panel, judge=next(iter(panel.values())))

    def single_judge(self, command: str, *, judges_flag: bool = False) -> ModelSpec:
        """The one judge of a workflow that takes one (grade, label, sequential, ...): ``judge``, unless the panel
        has several members, which is an input error saying how to pick one (``judges_flag``: ``command`` has
        ``--judges``)."""
        first = next(iter(self.judges), "NAME")
        fix = (f"pick one with --judges {first}" if judges_flag
               else f"pick one with --set 'judging.panel=[\"{first}\"]'") + ", or use [judge]"
        require_one_judge(command, list(self.judges), where=str(self.path or "config"), fix=fix)
        return self.judge


def require_one_judge(command: str, judges: Sequence[str], *, where: str, fix: str) -> None:
    """Refuse a panel of several judges for a workflow that takes one: the one check every such workflow makes."""
    if len(judges) >= 2:
        raise InputError(f"{command} takes one judge, but the panel has {len(judges)} ({', '.join(judges)})",
                         where=where, fix=fix)


# ---------------------------------------------------------------------------------------------------------------------
# The tables of evalsuite.toml, as the loader checks them and the reference documents them

# ModelSpec fields that are no key: the table's name, and what the loader and training attach
_NOT_KEYS = ("name", "extra")
# the judge is sampled greedily, longer and wider than an answer model unless its table says otherwise
JUDGE_DEFAULTS: dict[str, Any] = {"max_tokens": 2048, "temperature": 0.0, "concurrency": 32}
# [train] applies these ModelSpec keys to every checkpoint; where a checkpoint lives comes from the manifest
_CHECKPOINT_MODEL_KEYS_EXCLUDED = ("backend", "model", "adapter", "revision", "base_url", "api_key_env")


@dataclass(frozen=True)
class ConfigTable:
    """One table of ``evalsuite.toml``: its name as written (``models.<name>``), what it is for, and its keys."""

    name: str
    about: str
    keys: tuple[KeySpec, ...]


def _with_defaults(keys: Sequence[KeySpec], defaults: Mapping[str, Any]) -> list[KeySpec]:
    return [dataclasses.replace(k, default=defaults[k.name]) if k.name in defaults else k for k in keys]


def model_keys() -> list[KeySpec]:
    """Keys of a ``[models.<name>]`` table."""
    return keys_of(ModelSpec, exclude=_NOT_KEYS) + keys_of(ModelExtraKeys)


def config_tables() -> list[ConfigTable]:
    """Every table ``evalsuite.toml`` accepts, in the order the reference lists them."""
    model = keys_of(ModelSpec, exclude=_NOT_KEYS)
    extra = keys_of(ModelExtraKeys)
    judging = keys_of(JudgingOptions)
    judge_model = _with_defaults(model, JUDGE_DEFAULTS)
    checkpoint_model = [k for k in model if k.name not in _CHECKPOINT_MODEL_KEYS_EXCLUDED]
    return [
        ConfigTable("bench", "The benchmark: a bundled question set, a JSONL file, or a Hugging Face dataset.",
                    tuple(keys_of(BenchSpec))),
        ConfigTable("models.<name>", "One table per answer model; `<name>` is the name commands take "
                    "(`evalsuite compare sft dpo`).", tuple(model + extra)),
        ConfigTable("judge", "The judge: the model keys (with the judge's own defaults) and the judging keys.",
                    tuple(judge_model + extra + judging)),
        ConfigTable("judges.<name>", "A judge panel: one table per judge, with the model keys of `[judge]` (and its "
                    "defaults); `<name>` is the judge's name in results and for `--judges`. The judging keys stay in "
                    "`[judging]` and apply to every member; `[judge]` then holds no model keys.",
                    tuple(judge_model + extra + keys_of(PanelKeys))),
        ConfigTable("judging", "The judging keys of `[judge]`, in a table of their own; a key set here wins over "
                    "the same key in `[judge]`.", tuple(judging)),
        ConfigTable("run", "The run directory and the seed of the statistics.", tuple(keys_of(RunOptions))),
        ConfigTable("train", "Trained checkpoints: where the manifest is, which backend runs them, and model keys "
                    "applied to every one of them (where each checkpoint lives comes from the manifest).",
                    tuple(keys_of(CheckpointOptions) + checkpoint_model)),
        ConfigTable("iterate", "Iterative preference optimisation (`evalsuite iterate`).", tuple(keys_of(IterateOptions))),
    ]


def _table_keys(name: str) -> dict[str, KeySpec]:
    table = next(t for t in config_tables() if t.name == name)
    return {k.name: k for k in table.keys}


# ---------------------------------------------------------------------------------------------------------------------
# Loading


def parse_override(text: str) -> tuple[list[str], Any]:
    """``models.dpo.max_tokens=512`` -> (["models", "dpo", "max_tokens"], 512); the value is read as TOML, else a string."""
    if "=" not in text:
        raise InputError(f"override {text!r} is not KEY=VALUE", fix="e.g. --set judge.concurrency=64")
    key, value = text.split("=", 1)
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise InputError(f"override {text!r} names no key", fix="e.g. --set judge.concurrency=64")
    return keys, parsed


def apply_override(raw: dict[str, Any], keys: list[str], value: Any) -> None:
    node = raw
    for k in keys[:-1]:
        nxt = node.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise InputError(f"cannot set {'.'.join(keys)}: {k} is not a table", fix="check the key path")
        node = nxt
    node[keys[-1]] = value


@dataclass(frozen=True)
class _Origins:
    """Where each value came from, for error messages: the config file, or the ``--set`` that wrote it."""

    file: str
    overrides: dict[tuple[str, ...], str]  # key path -> the value's text as given to --set

    def of(self, *path: str) -> str:
        for n in range(len(path), 0, -1):
            if path[:n] in self.overrides:
                return "--set"
        return self.file


def _check_table(table: Any, keys: Mapping[str, KeySpec], path: str, origins: _Origins) -> dict[str, Any]:
    """A table's values, each checked against its key's type and choices; unknown keys refused with the known ones."""
    parts = tuple(path.split("."))
    if not isinstance(table, dict):
        raise InputError(f"{path} = {toml_value(table)} is not a table", where=origins.of(*parts),
                         fix=f"write [{path}] as a table of keys")
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise InputError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in [{path}]",
                         where=origins.of(*parts, unknown[0]), fix=f"valid keys: {', '.join(sorted(keys))}")
    out: dict[str, Any] = {}
    for name, value in table.items():
        spec = keys[name]
        where = origins.of(*parts, name)
        text = origins.overrides.get((*parts, name))
        try:
            checked = check_value(value, spec.type)
        except TypeMismatch as exc:
            if text is not None and _takes_string(spec):  # --set revision=2024-05-01 reads as a TOML date
                fix = f"quote it: --set '{path}.{name}=\"{text}\"'"
            else:
                example = "" if spec.default in (None, dataclasses.MISSING) else f", e.g. {name} = {toml_value(spec.default)}"
                fix = f"write {name} as a {exc}{example}"
            raise InputError(f"{path}.{name} = {toml_value(value)} is not a {exc}", where=where, fix=fix) from None
        if spec.choices and checked not in spec.choices:
            raise InputError(f"{path}.{name} = {toml_value(value)} is not one of {', '.join(spec.choices)}",
                             where=where, fix=f"use {' or '.join(toml_value(c) for c in spec.choices)}")
        out[name] = checked
    return out


def _takes_string(spec: KeySpec) -> bool:
    try:
        check_value("", spec.type)
    except TypeMismatch:
        return False
    return True


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), *, run_dir: str | Path | None = None) -> Config:
    """Read ``evalsuite.toml`` (or ``path``), apply ``--set`` overrides, and check every key's name and type."""
    cfg_path: Path | None = Path(path) if path else (Path(DEFAULT_CONFIG) if Path(DEFAULT_CONFIG).is_file() else None)
    raw: dict[str, Any] = {}
    if cfg_path is not None:
        if not cfg_path.is_file():
            raise InputError(f"no such config file {str(cfg_path)!r}", fix="pass --config PATH or create evalsuite.toml")
        try:
            raw = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"invalid TOML ({exc})", where=str(cfg_path), fix="fix the syntax") from None
    written: dict[tuple[str, ...], str] = {}
    for ov in overrides:
        keys, value = parse_override(ov)
        apply_override(raw, keys, value)
        written[tuple(keys)] = ov.split("=", 1)[1]
    origins = _Origins(str(cfg_path) if cfg_path else f"config (no {DEFAULT_CONFIG} in {Path.cwd()})", written)
    tables = {t.name: t for t in config_tables()}
    known_sections = sorted(n.split(".")[0] for n in tables)
    unknown = sorted(set(raw) - set(known_sections))
    if unknown:
        raise InputError(f"unknown section{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}",
                         where=origins.of(unknown[0]), fix=f"valid sections: {', '.join(known_sections)}")

    bench_raw = raw.get("bench", {})
    if isinstance(bench_raw, dict) and isinstance(bench_raw.get("categories"), str):  # "math,coding" is a list too
        bench_raw = {**bench_raw, "categories": [c.strip() for c in bench_raw["categories"].split(",") if c.strip()]}
    bench_values = _check_table(bench_raw, _table_keys("bench"), "bench", origins)
    if "path" in bench_values and "name" not in bench_values:
        bench_values["name"] = None
    bench = BenchSpec(**bench_values)

    models_raw = raw.get("models", {})
    if not isinstance(models_raw, dict):
        raise InputError(f"models = {toml_value(models_raw)} is not a table", where=origins.of("models"),
                         fix="write one [models.<name>] table per model")
    models = {name: _model_spec(name, table, origins) for name, table in models_raw.items()}

    judge_values = _check_table(raw.get("judge", {}), _table_keys("judge"), "judge", origins)
    judging_keys = set(_table_keys("judging"))
    judging_values = {k: judge_values.pop(k) for k in list(judge_values) if k in judging_keys}
    judging_raw = raw.get("judging", {})
    if isinstance(judging_raw, dict) and isinstance(judging_raw.get("panel"), str):  # --set judging.panel=a,b
        judging_raw = {**judging_raw, "panel": [n.strip() for n in judging_raw["panel"].split(",") if n.strip()]}
    judging_values.update(_check_table(judging_raw, _table_keys("judging"), "judging", origins))
    judge = _model_from_values("judge", {**JUDGE_DEFAULTS, **judge_values})
    judging = JudgingOptions(**judging_values)
    defined_judges = _judge_tables(raw.get("judges", {}), origins)
    panel: dict[str, ModelSpec] = {}
    if defined_judges and judge_values:
        first = next(iter(judge_values))
        raise InputError(f"[judge] sets model keys ({', '.join(judge_values)}) beside [judges.<name>] tables",
                         where=origins.of("judge", first),
                         fix="use [judges.<name>] tables for every member; keep only judging keys in [judge] or [judging]")
    if defined_judges or judging.panel:
        where = origins.of("judging", "panel") if judging.panel else origins.file
        panel = pick_panel(defined_judges, judging.panel or list(defined_judges), where=where, what="judging.panel")
        judge = next(iter(panel.values()))

    run = RunOptions(**_check_table(raw.get("run", {}), _table_keys("run"), "run", origins))
    train_values = _check_table(raw.get("train", {}), _table_keys("train"), "train", origins)
    checkpoints = CheckpointOptions(**{k: train_values.pop(k) for k in list(train_values)
                                       if k in {f.name for f in fields(CheckpointOptions)}})
    iterate = IterateOptions(**_check_table(raw.get("iterate", {}), _table_keys("iterate"), "iterate", origins))
    check_model_name(iterate.baseline, origins.of("iterate", "baseline"), fix="name the baseline model plainly")
    return Config(
        path=cfg_path,
        bench=bench,
        models=models,
        judge=judge,
        judging=judging,
        run_dir=Path(run_dir or run.dir),
        manifest=Path(checkpoints.manifest),
        checkpoint_backend=checkpoints.backend,
        checkpoint_options=train_values,
        seed=run.seed,
        raw=raw,
        iterate=iterate,
        judges=panel,
        defined_judges=defined_judges,
    )


def _judge_tables(tables: Any, origins: _Origins) -> dict[str, ModelSpec]:
    """The ``[judges.<name>]`` tables as judge specs, in file order: the keys of ``[judge]`` with its defaults, plus
    ``weight``; a judging key there is refused (it belongs in ``[judging]``, for every member)."""
    if not isinstance(tables, dict):
        raise InputError(f"judges = {toml_value(tables)} is not a table", where=origins.of("judges"),
                         fix="write one [judges.<name>] table per judge")
    keys = _table_keys("judges.<name>")
    judging_keys = set(_table_keys("judging"))
    out: dict[str, ModelSpec] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise InputError(f"judges.{name} = {toml_value(table)} is not a table", where=origins.of("judges", name),
                             fix="write one [judges.<name>] table per judge, e.g. [judges.gpt4] with model = ...")
        check_model_name(name, origins.of("judges", name), fix=f"rename [judges.{name}] to a plain name like gpt4")
        misplaced = [k for k in table if k in judging_keys]
        if misplaced:
            k = misplaced[0]
            raise InputError(f"judges.{name}.{k} is a judging key, which applies to every judge of the panel",
                             where=origins.of("judges", name, k), fix=f"move {k} to [judging]")
        values = _check_table(table, keys, f"judges.{name}", origins)
        weight = values.get("weight")
        if weight is not None and not (0.0 <= weight < float("inf")):
            raise InputError(f"judges.{name}.weight = {toml_value(weight)} is not a weight",
                             where=origins.of("judges", name, "weight"), fix="write a number >= 0, or leave it unset")
        out[name] = _model_from_values(name, {**JUDGE_DEFAULTS, **values})
    return out


def _endpoint_identity(spec: ModelSpec) -> tuple[Any, ...]:
    """What makes two judges the same voter: backend, endpoint(s), model, adapter and revision."""
    urls = spec.base_url if isinstance(spec.base_url, (list, tuple)) else [spec.base_url] if spec.base_url else []
    return (spec.backend, tuple(sorted(u.rstrip("/") for u in urls)), spec.model, spec.adapter, spec.revision)


def judge_label(spec: ModelSpec) -> str:
    """The judge's name in records (the key of its judgments in the store): its label, else the endpoint model name,
    else the checkpoint folder name."""
    if spec.extra.get("label"):
        return str(spec.extra["label"])
    if spec.backend == "openai":
        return spec.model
    return Path(spec.adapter or spec.model).name or spec.name


def pick_panel(defined: Mapping[str, ModelSpec], names: Sequence[str], *, where: str, what: str = "--judges"
               ) -> dict[str, ModelSpec]:
    """The members ``names`` of the ``[judges.<name>]`` tables ``defined``, checked: each defined and named once,
    no two the same judge (a duplicate vote), no two sharing a judge label (the key of their judgments)."""
    if not defined:
        raise InputError(f"{what} names {', '.join(names)}, but no [judges.<name>] table is defined",
                         where=where, fix="define one [judges.<name>] table per judge of the panel")
    panel: dict[str, ModelSpec] = {}
    for name in names:
        if name not in defined:
            raise InputError(f"{what} names judge {name!r}, which has no [judges.{name}] table", where=where,
                             fix=f"defined judges: {', '.join(defined)}")
        if name in panel:
            raise InputError(f"{what} names judge {name!r} twice", where=where, fix="name each judge once")
        panel[name] = defined[name]
    voters: dict[tuple[Any, ...], str] = {}
    labels: dict[str, str] = {}
    for name, spec in panel.items():
        same = voters.setdefault(_endpoint_identity(spec), name)
        if same != name:
            raise InputError(f"judges {same!r} and {name!r} are the same judge ({spec.backend} model {spec.model!r}"
                             f"{f' at {spec.base_url}' if spec.base_url else ''}): a duplicate vote",
                             where=where, fix=f"remove [judges.{name}] or point it at another model")
        label = judge_label(spec)
        other = labels.setdefault(label, name)
        if other != name:
            raise InputError(f"judges {other!r} and {name!r} have the same judge label {label!r}, the key of their "
                             "judgments in the run store", where=where,
                             fix=f'set label = "{name}" in [judges.{name}]')
    return panel


def iterate_options(table: dict[str, Any], where: str = "config") -> IterateOptions:
    """``[iterate]`` checked: known keys, the right types, a known reference."""
    return IterateOptions(**_check_table(table, _table_keys("iterate"), "iterate", _Origins(where, {})))


def _model_from_values(name: str, values: dict[str, Any]) -> ModelSpec:
    extra_keys = {f.name for f in fields(ModelExtraKeys)} | {f.name for f in fields(PanelKeys)}
    extra = {k: values.pop(k) for k in list(values) if k in extra_keys}
    values.setdefault("model", name)
    return ModelSpec(name=name, extra=extra, **values)


def model_spec(name: str, table: Any, *, where: str = "config") -> ModelSpec:
    """A ``[models.<name>]`` table as a ModelSpec: known keys only, each of its type."""
    return _model_spec(name, table, _Origins(where, {}))


def _model_spec(name: str, table: Any, origins: _Origins) -> ModelSpec:
    check_model_name(name, origins.of("models", name), fix=f"rename [models.{name}] to a plain name like sft or dpo-b0.1")
    values = _check_table(table, {k.name: k for k in model_keys()}, f"models.{name}", origins)
    return _model_from_values(name, values)


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
            raise _unknown_model(config, name, entries)
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


def _unknown_model(config: Config, name: str, entries: Sequence[Any]) -> InputError:
    """A name that is neither a [models] table nor a trained checkpoint: say where evalsuite looked."""
    if config.path is None and not config.models and not entries:
        return InputError(
            f"unknown model {name!r}: no {DEFAULT_CONFIG} in {Path.cwd()} and no trained checkpoints in {config.manifest}",
            fix=f"run from your project folder, pass --config PATH, or create {DEFAULT_CONFIG} with a [models.{name}] "
                "table (see the configuration reference)",
        )
    known = sorted(set(config.models) | {e.name for e in entries} | {e.variant for e in entries})
    return InputError(
        f"unknown model {name!r}",
        where=str(config.path or f"config (no {DEFAULT_CONFIG} in {Path.cwd()})"),
        fix=f"define [models.{name}] or train it (evalsuite train); known: {', '.join(known) or 'none'}",
    )


# ---------------------------------------------------------------------------------------------------------------------
# The configuration reference (docs/configuration.md's tables, rendered by docs/hooks/config_reference.py)


def _md_default(spec: KeySpec) -> str:
    if spec.default is dataclasses.MISSING:
        return "required"
    if spec.default is None:
        return "unset"
    return f"`{toml_value(spec.default)}`"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def config_reference(heading_level: int = 2) -> str:
    """Markdown: one section per table of ``evalsuite.toml``, one row per key with its type, default and help."""
    hashes = "#" * heading_level
    out: list[str] = []
    for table in config_tables():
        out += [f"{hashes} `[{table.name}]`", "", table.about, "", "| key | type | default | description |",
                "|---|---|---|---|"]
        for k in table.keys:
            about = k.help
            if k.choices:
                about += " One of " + ", ".join(f"`{c}`" for c in k.choices) + "."
            out.append(f"| `{k.name}` | {_md_cell(k.type_name)} | {_md_cell(_md_default(k))} | {_md_cell(about)} |")
        out.append("")
    return "\n".join(out)


__all__ = [
    "DEFAULT_CONFIG", "JUDGE_DEFAULTS", "CheckpointOptions", "Config", "ConfigTable", "IterateOptions", "JudgingOptions",
    "ModelExtraKeys", "ModelSpec", "PanelKeys", "RunOptions", "apply_override", "config_reference", "config_tables",
    "iterate_options", "load_config", "model_keys", "model_spec", "pick_panel", "parse_override", "require_one_judge",
    "resolve_models",
]
