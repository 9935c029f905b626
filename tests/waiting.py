"""Waiting for something to become true, written once for every test that polls.

`eventually` (plain code: httpx.Client, subprocesses, threads) and `eventually_async`
(coroutines: stores, workers) share one `_Patience`: the deadline, the pause between tries and
the failure message live there, and each of the two loops only calls the probe its own way and
sleeps its own way. On timeout the test fails naming what it waited for and what it last saw.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Required, TypedDict, TypeVar, Unpack

T = TypeVar("T")

_SHOWN_CHARS = 2000  # of the last value, in the failure message


class How(TypedDict, total=False):
    """How to wait: what for (named in the failure), for how long, how often to look."""

    what: Required[str]
    timeout: Required[float]
    interval: float  # seconds between tries; 0.05 unless said
    show: Callable[[Any], object]  # what of the last value the failure shows; all of it


class _Patience(Generic[T]):
    """The bookkeeping of one wait: the tries, the last value seen, the deadline."""

    def __init__(
        self,
        until: Callable[[T], object],
        what: str,
        timeout: float,
        interval: float = 0.05,
        show: Callable[[Any], object] = lambda value: value,
    ) -> None:
        self.until = until
        self.what = what
        self.timeout = timeout
        self.interval = interval
        self.show = show
        self.deadline = time.monotonic() + timeout
        self.tries = 0
        self.last: tuple[T] | None = None

    def met(self, value: T) -> bool:
        """Whether this try's value ends the wait."""
        self.tries += 1
        self.last = (value,)
        return bool(self.until(value))

    def pause(self) -> float:
        """How long to sleep before the next try, the last one at or after the deadline; once
        the deadline has passed, the failure."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            seen = repr(self.show(self.last[0])) if self.last is not None else "nothing"
            if len(seen) > _SHOWN_CHARS:
                seen = f"{seen[:_SHOWN_CHARS]}... ({len(seen)} characters)"
            raise AssertionError(
                f"timed out after {self.timeout:g}s ({self.tries} tries) waiting for "
                f"{self.what}; last seen: {seen}"
            )
        return min(self.interval, left)


def eventually(
    probe: Callable[[], T], until: Callable[[T], object] = bool, **how: Unpack[How]
) -> T:
    """Call probe until until(its value) is true and return that value; fail after
    how["timeout"] seconds, naming how["what"] and the last value."""
    patience = _Patience(until, **how)
    while not patience.met(value := probe()):
        time.sleep(patience.pause())
    return value


async def eventually_async(
    probe: Callable[[], Awaitable[T]], until: Callable[[T], object] = bool, **how: Unpack[How]
) -> T:
    """eventually, for a probe that is a coroutine; the event loop runs while it waits."""
    patience = _Patience(until, **how)
    # ASYNC110: polling is the point here; what is awaited has no event to wait on.
    while not patience.met(value := await probe()):  # noqa: ASYNC110
        await asyncio.sleep(patience.pause())
    return value
