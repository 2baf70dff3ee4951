"""Progress bars for long stages: done/total, calls per second, errors, ETA (rich; quiet when not a terminal)."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:6.1f}/s" if speed else "     -/s", style="progress.data.speed")


class _ErrorColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        n = task.fields.get("errors", 0)
        return Text(f"{n} err", style="red" if n else "dim")


class StageProgress:
    """One progress bar for one stage; implements evalsuite.backends.Progress."""

    def __init__(self, description: str, total: int, *, console: Console | None = None, enabled: bool | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.errors = 0
        self.done = 0
        self.total = total
        self.description = description
        self._start = time.perf_counter()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            _ErrorColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.enabled,
            refresh_per_second=4,
        )
        self._task = self._progress.add_task(description, total=total, errors=0)

    def __enter__(self) -> "StageProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()
        if not self.enabled and self.total:
            elapsed = time.perf_counter() - self._start
            self.console.print(
                f"{self.description}: {self.done}/{self.total} in {elapsed:.1f}s, {self.errors} errors", highlight=False
            )

    def advance(self, n: int = 1, *, error: bool = False) -> None:
        self.done += n
        if error:
            self.errors += n
            self._progress.update(self._task, advance=n, errors=self.errors)
        else:
            self._progress.update(self._task, advance=n)

    def describe(self, description: str) -> None:
        """Change the bar's label (training shows the latest loss in it); the closing summary line uses it too."""
        self.description = description
        self._progress.update(self._task, description=description)

    def add_total(self, n: int) -> None:
        self.total += n
        self._progress.update(self._task, total=self.total)
