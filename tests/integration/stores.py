"""Fresh stores of every dialect for tests: migrated, on a clock the test may control; and
requests to put in them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from chatq.domain import JSON, NewRequest
from chatq.store import Store, open_store
from tests.pg import temporary_database

DIALECTS = ["sqlite", "postgres"]
OWNER = "alice"


class Clock:
    """A clock the test moves by hand: leases and retention without sleeping."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@asynccontextmanager
async def database_url(dialect: str, tmp_path: Path) -> AsyncIterator[str]:
    """A URL to an empty database of the dialect, removed afterwards."""
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'chatq-test.db'}"
    else:
        async with temporary_database() as url:
            yield url


@asynccontextmanager
async def fresh_store(
    dialect: str, tmp_path: Path, clock: Callable[[], float] = time.time
) -> AsyncIterator[Store]:
    async with database_url(dialect, tmp_path) as url:
        store = await open_store(url, clock=clock)
        try:
            await store.migrate()
            yield store
        finally:
            await store.close()


def new_request(
    content: str,
    owner: str = OWNER,
    model: str = "echo",
    key: str | None = None,
    **extra: object,
) -> NewRequest:
    """A one-message chat request (with any extra fields), built as the API builds it."""
    request = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return NewRequest.create(owner, request, key)


async def complete_one(store: Store, request_id: str, worker_id: str, response: JSON) -> bool:
    """complete_many for one result: True if it was recorded."""
    return request_id in await store.complete_many(worker_id, [(request_id, response)])
