"""``iterate``: iterative preference optimisation, label -> train -> compare, round after round, resumable anywhere.

Round r (1-based) of ``[iterate]``:

1. **label**: the policy of round r (the SFT baseline for r = 1, else checkpoint ``<variant>-r<r-1>``) samples K
   answers per labeling prompt; the judge labels swap-consistent pairs (:mod:`evalsuite.pipeline.label`) into
   ``<dir>/pairs-r<r>.jsonl``;
2. **train**: the variant is trained from the round's policy on those pairs (:func:`evalsuite.trainers.train`) and
   registered in the manifest as ``<variant>-r<r>``, so ``evalsuite compare sft dpo-r1 dpo-r2`` works; the reference
   is the starting model (``reference = "previous"``) or the SFT model (``reference = "sft"``). In this process by
   default; with a ``launcher`` (``accelerate launch --num_processes 8``) as ``<launcher> -m evalsuite train ...``,
   a subprocess across the processes the launcher starts;
3. **compare**: on the evaluation benchmark (never the labeling prompts: checked before round 1), every round so far
   against the SFT baseline (``<dir>/eval/vs-<baseline>/``) and round r against round r-1 (``<dir>/eval/r<r>-vs-r<r-1>/``;
   round 1's "round before" is the baseline itself). The loop stops early when round r is not significantly better
   than round r-1: the lower bound of its win rate's CI (level 1 - alpha) is not above 50%.

Progress lives in ``<dir>/state.json`` (written atomically, tmp + rename) as the step each round is in; every model
call is in a run store and every checkpoint in the manifest. Killed anywhere, the same command resumes at the step it
was in: finished calls are not asked again, a finished round is not trained again, a half-finished training restarts.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.config import Config, IterateOptions, ModelSpec, resolve_models
from evalsuite.errors import InputError
from evalsuite.store.atomic import atomic_write_text

if TYPE_CHECKING:
    from evalsuite.trainers import TrainOptions

STEPS: tuple[str, ...] = ("label", "train", "compare", "done")
STATE_FILE = "state.json"

ProgressFactory = Callable[[str, int], Any]


@dataclass(frozen=True)
class Versus:
    """One comparison: ``model`` against ``baseline`` on the evaluation benchmark."""

    model: str
    baseline: str
    win_rate: float | None
    ci_low: float | None
    ci_high: float | None
    n: int

    @property
    def significantly_better(self) -> bool:
        return self.ci_low is not None and self.ci_low > 0.5

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "baseline": self.baseline, "win_rate": self.win_rate, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "n": self.n}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Versus:
        return cls(str(d["model"]), str(d["baseline"]), d.get("win_rate"), d.get("ci_low"), d.get("ci_high"),
                   int(d.get("n", 0)))

    def describe(self) -> str:
        def pct(x: float | None) -> str:
            return "-" if x is None else f"{100 * x:.1f}%"

        return f"{self.model} vs {self.baseline}: win rate {pct(self.win_rate)} [{pct(self.ci_low)}, {pct(self.ci_high)}] (n={self.n})"


@dataclass(frozen=True)
class RoundRecord:
    """What one finished (or running) round left in the state file."""

    round: int
    step: str
    checkpoint: str
    pairs: int | None = None
    prompts: int | None = None
    consistency: float | None = None
    vs_baseline: Versus | None = None
    vs_previous: Versus | None = None


@dataclass(frozen=True)
class IterateOutcome:
    rounds: list[RoundRecord]
    stopped: str | None  # why the loop stopped before the last round, or None

    def table(self) -> list[str]:
        rows = [f"{'round':<6} {'checkpoint':<14} {'pairs':>9} {'consistency':>11}  vs baseline / vs previous round"]
        for r in self.rounds:
            pairs = "-" if r.pairs is None else f"{r.pairs}/{r.prompts}"
            cons = "-" if r.consistency is None else f"{100 * r.consistency:.1f}%"
            rows.append(f"{r.round:<6} {r.checkpoint:<14} {pairs:>9} {cons:>11}  "
                        f"{r.vs_baseline.describe() if r.vs_baseline else '-'}")
            if r.vs_previous is not None and r.round > 1:
                rows.append(f"{'':<6} {'':<14} {'':>9} {'':>11}  {r.vs_previous.describe()}")
        return rows


# ---------------------------------------------------------------------------------------------------------------------
# State


def read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"version": 1, "rounds": {}, "stopped": None}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable iterate state ({exc})", where=str(path),
                         fix="delete it to start over (stored calls and checkpoints are kept)") from None
    if not isinstance(data, dict) or not isinstance(data.get("rounds"), dict):
        raise InputError("not an iterate state file", where=str(path), fix="delete it to start over")
    return data


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Atomic: a kill mid-write leaves the previous state, never half of one."""
    atomic_write_text(path, json.dumps(state, indent=2) + "\n")


class RoundError(InputError):
    """A failure inside a round, named by round and step."""


def _in_step(round_: int, step: str, exc: BaseException) -> RoundError:
    return RoundError(f"round {round_} step {step}: {exc}")


# ---------------------------------------------------------------------------------------------------------------------
# The loop


def round_name(variant: str, r: int) -> str:
    """``<variant>-r<r>``: the checkpoint round r trains."""
    return f"{variant}-r{r}"


def _local_path(spec: ModelSpec, what: str) -> str:
    if spec.backend not in ("hf", "vllm") or spec.adapter:
        raise InputError(f"{what} {spec.name!r} is not a local full-weights checkpoint (backend {spec.backend}"
                         f"{', adapter ' + spec.adapter if spec.adapter else ''})",
                         fix="point [models.<name>] at a checkpoint directory with backend hf or vllm (merge LoRA first)")
    return spec.model


def check_options(opts: IterateOptions) -> None:
    from evalsuite.trainers import get_variant

    if not opts.prompts:
        raise InputError("[iterate] has no prompts file", fix='set iterate.prompts = "labeling_prompts.jsonl"')
    if opts.rounds < 1:
        raise InputError(f"iterate.rounds {opts.rounds}", fix="run at least one round")
    spec = get_variant(opts.variant)
    if spec.data_shape != "paired":
        raise InputError(f"iterate trains paired variants; {opts.variant!r} is not one", fix="use dpo, ipo or simpo")
    if opts.reference == "sft" and not spec.uses_reference:
        raise InputError(f"{opts.variant} has no reference model", fix='drop iterate.reference = "sft"')


def _versus(results: Any, model: str) -> Versus:
    c = next(c for c in results.comparisons if c.model == model)
    return Versus(model, results.baseline, c.win_rate, c.ci_low, c.ci_high, c.n)


def _compare(config: Config, base: ModelSpec, cands: Sequence[ModelSpec], out_dir: Path, progress: ProgressFactory,
             alpha: float) -> Any:
    """``compare`` on the evaluation benchmark (candidates vs ``base`` only), strict: a model with no answer or an
    unreachable judge stops the round."""
    from evalsuite.pipeline.compare import run_compare
    from evalsuite.report.results import StatsOptions

    outcome = run_compare(replace(config, judging=replace(config.judging, pairs="baseline")), base, cands,
                          progress=progress, stats_options=StatsOptions(seed=config.seed, alpha=alpha, confidence=1 - alpha),
                          viewer=False, out_dir=out_dir, strict=True)
    return outcome.results


def iterate(config: Config, opts: IterateOptions, *, progress: ProgressFactory,
            say: Callable[[str], None] = lambda _: None, launcher: Sequence[str] | None = None) -> IterateOutcome:
    """Run (or resume) ``opts.rounds`` rounds; see the module docstring. ``launcher``: the command (split into
    words) that each round's training runs under, e.g. ``["accelerate", "launch", "--num_processes", "2"]``;
    None trains in this process."""
    from evalsuite.bench import load_benchmark
    from evalsuite.pipeline.label import LabelOptions, check_disjoint, label, read_prompts
    from evalsuite.manifest import upsert_entry, utc_now
    from evalsuite.store import RunStore

    check_options(opts)
    label_options = LabelOptions(samples=opts.samples, temperature=opts.temperature, seed=opts.seed,
                                 max_tokens=opts.max_tokens, schedule=opts.schedule)
    label_options.validate()
    work = Path(opts.dir)
    state_path = work / STATE_FILE
    state = read_state(state_path)
    prompts = read_prompts(opts.prompts)
    check_disjoint(prompts, load_benchmark(config.bench), where=opts.prompts)
    base = resolve_models(config, [opts.baseline])
    if len(base) != 1:
        raise InputError(f"iterate.baseline {opts.baseline!r} expands to {len(base)} models", fix="name one checkpoint")
    baseline = base[0]
    sft_path = _local_path(baseline, "iterate.baseline")
    ckpt_root = Path(opts.checkpoints) if opts.checkpoints else config.manifest.parent / "iterate"

    def save(r: int, **fields: Any) -> None:
        state["rounds"].setdefault(str(r), {}).update(fields)
        write_state(state_path, state)

    records: list[RoundRecord] = []
    stopped: str | None = state.get("stopped")
    for r in range(1, opts.rounds + 1):
        if stopped:
            break
        name = round_name(opts.variant, r)
        rs = state["rounds"].get(str(r), {})
        step = rs.get("step", "label")
        prev_name = opts.baseline if r == 1 else round_name(opts.variant, r - 1)
        pairs_path = work / f"pairs-r{r}.jsonl"

        if step == "label":
            save(r, step="label", checkpoint=name)
            say(f"round {r}: label ({opts.samples} samples per prompt from {prev_name})")
            try:
                policy = resolve_models(config, [prev_name])[0]
                with RunStore(work / "label") as store:
                    report = label(prompts, policy, config.judge, store, pairs_path, label_options, progress=progress,
                                   template=config.judging.template)
            except InputError as exc:
                raise _in_step(r, "label", exc) from None
            for line in report.health_lines():
                say(f"round {r}: {line}")
            if report.kept == 0:
                raise RoundError(f"round {r} step label: no usable pair from {report.prompts} prompts "
                                 f"(no pair: {report.no_pair}; checklist dropped: {report.dropped})"
                                 " — fix: more prompts or samples, a higher temperature, or a more consistent judge")
            save(r, step="train", pairs=report.kept, prompts=report.prompts, consistency=report.consistency)
            step = "train"

        if step == "train":
            say(f"round {r}: train {name} from {prev_name}")
            try:
                init = _local_path(resolve_models(config, [prev_name])[0], "the round's starting model")
                # killed after the trainer wrote its checkpoint but before the state moved on: keep what it wrote
                entries = _finished_training(ckpt_root / f"r{r}", state["rounds"][str(r)].get("train_started"))
                if not entries:
                    save(r, train_started=utc_now())
                    entries = _train_round(opts, init, sft_path, pairs_path, ckpt_root / f"r{r}", launcher=launcher)
            except InputError as exc:
                raise _in_step(r, "train", exc) from None
            except Exception as exc:  # a trainer crash: name the round and step; checkpoints so far are kept
                raise RoundError(f"round {r} step train: the trainer failed ({type(exc).__name__}: {exc})"
                                 " — fix: see the trainer's message; re-run the same command to retry this step") from exc
            entry = entries[0]
            upsert_entry(config.manifest, replace(entry, name=name, extra={**entry.extra, "round": r,
                                                                          "reference": opts.reference}))
            save(r, step="compare")
            step = "compare"

        if step == "compare":
            say(f"round {r}: compare on the evaluation benchmark")
            try:
                rounds = resolve_models(config, [round_name(opts.variant, i) for i in range(1, r + 1)])
                eval_config = replace(config, run_dir=work / "eval")  # one store for every round's comparisons
                vs_base = _compare(eval_config, baseline, rounds, work / "eval" / f"vs-{opts.baseline}", progress,
                                   opts.alpha)
                if r > 1:
                    prev = resolve_models(config, [prev_name])[0]
                    vs_prev_res = _compare(eval_config, prev, rounds[-1:], work / "eval" / f"r{r}-vs-r{r - 1}",
                                           progress, opts.alpha)
                    vs_prev = _versus(vs_prev_res, name)
                else:
                    vs_prev = _versus(vs_base, name)
            except InputError as exc:
                raise _in_step(r, "compare", exc) from None
            save(r, step="done", vs_baseline=_versus(vs_base, name).to_json(), vs_previous=vs_prev.to_json())
            if opts.early_stop and not vs_prev.significantly_better and r < opts.rounds:
                stopped = (f"stopped after round {r}: {name} is not significantly better than {prev_name} "
                           f"({vs_prev.describe()}; the CI's lower bound must be above 50%)")
                state["stopped"] = stopped
                write_state(state_path, state)
        rs = state["rounds"].get(str(r), {})
        records.append(RoundRecord(
            round=r, step=rs.get("step", step), checkpoint=name, pairs=rs.get("pairs"), prompts=rs.get("prompts"),
            consistency=rs.get("consistency"),
            vs_baseline=Versus.from_json(rs["vs_baseline"]) if rs.get("vs_baseline") else None,
            vs_previous=Versus.from_json(rs["vs_previous"]) if rs.get("vs_previous") else None,
        ))
    return IterateOutcome(records, stopped)


def _finished_training(out_dir: Path, started: str | None) -> list[Any]:
    """The round's checkpoint when a training that started at ``started`` finished (its manifest entry is written
    only after the weights are saved, and is newer than the start); else ``[]``."""
    if not started:
        return []
    return _resolved_entries(out_dir / "manifest.json", lambda e: e.created >= started)


def _resolved_entries(manifest: Path, keep: Callable[[Any], bool]) -> list[Any]:
    """The entries of ``manifest`` that ``keep`` accepts, with absolute paths."""
    from evalsuite.manifest import read_manifest, resolve_base, resolve_path

    return [replace(e, path=str(resolve_path(manifest, e)), base=None if e.base is None else str(resolve_base(manifest, e)),
                    metrics=None if e.metrics is None else str((manifest.parent / e.metrics).resolve()))
            for e in read_manifest(manifest) if keep(e)]


def _train_round(opts: IterateOptions, init: str, sft_path: str, pairs: Path, out_dir: Path, *,
                 launcher: Sequence[str] | None = None) -> list[Any]:
    """Train one round into ``out_dir`` (its own manifest there); full weights, so the next round starts from them.
    With a ``launcher``, ``evalsuite train`` runs under it and the round's entry is read back from that manifest."""
    from evalsuite.trainers import TrainOptions, train

    options = TrainOptions(
        lr=opts.lr, epochs=opts.epochs, max_steps=opts.max_steps, batch_size=opts.batch_size, max_length=opts.max_length,
        lora=opts.lora, merge=opts.lora, seed=opts.seed,
        reference_model=sft_path if opts.reference == "sft" else None,
    )
    if launcher:
        return _launched_round(launcher, opts, options, init, pairs, out_dir)
    trained = train(opts.variant, model=init, data=str(pairs), betas=[opts.beta] if opts.beta else None,
                    options=options, out_dir=out_dir, manifest=out_dir / "manifest.json", progress=False)
    entries = [t.entry for t in trained if t.entry is not None]
    if not entries:
        raise InputError("the trainer returned no checkpoint")
    return entries


def train_command(launcher: Sequence[str], variant: str, beta: float | None, options: TrainOptions, init: str,
                  pairs: Path, out_dir: Path) -> list[str]:
    """``<launcher> -m evalsuite train <variant> ...``: the command line of one round's training under ``launcher``
    (``options``: its :class:`~evalsuite.trainers.TrainOptions`)."""
    command = [*launcher, "-m", "evalsuite", "train", variant, "--model", init, "--data", str(pairs),
               "--out", str(out_dir), "--manifest", str(out_dir / "manifest.json"), "--quiet",
               "--lr", repr(options.lr), "--epochs", repr(options.epochs), "--max-steps", str(options.max_steps),
               "--batch-size", str(options.batch_size), "--max-length", str(options.max_length),
               "--seed", str(options.seed), "--lora" if options.lora else "--full"]
    if options.merge:
        command.append("--merge")
    if beta is not None:
        command += ["--beta", repr(beta)]
    if options.reference_model:
        command += ["--reference-model", options.reference_model]
    return command


def _launched_round(launcher: Sequence[str], opts: IterateOptions, options: TrainOptions, init: str, pairs: Path,
                    out_dir: Path) -> list[Any]:
    from evalsuite.manifest import checkpoint_name
    from evalsuite.trainers import get_variant, resolve_betas, run_launched

    beta = resolve_betas(get_variant(opts.variant), [opts.beta] if opts.beta else None)[0]
    command = train_command(launcher, opts.variant, opts.beta, options, init, pairs, out_dir)
    # a rank's bad input comes back as its InputError; the ranks' lines go to stderr, beside the round's own
    status = run_launched(command, stdout_to_stderr=True)
    if status != 0:
        raise RuntimeError(f"`{shlex.join(command)}` exited with status {status}")
    manifest = out_dir / "manifest.json"
    name = checkpoint_name(opts.variant, beta)
    entries = _resolved_entries(manifest, lambda e: e.name == name)
    if not entries:
        raise InputError(f"the launched training wrote no {name} entry", where=str(manifest))
    return entries


__all__ = ["STEPS", "IterateOutcome", "RoundRecord", "Versus", "iterate", "read_state", "round_name", "train_command",
           "write_state"]
