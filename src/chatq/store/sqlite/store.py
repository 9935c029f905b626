"""The SQLite dialect of the Store: one file, WAL, one writer connection, one reader."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiosqlite

from chatq.domain import (
    JSON,
    ApiKey,
    ClaimedJob,
    IdempotencyConflict,
    Job,
    NewRequest,
    Summary,
)
from chatq.store.protocol import StoreUnavailable
from chatq.store.rows import (
    claimed_from_rows,
    dumps,
    job_from_row,
    migration_files,
    summary_from_row,
)
from chatq.store.sqlite import queries as q

_BUSY_TIMEOUT_MS = 10_000


class SqliteStore:
    def __init__(
        self,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        clock: Callable[[], float],
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._clock = clock
        # One connection cannot hold two transactions: writers take turns.
        self._write_lock = asyncio.Lock()
        self._work = asyncio.Event()

    @classmethod
    async def open(cls, path: str, clock: Callable[[], float] = time.time) -> SqliteStore:
        writer = await _connect(path)
        # WAL + synchronous=FULL: a commit is on disk before submit returns.
        await writer.execute("PRAGMA journal_mode=WAL")
        await writer.execute("PRAGMA synchronous=FULL")
        reader = await _connect(path)
        await reader.execute("PRAGMA query_only=1")
        return cls(writer, reader, clock)

    # ---- lifecycle

    async def migrate(self) -> list[str]:
        async with self._write_lock:
            await self._writer.execute(q.CREATE_MIGRATIONS_TABLE)
            done = {version for version, _ in await self._migrations_applied()}
            applied: list[str] = []
            for version, name, sql in migration_files("chatq.store.sqlite"):
                if version in done:
                    continue
                # executescript commits first, so the record goes inside the script itself.
                await self._writer.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\n"
                    f"INSERT INTO schema_migrations (version, name, applied_at) "
                    f"VALUES ({version}, '{name}', {self._clock()});\nCOMMIT;"
                )
                applied.append(name)
            return applied

    async def applied_migrations(self) -> list[str]:
        async with self._write_lock:
            await self._writer.execute(q.CREATE_MIGRATIONS_TABLE)
            return [name for _, name in await self._migrations_applied()]

    async def _migrations_applied(self) -> list[tuple[int, str]]:
        rows = await self._writer.execute_fetchall(q.APPLIED_MIGRATIONS)
        return [(int(r[0]), str(r[1])) for r in rows]

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    async def ping(self) -> None:
        try:
            await self._reader.execute_fetchall(q.PING)
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def secret(self, name: str) -> bytes:
        async with self._write_lock:
            await self._writer.execute(q.SECRET_INSERT, (name, secrets.token_bytes(32)))
            rows = await self._writer.execute_fetchall(q.SECRET_GET, (name,))
        return bytes(next(iter(rows))[0])

    # ---- api keys

    async def insert_key(self, key: ApiKey, secret_hash: str) -> None:
        async with self._write_lock:
            await self._writer.execute(
                q.KEY_INSERT, (key.id, key.name, key.owner, secret_hash, key.created_at)
            )

    async def owner_of_key(self, secret_hash: str) -> str | None:
        rows = list(await self._reader.execute_fetchall(q.KEY_OWNER, (secret_hash,)))
        return str(rows[0][0]) if rows else None

    async def list_keys(self) -> list[ApiKey]:
        rows = await self._reader.execute_fetchall(q.KEY_LIST)
        return [
            ApiKey(id=r[0], name=r[1], owner=r[2], created_at=r[3], revoked_at=r[4]) for r in rows
        ]

    async def revoke_key(self, key_id: str) -> bool:
        async with self._write_lock:
            cursor = await self._writer.execute(q.KEY_REVOKE, (self._clock(), key_id))
        return cursor.rowcount == 1

    async def count_keys(self) -> int:
        rows = list(await self._reader.execute_fetchall(q.KEY_COUNT))
        return int(rows[0][0])

    # ---- requests, as the API sees them

    async def submit(self, new: NewRequest) -> tuple[Job, bool]:
        params = (
            new.id,
            new.owner,
            new.model,
            dumps(new.request),
            new.request_hash,
            new.idempotency_key,
            self._clock(),
        )
        async with self._write_lock:
            rows = list(await self._writer.execute_fetchall(q.SUBMIT, params))
            if not rows:
                # The owner's idempotency key exists already: a replay, or a conflict.
                rows = list(
                    await self._writer.execute_fetchall(
                        q.GET_BY_IDEMPOTENCY_KEY, (new.owner, new.idempotency_key)
                    )
                )
        if rows and rows[0][1] == new.id:
            self._work.set()
            return job_from_row(rows[0]), True
        existing = job_from_row(rows[0])
        if existing.request_hash != new.request_hash:
            raise IdempotencyConflict(existing.id)
        return existing, False

    async def get(self, owner: str, request_id: str) -> Job | None:
        rows = list(await self._reader.execute_fetchall(q.GET, (owner, request_id)))
        return job_from_row(rows[0]) if rows else None

    async def list_page(
        self, owner: str, limit: int, before_seq: int | None
    ) -> tuple[list[Summary], bool]:
        if before_seq is None:
            rows = await self._reader.execute_fetchall(q.LIST_FIRST_PAGE, (owner, limit + 1))
        else:
            rows = await self._reader.execute_fetchall(
                q.LIST_PAGE_BEFORE, (owner, before_seq, limit + 1)
            )
        page = [summary_from_row(r) for r in rows]
        return page[:limit], len(page) > limit

    # ---- requests, as workers see them

    async def claim(self, worker_id: str, limit: int, lease_s: float) -> list[ClaimedJob]:
        if limit <= 0:
            return []
        now = self._clock()
        params = {"now": now, "worker": worker_id, "expires": now + lease_s, "limit": limit}
        async with self._write_lock:
            rows = await self._writer.execute_fetchall(q.CLAIM, params)
        return claimed_from_rows(rows)

    async def renew(self, worker_id: str, lease_s: float) -> int:
        return await self._write(q.RENEW, (self._clock() + lease_s, worker_id))

    async def complete(self, request_id: str, worker_id: str, response: JSON) -> bool:
        body = dumps(response)
        return await self._write(q.COMPLETE, (self._clock(), body, request_id, worker_id)) == 1

    async def fail(self, request_id: str, worker_id: str, message: str) -> bool:
        return await self._write(q.FAIL, (self._clock(), message, request_id, worker_id)) == 1

    async def release(self, worker_id: str, request_ids: Sequence[str]) -> int:
        if not request_ids:
            return 0
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                released = 0
                for request_id in request_ids:
                    cursor = await self._writer.execute(q.RELEASE, (request_id, worker_id))
                    released += cursor.rowcount
                await self._writer.execute("COMMIT")
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
        if released:
            self._work.set()
        return released

    async def rescue(self, max_deliveries: int) -> tuple[int, int]:
        params = {"now": self._clock(), "max_deliveries": max_deliveries}
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                failed = (await self._writer.execute(q.RESCUE_FAIL, params)).rowcount
                requeued = (
                    await self._writer.execute(q.RESCUE_REQUEUE, {"now": params["now"]})
                ).rowcount
                await self._writer.execute("COMMIT")
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
        if requeued:
            self._work.set()
        return requeued, failed

    async def purge(self, finished_before: float) -> int:
        return await self._write(q.PURGE, (finished_before,))

    async def wait_for_work(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        async with self._write_lock:
            cursor = await self._writer.execute(sql, params)
        return cursor.rowcount


async def _connect(path: str) -> aiosqlite.Connection:
    # isolation_level=None: autocommit; multi-statement transactions say BEGIN themselves.
    conn = await aiosqlite.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
    await conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    return conn
