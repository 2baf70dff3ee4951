"""The one interface every model backend implements: run a batch of chat requests.

Generation and judging both reduce to chat completions, so a backend (``openai``, ``hf``, ``vllm``) only has to
answer ``ChatRequest``s; ordering, caching and storage live in the stages that call it. ``on_done`` may return
follow-up requests (turn 2 after turn 1), which the backend runs in the same call: an async backend starts them
at once, a batched backend gathers them into its next batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence


@dataclass(frozen=True)
class ChatRequest:
    key: str  # cache key: a hash of everything that can change the output
    messages: tuple[dict[str, str], ...]
    temperature: float = 0.0
    max_tokens: int = 1024
    seed: int | None = None
    # Logprob verdict mode: read the next-token probabilities of these strings (e.g. ("A", "B", "C")) at the
    # verdict position instead of parsing generated text; ``verdict_prefix`` is the text just before it ("[[").
    logprob_choices: tuple[str, ...] | None = None
    verdict_prefix: str = "[["
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class ChatResult:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    error: str | None = None  # None on success; a one-line reason when the call failed after retries
    choice_probs: dict[str, float] | None = None  # logprob mode: normalised probabilities of logprob_choices


OnDone = Callable[[ChatRequest, ChatResult], "Iterable[ChatRequest] | None"]


class Progress(Protocol):
    def advance(self, n: int = 1, *, error: bool = False) -> None: ...
    def add_total(self, n: int) -> None: ...


class NullProgress:
    def advance(self, n: int = 1, *, error: bool = False) -> None:
        pass

    def add_total(self, n: int) -> None:
        pass


class ChatBackend(Protocol):
    name: str

    def run(self, requests: Sequence[ChatRequest], on_done: OnDone, progress: Progress) -> None:
        """Answer every request (and every follow-up ``on_done`` returns), calling ``on_done`` as each lands.

        Raises ``evalsuite.errors.InputError`` for faults no retry can fix (unreachable endpoint, 401, unknown
        model); transient failures that outlast the retries come back as ``ChatResult(error=...)``.
        """
        ...

    def close(self) -> None:
        """Release what the backend holds (a loaded model, a worker process and its children); a later ``run`` may
        start again. Whoever built the backend closes it; safe to call more than once."""
        ...
