"""Waiting for a request to finish: long-polls (?wait=S), Prefer: wait=S, the sync route.

A waiter watches its request through the store's change feed: no query and no database
connection while it waits, one read when the request may have finished (or, on a timeout,
when it changed). A waiter whose client goes away is stopped, and lets go of its watch."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from chatq.domain import Job, Status
from chatq.races import unless
from chatq.store import Store

T = TypeVar("T")

MAX_WAIT_S = 60.0
_FINISHED = (Status.COMPLETED, Status.FAILED)
_DELTA_SECONDS = re.compile(r"\d{1,9}")


async def until_finished(
    store: Store, owner: str, request_id: str, timeout: float | None
) -> Job | None:
    """The request once it has finished, or as it is when timeout seconds have passed (None:
    no limit); None if the owner has no such request (or it was deleted meanwhile)."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    with store.watch(request_id) as watch:
        job = await store.get(owner, request_id)
        stale = False  # it changed since it was read, in a way not worth reading for
        while job is not None and not job.finished:
            left = None if deadline is None else deadline - loop.time()
            change = await watch.next(left) if left is None or left > 0 else None
            if change is None:
                return await store.get(owner, request_id) if stale else job
            if change.piece is not None or change.status not in (None, *_FINISHED):
                stale = True
                continue
            job = await store.get(owner, request_id)
            stale = False
        return job


async def unless_disconnected(http: Request, work: Awaitable[T]) -> tuple[bool, T | None]:
    """(True, work's result), or (False, None) if the client went away first, in which case
    work is cancelled."""
    done = await unless(work, _disconnected(http))
    return (False, None) if done.cancelled() else (True, done.result())


async def _disconnected(http: Request) -> None:
    """Return once the client has closed its connection (the body has been read already)."""
    while (await http.receive())["type"] != "http.disconnect":
        pass


def preferred_wait(prefer: str | None) -> float | None:
    """S from a Prefer header's wait=S (RFC 7240), capped at MAX_WAIT_S; None when there is
    none, or when it cannot be read (a preference that cannot be honoured is ignored)."""
    if not prefer:
        return None
    for preference in prefer.split(","):
        name, _, rest = preference.partition("=")
        if name.strip().lower() != "wait":
            continue
        value = rest.split(";", 1)[0].strip().strip('"')
        if _DELTA_SECONDS.fullmatch(value):
            return min(float(value), MAX_WAIT_S)
        return None
    return None
