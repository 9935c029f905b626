"""Plain types shared by every layer: what a request is, whatever stores or serves it."""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

JSON = dict[str, Any]
Metadata = dict[str, str]  # a request's metadata: the client's labels, string to string

# What metadata may hold: a bounded label set, not a second request body.
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


CANCELLED = "cancelled by the client"  # the error_message of a cancelled request

# A request's priority orders its owner's own waiting requests (higher first); the store's
# SQLite claim index folds it into one integer with seq, which bounds it.
MIN_PRIORITY, MAX_PRIORITY = -1000, 1000


class Status(enum.StrEnum):
    CREATED = "CREATED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class Limits:
    """What the key a request is submitted with allows (None: no limit): at most
    max_unfinished of its owner's requests CREATED or IN_PROGRESS, and at most rpm requests
    a minute made with the key."""

    key_id: str
    max_unfinished: int | None = None
    rpm: int | None = None

    @property
    def any(self) -> bool:
        return self.max_unfinished is not None or self.rpm is not None


# Request ids are made 256 at a time, from one draw of random bytes: uuid4 asks the OS for
# each, and that call lets go of Python's GIL, so on a batch of 1,000 the event loop waited on
# the store's writer thread 1,000 times for it (a fifth of the batch route's time,
# docs/benchmarks.md section 14). Formatting them from one hex string costs half of formatting
# each from its bytes. A list iterator, so that threads never take the same id.
_IDS_AT_ONCE = 256
_random_ids: Iterator[str] = iter(())


def new_request_id() -> str:
    """A random (version 4) UUID, as str(uuid.uuid4()) gives one."""
    global _random_ids
    made = next(_random_ids, None)
    if made is None:
        _random_ids = iter(_made_ids())
        made = next(_random_ids)
    return made


def _made_ids() -> list[str]:
    h = os.urandom(16 * _IDS_AT_ONCE).hex()
    # Where uuid.UUID(version=4) puts them: the version nibble is 4, and the variant's top
    # two bits (RFC 4122) are 10 (8, 9, a or b, by the nibble's two random bits).
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{'89ab'[int(h[i + 16], 16) & 3]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, len(h), 32)
    ]


def _forget_random_ids() -> None:
    """A forked child must not give out the ids its parent has yet to."""
    global _random_ids
    _random_ids = iter(())


os.register_at_fork(after_in_child=_forget_random_ids)


# Not frozen, as the records below: a batch of 1,000 makes a NewRequest and a Job for each item,
# and a frozen dataclass's __init__ costs about five times a plain one's (2 µs against 0.4
# for twelve fields). Nothing changes them after they are made.
@dataclass(slots=True)
class NewRequest:
    """A validated chat request, ready to be stored."""

    id: str
    owner: str
    model: str
    request: JSON
    request_hash: str  # request_fingerprint(request); "" without an idempotency key
    idempotency_key: str | None
    webhook_url: str | None = None  # where its terminal event goes (its own, or its key's)
    # The create named webhook_url itself: that sets the URL again for its owner, so a URL
    # disabled by a 410 is enabled again.
    webhook_named: bool = False
    metadata: Metadata | None = None  # the client's labels, returned and filtered on, never sent
    priority: int = 0  # within its owner's waiting requests, higher is claimed first
    limits: Limits | None = None  # checked by the store as it stores the request

    @property
    def stream(self) -> bool:
        return self.request.get("stream") is True

    @classmethod
    def create(
        cls,
        owner: str,
        request: JSON,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
        webhook_named: bool = False,
        metadata: Metadata | None = None,
        priority: int = 0,
        limits: Limits | None = None,
    ) -> NewRequest:
        """A new request with a fresh id, for request["model"]."""
        return cls(
            id=new_request_id(),
            owner=owner,
            model=request["model"],
            request=request,
            # Only a replay compares hashes, and only a request with a key can be replayed.
            request_hash=request_fingerprint(request) if idempotency_key is not None else "",
            idempotency_key=idempotency_key,
            webhook_url=webhook_url,
            webhook_named=webhook_named and webhook_url is not None,
            metadata=metadata or None,
            priority=priority,
            limits=limits if limits is not None and limits.any else None,
        )


@dataclass(slots=True)
class Summary:
    """A stored request as lists show it; timestamps are unix seconds (float)."""

    seq: int
    id: str
    model: str
    status: Status
    created_at: float
    started_at: float | None
    completed_at: float | None
    failed_at: float | None
    metadata: Metadata  # empty if none was given


@dataclass(frozen=True, slots=True)
class ListFilter:
    """What a list page is narrowed to: every part given must match; the default, nothing."""

    statuses: frozenset[Status] = frozenset()  # any of these (empty: any status)
    model: str | None = None
    created_after: float | None = None  # created_at >= this
    created_before: float | None = None  # created_at < this
    metadata: tuple[tuple[str, str], ...] = ()  # (key, value) pairs, each must match, sorted

    @property
    def empty(self) -> bool:
        return self == NO_FILTER

    def scope(self) -> bytes:
        """The filter in canonical form (b"" for none): a next_token is bound to it."""
        if self.empty:
            return b""
        canonical = {
            "status": sorted(self.statuses),
            "model": self.model,
            "created_after": self.created_after,
            "created_before": self.created_before,
            "metadata": [list(pair) for pair in self.metadata],
        }
        return json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode()


NO_FILTER = ListFilter()


@dataclass(slots=True)
class Job(Summary):
    """A stored request, whole."""

    owner: str
    request_hash: str
    response: JSON | None
    error_message: str | None
    runs: int  # how many times its text has (re)started; the run its text belongs to
    stream: bool  # submitted with stream: true, so its text is published as it is generated
    webhook_url: str | None  # where its terminal event is POSTed, if anywhere

    @property
    def finished(self) -> bool:
        return self.status in (Status.COMPLETED, Status.FAILED)


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """What a worker needs to run a job it has just claimed."""

    id: str
    model: str
    request: JSON
    attempts: int  # claims so far, this one included
    created_at: float
    run: int  # the run of its text that this claim starts


@dataclass(frozen=True, slots=True)
class TextPiece:
    """A piece of a streamed request's text: it starts at character offset start of the
    text of run number run."""

    request_id: str
    run: int
    start: int
    text: str

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    owner: str
    created_at: float
    revoked_at: float | None
    webhook_url: str | None = None  # the default webhook of the requests made with it
    admin: bool = False  # may read every owner's usage
    # Its limits: None, the server's default; 0, none.
    max_unfinished: int | None = None
    rpm: int | None = None


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """Who an API key speaks for: its owner, its default webhook URL, whether it is an admin
    key, and its limits as the key sets them (None: the server's default; 0: none)."""

    owner: str
    webhook_url: str | None
    admin: bool = False
    key_id: str = ""
    max_unfinished: int | None = None
    rpm: int | None = None


# ---- webhooks (issue 13)

COMPLETED_EVENT = "async_chat_completion.completed"
FAILED_EVENT = "async_chat_completion.failed"
WEBHOOK_SECRET_PREFIX = "whsec_"


class DeliveryStatus(enum.StrEnum):
    PENDING = "PENDING"  # to be tried (again) at next_attempt_at
    DELIVERED = "DELIVERED"  # a 2xx was received
    FAILED = "FAILED"  # given up: the horizon passed, a 410, or refused by the SSRF guard


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed webhook delivery: what a worker needs to POST it."""

    id: str  # the webhook-id, the same on every attempt (msg_...)
    request_id: str
    owner: str
    url: str
    event_type: str  # COMPLETED_EVENT or FAILED_EVENT
    created_at: float  # the terminal transition: the event's timestamp
    attempts: int  # attempts made before this one
    window_start: float  # retries stop horizon_s after this (the event, or its replay)


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    attempt: int  # 1, 2, ...
    at: float
    status_code: int | None  # the receiver's answer, if it answered
    error: str | None  # what went wrong otherwise (or with the answer)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A delivery as operators and owners see it."""

    id: str
    request_id: str
    owner: str
    url: str
    event_type: str
    created_at: float
    status: DeliveryStatus
    attempts: int
    next_attempt_at: float | None
    delivered_at: float | None
    last_error: str | None
    history: tuple[DeliveryAttempt, ...] = ()


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The outcome of one attempt, for the store to record."""

    delivery: Delivery
    at: float
    status: DeliveryStatus  # DELIVERED, FAILED (given up), or PENDING (retry at next_attempt_at)
    status_code: int | None
    error: str | None
    next_attempt_at: float | None = None
    disable_url: bool = False  # a 410: no more deliveries to this URL for this owner


@dataclass(frozen=True, slots=True)
class WebhookSecrets:
    """An owner's signing secrets: the current one and, after a rotation, the one before."""

    current: str
    previous: str | None
    rotated_at: float | None

    def signing(self, now: float, overlap_s: float) -> list[str]:
        """The secrets to sign with now: both during the overlap after a rotation."""
        if self.previous and self.rotated_at is not None and now < self.rotated_at + overlap_s:
            return [self.current, self.previous]
        return [self.current]


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """What an attempt needs beside its delivery, read at once: its request as it is now,
    the owner's signing secrets, and whether a 410 disabled the URL for the owner."""

    job: Job
    secrets: WebhookSecrets
    url_disabled: bool


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """How much work is waiting, across every process: requests not yet claimed, requests
    being run, and webhook deliveries still to be made."""

    created: int
    in_progress: int
    webhooks_pending: int


@dataclass(frozen=True, slots=True)
class ModelDepth:
    """Unfinished requests of one model in one status (CREATED or IN_PROGRESS), every
    owner's: the admin view's queue."""

    status: Status
    model: str
    requests: int


@dataclass(frozen=True, slots=True)
class Submitted:
    """A request as its client submitted it (messages and every other field), and how many
    times a worker has started it (a job taken over after its worker died starts again)."""

    request: JSON
    attempts: int


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: whsec_ and 24 random bytes in base64."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def delivery_id(request_id: str) -> str:
    """A request's webhook-id: derived from it, so every attempt and replay shares it."""
    return "msg_" + request_id.replace("-", "")


# ---- usage (issue 14)

# What a usage report is grouped by besides the owner: None, each day and model; "day",
# each day (every model together); "model", each model (every day of the range together).
UsageGrouping = Literal["day", "model"] | None


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Sums over the requests that finished in a group: a key not grouped by is None."""

    owner: str | None
    day: str | None  # YYYY-MM-DD, the UTC date of the terminal transitions
    model: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float


def usage_keys(every_owner: bool, group_by: UsageGrouping) -> tuple[str, ...]:
    """The columns a usage report groups by, in order: the owner when it covers every owner,
    then the day and the model unless group_by leaves one out."""
    keys: tuple[str, ...] = ("owner",) if every_owner else ()
    if group_by != "model":
        keys += ("day",)
    if group_by != "day":
        keys += ("model",)
    return keys


def utc_day(timestamp: float) -> str:
    """The UTC date of a unix time, as usage keys its days: YYYY-MM-DD."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


# A usage report without a first day covers the 30 days that end on its last.
USAGE_DAYS = 30


def usage_range(first: date | None, last: date | None, now: float) -> tuple[date, date]:
    """A usage report's first and last UTC day, by default the USAGE_DAYS that end today; a
    last day near date.min starts its range at date.min."""
    last = last or date.fromisoformat(utc_day(now))
    return first or last - timedelta(min(USAGE_DAYS - 1, (last - date.min).days)), last


def request_fingerprint(request: JSON) -> str:
    """A stable hash of a request, so that a replay can be told from a different request."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
