"""PostgreSQL only: what its text columns cannot hold (NUL) never fails more than it must."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from chatq.domain import NewRequest
from chatq.store import UnstorableRequest
from chatq.store.postgres.store import PostgresStore
from tests.integration.stores import new_request
from tests.pg import temporary_database


@pytest.fixture
async def store() -> AsyncIterator[PostgresStore]:
    async with temporary_database() as url:
        opened = await PostgresStore.open(url)
        await opened.migrate()
        try:
            yield opened
        finally:
            await opened.close()


def new(content: str, key: str | None = None) -> NewRequest:
    return new_request(content, "o", key=key)


async def test_a_refused_request_fails_alone_in_its_batch(store: PostgresStore) -> None:
    # The API refuses a NUL in the key (422) before it gets here; this is the store's own
    # guard, for whatever else the database may refuse.
    batch = [new("a"), new("b", key="bad\x00key"), new("c", key="fine")]
    outcomes = await asyncio.gather(*(store.submit(n) for n in batch), return_exceptions=True)
    good_a, bad, good_c = outcomes
    assert isinstance(bad, UnstorableRequest) and "0x00" in str(bad)
    for submitted, outcome in ((batch[0], good_a), (batch[2], good_c)):
        assert not isinstance(outcome, BaseException)
        assert outcome[0].id == submitted.id and outcome[1]
    page, _ = await store.list_page("o", 10, None)
    assert [s.id for s in page] == [batch[2].id, batch[0].id]


async def test_an_error_message_with_a_nul_is_recorded(store: PostgresStore) -> None:
    job, _ = await store.submit(new("upstream sends binary"))
    (claimed,) = await store.claim("w", 1, 30)
    assert await store.fail(claimed.id, "w", "HTTP 500: \x00\x01garbage")
    failed = await store.get("o", job.id)
    assert failed is not None and failed.error_message == "HTTP 500: \\0\x01garbage"
