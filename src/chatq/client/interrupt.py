"""Ctrl-C as the client takes it: the work in hand is cancelled, and the command says what
it left behind (ask cancels its request on the server; batch run says how to resume)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class Interrupted(Exception):
    """Ctrl-C (SIGINT) arrived while the work ran; the work was cancelled."""


async def until_interrupted(work: Awaitable[T]) -> T:
    """work's result, or Interrupted if SIGINT comes first (the work is then cancelled)."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    interrupted = False

    def on_sigint() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    try:
        return await task
    except asyncio.CancelledError:
        if interrupted:
            raise Interrupted from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)
