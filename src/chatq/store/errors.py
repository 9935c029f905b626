"""What the store raises, and what callers catch."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """The database cannot be reached; callers answer 503 and retry later."""


class UnsupportedDatabase(ValueError):
    """The database URL names no dialect chatq speaks, or lacks what that dialect needs."""


class DatabaseMissing(ValueError):
    """A SQLite file that does not exist yet, opened by a command that must not create it."""


class UnstorableRequest(ValueError):
    """The database refuses to store this request as it is (say, a character it cannot hold)."""


class IdempotencyConflict(Exception):
    """The owner's idempotency key is already bound to a different request."""

    def __init__(self, existing_id: str) -> None:
        super().__init__(existing_id)
        self.existing_id = existing_id


class LimitExceeded(Exception):
    """The key's limits refuse this request now; nothing was stored. retry_after: seconds
    until a retry may succeed (for the unfinished cap, a guess: it depends on the workers)."""

    def __init__(self, message: str, retry_after: float, kind: str) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.kind = kind  # "rate" or "unfinished"
