"""The PostgreSQL dialect of the Store: a pooled asyncpg connection per verb, claims with
FOR UPDATE SKIP LOCKED, and LISTEN/NOTIFY to wake idle workers (with polling as fallback)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from chatq.domain import (
    JSON,
    ApiKey,
    ClaimedJob,
    IdempotencyConflict,
    Job,
    NewRequest,
    Summary,
    UnstorableRequest,
)
from chatq.group_commit import GroupCommit
from chatq.store.postgres import queries as q
from chatq.store.protocol import StoreUnavailable
from chatq.store.rows import (
    claimed_from_rows,
    dumps,
    job_from_row,
    migration_files,
    page_from_rows,
)

log = logging.getLogger("chatq.store.postgres")

# What a lost or refused connection raises: the API answers 503, workers retry.
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    # A connection that dies mid-query can leave asyncpg's protocol in a state it reports
    # as "cannot switch to state N": seen in the outage test, it is a lost connection too.
    asyncpg.InternalClientError,
)
_LISTENER_NAME = "chatq-listener"
_LISTENER_CHECK_S = 5.0
_RECONNECT_MAX_S = 5.0
_CONNECT_TIMEOUT_S = 10.0
_MAX_BATCH = 512


async def _leave_session_as_is(_: asyncpg.Connection) -> None:
    """Pool connections keep no session state (no LISTEN, SET, cursors or session locks:
    the listener has a connection of its own), so a released connection skips asyncpg's
    reset query, a round trip on every store call. asyncpg still rolls back an open
    transaction before calling this."""


class PostgresStore:
    def __init__(self, dsn: str, pool: asyncpg.Pool, clock: Callable[[], float]) -> None:
        self._dsn = dsn
        self._pool = pool
        self._clock = clock
        self._work = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self.listening = False
        self._submits = GroupCommit(self._submit_batch, _MAX_BATCH)

    @classmethod
    async def open(
        cls, dsn: str, clock: Callable[[], float] = time.time, pool_size: int = 10
    ) -> PostgresStore:
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=pool_size,
                timeout=_CONNECT_TIMEOUT_S,
                reset=_leave_session_as_is,
            )
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
        return cls(dsn, pool, clock)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[PoolConnectionProxy]:
        try:
            async with self._pool.acquire(timeout=_CONNECT_TIMEOUT_S) as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self._connection() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows

    async def _execute(self, sql: str, *args: Any) -> int:
        """Run a statement; return how many rows it touched."""
        async with self._connection() as conn:
            status: str = await conn.execute(sql, *args)
        return int(status.rsplit(" ", 1)[-1])

    # ---- lifecycle

    async def migrate(self) -> list[str]:
        applied: list[str] = []
        async with self._connection() as conn, conn.transaction():
            # Many processes may start at once: one migrates, the others wait, then see it done.
            await conn.execute(q.MIGRATION_LOCK)
            await conn.execute(q.CREATE_MIGRATIONS_TABLE)
            done = {r[0] for r in await conn.fetch(q.APPLIED_MIGRATIONS)}
            for version, name, sql in migration_files("chatq.store.postgres"):
                if version in done:
                    continue
                await conn.execute(sql)
                await conn.execute(q.RECORD_MIGRATION, version, name, self._clock())
                applied.append(name)
        return applied

    async def applied_migrations(self) -> list[str]:
        async with self._connection() as conn:
            await conn.execute(q.CREATE_MIGRATIONS_TABLE)
            return [r[1] for r in await conn.fetch(q.APPLIED_MIGRATIONS)]

    async def close(self) -> None:
        await self._submits.drain()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._pool.close()

    async def ping(self) -> None:
        await self._fetch(q.PING)

    async def secret(self, name: str) -> bytes:
        async with self._connection() as conn:
            await conn.execute(q.SECRET_INSERT, name, secrets.token_bytes(32))
            value: bytes = await conn.fetchval(q.SECRET_GET, name)
        return value

    # ---- api keys

    async def insert_key(self, key: ApiKey, secret_hash: str) -> None:
        await self._execute(q.KEY_INSERT, key.id, key.name, key.owner, secret_hash, key.created_at)

    async def owner_of_key(self, secret_hash: str) -> str | None:
        rows = await self._fetch(q.KEY_OWNER, secret_hash)
        return str(rows[0][0]) if rows else None

    async def list_keys(self) -> list[ApiKey]:
        return [ApiKey(*r) for r in await self._fetch(q.KEY_LIST)]

    async def revoke_key(self, key_id: str) -> bool:
        return await self._execute(q.KEY_REVOKE, self._clock(), key_id) == 1

    async def count_keys(self) -> int:
        return int((await self._fetch(q.KEY_COUNT))[0][0])

    # ---- requests, as the API sees them

    async def submit(self, new: NewRequest) -> tuple[Job, bool]:
        return await self._submits.write(new)

    async def _submit_batch(self, news: list[NewRequest]) -> list[tuple[Job, bool] | Exception]:
        try:
            return await self._insert_batch(news)
        except asyncpg.DataError as exc:
            if len(news) == 1:
                return [UnstorableRequest(str(exc))]
        # Raised by the INSERT (the lookups after it read keys it has just accepted), which is
        # one atomic statement: nothing was stored. One request the database refuses must
        # not fail the others that shared its batch, so each goes again on its own.
        return [(await self._submit_batch([new]))[0] for new in news]

    async def _insert_batch(self, news: list[NewRequest]) -> list[tuple[Job, bool] | Exception]:
        """Insert a batch in one statement (one transaction); then settle replays one by one."""
        columns = (
            [n.id for n in news],
            [n.owner for n in news],
            [n.model for n in news],
            [dumps(n.request) for n in news],
            [n.request_hash for n in news],
            [n.idempotency_key for n in news],
        )
        async with self._connection() as conn:
            rows = await conn.fetch(q.SUBMIT_MANY, *columns, self._clock())
            inserted = {job.id: job for job in map(job_from_row, rows)}
            outcomes: list[tuple[Job, bool] | Exception] = []
            for new in news:
                if new.id in inserted:
                    outcomes.append((inserted[new.id], True))
                    continue
                # Its idempotency key is held by a committed row (maybe from this very batch).
                held = job_from_row(
                    await conn.fetchrow(q.GET_BY_IDEMPOTENCY_KEY, new.owner, new.idempotency_key)
                )
                replay = held.request_hash == new.request_hash
                outcomes.append((held, False) if replay else IdempotencyConflict(held.id))
        return outcomes

    async def get(self, owner: str, request_id: str) -> Job | None:
        rows = await self._fetch(q.GET, owner, request_id)
        return job_from_row(rows[0]) if rows else None

    async def list_page(
        self, owner: str, limit: int, before_seq: int | None
    ) -> tuple[list[Summary], bool]:
        if before_seq is None:
            rows = await self._fetch(q.LIST_FIRST_PAGE, owner, limit + 1)
        else:
            rows = await self._fetch(q.LIST_PAGE_BEFORE, owner, before_seq, limit + 1)
        return page_from_rows(rows, limit)

    # ---- requests, as workers see them

    async def claim(self, worker_id: str, limit: int, lease_s: float) -> list[ClaimedJob]:
        if limit <= 0:
            return []
        now = self._clock()
        return claimed_from_rows(await self._fetch(q.CLAIM, now, worker_id, now + lease_s, limit))

    async def renew(self, worker_id: str, lease_s: float) -> int:
        return await self._execute(q.RENEW, self._clock() + lease_s, worker_id)

    async def complete(self, request_id: str, worker_id: str, response: JSON) -> bool:
        return request_id in await self.complete_many(worker_id, [(request_id, response)])

    async def complete_many(self, worker_id: str, results: Sequence[tuple[str, JSON]]) -> set[str]:
        if not results:
            return set()
        ids = [request_id for request_id, _ in results]
        bodies = [dumps(response) for _, response in results]
        rows = await self._fetch(q.COMPLETE_MANY, self._clock(), ids, bodies, worker_id)
        return {str(r[0]) for r in rows}

    async def fail(self, request_id: str, worker_id: str, message: str) -> bool:
        # An upstream's error text may hold a NUL, which a PostgreSQL text column cannot.
        message = message.replace("\x00", "\\0")
        return await self._execute(q.FAIL, self._clock(), message, request_id, worker_id) == 1

    async def release(self, worker_id: str, request_ids: Sequence[str]) -> int:
        if not request_ids:
            return 0
        return await self._execute(q.RELEASE, list(request_ids), worker_id)

    async def rescue(self, max_deliveries: int) -> tuple[int, int]:
        now = self._clock()
        async with self._connection() as conn, conn.transaction():
            failed = await conn.execute(q.RESCUE_FAIL, now, max_deliveries)
            requeued = await conn.execute(q.RESCUE_REQUEUE, now)
        return int(requeued.rsplit(" ", 1)[-1]), int(failed.rsplit(" ", 1)[-1])

    async def purge(self, finished_before: float) -> int:
        return await self._execute(q.PURGE, finished_before)

    async def wait_for_work(self, timeout: float) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="chatq-pg-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()

    async def _listen(self) -> None:
        """Hold a LISTEN connection; when it drops, reconnect. Meanwhile waits poll."""
        delay = 0.1
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn,
                    timeout=_CONNECT_TIMEOUT_S,
                    server_settings={"application_name": _LISTENER_NAME},
                )
                await conn.add_listener(q.WORK_CHANNEL, self._notified)
                self.listening = True
                self._work.set()  # whatever arrived while nobody listened
                delay = 0.1
                while True:
                    await asyncio.sleep(_LISTENER_CHECK_S)
                    await asyncio.wait_for(conn.fetchval(q.PING), _LISTENER_CHECK_S)
            except _UNAVAILABLE as exc:
                if self.listening:
                    log.warning("LISTEN connection lost (%s); polling until it is back", exc)
            finally:
                self.listening = False
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX_S)

    def _notified(self, *_: object) -> None:
        self._work.set()
