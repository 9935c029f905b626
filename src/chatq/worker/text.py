"""Checkpoints of streamed text: the pieces a backend generates reach the store a few times a
second, all of a worker's streaming jobs in one call, not once per token."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from chatq.domain import TextPiece
from chatq.store import Store

log = logging.getLogger("chatq.worker")


class StreamedText:
    """The text one job is generating in its current run."""

    def __init__(self, request_id: str, run: int) -> None:
        self.request_id = request_id
        self.run = run
        self.generated = 0  # characters generated in this run, stored or not
        self._stored = 0  # characters handed to the store in this run
        self._pending: list[str] = []

    def add(self, text: str) -> None:
        self._pending.append(text)
        self.generated += len(text)

    def restart(self, run: int) -> None:
        """The backend call is being retried in a new run: its text starts over."""
        self.run = run
        self.generated = self._stored = 0
        self._pending.clear()

    def take(self) -> TextPiece | None:
        """What was generated since the last take, as one piece."""
        if not self._pending:
            return None
        piece = TextPiece(self.request_id, self.run, self._stored, "".join(self._pending))
        self._pending.clear()
        self._stored = piece.end
        return piece

    def give_back(self, piece: TextPiece) -> None:
        """A piece the store did not take: it goes again, first, with the next flush."""
        if piece.run == self.run:
            self._pending.insert(0, piece.text)
            self._stored = piece.start


class TextCheckpoints:
    def __init__(self, store: Store, worker_id: str, every_s: float) -> None:
        self._store = store
        self._worker_id = worker_id
        self._every_s = every_s
        self._open: dict[str, StreamedText] = {}
        # One flush at a time, so that a request's pieces are stored (and announced) in order.
        self._flushing = asyncio.Lock()

    @contextlib.contextmanager
    def open(self, request_id: str, run: int) -> Iterator[StreamedText]:
        """A job's text, checkpointed while the block runs (flush it before leaving)."""
        text = self._open[request_id] = StreamedText(request_id, run)
        try:
            yield text
        finally:
            del self._open[request_id]

    async def flush(self) -> None:
        """Store what every open text generated since the last flush, in one call."""
        async with self._flushing:
            taken = [(t, p) for t in self._open.values() if (p := t.take()) is not None]
            if not taken:
                return
            try:
                await self._store.append_text(self._worker_id, [p for _, p in taken])
            except BaseException:
                for text, piece in taken:
                    text.give_back(piece)
                raise

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every every_s seconds until stop is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._every_s)
            try:
                await self.flush()
            except Exception:
                log.warning("could not store streamed text; trying again", exc_info=True)
