"""Generation: (model, questions) -> two-turn answers, each turn stored as it lands.

Turn 2 is asked with turn 1's reply in the conversation, so it is a follow-up request issued when turn 1 finishes.
Sampling temperature defaults to MT-Bench's per-category value. What is already stored with the same cache key is
not asked again; answers imported from files are never regenerated.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from evalsuite.backends import ChatBackend, ChatRequest, ChatResult, make_backend
from evalsuite.config import ModelSpec
from evalsuite.generate.identity import weights_fingerprint
from evalsuite.models import resolve_model_path
from evalsuite.records import CATEGORY_TEMPERATURE, DEFAULT_TEMPERATURE, Question
from evalsuite.store import AnswerTurn, RunStore


@dataclass(frozen=True)
class GenerationSummary:
    model: str
    requested: int  # calls made (turn 1 and turn 2)
    cached: int  # turns already stored
    errors: int  # calls that failed after retries (not stored; a re-run asks them again)
    first_error: str | None = None  # the reason of the first failed call, e.g. a prompt longer than max_model_len


# Backends whose `model` and `adapter` are files on this machine: their identity includes a fingerprint of those files.
LOCAL_BACKENDS: frozenset[str] = frozenset({"hf", "vllm"})


def model_identity(spec: ModelSpec) -> dict[str, Any]:
    """What identifies the model behind a name, for cache keys: changing any of these invalidates stored calls.

    A local model (hf, vllm) adds a fingerprint of its weight, config and tokenizer files and of its adapter's
    (:mod:`evalsuite.generate.identity`; an alias such as "smollm2" is resolved to its checkpoint first), so
    retraining into the same folder asks again. ``revision`` is added when set, on any backend; an endpoint model
    without one keeps the key it always had.

    A ``base_url`` that lists replicas is left out: replicas serve one model, so which of them answered, and which
    servers the list names, do not change an answer (adding a replica asks nothing again). A single URL stays in, so
    stores written before replicas existed keep their keys; moving from one URL to a list changes the keys once.
    """
    identity: dict[str, Any] = {"backend": spec.backend, "model": spec.model, "adapter": spec.adapter}
    if not isinstance(spec.base_url, (list, tuple)):
        identity["base_url"] = spec.base_url
    if spec.backend in LOCAL_BACKENDS:
        identity["weights"] = weights_fingerprint(resolve_model_path(spec.model)) if spec.model else None
        if spec.adapter:
            identity["adapter_weights"] = weights_fingerprint(spec.adapter)
    if spec.revision is not None:
        identity["revision"] = spec.revision
    return identity


def request_key(identity: dict[str, Any], messages: Sequence[dict[str, str]], **sampling: Any) -> str:
    blob = json.dumps([identity, list(messages), sampling], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def temperature_for(spec: ModelSpec, question: Question) -> float:
    if spec.temperature is not None:
        return spec.temperature
    return CATEGORY_TEMPERATURE.get(question.category, DEFAULT_TEMPERATURE)


def conversation(question: Question, replies: Sequence[str], turn: int) -> tuple[dict[str, str], ...]:
    """Messages for asking ``turn`` (1-based): earlier user turns with the model's own earlier replies."""
    msgs: list[dict[str, str]] = []
    for i in range(turn - 1):
        msgs.append({"role": "user", "content": question.turns[i]})
        msgs.append({"role": "assistant", "content": replies[i]})
    msgs.append({"role": "user", "content": question.turns[turn - 1]})
    return tuple(msgs)


def _turn_request(
    spec: ModelSpec, question: Question, replies: Sequence[str], turn: int, identity: dict[str, Any] | None = None
) -> ChatRequest:
    messages = conversation(question, replies, turn)
    temperature = temperature_for(spec, question)
    identity = model_identity(spec) if identity is None else identity
    key = request_key(identity, messages, temperature=temperature, max_tokens=spec.max_tokens, seed=spec.seed)
    return ChatRequest(
        key=key,
        messages=messages,
        temperature=temperature,
        max_tokens=spec.max_tokens,
        seed=spec.seed,
        meta={"model": spec.name, "question_id": question.question_id, "turn": turn, "adapter": spec.adapter},
    )


def plan_generation(spec: ModelSpec, questions: Sequence[Question], stored: dict[tuple[str, int], AnswerTurn]) -> tuple[list[ChatRequest], int]:
    """The first missing turn of each question (later turns follow as it lands), and how many turns are cached."""
    requests: list[ChatRequest] = []
    cached = 0
    identity = model_identity(spec)  # once: a local model's fingerprint stats its files
    for q in questions:
        replies: list[str] = []
        for turn in range(1, len(q.turns) + 1):
            have = stored.get((q.question_id, turn))
            if have is not None and have.backend == "import":
                replies.append(have.text)
                cached += 1
                continue
            req = _turn_request(spec, q, replies, turn, identity)
            if have is not None and have.cache_key == req.key:
                replies.append(have.text)
                cached += 1
                continue
            requests.append(req)
            break
    return requests, cached


def engine_key(spec: ModelSpec) -> tuple[Any, ...]:
    """Models that can share one engine: vLLM serves a base model and every LoRA adapter over it from one engine
    (same resolved checkpoint, engine settings and interpreter); any other backend gets one instance per model."""
    if spec.backend == "vllm":
        from evalsuite.backends.vllm import engine_key as vllm_engine_key

        return vllm_engine_key(spec)
    return ("one", spec.name)


def _group_spec(group: Sequence[ModelSpec]) -> ModelSpec:
    """The spec one backend for ``group`` is built from (for vLLM: the base with the union of LoRA settings)."""
    if group[0].backend == "vllm":
        from evalsuite.backends.vllm import shared_engine_spec

        return shared_engine_spec(group)
    return group[0]


def generate_all(
    specs: Sequence[ModelSpec],
    questions: Sequence[Question],
    store: RunStore,
    *,
    progress: Callable[[str, int], Any],
    backends: Mapping[str, ChatBackend] | None = None,
) -> list[GenerationSummary]:
    """Generate every missing answer turn of every model in ``specs`` into ``store``, one engine per ``engine_key``."""
    by_id = {q.question_id: q for q in questions}
    groups: dict[tuple[Any, ...], list[ModelSpec]] = {}
    for spec in specs:
        groups.setdefault(engine_key(spec), []).append(spec)
    summaries: dict[str, GenerationSummary] = {}
    for group in groups.values():
        by_name = {s.name: s for s in group}
        requests: list[ChatRequest] = []
        counts = {s.name: {"requested": 0, "errors": 0, "cached": 0} for s in group}
        first_errors: dict[str, str] = {}
        for spec in group:
            reqs, cached = plan_generation(spec, questions, store.answer_turns(spec.name))
            counts[spec.name]["cached"] = cached
            requests += reqs
        if requests:
            _run_group(group, requests, by_id, by_name, counts, first_errors, store, progress, backends or {})
        for name, c in counts.items():
            summaries[name] = GenerationSummary(name, c["requested"], c["cached"], c["errors"], first_errors.get(name))
    return [summaries[s.name] for s in specs]


def _run_group(
    group: Sequence[ModelSpec],
    requests: list[ChatRequest],
    by_id: Mapping[str, Question],
    by_name: Mapping[str, ModelSpec],
    counts: dict[str, dict[str, int]],
    first_errors: dict[str, str],
    store: RunStore,
    progress: Callable[[str, int], Any],
    backends: Mapping[str, ChatBackend],
) -> None:
    given = backends.get(group[0].name)
    # a shared engine is built for the base model; each request names its own adapter (None for the base itself)
    backend = given or make_backend(_group_spec(group))
    identities = {s.name: model_identity(s) for s in group}

    def on_done(req: ChatRequest, result: ChatResult) -> list[ChatRequest] | None:
        spec = by_name[req.meta["model"]]
        c = counts[spec.name]
        c["requested"] += 1
        if result.error is not None:
            c["errors"] += 1
            first_errors.setdefault(spec.name, result.error)
            return None
        q = by_id[req.meta["question_id"]]
        turn = req.meta["turn"]
        store.put_answer_turn(
            model=spec.name,
            question_id=q.question_id,
            turn=turn,
            text=result.text,
            cache_key=req.key,
            backend=spec.backend,
            settings={"max_tokens": spec.max_tokens, "seed": spec.seed, "temperature": req.temperature},
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            seconds=result.latency,
        )
        if turn < len(q.turns):
            replies = [m["content"] for m in req.messages if m["role"] == "assistant"] + [result.text]
            return [_turn_request(spec, q, replies, turn + 1, identities[spec.name])]
        return None

    try:
        with progress(f"generate {', '.join(s.name for s in group)}", len(requests)) as bar:
            backend.run(requests, on_done, bar)
    finally:
        if given is None:
            backend.close()  # return GPU memory before the next engine starts


def generate(
    spec: ModelSpec,
    questions: Sequence[Question],
    store: RunStore,
    *,
    progress: Callable[[str, int], Any],
    backend: ChatBackend | None = None,
) -> GenerationSummary:
    """Generate every missing answer turn of one model into ``store``."""
    return generate_all([spec], questions, store, progress=progress, backends={spec.name: backend} if backend else None)[0]
