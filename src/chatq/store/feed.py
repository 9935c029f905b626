"""The change feed: what happens to requests, fanned out to this process's watchers.

Long-polls and event streams watch a request through the feed; they cost no database
connection and no query while nothing happens. The store feeds it: from PostgreSQL's
notifications (one listening connection per process), in process on SQLite, and by polling
the watched requests whenever neither can be relied on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from chatq.domain import Status, TextPiece

# Past this many unread changes a watcher is behind: its changes are replaced by one that
# says "read the request again", which the reader can always act on.
_MAX_BACKLOG = 256


@dataclass(frozen=True, slots=True)
class Change:
    """A request changed: its status (with its run, where the announcer knows it), or a
    piece of its text was stored. With neither, the change says only that the request may
    have changed: read it again."""

    request_id: str
    status: Status | None = None
    runs: int | None = None
    piece: TextPiece | None = None


class Watch:
    """One watcher's changes, in the order they happened."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self._changes: asyncio.Queue[Change] = asyncio.Queue()

    def put(self, change: Change) -> None:
        if self._changes.qsize() >= _MAX_BACKLOG:
            while not self._changes.empty():
                self._changes.get_nowait()
            change = Change(self.request_id)
        self._changes.put_nowait(change)

    async def next(self, timeout: float | None = None) -> Change | None:
        """The next change, or None after timeout seconds without one."""
        try:
            return await asyncio.wait_for(self._changes.get(), timeout)
        except TimeoutError:
            return None


class ChangeFeed:
    def __init__(self) -> None:
        self._watches: dict[str, set[Watch]] = {}
        self.watching = asyncio.Event()  # set while anything is watched

    @contextmanager
    def watch(self, request_id: str) -> Iterator[Watch]:
        watch = Watch(request_id)
        self._watches.setdefault(request_id, set()).add(watch)
        self.watching.set()
        try:
            yield watch
        finally:
            others = self._watches[request_id]
            others.discard(watch)
            if not others:
                del self._watches[request_id]
            if not self._watches:
                self.watching.clear()

    def watched(self) -> list[str]:
        return list(self._watches)

    def publish(self, change: Change) -> None:
        for watch in self._watches.get(change.request_id, ()):
            watch.put(change)
