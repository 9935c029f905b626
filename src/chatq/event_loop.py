"""The event loop that chatq's server processes (serve, api, worker, migrate, keys...) run
on: uvloop where it is installed, which the package declares on CPython outside Windows,
and asyncio's own loop elsewhere. uvicorn picks its fast HTTP parser, httptools, by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on the fastest loop installed (Ctrl-C cancels main, as with asyncio.run)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def name() -> str:
    """Which loop run() uses: 'uvloop' or 'asyncio'."""
    return "asyncio" if _loop_factory() is None else "uvloop"


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
