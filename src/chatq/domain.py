"""Plain types shared by every layer: what a request is, whatever stores or serves it."""

from __future__ import annotations

import enum
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]


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


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """What a worker needs to run a job it has just claimed."""

    id: str
    model: str
    request: JSON
    attempts: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    owner: str
    created_at: float
    revoked_at: float | None


class UnstorableRequest(ValueError):
    """The database refuses to store this request as it is (say, a character it cannot hold)."""


class IdempotencyConflict(Exception):
    """The owner's idempotency key is already bound to a different request."""

    def __init__(self, existing_id: str) -> None:
        super().__init__(existing_id)
        self.existing_id = existing_id


def request_fingerprint(request: JSON) -> str:
    """A stable hash of a request, so that a replay can be told from a different request."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


KEY_PREFIX = "cq"


def new_api_key() -> tuple[str, str]:
    """A fresh (key id, secret); the secret embeds the id so that it can be listed and revoked."""
    key_id = secrets.token_hex(4)
    return key_id, f"{KEY_PREFIX}-{key_id}-{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> str:
    # Keys are 256-bit random: a fast hash is enough, a slow KDF would only slow every request.
    return hashlib.sha256(secret.encode()).hexdigest()
