"""The judge stage: (answers x template x judge model) -> judgments in both orders, each stored as it lands.

For every pair (X, Y), question and turn, the two orders (X first, Y first) are queued side by side so they are in
flight together. A judgment already stored with the same cache key is not asked again; stored errors are re-asked
only with ``retry_errors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from evalsuite.backends import ChatBackend, ChatRequest, ChatResult, make_backend
from evalsuite.config import JudgingOptions, ModelSpec
from evalsuite.errors import InputError
from evalsuite.generate import model_identity, request_key
from evalsuite.judge.templates import JudgeTemplate, load_template, select_template
from evalsuite.judge.verdict import get_verdict_format, parse_verdict, verdict_from_probs
from evalsuite.records import Answer, Judgment, Question, Verdict
from evalsuite.store import RunStore


@dataclass(frozen=True)
class JudgeSummary:
    judge: str
    requested: int
    cached: int
    errors: int
    skipped_missing: int  # (pair, question) items not judged because an answer was missing


def judge_label(spec: ModelSpec) -> str:
    """The judge's name in records: its label, else the endpoint model name, else the checkpoint folder name."""
    if spec.extra.get("label"):
        return str(spec.extra["label"])
    if spec.backend == "openai":
        return spec.model
    return Path(spec.adapter or spec.model).name or spec.name


def _variables(q: Question, a: Answer, b: Answer) -> dict[str, str]:
    def at(seq: Sequence[str] | None, i: int) -> str:
        return seq[i] if seq is not None and i < len(seq) else ""

    return {
        "question_1": at(q.turns, 0),
        "question_2": at(q.turns, 1),
        "answer_a_1": at(a.turns, 0),
        "answer_a_2": at(a.turns, 1),
        "answer_b_1": at(b.turns, 0),
        "answer_b_2": at(b.turns, 1),
        "ref_answer_1": at(q.reference, 0),
        "ref_answer_2": at(q.reference, 1),
    }


def rendered_user_prompt(j: Judgment, questions: Mapping[str, Question], answers: Mapping[str, Mapping[str, Answer]]) -> str:
    """The user message judgment ``j`` was asked with, re-rendered from its template and the stored answers; empty
    when the template is not loadable by name any more or its content changed since (the hash differs)."""
    q = questions.get(j.question_id)
    a, b = answers.get(j.model_a, {}).get(j.question_id), answers.get(j.model_b, {}).get(j.question_id)
    if q is None or a is None or b is None:
        return ""
    try:
        template = load_template(j.template)
    except InputError:
        return ""
    if template.content_hash != j.template_hash:
        return ""
    messages = template.render(_variables(q, a, b))
    return next((m["content"] for m in messages if m["role"] == "user"), "")


class TemplateChooser:
    """Picks the template for (question, turn): a user template for the turn it judges, else the built-in default."""

    def __init__(self, override: str | None) -> None:
        self.override = load_template(override) if override else None
        if self.override is not None and self.override.kind != "pairwise":
            raise InputError(
                f"template {self.override.path} is a {self.override.kind!r} template",
                fix="pairwise judging needs a template with kind = \"pairwise\"",
            )

    def __call__(self, q: Question, turn: int) -> JudgeTemplate | None:
        if self.override is not None and self.override.turns == turn:
            if self.override.reference and not q.reference:
                return load_template(select_template("general", turn))
            return self.override
        name = select_template(q.category if q.reference else "general", turn)
        return load_template(name)


def plan_judge_requests(
    judge: ModelSpec,
    pairs: Sequence[tuple[str, str]],
    questions: Sequence[Question],
    answers: Mapping[str, Mapping[str, Answer]],
    done: Mapping[tuple[str, int, str, str], tuple[str, str]],
    options: JudgingOptions,
    *,
    retry_errors: bool = False,
) -> tuple[list[ChatRequest], int, int]:
    """Requests for every (pair, question, turn, order) not already judged; returns (requests, cached, missing)."""
    choose = TemplateChooser(options.template)
    identity = {**model_identity(judge), "verdict_mode": judge.verdict_mode}
    label = judge_label(judge)
    requests: list[ChatRequest] = []
    cached = missing = 0
    for x, y in pairs:
        ax, ay = answers.get(x, {}), answers.get(y, {})
        for q in questions:
            a_x, a_y = ax.get(q.question_id), ay.get(q.question_id)
            if a_x is None or a_y is None:
                missing += 1
                continue
            for turn in range(1, min(len(q.turns), len(a_x.turns), len(a_y.turns)) + 1):
                template = choose(q, turn)
                if template is None:
                    continue
                fmt = get_verdict_format(template.verdict_format)
                choices = None
                if judge.verdict_mode == "logprob":
                    if fmt.logprob_choices is None:
                        raise InputError(
                            f"logprob verdict mode cannot read format {fmt.name!r} (template {template.path})",
                            fix="use a template with verdict_format = \"mtbench\" or set judge.verdict_mode = \"text\"",
                        )
                    choices = fmt.logprob_choices
                for first, second, a1, a2 in ((x, y, a_x, a_y), (y, x, a_y, a_x)):
                    messages = template.render(_variables(q, a1, a2))
                    key = request_key(
                        identity, messages, temperature=judge.temperature, max_tokens=judge.max_tokens, choices=choices
                    )
                    prev = done.get((q.question_id, turn, first, second))
                    if prev is not None and prev[0] == key and not (retry_errors and prev[1] == "error"):
                        cached += 1
                        continue
                    requests.append(
                        ChatRequest(
                            key=key,
                            messages=messages,
                            temperature=judge.temperature,
                            max_tokens=judge.max_tokens,
                            seed=judge.seed,
                            logprob_choices=choices,
                            meta={
                                "judge": label,
                                "template": template.name,
                                "template_hash": template.content_hash,
                                "format": template.verdict_format,
                                "question_id": q.question_id,
                                "turn": turn,
                                "model_a": first,
                                "model_b": second,
                            },
                        )
                    )
    return requests, cached, missing


def judgment_from_result(req: ChatRequest, result: ChatResult) -> Judgment:
    m = req.meta
    parsed_verdict: Verdict
    score = None
    if result.error is not None:
        parsed_verdict, reason, p_first = "error", "api", None
    else:
        parsed = (
            verdict_from_probs(result.choice_probs, m["format"])
            if result.choice_probs is not None
            else parse_verdict(result.text, m["format"])
        )
        parsed_verdict, reason, p_first = parsed.verdict, parsed.reason, parsed.p_first
        score = parsed.score
    return Judgment(
        judge=m["judge"],
        template=m["template"],
        template_hash=m["template_hash"],
        question_id=m["question_id"],
        turn=m["turn"],
        model_a=m["model_a"],
        model_b=m["model_b"],
        raw=result.text if result.error is None else f"[api error] {result.error}",
        verdict=parsed_verdict,
        reason=reason,
        p_first=p_first,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        latency=result.latency,
        cache_key=req.key,
        score=score,
    )


def stored_answers(store: RunStore, models: Sequence[str]) -> dict[str, dict[str, Answer]]:
    """Every stored answer of each model; a model with none is an input error (nothing to judge)."""
    answers = {m: store.answers(m) for m in models}
    for m in models:
        if not answers[m]:
            raise InputError(
                f"model {m!r} has no answers in {store.path}",
                fix=f"run `evalsuite generate {m}` or `evalsuite import-answers FILE --model {m}` first",
            )
    return answers


def ask_judge(
    judge: ModelSpec,
    requests: Sequence[ChatRequest],
    store: RunStore,
    title: str,
    progress: Callable[[str, int], Any],
    backend: ChatBackend | None = None,
) -> tuple[int, int]:
    """Send ``requests`` to the judge, storing each judgment as it lands; returns (calls made, errors)."""
    given = backend
    backend = backend or make_backend(judge)
    counts = {"requested": 0, "errors": 0}

    def on_done(req: ChatRequest, result: ChatResult) -> None:
        j = judgment_from_result(req, result)
        store.put_judgment(j)
        counts["requested"] += 1
        counts["errors"] += j.verdict == "error"

    try:
        with progress(title, len(requests)) as bar:
            backend.run(requests, on_done, bar)
    finally:
        close = getattr(backend, "close", None)
        if given is None and close is not None:
            close()  # a local judge returns its memory before anything else loads
    return counts["requested"], counts["errors"]


def run_judge(
    judge: ModelSpec,
    pairs: Sequence[tuple[str, str]],
    questions: Sequence[Question],
    store: RunStore,
    options: JudgingOptions,
    *,
    progress: Callable[[str, int], Any],
    retry_errors: bool = False,
    backend: ChatBackend | None = None,
) -> JudgeSummary:
    answers = stored_answers(store, sorted({m for p in pairs for m in p}))
    label = judge_label(judge)
    requests, cached, missing = plan_judge_requests(
        judge, pairs, questions, answers, store.judgment_index(label), options, retry_errors=retry_errors
    )
    if not requests:
        return JudgeSummary(label, 0, cached, 0, missing)
    requested, errors = ask_judge(judge, requests, store, f"judge ({label})", progress, backend)
    return JudgeSummary(label, requested, cached, errors, missing)


# ---------------------------------------------------------------------------------------------------------------------
# Single-answer grading (MT-Bench's "single" mode): each answer graded 1-10 on its own.


def plan_grade_requests(
    judge: ModelSpec,
    models: Sequence[str],
    questions: Sequence[Question],
    answers: Mapping[str, Mapping[str, Answer]],
    done: Mapping[tuple[str, int, str, str], tuple[str, str]],
    template: str | None = None,
    *,
    retry_errors: bool = False,
) -> tuple[list[ChatRequest], int, int]:
    """Requests grading every (model, question, turn) not already graded; returns (requests, cached, missing)."""
    override = load_template(template) if template else None
    if override is not None and override.kind != "single":
        raise InputError(f"template {override.path} is a {override.kind!r} template", fix='grading needs kind = "single"')
    identity = {**model_identity(judge), "mode": "grade"}
    label = judge_label(judge)
    requests: list[ChatRequest] = []
    cached = missing = 0
    for model in models:
        for q in questions:
            a = answers.get(model, {}).get(q.question_id)
            if a is None:
                missing += 1
                continue
            for turn in range(1, min(len(q.turns), len(a.turns)) + 1):
                if override is not None and override.turns == turn and (q.reference or not override.reference):
                    tpl = override
                else:
                    tpl = load_template(select_template(q.category if q.reference else "general", turn, kind="single"))
                v = _variables(q, a, a)
                messages = tpl.render({**v, "answer_1": v["answer_a_1"], "answer_2": v["answer_a_2"]})
                key = request_key(identity, messages, temperature=judge.temperature, max_tokens=judge.max_tokens)
                prev = done.get((q.question_id, turn, model, ""))
                if prev is not None and prev[0] == key and not (retry_errors and prev[1] == "error"):
                    cached += 1
                    continue
                requests.append(ChatRequest(
                    key=key, messages=messages, temperature=judge.temperature, max_tokens=judge.max_tokens, seed=judge.seed,
                    meta={"judge": label, "template": tpl.name, "template_hash": tpl.content_hash, "format": tpl.verdict_format,
                          "question_id": q.question_id, "turn": turn, "model_a": model, "model_b": ""},
                ))
    return requests, cached, missing


def run_grade(
    judge: ModelSpec,
    models: Sequence[str],
    questions: Sequence[Question],
    store: RunStore,
    *,
    template: str | None,
    progress: Callable[[str, int], Any],
    retry_errors: bool = False,
    backend: ChatBackend | None = None,
) -> JudgeSummary:
    answers = stored_answers(store, models)
    label = judge_label(judge)
    requests, cached, missing = plan_grade_requests(
        judge, models, questions, answers, store.judgment_index(label), template, retry_errors=retry_errors
    )
    if not requests:
        return JudgeSummary(label, 0, cached, 0, missing)
    requested, errors = ask_judge(judge, requests, store, f"grade ({label})", progress, backend)
    return JudgeSummary(label, requested, cached, errors, missing)
