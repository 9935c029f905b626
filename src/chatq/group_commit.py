"""Group commit: writes that arrive while a batch is being written share the next batch.

Each caller still gets its own outcome, and only once its batch is committed. Under load N
writes cost a few transactions, not N; alone, a write is a batch of one and waits for nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

# Writes one batch in one transaction: an outcome (or the exception for that item) per item,
# in order. An exception raised instead means the whole batch failed.
BatchWriter = Callable[[list[Item]], Awaitable[Sequence[Outcome | Exception]]]


class GroupCommit(Generic[Item, Outcome]):
    def __init__(self, write_batch: BatchWriter[Item, Outcome], max_batch: int) -> None:
        self._write_batch = write_batch
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Outcome]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, item: Item) -> Outcome:
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        return await done

    async def drain(self) -> None:
        """Wait until every write handed in so far is written (or failed)."""
        if self._writer is not None:
            await self._writer

    async def _write_pending(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            self._pending = self._pending[self._max_batch :]
            try:
                outcomes = await self._write_batch([item for item, _ in batch])
            except Exception as exc:  # the whole transaction failed: every write in it did
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():  # the caller went away (cancelled); its row stays committed
                    continue
                if isinstance(outcome, Exception):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)
