"""What both dialects do alike: every verb that is "run this statement", group commit of
submits, waking idle workers, feeding this process's watchers. A dialect supplies its
connection handling (the four primitives below), its own statements, and the verbs it runs
its own way."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import resources
from typing import Any, ClassVar, Literal

from chatq.domain import (
    CANCELLED,
    JSON,
    NO_FILTER,
    ApiKey,
    ClaimedJob,
    Delivery,
    DeliveryContext,
    DeliveryRecord,
    DeliveryResult,
    DeliveryStatus,
    Job,
    KeyHolder,
    ListFilter,
    ModelDepth,
    NewRequest,
    QueueDepth,
    Status,
    Submitted,
    Summary,
    TextPiece,
    UsageGrouping,
    UsageRow,
    WebhookSecrets,
    new_webhook_secret,
    usage_keys,
)
from chatq.group_commit import GroupCommit
from chatq.json_text import loads
from chatq.store import queries as q
from chatq.store.feed import Change, ChangeFeed, Watch
from chatq.store.protocol import KeyLimit
from chatq.store.rows import (
    attempt_from_row,
    claimed_from_rows,
    delivery_from_row,
    job_from_row,
    page_from_rows,
    record_from_row,
    usage_from_row,
)

log = logging.getLogger("chatq.store")

# A submit's outcome: (job, created), or the exception for that request alone.
SubmitOutcome = tuple[Job, bool] | Exception
Statement = tuple[str, Sequence[Any]]

_MAX_SUBMIT_BATCH = 512
# The longest unfiltered list page read as a small read (_read_small): a page of 100 is an
# index range of 101 rows, read in well under a millisecond.
_SMALL_PAGE = 100
# How often watched requests are read again when no notification can be relied on.
WATCH_POLL_S = 0.5

# What a process can be notified of: work to claim (workers), cancels of running requests
# (workers), changes to requests (long-polls and event streams), webhook deliveries due
# (workers). Each process hears only what it waits for: a worker that heard every status
# change would spend its time on them.
Topic = Literal["work", "cancels", "changes", "webhooks"]


class SqlStore(abc.ABC):
    # The dialect's own statements that the shared verbs run.
    CLAIM: ClassVar[str]
    CLAIM_DELIVERIES: ClassVar[str]
    WATCHED: ClassVar[str]  # (id, status, runs, end of the current run's text) of ids $1
    # The transitions to FAILED, as the dialect counts their usage (store/queries.py has
    # what each does).
    FAIL: ClassVar[str]
    RELEASE_CANCELLED: ClassVar[str]
    RESCUE_CANCELLED: ClassVar[str]
    RESCUE_FAIL: ClassVar[str]
    CANCEL_WAITING: ClassVar[str]
    METADATA_MATCH: ClassVar[str]  # metadata holds the pair ({key}, {value}): list filters
    # No requests_owner_seq: an unfiltered list page is read by status (queries.list_query).
    STATUS_RANGES_ONLY: ClassVar[bool]
    MIGRATIONS_PACKAGE: ClassVar[str]

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._work = asyncio.Event()
        self._cancels = asyncio.Event()
        self._deliveries = asyncio.Event()  # a webhook delivery may be due
        self._submits = GroupCommit(self._submit_group, _MAX_SUBMIT_BATCH)
        self._feed = ChangeFeed()
        self._poller: asyncio.Task[None] | None = None

    # ---- the dialect's primitives

    @abc.abstractmethod
    async def _read(self, sql: str, *args: Any) -> list[Any]:
        """Rows of a statement that writes nothing."""

    async def _read_small(self, sql: str, *args: Any) -> list[Any]:
        """Rows of a statement that writes nothing and reads little (an indexed lookup, a
        short page): a dialect may read it more cheaply than _read."""
        return await self._read(sql, *args)

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

    @abc.abstractmethod
    def _announce(self, *changes: Change) -> None:
        """Tell this process's watchers about changes just committed, unless the database
        tells them itself (PostgreSQL's notifications)."""

    @abc.abstractmethod
    def _notified(self) -> bool:
        """Whether the database's notifications reach this process now: if not, watched
        requests are polled."""

    @abc.abstractmethod
    def _ensure_listening(self, topic: Topic) -> None:
        """Have the database's notifications of topic brought to this process from now on."""

    # ---- lifecycle

    async def close(self) -> None:
        await self._submits.drain()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self._close_connections()

    async def ping(self) -> None:
        await self._read(q.PING)

    async def secret(self, name: str) -> bytes:
        await self._execute(q.SECRET_INSERT, name, secrets.token_bytes(32))
        return bytes((await self._read(q.SECRET_GET, name))[0][0])

    # ---- api keys

    async def insert_key(self, key: ApiKey, secret_hash: str) -> None:
        await self._execute(
            q.KEY_INSERT,
            key.id,
            key.name,
            key.owner,
            secret_hash,
            key.created_at,
            key.webhook_url,
            key.admin,
            key.max_unfinished,
            key.rpm,
        )

    async def key_holder(self, secret_hash: str) -> KeyHolder | None:
        rows = await self._read(q.KEY_HOLDER, secret_hash)
        if not rows:
            return None
        owner, webhook_url, admin, *limits = rows[0]
        return KeyHolder(str(owner), webhook_url, bool(admin), *limits)

    async def set_key_webhook(self, key: str, url: str | None) -> int:
        rows = await self._write(q.KEY_SET_WEBHOOK, url, key)
        if url is not None:
            for owner in {str(r[0]) for r in rows}:
                await self._execute(q.WEBHOOK_ENABLE, owner, url)
        return len(rows)

    async def set_key_limit(self, key: str, limit: KeyLimit, value: int | None) -> int:
        return await self._execute(q.KEY_SET_LIMIT[limit], value, key)

    async def list_keys(self) -> list[ApiKey]:
        return [
            ApiKey(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8])
            for r in await self._read(q.KEY_LIST)
        ]

    async def revoke_key(self, key_id: str) -> bool:
        return await self._execute(q.KEY_REVOKE, self._clock(), key_id) == 1

    async def count_keys(self) -> int:
        return int((await self._read(q.KEY_COUNT))[0][0])

    async def queue_depth(self) -> QueueDepth:
        created, in_progress, pending = (await self._read(q.QUEUE_DEPTH))[0]
        return QueueDepth(int(created), int(in_progress), int(pending))

    async def queue_by_model(self) -> list[ModelDepth]:
        rows = await self._read(q.QUEUE_BY_MODEL)
        return [ModelDepth(Status(status), model, int(n)) for status, model, n in rows]

    # ---- requests, as the API sees them

    async def submit(self, new: NewRequest) -> tuple[Job, bool]:
        return await self._submits.write(new)

    async def submit_many(self, news: Sequence[NewRequest]) -> list[SubmitOutcome]:
        # The client's batch is a group already: it is written as one, past the group
        # commit (whose batches are capped at _MAX_SUBMIT_BATCH), by the same code.
        return await self._submit_group(list(news)) if news else []

    async def _submit_group(self, news: list[NewRequest]) -> list[SubmitOutcome]:
        outcomes = await self._submit_batch(news)
        if any(not isinstance(o, Exception) and o[1] for o in outcomes):
            self._work.set()  # a worker in this process need not wait for a notification
        return outcomes

    async def get(self, owner: str, request_id: str) -> Job | None:
        rows = await self._read_small(q.GET, owner, request_id)
        return job_from_row(rows[0]) if rows else None

    async def submitted(self, owner: str, request_id: str) -> Submitted | None:
        rows = await self._read(q.SUBMITTED, owner, request_id)
        return Submitted(loads(rows[0][0]), int(rows[0][1])) if rows else None

    async def list_page(
        self, owner: str, limit: int, before_seq: int | None, narrowed: ListFilter = NO_FILTER
    ) -> tuple[list[Summary], bool]:
        sql, args = q.list_query(
            owner, narrowed, before_seq, limit, self.METADATA_MATCH, self.STATUS_RANGES_ONLY
        )
        small = narrowed.empty and limit <= _SMALL_PAGE
        return page_from_rows(await (self._read_small if small else self._read)(sql, *args), limit)

    # ---- requests, as workers see them

    async def claim(self, worker_id: str, limit: int, lease_s: float) -> list[ClaimedJob]:
        if limit <= 0:
            return []
        now = self._clock()
        rows = await self._write(self.CLAIM, now, worker_id, now + lease_s, limit)
        claimed = claimed_from_rows(rows)
        self._announce(*(Change(j.id, Status.IN_PROGRESS, j.run) for j in claimed))
        return claimed

    async def renew(self, worker_id: str, lease_s: float) -> int:
        return await self._execute(q.RENEW, self._clock() + lease_s, worker_id)

    @abc.abstractmethod
    async def complete_many(self, worker_id: str, results: Sequence[tuple[str, JSON]]) -> set[str]:
        """See Store.complete_many."""

    async def fail(self, request_id: str, worker_id: str, message: str) -> bool:
        # An upstream's error text may hold a NUL, which a PostgreSQL text column cannot.
        message = message.replace("\x00", "\\0")
        now = self._clock()
        failed, queued = await self._execute_all(
            [(self.FAIL, (now, message, request_id, worker_id)), (q.WEBHOOK_ENQUEUE, (now,))]
        )
        if failed:
            self._announce(Change(request_id, Status.FAILED))
        self._queued(queued)
        return failed == 1

    def _queued(self, deliveries: int) -> None:
        """Deliveries were just queued: a worker in this process need not wait to hear it."""
        if deliveries:
            self._deliveries.set()

    async def release(self, worker_id: str, request_ids: Sequence[str]) -> int:
        if not request_ids:
            return 0
        now = self._clock()
        counts = await self._execute_all(
            [
                statement
                for i in request_ids
                for statement in (
                    (self.RELEASE_CANCELLED, (i, worker_id, now, CANCELLED)),
                    (q.RELEASE, (i, worker_id)),
                )
            ]
            + [(q.WEBHOOK_ENQUEUE, (now,))]
        )
        *counts, queued = counts
        if any(counts[1::2]):
            self._work.set()
        self._queued(queued)
        self._announce(*(Change(i) for i in request_ids))
        return sum(counts)

    async def rescue(self, max_deliveries: int) -> tuple[int, int]:
        now = self._clock()
        cancelled, failed, queued, requeued = await self._execute_all(
            [
                (self.RESCUE_CANCELLED, (now, CANCELLED)),
                (self.RESCUE_FAIL, (now, max_deliveries)),
                (q.WEBHOOK_ENQUEUE, (now,)),
                (q.RESCUE_REQUEUE, (now,)),
            ]
        )
        if requeued:
            self._work.set()
        self._queued(queued)
        if cancelled or failed or requeued:
            self._announce(*(Change(i) for i in self._feed.watched()))
        return requeued, cancelled + failed

    async def purge(self, finished_before: float) -> int:
        *_, purged = await self._execute_all(
            [
                (q.PURGE_TEXT, (finished_before,)),
                (q.PURGE_WEBHOOK_ATTEMPTS, (finished_before,)),
                (q.PURGE_WEBHOOKS, (finished_before,)),
                (q.PURGE, (finished_before,)),
            ]
        )
        return purged

    # ---- cancel, delete

    async def cancel(self, owner: str, request_id: str) -> Job | None:
        """CREATED -> FAILED at once; IN_PROGRESS: marked, for its worker to stop and fail;
        finished: unchanged. The request as it then is, or None if the owner has none."""
        now = self._clock()
        failed, queued, marked = await self._execute_all(
            [
                (self.CANCEL_WAITING, (now, CANCELLED, owner, request_id)),
                (q.WEBHOOK_ENQUEUE, (now,)),
                (q.CANCEL_RUNNING, (now, owner, request_id)),
            ]
        )
        self._queued(queued)
        if failed:
            self._announce(Change(request_id, Status.FAILED))
        if marked:
            self._cancels.set()
        return await self.get(owner, request_id)

    async def cancel_requested(self, worker_id: str) -> list[str]:
        """The requests worker_id holds whose cancel is pending."""
        return [str(r[0]) for r in await self._read(q.CANCEL_REQUESTED, worker_id)]

    async def wait_for_cancel(self, timeout: float) -> None:
        """Return when a cancel of some running request may be pending, or after timeout."""
        self._ensure_listening("cancels")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._cancels.wait(), timeout)
        self._cancels.clear()

    async def delete(self, owner: str, request_id: str) -> bool | None:
        """Delete a finished request and its text: True; False if it is not finished (left
        as it is); None if the owner has no such request."""
        deleted, *_ = await self._execute_all(
            [
                (q.DELETE, (owner, request_id)),
                (q.DELETE_TEXT, (request_id,)),
                (q.DELETE_WEBHOOK, (request_id,)),
                (q.DELETE_WEBHOOK_ATTEMPTS, (request_id,)),
            ]
        )
        if deleted:
            self._announce(Change(request_id))
            return True
        return None if await self.get(owner, request_id) is None else False

    # ---- streamed text

    async def append_text(self, worker_id: str, pieces: Sequence[TextPiece]) -> None:
        """Store pieces of text of requests worker_id holds, each in its run; a piece of a
        run that is no longer current, or of a request no longer held, is dropped."""
        if not pieces:
            return
        counts = await self._execute_all(
            [(q.APPEND_TEXT, (p.request_id, p.run, p.start, p.text, worker_id)) for p in pieces]
        )
        self._announce(
            *(Change(p.request_id, piece=p) for p, n in zip(pieces, counts, strict=True) if n)
        )

    async def new_run(self, request_id: str, worker_id: str) -> int | None:
        """Start another run of a held request's text (its call is being retried after text
        was streamed); the new run's number, or None if the request is no longer held."""
        rows = await self._write(q.NEW_RUN, request_id, worker_id)
        if not rows:
            return None
        runs = int(rows[0][0])
        self._announce(Change(request_id, Status.IN_PROGRESS, runs))
        return runs

    async def read_text(self, request_id: str, run: int) -> str:
        """The text of a request's run, as stored so far."""
        return "".join(str(r[0]) for r in await self._read(q.READ_TEXT, request_id, run))

    # ---- webhooks

    async def claim_deliveries(
        self,
        worker_id: str,
        limit: int,
        lease_s: float,
        per_owner: int | None = None,
        in_flight: Mapping[str, int] | None = None,
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        now = self._clock()
        rows = await self._write(
            self.CLAIM_DELIVERIES,
            now,
            worker_id,
            now + lease_s,
            limit,
            json.dumps(dict(in_flight or {})),
            limit if per_owner is None else per_owner,
        )
        return sorted(map(delivery_from_row, rows), key=lambda d: (d.created_at, d.id))

    async def record_delivery(self, worker_id: str, result: DeliveryResult) -> bool:
        d = result.delivery
        error = None if result.error is None else result.error.replace("\x00", "\\0")
        state = (
            d.id,
            worker_id,
            result.status.value,
            result.next_attempt_at if result.status is DeliveryStatus.PENDING else None,
            result.at if result.status is DeliveryStatus.DELIVERED else None,
            error,
        )
        statements = self._recording(state, result.at, result.status_code)
        recorded = len(statements) - 1
        if result.disable_url:
            statements.append((q.WEBHOOK_DISABLE, (d.owner, d.url, result.at)))
        counts = await self._execute_all(statements)
        return counts[recorded] == 1

    def _recording(
        self, state: tuple[Any, ...], at: float, status_code: int | None
    ) -> list[Statement]:
        """What records an attempt and its delivery's new state (WEBHOOK_RECORD's arguments
        in state); the last statement touches a row only if the claim is still the worker's."""
        delivery, worker_id, *_, error = state
        attempt = (delivery, worker_id, at, status_code, error)
        return [(q.WEBHOOK_ATTEMPT, attempt), (q.WEBHOOK_RECORD, state)]

    async def release_deliveries(self, worker_id: str) -> int:
        released = await self._execute(q.WEBHOOK_RELEASE, worker_id, self._clock())
        self._queued(released)
        return released

    async def wait_for_deliveries(self, timeout: float) -> None:
        self._ensure_listening("webhooks")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._deliveries.wait(), timeout)
        self._deliveries.clear()

    async def delivery_context(self, delivery: Delivery) -> DeliveryContext | None:
        rows = await self._read(
            q.DELIVERY_CONTEXT, delivery.owner, delivery.request_id, delivery.url
        )
        if not rows:
            return None
        secret, previous, rotated_at, disabled, *job = rows[0]
        if secret is None:  # the owner's first delivery: its secret is made now
            secrets = await self.webhook_secrets(delivery.owner)
        else:
            secrets = WebhookSecrets(secret, previous, rotated_at)
        return DeliveryContext(job_from_row(job), secrets, bool(disabled))

    async def webhook_url_disabled(self, owner: str, url: str) -> bool:
        return bool(await self._read(q.WEBHOOK_DISABLED, owner, url))

    async def webhook_secrets(self, owner: str) -> WebhookSecrets:
        rows = await self._read(q.WEBHOOK_SECRET_GET, owner)
        if not rows:  # first use; a concurrent first use may win, and then its secret is it
            await self._execute(q.WEBHOOK_SECRET_INSERT, owner, new_webhook_secret())
            rows = await self._write(q.WEBHOOK_SECRET_GET, owner)
        return WebhookSecrets(*rows[0])

    async def rotate_webhook_secret(self, owner: str) -> WebhookSecrets:
        await self.webhook_secrets(owner)
        await self._execute(q.WEBHOOK_SECRET_ROTATE, owner, new_webhook_secret(), self._clock())
        return WebhookSecrets(*(await self._write(q.WEBHOOK_SECRET_GET, owner))[0])

    async def webhook_delivery(self, owner: str, request_id: str) -> DeliveryRecord | None:
        rows = await self._read(q.WEBHOOK_OF_REQUEST, owner, request_id)
        if not rows:
            return None
        history = tuple(map(attempt_from_row, await self._read(q.WEBHOOK_ATTEMPTS, request_id)))
        return record_from_row(rows[0], history)

    async def list_deliveries(self, failed_only: bool, limit: int) -> list[DeliveryRecord]:
        rows = await self._read(q.WEBHOOK_LIST_FAILED if failed_only else q.WEBHOOK_LIST, limit)
        return [record_from_row(r) for r in rows]

    async def replay_delivery(self, ident: str) -> bool:
        rows = await self._write(q.WEBHOOK_REPLAY, ident, self._clock())
        for owner, url in {(str(r[0]), str(r[1])) for r in rows}:
            await self._execute(q.WEBHOOK_ENABLE, owner, url)
        self._queued(len(rows))
        return bool(rows)

    # ---- usage

    async def usage(
        self, owner: str | None, first_day: str, last_day: str, group_by: UsageGrouping = None
    ) -> list[UsageRow]:
        keys = usage_keys(owner is None, group_by)
        rows = await self._read(
            q.USAGE_REPORTS[keys, owner is not None], owner, first_day, last_day
        )
        return [usage_from_row(keys, r) for r in rows]

    # ---- watching

    @contextlib.contextmanager
    def watch(self, request_id: str) -> Iterator[Watch]:
        """Changes to a request, from now on, while the block runs."""
        self._ensure_listening("changes")
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll_watched(), name="chatq-watch-poller")
        with self._feed.watch(request_id) as watch:
            yield watch

    async def _poll_watched(self) -> None:
        """While requests are watched and notifications cannot be relied on, read them every
        WATCH_POLL_S, all in one query, and announce the ones that changed."""
        seen: dict[str, tuple[Any, ...] | None] = {}
        while True:
            await self._feed.watching.wait()
            await asyncio.sleep(WATCH_POLL_S)
            if self._notified():
                seen.clear()
                continue
            watched = self._feed.watched()
            try:
                rows = await self._read(self.WATCHED, self._id_list(watched))
            except Exception:
                log.warning("polling watched requests failed; retrying", exc_info=True)
                continue
            now = {str(r[0]): tuple(r[1:]) for r in rows}
            for request_id in watched:
                # First seen counts as a change too: it may have changed since its watcher
                # read it, and reading it again costs that watcher one query.
                if request_id not in seen or seen[request_id] != now.get(request_id):
                    self._feed.publish(Change(request_id))
            seen = {i: now.get(i) for i in watched}

    def _id_list(self, ids: list[str]) -> Any:
        """ids as the dialect's WATCHED takes them."""
        return ids

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
