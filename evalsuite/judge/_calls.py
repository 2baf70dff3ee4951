"""Judge calls: plan, send and store every call a judge model gets, for pairwise judging and single-answer grading.

One planning path (:func:`plan_requests`) serves both: for each group (a pair of models, or one model to grade),
question and turn it picks the template, renders the messages for every order the group is shown in (a pair twice:
X first, then Y first), and keys the call by everything that can change its output (judge identity, messages and
every sampling setting the request carries). A call already stored under the same key is not asked again; stored
errors are re-asked only with ``retry_errors``. The two orders of a pair are queued side by side so they are in
flight together. :func:`ask_judge` sends the planned calls and stores each judgment as it lands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Sequence

from evalsuite.backends import ChatBackend, ChatRequest, ChatResult, make_backend
from evalsuite.config import JudgingOptions, ModelSpec, judge_label
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


Kind = Literal["pairwise", "single"]
_KIND_TASK = {"pairwise": "pairwise judging", "single": "grading"}


class TemplateChooser:
    """Picks the template for (question, turn): a user template for the turn it judges, else the built-in default."""

    def __init__(self, override: str | None, kind: Kind = "pairwise") -> None:
        self.kind = kind
        self.override = load_template(override) if override else None
        if self.override is not None and self.override.kind != kind:
            raise InputError(
                f"template {self.override.path} is a {self.override.kind!r} template",
                fix=f'{_KIND_TASK[kind]} needs a template with kind = "{kind}"',
            )

    def __call__(self, q: Question, turn: int) -> JudgeTemplate:
        if self.override is not None and self.override.turns == turn and (q.reference or not self.override.reference):
            return self.override
        return load_template(select_template(q.category if q.reference else "general", turn, kind=self.kind))


def _shown_orders(group: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The orders a group is shown to the judge in: a pair in both orders, a single answer once."""
    return [group, group[::-1]] if len(group) == 2 else [group]


def _render_variables(q: Question, shown: Sequence[Answer]) -> dict[str, str]:
    if len(shown) == 2:
        return _variables(q, shown[0], shown[1])
    v = _variables(q, shown[0], shown[0])
    return {**v, "answer_1": v["answer_a_1"], "answer_2": v["answer_a_2"]}


def _logprob_choices(judge: ModelSpec, template: JudgeTemplate, kind: Kind) -> tuple[str, ...] | None:
    if judge.verdict_mode != "logprob" or kind != "pairwise":
        return None  # grades are read from text
    fmt = get_verdict_format(template.verdict_format)
    if fmt.logprob_choices is None:
        raise InputError(
            f"logprob verdict mode cannot read format {fmt.name!r} (template {template.path})",
            fix="use a template with verdict_format = \"mtbench\" or set judge.verdict_mode = \"text\"",
        )
    return fmt.logprob_choices


def plan_requests(
    judge: ModelSpec,
    kind: Kind,
    groups: Sequence[tuple[str, ...]],
    questions: Sequence[Question],
    answers: Mapping[str, Mapping[str, Answer]],
    done: Mapping[tuple[str, int, str, str], tuple[str, str]],
    template: str | None = None,
    *,
    retry_errors: bool = False,
) -> tuple[list[ChatRequest], int, int]:
    """Requests for every (group, question, turn, order shown) not already stored; returns (requests, cached, missing).

    ``groups`` are pairs ``(X, Y)`` for ``kind="pairwise"`` (each judged in both orders) or one-model tuples for
    ``kind="single"``; ``missing`` counts (group, question) items skipped because an answer is missing.
    """
    choose = TemplateChooser(template, kind)
    identity = {**model_identity(judge), "verdict_mode": judge.verdict_mode, "kind": kind}
    label = judge_label(judge)
    # A judge with no temperature set is asked greedily (None would reach the backends' float()).
    temperature = 0.0 if judge.temperature is None else judge.temperature
    requests: list[ChatRequest] = []
    cached = missing = 0
    for group in groups:
        for q in questions:
            got = [answers.get(m, {}).get(q.question_id) for m in group]
            present = [a for a in got if a is not None]
            if len(present) != len(group):
                missing += 1
                continue
            by_model = dict(zip(group, present))
            for turn in range(1, min([len(q.turns), *(len(a.turns) for a in present)]) + 1):
                tpl = choose(q, turn)
                choices = _logprob_choices(judge, tpl, kind)
                # every setting the request carries is in its key, so changing any of them re-asks the judge
                sampling: dict[str, Any] = {
                    "temperature": temperature, "max_tokens": judge.max_tokens, "seed": judge.seed,
                    "logprob_choices": choices,
                }
                for shown in _shown_orders(group):
                    messages = tpl.render(_render_variables(q, [by_model[m] for m in shown]))
                    key = request_key(identity, messages, **sampling)
                    first, second = shown[0], (shown[1] if len(shown) == 2 else "")
                    prev = done.get((q.question_id, turn, first, second))
                    if prev is not None and prev[0] == key and not (retry_errors and prev[1] == "error"):
                        cached += 1
                        continue
                    requests.append(
                        ChatRequest(
                            key=key,
                            messages=messages,
                            # named one by one (not **sampling), so their types are checked
                            temperature=temperature,
                            max_tokens=judge.max_tokens,
                            seed=judge.seed,
                            logprob_choices=choices,
                            meta={
                                "judge": label,
                                "template": tpl.name,
                                "template_hash": tpl.content_hash,
                                "format": tpl.verdict_format,
                                "question_id": q.question_id,
                                "turn": turn,
                                "model_a": first,
                                "model_b": second,
                            },
                        )
                    )
    return requests, cached, missing


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
    """Pairwise judging: every (pair, question, turn) in both orders (see :func:`plan_requests`)."""
    return plan_requests(judge, "pairwise", pairs, questions, answers, done, options.template, retry_errors=retry_errors)


def judgment_from_result(req: ChatRequest, result: ChatResult) -> Judgment:
    m = req.meta
    parsed_verdict: Verdict
    reason: str | None
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
        if given is None:
            backend.close()  # a local judge returns its memory before anything else loads
    return counts["requested"], counts["errors"]


def run_calls(
    judge: ModelSpec,
    kind: Kind,
    groups: Sequence[tuple[str, ...]],
    questions: Sequence[Question],
    store: RunStore,
    template: str | None = None,
    *,
    progress: Callable[[str, int], Any],
    retry_errors: bool = False,
    backend: ChatBackend | None = None,
) -> JudgeSummary:
    """Plan (:func:`plan_requests`), ask and store: the judge stage for pairwise judging and for grading alike.

    Past ``CHUNK_QUESTIONS`` questions the stage plans and asks one chunk of questions at a time (one backend for
    all), so the rendered prompts held at once stay bounded however large the benchmark (docs/performance.md)."""
    answers = stored_answers(store, sorted({m for g in groups for m in g}))
    label = judge_label(judge)
    done = store.judgment_index(label)
    chunks = [questions[i:i + CHUNK_QUESTIONS] for i in range(0, len(questions), CHUNK_QUESTIONS)] or [questions]
    own = make_backend(judge) if len(chunks) > 1 and backend is None else None
    requested = errors = cached = missing = 0
    try:
        for i, chunk in enumerate(chunks):
            requests, c, m = plan_requests(judge, kind, groups, chunk, answers, done, template,
                                           retry_errors=retry_errors)
            cached, missing = cached + c, missing + m
            if not requests:
                continue
            title = f"{'judge' if kind == 'pairwise' else 'grade'} ({label})"
            if len(chunks) > 1:
                title += f" questions {i * CHUNK_QUESTIONS + 1}-{i * CHUNK_QUESTIONS + len(chunk)} of {len(questions)}"
            r, e = ask_judge(judge, requests, store, title, progress, backend or own)
            requested, errors = requested + r, errors + e
    finally:
        if own is not None:
            own.close()
    return JudgeSummary(label, requested, cached, errors, missing)


# Questions planned and asked at once by the judge stage: every question of a normal benchmark, while 100,000
# questions x 12 candidates would otherwise hold ~13 GB of rendered prompts before the first call.
CHUNK_QUESTIONS = 2_000


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
    """Judge every pair in both orders (what is not stored yet)."""
    return run_calls(judge, "pairwise", pairs, questions, store, options.template, progress=progress,
                     retry_errors=retry_errors, backend=backend)


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
    """Single-answer grading: every (model, question, turn) once (see :func:`plan_requests`)."""
    groups = [(m,) for m in models]
    return plan_requests(judge, "single", groups, questions, answers, done, template, retry_errors=retry_errors)


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
    """Grade every answer of ``models`` 1-10 (what is not stored yet)."""
    return run_calls(judge, "single", [(m,) for m in models], questions, store, template, progress=progress,
                     retry_errors=retry_errors, backend=backend)
