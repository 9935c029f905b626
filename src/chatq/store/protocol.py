"""The Store port: the verbs every dialect implements. Only the store runs SQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Literal, Protocol

from chatq.domain import (
    JSON,
    NO_FILTER,
    ApiKey,
    ClaimedJob,
    Delivery,
    DeliveryContext,
    DeliveryRecord,
    DeliveryResult,
    Job,
    KeyHolder,
    ListFilter,
    ModelDepth,
    NewRequest,
    QueueDepth,
    Submitted,
    Summary,
    TextPiece,
    UsageGrouping,
    UsageRow,
    WebhookSecrets,
)
from chatq.store.feed import Watch

KeyLimit = Literal["max_unfinished", "rpm"]


class Store(Protocol):
    # lifecycle
    async def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""

    async def secret(self, name: str) -> bytes:
        """A random secret shared by every process on this database, created on first use."""

    # api keys
    async def insert_key(self, key: ApiKey, secret_hash: str) -> None: ...

    async def key_holder(self, secret_hash: str) -> KeyHolder | None:
        """The owner (and default webhook) of an unrevoked key, or None."""

    async def set_key_webhook(self, key: str, url: str | None) -> int:
        """Set (None: clear) the default webhook of the live keys with this id or name; how
        many. Setting a URL enables it again for the keys' owners if a 410 disabled it."""

    async def set_key_limit(self, key: str, limit: KeyLimit, value: int | None) -> int:
        """Set one limit of the live keys with this id or name (None: the server's default,
        0: none); how many keys."""

    async def list_keys(self) -> list[ApiKey]: ...

    async def revoke_key(self, key_id: str) -> bool:
        """True if the key existed and was live."""

    async def count_keys(self) -> int: ...

    # metrics
    async def queue_depth(self) -> QueueDepth:
        """Requests CREATED and IN_PROGRESS, and webhook deliveries PENDING: one statement
        that reads only partial indexes of the unfinished rows."""

    async def queue_by_model(self) -> list[ModelDepth]:
        """queue_depth's CREATED and IN_PROGRESS requests per model, every owner's, ordered by
        status and model; only counts above zero."""

    # requests, as the API sees them
    async def submit(self, new: NewRequest) -> tuple[Job, bool]:
        """Store a request durably; (job, created). A replayed idempotency key returns the
        existing job with created=False; a key bound to another request raises
        IdempotencyConflict, a request the database cannot hold UnstorableRequest. A request
        over its limits (new.limits) raises LimitExceeded and is not stored: the check and
        the insert are one transaction, which holds across processes."""

    async def submit_many(self, news: Sequence[NewRequest]) -> list[tuple[Job, bool] | Exception]:
        """Store a batch of requests in one transaction, as submit stores each: an outcome
        per request, in order, (job, created) or the exception submit would raise for it
        (IdempotencyConflict, LimitExceeded, UnstorableRequest), which fails that request
        alone. A request may replay the key of an earlier one of the same batch. Idle
        workers are woken once for the batch."""

    async def get(self, owner: str, request_id: str) -> Job | None: ...

    async def submitted(self, owner: str, request_id: str) -> Submitted | None:
        """The owner's request as submitted, with its attempts so far; None as get."""

    async def list_page(
        self, owner: str, limit: int, before_seq: int | None, narrowed: ListFilter = NO_FILTER
    ) -> tuple[list[Summary], bool]:
        """Newest first, strictly older than before_seq, only those that match narrowed (by
        default, all); (page, more such rows exist)."""

    # requests, as workers see them
    async def claim(self, worker_id: str, limit: int, lease_s: float) -> list[ClaimedJob]:
        """CREATED -> IN_PROGRESS for up to limit jobs, leased to worker_id, in one statement.
        Owners take turns (fair share): each waiting request holds a turn in its owner's
        lane, and an owner's turns go to its waiting requests by priority, then age."""

    async def renew(self, worker_id: str, lease_s: float) -> int:
        """Extend every lease worker_id holds, in one statement; return how many."""

    async def complete_many(self, worker_id: str, results: Sequence[tuple[str, JSON]]) -> set[str]:
        """IN_PROGRESS (held by worker_id) -> COMPLETED for each (request_id, response), in one
        transaction; return the ids recorded (the others are no longer ours, and are left as
        they were)."""

    async def fail(self, request_id: str, worker_id: str, message: str) -> bool:
        """IN_PROGRESS (held by worker_id) -> FAILED; False if the job is no longer ours."""

    async def release(self, worker_id: str, request_ids: Sequence[str]) -> int:
        """Hand jobs back (IN_PROGRESS -> CREATED) on shutdown; return how many."""

    async def rescue(self, max_deliveries: int) -> tuple[int, int]:
        """Expired leases: back to CREATED, or FAILED once delivered max_deliveries times.
        Return (requeued, failed)."""

    async def purge(self, finished_before: float) -> int:
        """Delete COMPLETED and FAILED jobs finished before the given time; return how many."""

    async def wait_for_work(self, timeout: float) -> None:
        """Return when new work may be available, or after timeout."""

    # cancel and delete, as the API sees them
    async def cancel(self, owner: str, request_id: str) -> Job | None:
        """CREATED -> FAILED at once; IN_PROGRESS: marked for its worker to stop and fail;
        finished: unchanged. The request as it then is, or None if the owner has none."""

    async def delete(self, owner: str, request_id: str) -> bool | None:
        """Delete a finished request and its text: True; False if it is not finished;
        None if the owner has no such request."""

    # cancel, as workers see it
    async def cancel_requested(self, worker_id: str) -> list[str]:
        """The requests worker_id holds whose cancel is pending."""

    async def wait_for_cancel(self, timeout: float) -> None:
        """Return when a cancel of a running request may be pending, or after timeout."""

    # streamed text
    async def append_text(self, worker_id: str, pieces: Sequence[TextPiece]) -> None:
        """Store pieces of the text of requests worker_id holds, in one transaction; a piece
        of a run that is no longer current, or of a request no longer held, is dropped."""

    async def new_run(self, request_id: str, worker_id: str) -> int | None:
        """Start another run of a held request's text; its number, or None if not held."""

    async def read_text(self, request_id: str, run: int) -> str:
        """The text of a request's run, as stored so far."""

    # webhooks: the outbox that every terminal transition writes to, in its transaction
    async def claim_deliveries(
        self,
        worker_id: str,
        limit: int,
        lease_s: float,
        per_owner: int | None = None,
        in_flight: Mapping[str, int] | None = None,
    ) -> list[Delivery]:
        """Up to limit due deliveries, oldest due first, leased to worker_id for lease_s (then
        they are due again); at most per_owner of an owner, less what in_flight says this
        worker has in flight for it."""

    async def record_delivery(self, worker_id: str, result: DeliveryResult) -> bool:
        """Record an attempt and the delivery's new state (and disable its URL for its owner
        if the result says so); False if the claim is no longer worker_id's (nothing is
        recorded then but the disabling)."""

    async def delivery_context(self, delivery: Delivery) -> DeliveryContext | None:
        """What an attempt at delivery needs beside it, in one read; None if its request is
        gone."""

    async def release_deliveries(self, worker_id: str) -> int:
        """Hand back the deliveries worker_id claimed and did not record: due at once; how
        many."""

    async def wait_for_deliveries(self, timeout: float) -> None:
        """Return when a delivery may have become due, or after timeout."""

    async def webhook_url_disabled(self, owner: str, url: str) -> bool:
        """Whether a 410 from url disabled deliveries to it for owner."""

    async def webhook_secrets(self, owner: str) -> WebhookSecrets:
        """The owner's signing secrets; the first is created on first use."""

    async def rotate_webhook_secret(self, owner: str) -> WebhookSecrets:
        """Start a new secret; the one before it is kept as the previous one."""

    async def webhook_delivery(self, owner: str, request_id: str) -> DeliveryRecord | None:
        """The delivery of the owner's request, with its attempts; None if it has none yet."""

    async def list_deliveries(self, failed_only: bool, limit: int) -> list[DeliveryRecord]:
        """Every owner's deliveries, newest event first (only those given up, if failed_only)."""

    async def replay_delivery(self, ident: str) -> bool:
        """Make a delivery (by webhook-id or request id) due again at once, with a new
        horizon, and its URL enabled again; False if there is no such delivery."""

    # usage: written by every terminal transition, in its transaction (never on read)
    async def usage(
        self, owner: str | None, first_day: str, last_day: str, group_by: UsageGrouping = None
    ) -> list[UsageRow]:
        """Sums of the requests that finished from first_day to last_day (YYYY-MM-DD, UTC,
        inclusive), of owner (None: of every owner, by owner), per day and model (group_by
        "day": per day; "model": per model), ordered by those keys."""

    # watching: one feed per process, fed by the database's notifications or by polling
    def watch(self, request_id: str) -> AbstractContextManager[Watch]:
        """Changes to a request from now on, while the block runs; no query while idle."""
