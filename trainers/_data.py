"""Training data: read preference and SFT records, check their shape, and hand TRL the rows it wants.

Accepted preference shapes (one JSON object per line in ``.jsonl``, or a JSON list in ``.json``):

- plain strings: ``{"prompt": str, "chosen": str, "rejected": str}``;
- UltraFeedback-binarized: ``{"prompt": str, "chosen": [messages], "rejected": [messages]}`` where each message list
  is the whole conversation and its last message is the assistant reply (``prompt`` may be absent, or a message list);
- for KTO, also unpaired rows ``{"prompt", "completion", "label": bool}``.

SFT records are ``{"prompt", "completion"}`` (strings or messages) or ``{"messages": [...]}`` ending in the reply.

Parsing is pure JSON (``data check`` uses it without loading ``datasets``); ``datasets`` is imported only by
:func:`load_preference_data`, which also reads Hugging Face dataset names for users with network access.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.errors import InputError
from evalsuite.jsonl import iter_json_lines, read_json_records

if TYPE_CHECKING:
    import datasets

Message = dict[str, str]

# Fields that name a pair's topic, checked in this order, for coverage tables.
GROUP_FIELDS = ("category", "source", "topic")

EXPECTED_PAIRED = (
    "prompt + chosen + rejected as strings, or chosen + rejected as message lists ending in the assistant reply "
    "(UltraFeedback-binarized) with an optional prompt"
)
EXPECTED_UNPAIRED = "prompt + completion + label (true/false)"
EXPECTED_SFT = "prompt + completion (strings or message lists), or messages ending in the assistant reply"


@dataclass(frozen=True)
class RawRecord:
    """One JSON object from a data file, with where it came from."""

    number: int  # 1-based position among the records
    line: int | None  # 1-based line in a .jsonl file
    data: Mapping[str, Any]

    @property
    def label(self) -> str:
        """``record 3``, or ``record 3 (line 5)`` when blank lines make the two differ."""
        where = f"record {self.number}"
        return where if self.line in (None, self.number) else f"{where} (line {self.line})"


@dataclass(frozen=True)
class PreferencePair:
    """A prompt (as a conversation) with a preferred and a dispreferred assistant reply."""

    record: int
    prompt: tuple[Message, ...]  # the conversation before the reply; a plain prompt is one user message
    chosen: str
    rejected: str
    conversational: bool  # the source gave message lists (so it must be trained through a chat template)
    group: str | None = None  # category / source / topic, when the record has one
    group_field: str | None = None  # which of GROUP_FIELDS `group` came from

    @property
    def prompt_text(self) -> str:
        """The prompt as one string: the user text for a single-turn prompt, else a role-tagged transcript."""
        if len(self.prompt) == 1 and self.prompt[0]["role"] == "user":
            return self.prompt[0]["content"]
        return "\n".join(f"{m['role']}: {m['content']}" for m in self.prompt)


@dataclass(frozen=True)
class UnpairedExample:
    """A KTO row: one completion labelled desirable (True) or undesirable (False)."""

    record: int
    prompt: tuple[Message, ...]
    completion: str
    label: bool
    conversational: bool


@dataclass(frozen=True)
class SftExample:
    """A prompt (as a conversation) and the target reply."""

    record: int
    prompt: tuple[Message, ...]
    completion: str
    conversational: bool


def read_records(path: str | Path) -> list[RawRecord]:
    """JSON objects from a ``.jsonl`` file (one per line) or a ``.json`` file (a list, or one object)."""
    source = Path(path)
    if not source.is_file():
        raise InputError("data file not found", where=str(source), fix="pass an existing .jsonl or .json file")
    if source.suffix == ".json":
        records = [RawRecord(number, None, item) for number, (_, item) in enumerate(read_json_records(source), start=1)]
    else:
        records = [RawRecord(item.number, item.line, item.data) for item in iter_json_lines(source)]
    if not records:
        raise InputError("no records", where=str(source), fix="the file is empty; point at the data file")
    return records


class _Shape(ValueError):
    """A record that is not one of the accepted shapes (turned into an InputError with the record's location)."""


def _messages(value: Any, field: str) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise _Shape(f"{field} is not a non-empty message list")
    messages = []
    for message in value:
        if not (
            isinstance(message, Mapping)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        ):
            raise _Shape(f"{field} holds a message without string role and content")
        messages.append({"role": message["role"], "content": message["content"]})
    return tuple(messages)


def _prompt_messages(value: Any) -> tuple[Message, ...]:
    if isinstance(value, str):
        return ({"role": "user", "content": value},)
    return _messages(value, "prompt")


def _split_reply(conversation: tuple[Message, ...], field: str) -> tuple[tuple[Message, ...], str]:
    if conversation[-1]["role"] != "assistant":
        raise _Shape(f"the last message of {field} is not the assistant reply")
    return conversation[:-1], conversation[-1]["content"]


def _group(data: Mapping[str, Any]) -> dict[str, str | None]:
    for name in GROUP_FIELDS:
        value = data.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return {"group": str(value), "group_field": name}
    return {"group": None, "group_field": None}


def _pair(data: Mapping[str, Any], number: int) -> PreferencePair:
    chosen, rejected, prompt = data.get("chosen"), data.get("rejected"), data.get("prompt")
    if chosen is None or rejected is None:
        raise _Shape("chosen or rejected missing")
    if isinstance(chosen, str) and isinstance(rejected, str):
        if prompt is None:
            raise _Shape("prompt missing")
        if not isinstance(prompt, (str, list)):
            raise _Shape("prompt is neither a string nor a message list")
        return PreferencePair(
            number, _prompt_messages(prompt), chosen, rejected, conversational=isinstance(prompt, list), **_group(data)
        )
    if isinstance(chosen, list) and isinstance(rejected, list):
        chosen_context, chosen_reply = _split_reply(_messages(chosen, "chosen"), "chosen")
        rejected_context, rejected_reply = _split_reply(_messages(rejected, "rejected"), "rejected")
        if chosen_context:
            # UltraFeedback-binarized repeats the conversation in both lists; the prompt string is its first turn.
            if rejected_context and rejected_context != chosen_context:
                raise _Shape("chosen and rejected continue different conversations")
            context = chosen_context
        elif prompt is not None and isinstance(prompt, (str, list)):
            context = _prompt_messages(prompt)
        else:
            raise _Shape("no prompt: neither a prompt field nor messages before the reply")
        return PreferencePair(number, context, chosen_reply, rejected_reply, conversational=True, **_group(data))
    raise _Shape("chosen and rejected are neither both strings nor both message lists")


def _fields(data: Mapping[str, Any]) -> str:
    return "[" + ", ".join(sorted(map(str, data))) + "]"


def _shape_error(record: RawRecord, source: str, problem: str, expected: str) -> InputError:
    return InputError(
        f"{record.label} does not fit ({problem}); fields found {_fields(record.data)}; expected {expected}",
        where=source,
        fix="rename or convert the fields, or drop the record",
    )


def parse_preference_pairs(records: Iterable[RawRecord], *, source: str) -> list[PreferencePair]:
    """Records -> preference pairs; the first record of another shape raises an InputError naming it."""
    pairs = []
    for record in records:
        try:
            pairs.append(_pair(record.data, record.number))
        except _Shape as exc:
            raise _shape_error(record, source, str(exc), EXPECTED_PAIRED) from None
    return pairs


def parse_unpaired(records: Iterable[RawRecord], *, source: str) -> list[UnpairedExample]:
    """KTO-native rows (prompt, completion, label) -> unpaired examples."""
    examples = []
    for record in records:
        data = record.data
        try:
            label, completion, prompt = data.get("label"), data.get("completion"), data.get("prompt")
            if not isinstance(label, bool):
                raise _Shape("label is not true/false")
            if prompt is None or not isinstance(prompt, (str, list)):
                raise _Shape("prompt missing")
            context = _prompt_messages(prompt)
            if isinstance(completion, str):
                reply = completion
            else:
                extra_context, reply = _split_reply(_messages(completion, "completion"), "completion")
                context = context + extra_context
            conversational = isinstance(prompt, list) or not isinstance(completion, str)
            examples.append(UnpairedExample(record.number, context, reply, label, conversational))
        except _Shape as exc:
            raise _shape_error(record, source, str(exc), EXPECTED_UNPAIRED) from None
    return examples


def parse_sft(records: Iterable[RawRecord], *, source: str) -> list[SftExample]:
    """SFT records (prompt/completion or messages) -> examples."""
    examples = []
    for record in records:
        data = record.data
        try:
            if "messages" in data and "completion" not in data:
                context, reply = _split_reply(_messages(data["messages"], "messages"), "messages")
                if not context:
                    raise _Shape("messages hold only the reply")
                examples.append(SftExample(record.number, context, reply, conversational=True))
                continue
            prompt, completion = data.get("prompt"), data.get("completion")
            if prompt is None or completion is None or not isinstance(prompt, (str, list)):
                raise _Shape("prompt or completion missing")
            context = _prompt_messages(prompt)
            if isinstance(completion, str):
                reply = completion
            else:
                extra_context, reply = _split_reply(_messages(completion, "completion"), "completion")
                context = context + extra_context
            conversational = isinstance(prompt, list) or not isinstance(completion, str)
            examples.append(SftExample(record.number, context, reply, conversational))
        except _Shape as exc:
            raise _shape_error(record, source, str(exc), EXPECTED_SFT) from None
    return examples


def read_preference_pairs(path: str | Path) -> list[PreferencePair]:
    """Preference pairs from a local ``.jsonl``/``.json`` file (plain JSON; no ``datasets``)."""
    return parse_preference_pairs(read_records(path), source=str(path))


def _assistant(text: str) -> list[Message]:
    return [{"role": "assistant", "content": text}]


def _flat_prompt(prompt: tuple[Message, ...], source: str) -> str:
    # Without a chat template only a single user turn has an unambiguous plain-text form.
    if len(prompt) == 1 and prompt[0]["role"] == "user":
        return prompt[0]["content"]
    raise InputError(
        "multi-turn (message-list) data needs a chat template, and the tokenizer has none",
        where=source,
        fix="train from a model whose tokenizer has a chat_template, or give plain prompt strings",
    )


def pair_rows(pairs: Sequence[PreferencePair], *, chat: bool, source: str) -> list[dict[str, Any]]:
    """TRL paired rows: conversational (prompt messages + one-message replies) when ``chat``, else plain strings."""
    if chat:
        return [
            {"prompt": list(p.prompt), "chosen": _assistant(p.chosen), "rejected": _assistant(p.rejected)}
            for p in pairs
        ]
    return [{"prompt": _flat_prompt(p.prompt, source), "chosen": p.chosen, "rejected": p.rejected} for p in pairs]


def unpaired_rows(
    pairs: Sequence[PreferencePair], *, chat: bool, source: str
) -> list[dict[str, Any]]:
    """KTO rows from pairs: each pair gives a desirable (chosen) and an undesirable (rejected) row.

    KTOTrainer reads batches in order and estimates its KL term by pairing each row's prompt with the previous row's
    completion, so rows are interleaved chosen/rejected (every batch sees both labels) and the rejected rows are
    rotated by about half the data so that the neighbouring completion comes from another prompt.
    """
    n = len(pairs)
    shift = (max(2, n // 2) % n) if n >= 3 else (1 if n == 2 else 0)
    rows: list[dict[str, Any]] = []
    for i, pair in enumerate(pairs):
        other = pairs[(i + shift) % n]
        for prompt, reply, label in ((pair.prompt, pair.chosen, True), (other.prompt, other.rejected, False)):
            if chat:
                rows.append({"prompt": list(prompt), "completion": _assistant(reply), "label": label})
            else:
                rows.append({"prompt": _flat_prompt(prompt, source), "completion": reply, "label": label})
    return rows


def kto_native_rows(examples: Sequence[UnpairedExample], *, chat: bool, source: str) -> list[dict[str, Any]]:
    """KTO rows from data that is already unpaired (kept in file order)."""
    if chat:
        return [{"prompt": list(e.prompt), "completion": _assistant(e.completion), "label": e.label} for e in examples]
    return [{"prompt": _flat_prompt(e.prompt, source), "completion": e.completion, "label": e.label} for e in examples]


def sft_rows(examples: Sequence[SftExample], *, chat: bool, source: str) -> list[dict[str, Any]]:
    """TRL prompt-completion rows (loss on the completion only)."""
    if chat:
        return [{"prompt": list(e.prompt), "completion": _assistant(e.completion)} for e in examples]
    return [{"prompt": _flat_prompt(e.prompt, source), "completion": e.completion} for e in examples]


def _hub_records(source: str, split: str) -> list[RawRecord]:
    import datasets

    try:
        dataset = datasets.load_dataset(source, split=split)
    except Exception as exc:  # the hub raises many types (network, missing split, auth); all mean "cannot read"
        raise InputError(
            f"cannot load dataset split {split!r} ({type(exc).__name__}: {exc})",
            where=source,
            fix="pass a local .jsonl/.json file, or check the dataset name, --split and network access",
        ) from exc
    return [RawRecord(i, None, row) for i, row in enumerate(dataset, start=1)]


def records_from(source: str, *, split: str = "train") -> tuple[list[RawRecord], str]:
    """Records of a local file, or of a Hugging Face dataset when ``source`` is not a local path."""
    path = Path(source).expanduser()
    if path.exists() or path.suffix in (".jsonl", ".json") or source.startswith((".", "/", "~")):
        return read_records(path), str(path)
    return _hub_records(source, split), f"{source}[{split}]"


def training_rows(
    source: str, *, variant: str, chat: bool = True, split: str = "train"
) -> list[dict[str, Any]]:
    """The rows the variant's TRL trainer takes, as plain dicts (see :func:`load_preference_data`)."""
    from evalsuite.trainers._variants import get_variant

    spec = get_variant(variant)
    records, where = records_from(source, split=split)
    if spec.data_shape == "sft":
        examples = parse_sft(records, source=where)
        return sft_rows(examples, chat=chat, source=where)
    if spec.data_shape == "unpaired" and "label" in records[0].data and "chosen" not in records[0].data:
        unpaired = parse_unpaired(records, source=where)
        return kto_native_rows(unpaired, chat=chat, source=where)
    pairs = parse_preference_pairs(records, source=where)
    if spec.data_shape == "unpaired":
        return unpaired_rows(pairs, chat=chat, source=where)
    return pair_rows(pairs, chat=chat, source=where)


def load_preference_data(
    source: str, *, split: str = "train", variant: str, chat: bool = True
) -> "datasets.Dataset":
    """Training data for ``variant`` as a ``datasets.Dataset`` in the shape its TRL trainer wants.

    ``source`` is a local ``.jsonl``/``.json`` file or a Hugging Face dataset name (needs network). With ``chat``
    (the default, and what evalsuite's generation uses) plain strings become one-turn conversations so training and
    generation see the same chat template; ``chat=False`` keeps them plain (for tokenizers without a template).
    Paired data for ``kto`` becomes two unpaired rows per pair; ``sft`` reads prompt/completion or messages.
    """
    import datasets

    return datasets.Dataset.from_list(training_rows(source, variant=variant, chat=chat, split=split))


__all__ = [
    "GROUP_FIELDS",
    "PreferencePair",
    "RawRecord",
    "SftExample",
    "UnpairedExample",
    "load_preference_data",
    "parse_preference_pairs",
    "parse_sft",
    "parse_unpaired",
    "read_preference_pairs",
    "read_records",
    "records_from",
    "training_rows",
]
