"""Plain types shared by every layer: what a request is, whatever stores or serves it."""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]


CANCELLED = "cancelled by the client"  # the error_message of a cancelled request


class Status(enum.StrEnum):
    CREATED = "CREATED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class NewRequest:
    """A validated chat request, ready to be stored."""

    id: str
    owner: str
    model: str
    request: JSON
    request_hash: str  # request_fingerprint(request); "" without an idempotency key
    idempotency_key: str | None

    @property
    def stream(self) -> bool:
        return self.request.get("stream") is True

    @classmethod
    def create(cls, owner: str, request: JSON, idempotency_key: str | None = None) -> NewRequest:
        """A new request with a fresh id, for request["model"]."""
        return cls(
            id=str(uuid.uuid4()),
            owner=owner,
            model=request["model"],
            request=request,
            # Only a replay compares hashes, and only a request with a key can be replayed.
            request_hash=request_fingerprint(request) if idempotency_key is not None else "",
            idempotency_key=idempotency_key,
        )


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Job(Summary):
    """A stored request, whole."""

    owner: str
    request_hash: str
    response: JSON | None
    error_message: str | None
    runs: int  # how many times its text has (re)started; the run its text belongs to
    stream: bool  # submitted with stream: true, so its text is published as it is generated

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


def request_fingerprint(request: JSON) -> str:
    """A stable hash of a request, so that a replay can be told from a different request."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
