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
