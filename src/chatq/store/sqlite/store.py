"""The SQLite dialect of the Store: one file in WAL mode, one writer thread, one reader thread.

Each verb runs whole in its connection's thread (one hop off the event loop). Submits are
group-committed: those that arrive while a transaction is being written wait and go into the
next one together, so a burst of N submits costs a few fsyncs, not N.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from chatq.domain import (
    JSON,
    ApiKey,
    ClaimedJob,
    IdempotencyConflict,
    Job,
    NewRequest,
    Summary,
)
from chatq.group_commit import GroupCommit
from chatq.store.protocol import StoreUnavailable
from chatq.store.rows import (
    claimed_from_rows,
    dumps,
    job_from_row,
    migration_files,
    page_from_rows,
)
from chatq.store.sqlite import queries as q

T = TypeVar("T")
_BUSY_TIMEOUT_MS = 10_000
_MAX_BATCH = 512


class _Connection:
    """A sqlite3 connection that lives in, and is only used from, a thread of its own."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"chatq-sqlite-{name}")
        self._conn: sqlite3.Connection | None = None

    async def open(self, path: str, *pragmas: str) -> None:
        def connect() -> sqlite3.Connection:
            # isolation_level=None: autocommit; transactions say BEGIN themselves.
            conn = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
            for pragma in (f"busy_timeout={_BUSY_TIMEOUT_MS}", *pragmas):
                conn.execute(f"PRAGMA {pragma}")
            return conn

        self._conn = await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        assert conn is not None, "open() first"
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work, conn)
        except sqlite3.OperationalError as exc:  # locked past the timeout, disk full, I/O
            raise StoreUnavailable(f"SQLite: {exc}") from exc

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)


def _transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class SqliteStore:
    def __init__(self, writer: _Connection, reader: _Connection, clock: Callable[[], float]):
        self._writer = writer
        self._reader = reader
        self._clock = clock
        self._work = asyncio.Event()
        self._submits = GroupCommit(self._submit_batch, _MAX_BATCH)

    @classmethod
    async def open(cls, path: str, clock: Callable[[], float] = time.time) -> SqliteStore:
        writer, reader = _Connection("writer"), _Connection("reader")
        # WAL + synchronous=FULL: a commit is on disk before submit returns.
        await writer.open(path, "journal_mode=WAL", "synchronous=FULL")
        await reader.open(path, "query_only=1")
        return cls(writer, reader, clock)

    # ---- lifecycle

    async def migrate(self) -> list[str]:
        files = migration_files("chatq.store.sqlite")
        now = self._clock()

        def apply(conn: sqlite3.Connection) -> list[str]:
            conn.execute(q.CREATE_MIGRATIONS_TABLE)
            done = {r[0] for r in conn.execute(q.APPLIED_MIGRATIONS)}
            applied = []
            for version, name, sql in files:
                if version in done:
                    continue
                # executescript commits first, so the record goes inside the script itself.
                conn.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\n"
                    f"INSERT INTO schema_migrations (version, name, applied_at) "
                    f"VALUES ({version}, '{name}', {now});\nCOMMIT;"
                )
                applied.append(name)
            return applied

        return await self._writer.run(apply)

    async def applied_migrations(self) -> list[str]:
        def names(conn: sqlite3.Connection) -> list[str]:
            conn.execute(q.CREATE_MIGRATIONS_TABLE)
            return [r[1] for r in conn.execute(q.APPLIED_MIGRATIONS)]

        return await self._writer.run(names)

    async def close(self) -> None:
        await self._submits.drain()
        await self._reader.close()
        await self._writer.close()

    async def ping(self) -> None:
        await self._read(q.PING)

    async def secret(self, name: str) -> bytes:
        fresh = secrets.token_bytes(32)

        def get_or_create(conn: sqlite3.Connection) -> bytes:
            conn.execute(q.SECRET_INSERT, (name, fresh))
            return bytes(conn.execute(q.SECRET_GET, (name,)).fetchone()[0])

        return await self._writer.run(get_or_create)

    # ---- api keys

    async def insert_key(self, key: ApiKey, secret_hash: str) -> None:
        await self._write(q.KEY_INSERT, (key.id, key.name, key.owner, secret_hash, key.created_at))

    async def owner_of_key(self, secret_hash: str) -> str | None:
        rows = await self._read(q.KEY_OWNER, (secret_hash,))
        return str(rows[0][0]) if rows else None

    async def list_keys(self) -> list[ApiKey]:
        return [ApiKey(*r) for r in await self._read(q.KEY_LIST)]

    async def revoke_key(self, key_id: str) -> bool:
        return await self._write(q.KEY_REVOKE, (self._clock(), key_id)) == 1

    async def count_keys(self) -> int:
        return int((await self._read(q.KEY_COUNT))[0][0])

    # ---- requests, as the API sees them

    async def submit(self, new: NewRequest) -> tuple[Job, bool]:
        return await self._submits.write(new)

    async def _submit_batch(self, news: list[NewRequest]) -> list[tuple[Job, bool] | Exception]:
        outcomes = await self._writer.run(functools.partial(_submit_batch, news, self._clock()))
        if any(not isinstance(o, Exception) and o[1] for o in outcomes):
            self._work.set()
        return outcomes

    async def get(self, owner: str, request_id: str) -> Job | None:
        rows = await self._read(q.GET, (owner, request_id))
        return job_from_row(rows[0]) if rows else None

    async def list_page(
        self, owner: str, limit: int, before_seq: int | None
    ) -> tuple[list[Summary], bool]:
        if before_seq is None:
            rows = await self._read(q.LIST_FIRST_PAGE, (owner, limit + 1))
        else:
            rows = await self._read(q.LIST_PAGE_BEFORE, (owner, before_seq, limit + 1))
        return page_from_rows(rows, limit)

    # ---- requests, as workers see them

    async def claim(self, worker_id: str, limit: int, lease_s: float) -> list[ClaimedJob]:
        if limit <= 0:
            return []
        now = self._clock()
        params = {"now": now, "worker": worker_id, "expires": now + lease_s, "limit": limit}
        rows = await self._writer.run(lambda conn: conn.execute(q.CLAIM, params).fetchall())
        return claimed_from_rows(rows)

    async def renew(self, worker_id: str, lease_s: float) -> int:
        return await self._write(q.RENEW, (self._clock() + lease_s, worker_id))

    async def complete(self, request_id: str, worker_id: str, response: JSON) -> bool:
        return request_id in await self.complete_many(worker_id, [(request_id, response)])

    async def complete_many(self, worker_id: str, results: Sequence[tuple[str, JSON]]) -> set[str]:
        if not results:
            return set()
        now = self._clock()
        params = [(now, dumps(response), request_id, worker_id) for request_id, response in results]

        def complete_all(conn: sqlite3.Connection) -> set[str]:
            return {p[2] for p in params if conn.execute(q.COMPLETE, p).rowcount == 1}

        return await self._writer.run(lambda conn: _transaction(conn, complete_all))

    async def fail(self, request_id: str, worker_id: str, message: str) -> bool:
        return await self._write(q.FAIL, (self._clock(), message, request_id, worker_id)) == 1

    async def release(self, worker_id: str, request_ids: Sequence[str]) -> int:
        if not request_ids:
            return 0

        def release_all(conn: sqlite3.Connection) -> int:
            return sum(conn.execute(q.RELEASE, (i, worker_id)).rowcount for i in request_ids)

        released = await self._writer.run(lambda conn: _transaction(conn, release_all))
        if released:
            self._work.set()
        return released

    async def rescue(self, max_deliveries: int) -> tuple[int, int]:
        params = {"now": self._clock(), "max_deliveries": max_deliveries}

        def rescue_all(conn: sqlite3.Connection) -> tuple[int, int]:
            failed = conn.execute(q.RESCUE_FAIL, params).rowcount
            requeued = conn.execute(q.RESCUE_REQUEUE, {"now": params["now"]}).rowcount
            return requeued, failed

        requeued, failed = await self._writer.run(lambda conn: _transaction(conn, rescue_all))
        if requeued:
            self._work.set()
        return requeued, failed

    async def purge(self, finished_before: float) -> int:
        return await self._write(q.PURGE, (finished_before,))

    async def wait_for_work(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._reader.run(lambda conn: conn.execute(sql, params).fetchall())

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        return await self._writer.run(lambda conn: conn.execute(sql, params).rowcount)


def _submit_batch(
    news: list[NewRequest], now: float, conn: sqlite3.Connection
) -> list[tuple[Job, bool] | Exception]:
    return _transaction(conn, lambda c: [_submit_one(c, new, now) for new in news])


def _submit_one(
    conn: sqlite3.Connection, new: NewRequest, now: float
) -> tuple[Job, bool] | Exception:
    """Insert one request inside the batch's transaction; a replay or conflict is an outcome."""
    params = (
        new.id,
        new.owner,
        new.model,
        dumps(new.request),
        new.request_hash,
        new.idempotency_key,
        now,
    )
    row = conn.execute(q.SUBMIT, params).fetchone()
    if row is not None:
        return job_from_row(row), True
    # The owner's idempotency key exists already (maybe from earlier in this very batch).
    existing = job_from_row(
        conn.execute(q.GET_BY_IDEMPOTENCY_KEY, (new.owner, new.idempotency_key)).fetchone()
    )
    if existing.request_hash != new.request_hash:
        return IdempotencyConflict(existing.id)
    return existing, False
