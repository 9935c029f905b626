"""How far a batch run is: a live rich progress bar on a terminal, plain periodic lines
otherwise (a log, a CI job), both on stderr."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


@dataclass(slots=True)
class Counts:
    """A batch run's tally; finished = done + failed, of total."""

    total: int
    submitted: int = 0  # sent to the server in this run (accepted or refused)
    running: int = 0  # accepted, not finished yet (queued or in progress on the server)
    done: int = 0  # COMPLETED
    failed: int = 0  # FAILED, refused by the server, or a bad input line
    started: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> int:
        return self.done + self.failed

    def rate(self) -> float:
        """Requests finished per second so far."""
        return self.finished / max(1e-9, time.monotonic() - self.started)

    def line(self) -> str:
        """One line of the tally, for a log."""
        rate = self.rate()
        left = self.total - self.finished
        eta = f", ETA {left / rate:.0f}s" if rate > 0 and left else ""
        return (
            f"batch: {self.finished}/{self.total} finished (done {self.done}, failed "
            f"{self.failed}), submitted {self.submitted}, running {self.running}, "
            f"{rate:.1f} req/s{eta}"
        )


class Reporter(Protocol):
    async def __aenter__(self) -> Reporter: ...
    async def __aexit__(self, *_: object) -> None: ...
    def changed(self) -> None: ...


def reporter(counts: Counts, every_s: float) -> Reporter:
    """A bar when stderr is a terminal, else a line every every_s seconds and at the end."""
    if sys.stderr.isatty():
        return Bar(counts)
    return Lines(counts, every_s)


class Lines:
    """A line of the tally at the start, every every_s seconds, and at the end."""

    def __init__(self, counts: Counts, every_s: float) -> None:
        self._counts = counts
        self._every_s = every_s
        self._ticker: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Lines:
        self._say()
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self._say()

    def changed(self) -> None:
        """Lines come on their own clock: nothing to do now."""

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            self._say()

    def _say(self) -> None:
        print(self._counts.line(), file=sys.stderr, flush=True)


class _Rate(ProgressColumn):
    """Requests finished per second, over the whole run."""

    def __init__(self, counts: Counts) -> None:
        super().__init__()
        self._counts = counts

    def render(self, task: Task) -> Text:
        return Text(f"{self._counts.rate():.1f} req/s", style="progress.data.speed")


class Bar:
    """rich's live progress bar, redrawn on every change."""

    def __init__(self, counts: Counts) -> None:
        self._counts = counts
        self._progress = Progress(
            TextColumn("[bold]batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "submitted {task.fields[submitted]}  running {task.fields[running]}  "
                "[green]done {task.fields[done]}[/]  [red]failed {task.fields[failed]}[/]"
            ),
            _Rate(counts),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task = self._progress.add_task(
            "batch", total=counts.total, submitted=0, running=0, done=0, failed=0
        )

    async def __aenter__(self) -> Bar:
        self._progress.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        self.changed()
        self._progress.stop()

    def changed(self) -> None:
        c = self._counts
        self._progress.update(
            self._task,
            completed=c.finished,
            submitted=c.submitted,
            running=c.running,
            done=c.done,
            failed=c.failed,
        )
