"""What both dialects do alike: every verb that is "run this statement", group commit of
submits, waking idle workers. A dialect supplies its connection handling (the four
primitives below), its own statements, and the verbs it runs its own way."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import secrets
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, ClassVar

from chatq.domain import JSON, ApiKey, ClaimedJob, Job, NewRequest, Summary
from chatq.group_commit import GroupCommit
from chatq.store import queries as q
from chatq.store.rows import claimed_from_rows, job_from_row, page_from_rows

# A submit's outcome: (job, created), or the exception for that request alone.
SubmitOutcome = tuple[Job, bool] | Exception
Statement = tuple[str, Sequence[Any]]

_MAX_SUBMIT_BATCH = 512


class SqlStore(abc.ABC):
    # The dialect's own statements that the shared verbs run.
    CLAIM: ClassVar[str]
    MIGRATIONS_PACKAGE: ClassVar[str]

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._work = asyncio.Event()
        self._submits = GroupCommit(self._submit_group, _MAX_SUBMIT_BATCH)

    # ---- the dialect's primitives

    @abc.abstractmethod
    async def _read(self, sql: str, *args: Any) -> list[Any]:
        """Rows of a statement that writes nothing."""

    @abc.abstractmethod
    async def _write(self, sql: str, *args: Any) -> list[Any]:
        """Rows a writing statement returns."""

    @abc.abstractmethod
    async def _execute(self, sql: str, *args: Any) -> int:
        """Run a writing statement; how many rows it touched."""

    @abc.abstractmethod
    async def _execute_all(self, statements: Sequence[Statement]) -> list[int]:
        """Run statements in one transaction; how many rows each touched."""

    @abc.abstractmethod
    async def _submit_batch(self, news: list[NewRequest]) -> list[SubmitOutcome]:
        """Insert a group-committed batch in one transaction; an outcome per request."""

    @abc.abstractmethod
    async def _close_connections(self) -> None: ...

    # ---- lifecycle

    async def close(self) -> None:
        await self._submits.drain()
        await self._close_connections()

    async def ping(self) -> None:
        await self._read(q.PING)

    async def secret(self, name: str) -> bytes:
        await self._execute(q.SECRET_INSERT, name, secrets.token_bytes(32))
        return bytes((await self._read(q.SECRET_GET, name))[0][0])

    # ---- api keys

    async def insert_key(self, key: ApiKey, secret_hash: str) -> None:
        await self._execute(q.KEY_INSERT, key.id, key.name, key.owner, secret_hash, key.created_at)

    async def owner_of_key(self, secret_hash: str) -> str | None:
        rows = await self._read(q.KEY_OWNER, secret_hash)
        return str(rows[0][0]) if rows else None

    async def list_keys(self) -> list[ApiKey]:
        return [ApiKey(*r) for r in await self._read(q.KEY_LIST)]

    async def revoke_key(self, key_id: str) -> bool:
        return await self._execute(q.KEY_REVOKE, self._clock(), key_id) == 1

    async def count_keys(self) -> int:
        return int((await self._read(q.KEY_COUNT))[0][0])

    # ---- requests, as the API sees them

    async def submit(self, new: NewRequest) -> tuple[Job, bool]:
        return await self._submits.write(new)

    async def _submit_group(self, news: list[NewRequest]) -> list[SubmitOutcome]:
        outcomes = await self._submit_batch(news)
        if any(not isinstance(o, Exception) and o[1] for o in outcomes):
            self._work.set()  # a worker in this process need not wait for a notification
        return outcomes

    async def get(self, owner: str, request_id: str) -> Job | None:
        rows = await self._read(q.GET, owner, request_id)
        return job_from_row(rows[0]) if rows else None

    async def list_page(
        self, owner: str, limit: int, before_seq: int | None
    ) -> tuple[list[Summary], bool]:
        if before_seq is None:
            rows = await self._read(q.LIST_FIRST_PAGE, owner, limit + 1)
        else:
            rows = await self._read(q.LIST_PAGE_BEFORE, owner, before_seq, limit + 1)
        return page_from_rows(rows, limit)

    # ---- requests, as workers see them

    async def claim(self, worker_id: str, limit: int, lease_s: float) -> list[ClaimedJob]:
        if limit <= 0:
            return []
        now = self._clock()
        rows = await self._write(self.CLAIM, now, worker_id, now + lease_s, limit)
        return claimed_from_rows(rows)

    async def renew(self, worker_id: str, lease_s: float) -> int:
        return await self._execute(q.RENEW, self._clock() + lease_s, worker_id)

    @abc.abstractmethod
    async def complete_many(self, worker_id: str, results: Sequence[tuple[str, JSON]]) -> set[str]:
        """See Store.complete_many."""

    async def fail(self, request_id: str, worker_id: str, message: str) -> bool:
        # An upstream's error text may hold a NUL, which a PostgreSQL text column cannot.
        message = message.replace("\x00", "\\0")
        return await self._execute(q.FAIL, self._clock(), message, request_id, worker_id) == 1

    async def release(self, worker_id: str, request_ids: Sequence[str]) -> int:
        if not request_ids:
            return 0
        counts = await self._execute_all([(q.RELEASE, (i, worker_id)) for i in request_ids])
        if any(counts):
            self._work.set()
        return sum(counts)

    async def rescue(self, max_deliveries: int) -> tuple[int, int]:
        now = self._clock()
        failed, requeued = await self._execute_all(
            [(q.RESCUE_FAIL, (now, max_deliveries)), (q.RESCUE_REQUEUE, (now,))]
        )
        if requeued:
            self._work.set()
        return requeued, failed

    async def purge(self, finished_before: float) -> int:
        return await self._execute(q.PURGE, finished_before)

    async def wait_for_work(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()

    # ---- migrations

    def _migration_files(self) -> list[tuple[int, str, str]]:
        """(version, name, sql) for each numbered .sql file of the dialect, in order."""
        found = []
        for entry in (resources.files(self.MIGRATIONS_PACKAGE) / "migrations").iterdir():
            if entry.name.endswith(".sql"):
                stem = entry.name.removesuffix(".sql")
                found.append((int(stem.split("_", 1)[0]), stem, entry.read_text()))
        return sorted(found)
