"""Which backend plays which role in a workflow: each answer model's (by model name) and the judge's.

A caller that brings its own backends (batch files, one backend shared by a policy's K samples, a test's fake)
passes a :class:`StageBackends`; a role left empty gets a backend built from its model entry when first needed.
The judge is a field, not a reserved model name, so no model can be mistaken for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from evalsuite.backends._base import ChatBackend


@dataclass(frozen=True)
class StageBackends:
    """Backends given to a workflow: ``models`` by answer-model name, ``judge`` for the judge (None: built on use)."""

    models: Mapping[str, ChatBackend] = field(default_factory=dict)
    judge: ChatBackend | None = None

    def by_role(self) -> list[tuple[str, ChatBackend]]:
        """``("judge", backend)`` first when given, then ``(model name, backend)``: for reports naming each role.

        >>> class Fake:
        ...     name = "fake"
        ...     def run(self, requests, on_done, progress): ...
        ...     def close(self): ...
        >>> [role for role, _ in StageBackends({"sft": Fake()}, judge=Fake()).by_role()]
        ['judge', 'sft']
        """
        judge = [("judge", self.judge)] if self.judge is not None else []
        return judge + sorted(self.models.items())


__all__ = ["StageBackends"]
