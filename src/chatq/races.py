"""Work raced against an interruption: whichever ends first, the other is cancelled; and
waiting for the first of several events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def unless(work: Awaitable[T], interruption: Awaitable[object]) -> asyncio.Future[T]:
    """Run work until it ends, or until interruption does; then work's future: done, or
    cancelled (and stopped) if the interruption came first."""
    task = asyncio.ensure_future(work)
    interrupted = asyncio.ensure_future(interruption)
    try:
        await asyncio.wait([task, interrupted], return_when=asyncio.FIRST_COMPLETED)
    finally:
        interrupted.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task


async def first_of(
    *events: asyncio.Event | asyncio.Task[None], timeout: float | None = None
) -> None:
    """Wait until any event is set or task is done, or the timeout passes."""
    waiters = [
        asyncio.ensure_future(e.wait()) if isinstance(e, asyncio.Event) else e for e in events
    ]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter, source in zip(waiters, events, strict=True):
            if isinstance(source, asyncio.Event):
                waiter.cancel()
