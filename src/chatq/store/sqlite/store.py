"""The SQLite dialect of the Store: one file in WAL mode, one writer thread, one reader thread.

Each verb runs whole in its connection's thread (one hop off the event loop). Submits are
group-committed (store/base.py): a burst of N submits costs a few fsyncs, not N.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from chatq.domain import JSON, Job, NewRequest, Status
from chatq.json_text import dumps
from chatq.store import queries as shared
from chatq.store.admission import Admission
from chatq.store.base import SqlStore, Statement, SubmitOutcome, Topic
from chatq.store.errors import IdempotencyConflict, LimitExceeded, StoreUnavailable
from chatq.store.feed import Change
from chatq.store.rows import job_from_row
from chatq.store.sqlite import queries as q

T = TypeVar("T")
_BUSY_TIMEOUT_MS = 10_000


@functools.cache  # the statements are a fixed set, and a re.sub each time showed in profiles
def _numbered(sql: str) -> str:
    """$1 (the style every statement is written in) -> ?1, SQLite's numbered placeholder."""
    return re.sub(r"\$(\d+)", r"?\1", sql)


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


def _inline_connection(path: str) -> sqlite3.Connection:
    """A read-only connection for small reads on the event loop's thread: it never waits
    for a lock (busy_timeout 0), so it cannot stall the loop on one."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=0")
    conn.execute("PRAGMA query_only=1")
    return conn


def _transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _run(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> sqlite3.Cursor:
    return conn.execute(_numbered(sql), args)


class SqliteStore(SqlStore):
    CLAIM = q.CLAIM
    CLAIM_DELIVERIES = q.CLAIM_DELIVERIES
    WATCHED = q.WATCHED
    FAIL = q.FAIL
    RELEASE_CANCELLED = q.RELEASE_CANCELLED
    RESCUE_CANCELLED = q.RESCUE_CANCELLED
    RESCUE_FAIL = q.RESCUE_FAIL
    CANCEL_WAITING = q.CANCEL_WAITING
    METADATA_MATCH = q.METADATA_MATCH
    STATUS_RANGES_ONLY = False
    MIGRATIONS_PACKAGE = "chatq.store.sqlite"

    def __init__(
        self,
        writer: _Connection,
        reader: _Connection,
        clock: Callable[[], float],
        inline: sqlite3.Connection | None = None,
    ):
        super().__init__(clock)
        self._writer = writer
        self._reader = reader
        self._inline = inline

    @classmethod
    async def open(cls, path: str, clock: Callable[[], float] = time.time) -> SqliteStore:
        writer, reader = _Connection("writer"), _Connection("reader")
        # WAL + synchronous=FULL: a commit is on disk before submit returns. A 64 MiB page
        # cache (SQLite's default is 2 MiB): a batch's rows go into ten indexes of requests,
        # which outgrow 2 MiB at some 100,000 rows (the batch route +8 to +14% there, §14).
        await writer.open(path, "journal_mode=WAL", "synchronous=FULL", "cache_size=-65536")
        await reader.open(path, "query_only=1")
        return cls(writer, reader, clock, _inline_connection(path))

    # ---- primitives

    async def _read(self, sql: str, *args: Any) -> list[Any]:
        return await self._reader.run(lambda conn: _run(conn, sql, args).fetchall())

    async def _read_small(self, sql: str, *args: Any) -> list[Any]:
        """Read on the event loop's own thread: an indexed lookup takes a few microseconds,
        while the hop to the reader's thread and back cost a get-one request several times
        that (docs/benchmarks.md). A reader in WAL mode waits for no writer; in the rare
        moment it would wait (the WAL being reset), this connection does not: the read is
        made in the reader's thread instead, which may wait."""
        if self._inline is not None:
            try:
                return _run(self._inline, sql, args).fetchall()
            except sqlite3.OperationalError:
                pass
        return await self._read(sql, *args)

    async def _write(self, sql: str, *args: Any) -> list[Any]:
        return await self._writer.run(lambda conn: _run(conn, sql, args).fetchall())

    async def _execute(self, sql: str, *args: Any) -> int:
        return await self._writer.run(lambda conn: _run(conn, sql, args).rowcount)

    async def _execute_all(self, statements: Sequence[Statement]) -> list[int]:
        def run_all(conn: sqlite3.Connection) -> list[int]:
            return [_run(conn, sql, args).rowcount for sql, args in statements]

        return await self._writer.run(lambda conn: _transaction(conn, run_all))

    async def _close_connections(self) -> None:
        inline, self._inline = self._inline, None
        if inline is not None:
            inline.close()
        await self._reader.close()
        await self._writer.close()

    def _announce(self, *changes: Change) -> None:
        for change in changes:
            self._feed.publish(change)

    def _ensure_listening(self, topic: Topic) -> None:
        """Nothing to start: SQLite has no notifications."""

    def _notified(self) -> bool:
        # What this process writes it announces itself; another process on the same file
        # (chatq api beside chatq worker) can only be seen by polling.
        return False

    def _id_list(self, ids: list[str]) -> str:
        return json.dumps(ids)

    # ---- the verbs SQLite runs its own way

    async def migrate(self) -> list[str]:
        files = self._migration_files()
        now = self._clock()

        def apply(conn: sqlite3.Connection) -> list[str]:
            conn.execute(q.CREATE_MIGRATIONS_TABLE)
            done = {r[0] for r in conn.execute(shared.APPLIED_MIGRATIONS)}
            applied = []
            for version, name, sql in files:
                if version in done:
                    continue
                # executescript runs a script of many statements, but outside any transaction
                # of ours, so the script opens the one that the record then joins.
                try:
                    conn.executescript(f"BEGIN IMMEDIATE;\n{sql}")
                    _run(conn, shared.RECORD_MIGRATION, (version, name, now))
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                applied.append(name)
            return applied

        return await self._writer.run(apply)

    async def _submit_batch(self, news: list[NewRequest]) -> list[SubmitOutcome]:
        now = self._clock()

        def submit_all(conn: sqlite3.Connection) -> list[SubmitOutcome]:
            refused = _refusals(conn, news, now)
            batch = _Batch(conn, now)
            outcomes = [refused[n.id] if n.id in refused else batch.add(n) for n in news]
            batch.insert()
            return outcomes

        return await self._writer.run(lambda conn: _transaction(conn, submit_all))

    async def complete_many(self, worker_id: str, results: Sequence[tuple[str, JSON]]) -> set[str]:
        if not results:
            return set()
        now = self._clock()
        *counts, queued = await self._execute_all(
            [(q.COMPLETE_MANY, (now, dumps(body), i, worker_id)) for i, body in results]
            + [(shared.WEBHOOK_ENQUEUE, (now,))]  # the outbox, in the same transaction
        )
        done = {i for (i, _), count in zip(results, counts, strict=True) if count == 1}
        self._announce(*(Change(i, Status.COMPLETED) for i in done))
        self._queued(queued)
        return done


def _refusals(
    conn: sqlite3.Connection, news: list[NewRequest], now: float
) -> dict[str, LimitExceeded]:
    """The requests of the batch that their limits refuse, by id; the keys' rate state
    written back. Inside the batch's transaction: the one writer, so nothing else moves."""
    limited = [(n, n.limits) for n in news if n.limits is not None]
    if not limited:
        return {}
    tats: dict[str, float] = {}
    unfinished: dict[str, int] = {}
    counted_to: dict[str, int] = {}  # owner -> the cap its count went up to
    held: set[tuple[str, str]] = set()
    for new, limits in limited:
        if limits.rpm is not None and limits.key_id not in tats:
            row = _run(conn, q.KEY_RATE, (limits.key_id,)).fetchone()
            tats[limits.key_id] = float(row[0]) if row else 0.0
        cap = limits.max_unfinished
        if cap is not None and counted_to.get(new.owner, -1) < cap:
            counted = _run(conn, q.UNFINISHED_COUNT, (new.owner, cap)).fetchone()
            unfinished[new.owner], counted_to[new.owner] = int(counted[0]), cap
        key = new.idempotency_key
        by_key = shared.GET_BY_IDEMPOTENCY_KEY
        if key is not None and _run(conn, by_key, (new.owner, key)).fetchone() is not None:
            held.add((new.owner, key))
    admission = Admission(now, tats, unfinished, held)
    refused = {n.id: e for n in news if (e := admission.refusal(n)) is not None}
    for key_id in tats:
        _run(conn, shared.KEY_RATE_SET, (key_id, admission.tats[key_id]))
    return refused


class _Lanes:
    """Where each new request of a batch goes in the queue (its vtime), as its requests are
    placed one by one: 1 + the later of the queue's head (the least vtime waiting) and the
    end of its owner's lane (the greatest vtime of the owner's waiting requests), as they
    stand with the requests before it in. Read once per batch and owner, then kept up to
    date with each request placed: inside the batch's transaction this connection is the
    only writer, and nothing but the batch's own requests moves either."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        row = conn.execute(_numbered(q.QUEUE_HEAD)).fetchone()
        self._head: int | None = None if row is None else int(row[0])
        self._ends: dict[str, int] = {}

    def place(self, owner: str) -> int:
        if owner not in self._ends:
            row = _run(self._conn, q.LANE_END, (owner,)).fetchone()
            self._ends[owner] = 0 if row is None else int(row[0])
        vtime = 1 + max(self._head or 0, self._ends[owner])
        # vtime is past the head: it moves the head only when nothing else was waiting.
        if self._head is None:
            self._head = vtime
        self._ends[owner] = vtime
        return vtime


class _Batch:
    """A batch's requests, each settled as it comes, as if inserted one by one in order:
    a replay or conflict of an idempotency key already held (in the table, or by a request
    earlier in the batch), or a new row, whose seq and vtime are worked out here. The new
    rows then go in with one statement (SUBMIT says why)."""

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self._conn = conn
        self._now = now
        self._lanes = _Lanes(conn)
        self._seq = int(conn.execute(_numbered(q.LAST_SEQ)).fetchone()[0])
        self._rows: list[tuple[Any, ...]] = []
        self._keys: dict[tuple[str, str], Job] = {}  # the keys this batch's rows hold

    def add(self, new: NewRequest) -> SubmitOutcome:
        if new.webhook_named:  # named again: a URL that a 410 disabled is enabled again
            _run(self._conn, shared.WEBHOOK_ENABLE, (new.owner, new.webhook_url))
        key = new.idempotency_key
        if key is not None:
            held = self._held(new.owner, key)
            if held is not None and held.request_hash != new.request_hash:
                return IdempotencyConflict(held.id)
            if held is not None:
                return held, False
        self._seq += 1
        self._rows.append(
            (
                self._seq,
                new.id,
                new.owner,
                new.model,
                dumps(new.request),
                new.request_hash,
                key,
                int(new.stream),
                new.webhook_url,
                None if new.metadata is None else dumps(new.metadata),
                new.priority,
                self._lanes.place(new.owner),
            )
        )
        job = _created(new, self._seq, self._now)
        if key is not None:
            self._keys[new.owner, key] = job
        return job, True

    def _held(self, owner: str, key: str) -> Job | None:
        if (owner, key) in self._keys:
            return self._keys[owner, key]
        row = _run(self._conn, shared.GET_BY_IDEMPOTENCY_KEY, (owner, key)).fetchone()
        return None if row is None else job_from_row(row)

    def insert(self) -> None:
        if not self._rows:
            return
        inserted = _run(self._conn, q.SUBMIT, (_json_array(self._rows), self._now)).rowcount
        assert inserted == len(self._rows), f"{inserted} of {len(self._rows)} rows inserted"


def _json_array(rows: list[tuple[Any, ...]]) -> str:
    try:
        return orjson.dumps(rows).decode()
    except orjson.JSONEncodeError:
        # What orjson refuses here is a lone surrogate in a text column, which binding it
        # refuses too (as it refused it in a statement of its own): not escaped into the
        # JSON, for SQLite to store as something else.
        return json.dumps(rows, ensure_ascii=False)


def _created(new: NewRequest, seq: int, now: float) -> Job:
    """The row a batch inserts for new, as GET will read it: built from what is inserted
    rather than read back."""
    metadata = dict(new.metadata) if new.metadata is not None else {}
    return Job(
        seq,
        new.id,
        new.model,
        Status.CREATED,
        now,
        None,
        None,
        None,
        metadata,
        new.owner,
        new.request_hash,
        None,
        None,
        0,
        new.stream,
        new.webhook_url,
    )
