"""The PostgreSQL dialect of the Store: a pooled asyncpg connection per verb, claims with
FOR UPDATE SKIP LOCKED, and LISTEN/NOTIFY to wake idle workers (with polling as fallback)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from chatq.domain import JSON, Job, NewRequest, Status, TextPiece
from chatq.group_commit import GroupCommit
from chatq.json_text import dumps
from chatq.store import queries as shared
from chatq.store.admission import Admission
from chatq.store.base import SqlStore, Statement, SubmitOutcome, Topic
from chatq.store.errors import (
    IdempotencyConflict,
    LimitExceeded,
    StoreUnavailable,
    UnstorableRequest,
)
from chatq.store.feed import Change
from chatq.store.postgres import queries as q
from chatq.store.rows import accounted_usage, job_from_row

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
_MAX_GET_BATCH = 256


async def _leave_session_as_is(_: asyncpg.Connection) -> None:
    """Pool connections keep no session state (no LISTEN, SET, cursors or session locks:
    the listener has a connection of its own), so a released connection skips asyncpg's
    reset query, a round trip on every store call. asyncpg still rolls back an open
    transaction before calling this."""


class PostgresStore(SqlStore):
    CLAIM = q.CLAIM
    CLAIM_DELIVERIES = q.CLAIM_DELIVERIES
    WATCHED = q.WATCHED
    FAIL = q.FAIL
    RELEASE_CANCELLED = q.RELEASE_CANCELLED
    RESCUE_CANCELLED = q.RESCUE_CANCELLED
    RESCUE_FAIL = q.RESCUE_FAIL
    CANCEL_WAITING = q.CANCEL_WAITING
    METADATA_MATCH = q.METADATA_MATCH
    STATUS_RANGES_ONLY = True
    MIGRATIONS_PACKAGE = "chatq.store.postgres"

    def __init__(self, dsn: str, pool: asyncpg.Pool, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self._dsn = dsn
        self._pool = pool
        self._listener: asyncio.Task[None] | None = None
        self._wanted: set[str] = set()  # the channels this process waits on
        self._heard: set[str] = set()  # those the live listening connection listens on
        self._listener_poke = asyncio.Event()  # channels wanted, or the connection lost
        self._gets: GroupCommit[tuple[str, str], Job | None] = GroupCommit(
            self._get_batch, _MAX_GET_BATCH
        )
        self._handlers: dict[str, Callable[..., None]] = {
            q.WORK_CHANNEL: self._on_work,
            q.CANCEL_CHANNEL: self._on_cancel,
            q.STATUS_CHANNEL: self._on_status,
            q.TEXT_CHANNEL: self._on_text,
            q.WEBHOOK_CHANNEL: self._on_webhook,
        }

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

    # ---- reads the API makes most

    async def get(self, owner: str, request_id: str) -> Job | None:
        """Gets that arrive while one is being read are read together, in one query: under
        load a get cost a pool checkout and a round trip of its own. A get waits for no
        read that started before it, so it sees every commit made before it was asked."""
        return await self._gets.write((owner, request_id))

    async def _get_batch(self, wanted: list[tuple[str, str]]) -> list[Job | None]:
        rows = await self._read(q.GET_MANY, list({request_id for _, request_id in wanted}))
        jobs = {(job.owner, job.id): job for job in map(job_from_row, rows)}
        return [jobs.get(key) for key in wanted]

    # ---- primitives

    async def _read(self, sql: str, *args: Any) -> list[Any]:
        async with self._connection() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows

    async def _write(self, sql: str, *args: Any) -> list[Any]:
        return await self._read(sql, *args)  # a pooled connection runs both alike

    async def _execute(self, sql: str, *args: Any) -> int:
        async with self._connection() as conn:
            return _rows_touched(await conn.execute(sql, *args))

    async def _execute_all(self, statements: Sequence[Statement]) -> list[int]:
        if len(statements) == 1:  # atomic alone: no BEGIN and COMMIT round trips
            sql, args = statements[0]
            return [await self._execute(sql, *args)]
        async with self._connection() as conn, conn.transaction():
            return [_rows_touched(await conn.execute(sql, *args)) for sql, args in statements]

    def _recording(
        self, state: tuple[Any, ...], at: float, status_code: int | None
    ) -> list[Statement]:
        return [(q.RECORD_DELIVERY, (*state, at, status_code))]

    def _announce(self, *changes: Change) -> None:
        """Nothing to do: the triggers of migration 0002 notify every process, this one too."""

    def _notified(self) -> bool:
        return _TOPICS["changes"] <= self._heard

    async def _close_connections(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._pool.close()

    # ---- the verbs PostgreSQL runs its own way

    async def migrate(self) -> list[str]:
        applied: list[str] = []
        async with self._connection() as conn, conn.transaction():
            # Many processes may start at once: one migrates, the others wait, then see it done.
            await conn.execute(q.MIGRATION_LOCK)
            await conn.execute(q.CREATE_MIGRATIONS_TABLE)
            done = {r[0] for r in await conn.fetch(shared.APPLIED_MIGRATIONS)}
            for version, name, sql in self._migration_files():
                if version in done:
                    continue
                await conn.execute(sql)
                await conn.execute(shared.RECORD_MIGRATION, version, name, self._clock())
                applied.append(name)
        return applied

    async def _submit_batch(self, news: list[NewRequest]) -> list[SubmitOutcome]:
        try:
            return await self._insert_batch(news)
        except asyncpg.DataError as exc:
            if len(news) == 1:
                return [UnstorableRequest(str(exc))]
        # Raised by the INSERT (the lookups after it read keys it has just accepted), which is
        # one atomic statement: nothing was stored. One request the database refuses must
        # not fail the others that shared its batch, so each goes again on its own.
        return [(await self._submit_batch([new]))[0] for new in news]

    async def _insert_batch(self, news: list[NewRequest]) -> list[SubmitOutcome]:
        """Insert a batch in one statement; then settle replays one by one. A batch with
        limits to check checks them first, in the same transaction, and inserts only the
        requests they let in."""
        async with self._connection() as conn:
            if not any(n.limits is not None for n in news):
                return await self._insert(conn, news)
            async with conn.transaction():
                refused = await self._refusals(conn, news)
                let_in = [n for n in news if n.id not in refused]
                outcomes = await self._insert(conn, let_in)
            stored = dict(zip([n.id for n in let_in], outcomes, strict=True))
            return [refused[n.id] if n.id in refused else stored[n.id] for n in news]

    async def _insert(
        self, conn: PoolConnectionProxy, news: list[NewRequest]
    ) -> list[SubmitOutcome]:
        if not news:
            return []
        columns = (
            [n.id for n in news],
            [n.owner for n in news],
            [n.model for n in news],
            [dumps(n.request) for n in news],
            [n.request_hash for n in news],
            [n.idempotency_key for n in news],
        )
        streams = [n.stream for n in news]
        hooks = [n.webhook_url for n in news]
        metadata = [None if n.metadata is None else dumps(n.metadata) for n in news]
        priorities = [n.priority for n in news]
        named = [n for n in news if n.webhook_named]
        if named:  # named again: URLs that a 410 disabled are enabled again
            await conn.execute(
                q.WEBHOOK_ENABLE_MANY, [n.owner for n in named], [n.webhook_url for n in named]
            )
        rows = await conn.fetch(
            q.SUBMIT, *columns, self._clock(), streams, hooks, metadata, priorities
        )
        inserted = {job.id: job for job in map(job_from_row, rows)}
        outcomes: list[SubmitOutcome] = []
        for new in news:
            if new.id in inserted:
                outcomes.append((inserted[new.id], True))
                continue
            # Its idempotency key is held by a committed row (maybe from this very batch).
            held = job_from_row(
                await conn.fetchrow(shared.GET_BY_IDEMPOTENCY_KEY, new.owner, new.idempotency_key)
            )
            replay = held.request_hash == new.request_hash
            outcomes.append((held, False) if replay else IdempotencyConflict(held.id))
        return outcomes

    async def _refusals(
        self, conn: PoolConnectionProxy, news: list[NewRequest]
    ) -> dict[str, LimitExceeded]:
        """The requests of the batch that their limits refuse, by id; with the locks taken
        that keep other processes from letting in the same places meanwhile."""
        limited = [(n, n.limits) for n in news if n.limits is not None]
        keys = sorted({lim.key_id for _, lim in limited if lim.rpm is not None})
        caps: dict[str, int] = {}
        for n, lim in limited:
            if lim.max_unfinished is not None:
                caps[n.owner] = max(caps.get(n.owner, 0), lim.max_unfinished)
        tats: dict[str, float] = {}
        if keys:
            tats = {str(r[0]): float(r[1]) for r in await conn.fetch(q.KEY_RATES_LOCK, keys)}
        unfinished: dict[str, int] = {}
        if caps:
            owners = sorted(caps)
            await conn.execute(q.OWNERS_LOCK, owners)
            counted = await conn.fetch(q.UNFINISHED_COUNTS, owners, [caps[o] for o in owners])
            unfinished = {str(r[0]): int(r[1]) for r in counted}
        keyed = [n for n, _ in limited if n.idempotency_key is not None]
        held: set[tuple[str, str]] = set()
        if keyed:
            rows = await conn.fetch(
                q.HELD_KEYS, [n.owner for n in keyed], [n.idempotency_key for n in keyed]
            )
            held = {(str(r[0]), str(r[1])) for r in rows}
        admission = Admission(self._clock(), tats, unfinished, held)
        refused = {n.id: e for n in news if (e := admission.refusal(n)) is not None}
        if keys:
            await conn.executemany(
                shared.KEY_RATE_SET, [(k, admission.tats[k]) for k in keys if k in admission.tats]
            )
        return refused

    async def complete_many(self, worker_id: str, results: Sequence[tuple[str, JSON]]) -> set[str]:
        if not results:
            return set()
        ids = [request_id for request_id, _ in results]
        bodies = [dumps(response) for _, response in results]
        prompt, completion, total, cost = zip(
            *(accounted_usage(response) for _, response in results), strict=True
        )
        rows = await self._write(
            q.COMPLETE_MANY,
            self._clock(),
            ids,
            bodies,
            worker_id,
            list(prompt),
            list(completion),
            list(total),
            list(cost),
        )
        self._queued(sum(1 for r in rows if r[1]))
        return {str(r[0]) for r in rows}

    def _ensure_listening(self, topic: Topic) -> None:
        if not _TOPICS[topic] <= self._wanted:
            self._wanted |= _TOPICS[topic]
            self._listener_poke.set()
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="chatq-pg-listener")

    async def wait_for_work(self, timeout: float) -> None:
        self._ensure_listening("work")
        await super().wait_for_work(timeout)

    async def _listen(self) -> None:
        """Hold a LISTEN connection on the wanted channels; when it drops, reconnect.
        Meanwhile waits poll."""
        delay = 0.1
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn,
                    timeout=_CONNECT_TIMEOUT_S,
                    server_settings={"application_name": _LISTENER_NAME},
                )
                # A connection that closes (its backend terminated, the server gone) says so
                # at once: waits poll from then on, not after the next keep-alive.
                conn.add_termination_listener(lambda _: self._listener_poke.set())
                delay = 0.1
                while True:
                    self._listener_poke.clear()
                    await self._hear_wanted(conn)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._listener_poke.wait(), _LISTENER_CHECK_S)
                    # The ping fails on a closed connection and finds one that died silently.
                    await asyncio.wait_for(conn.fetchval(shared.PING), _LISTENER_CHECK_S)
            except _UNAVAILABLE as exc:
                if self._heard:
                    log.warning("LISTEN connection lost (%s); polling until it is back", exc)
            finally:
                self._heard = set()
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX_S)

    async def _hear_wanted(self, conn: asyncpg.Connection) -> None:
        """LISTEN on the wanted channels not yet heard; then, since whatever was notified on
        them before went unheard, look again."""
        new = self._wanted - self._heard
        for channel in new:
            await conn.add_listener(channel, self._handlers[channel])
            self._heard.add(channel)
        if q.WORK_CHANNEL in new:
            self._work.set()
        if q.CANCEL_CHANNEL in new:
            self._cancels.set()
        if q.WEBHOOK_CHANNEL in new:
            self._deliveries.set()
        if q.STATUS_CHANNEL in new:
            for request_id in self._feed.watched():
                self._feed.publish(Change(request_id))

    def _on_work(self, *_: object) -> None:
        self._work.set()

    def _on_cancel(self, *_: object) -> None:
        self._cancels.set()

    def _on_webhook(self, *_: object) -> None:
        self._deliveries.set()

    def _on_status(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        request_id, status, runs = str(payload).split(" ")
        self._feed.publish(Change(request_id, Status(status), int(runs)))

    def _on_text(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        head, newline, text = str(payload).partition("\n")
        request_id, run, start = head.split(" ")
        if not newline:  # too long for a notification: the watcher reads it
            self._feed.publish(Change(request_id))
            return
        self._feed.publish(
            Change(request_id, piece=TextPiece(request_id, int(run), int(start), text))
        )


_TOPICS: dict[Topic, frozenset[str]] = {
    "work": frozenset({q.WORK_CHANNEL}),
    "cancels": frozenset({q.CANCEL_CHANNEL}),
    "changes": frozenset({q.STATUS_CHANNEL, q.TEXT_CHANNEL}),
    "webhooks": frozenset({q.WEBHOOK_CHANNEL}),
}


def _rows_touched(status: str) -> int:
    """The row count at the end of a command tag such as 'UPDATE 3'."""
    return int(status.rsplit(" ", 1)[-1])
