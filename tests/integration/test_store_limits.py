"""Limits, on every dialect: a per-owner cap on unfinished requests and a per-key rate,
checked in the submit's transaction, so nothing over a limit is ever stored, whoever
submits at once (a burst in one process, or two stores on one database)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chatq.domain import Limits, NewRequest
from chatq.store import LimitExceeded, Store, open_store
from tests.integration.stores import OWNER, Clock, complete_one, database_url, new_request

LEASE = 30.0


def limited(content: str, limits: Limits, key: str | None = None) -> NewRequest:
    request = new_request(content)
    return NewRequest.create(OWNER, request.request, key, limits=limits)


async def stored(store: Store, owner: str = OWNER) -> int:
    page, _ = await store.list_page(owner, 1000, None)
    return len(page)


async def outcomes(store: Store, requests: list[NewRequest]) -> list[object]:
    """Submitted at once (so they share group-committed batches)."""
    return await asyncio.gather(*(store.submit(r) for r in requests), return_exceptions=True)


async def test_the_unfinished_cap_refuses_and_stores_nothing_over_it(store: Store) -> None:
    cap = Limits("k1", max_unfinished=4)
    results = await outcomes(store, [limited(f"r{i}", cap) for i in range(10)])
    refused = [r for r in results if isinstance(r, LimitExceeded)]
    assert len(refused) == 6 and await stored(store) == 4
    assert all(r.kind == "unfinished" and r.retry_after > 0 for r in refused)
    assert "4" in refused[0].message

    claimed = await store.claim("w", 2, LEASE)  # IN_PROGRESS still counts
    with pytest.raises(LimitExceeded):
        await store.submit(limited("still full", cap))
    assert await complete_one(store, claimed[0].id, "w", {"done": True})
    await store.submit(limited("a place freed", cap))
    assert await stored(store) == 5
    await store.submit(new_request("no limits: not counted, not refused"))
    other = NewRequest.create("bob", new_request("bob").request, limits=cap)
    await store.submit(other)  # the cap is per owner


async def test_a_replay_at_the_cap_returns_the_stored_request(store: Store) -> None:
    cap = Limits("k1", max_unfinished=1)
    first, created = await store.submit(limited("once", cap, key="idem"))
    again, created_again = await store.submit(limited("once", cap, key="idem"))
    assert created and not created_again and again.id == first.id
    results = await outcomes(store, [limited("twice", cap, key="new")] * 2)
    assert all(isinstance(r, LimitExceeded) for r in results), results


async def test_the_rate_lets_a_minute_in_at_once_then_one_per_interval(
    store: Store, clock: Clock
) -> None:
    rate = Limits("k1", rpm=6)  # one every 10 s
    results = await outcomes(store, [limited(f"r{i}", rate) for i in range(9)])
    refused = [r for r in results if isinstance(r, LimitExceeded)]
    assert len(refused) == 3 and await stored(store) == 6
    assert all(r.kind == "rate" and r.retry_after == pytest.approx(10.0) for r in refused)
    clock.advance(4)
    with pytest.raises(LimitExceeded) as caught:
        await store.submit(limited("too soon", rate))
    assert caught.value.retry_after == pytest.approx(6.0)
    clock.advance(6)
    await store.submit(limited("on time", rate))
    with pytest.raises(LimitExceeded):
        await store.submit(limited("one too many", rate))
    clock.advance(60)
    results = await outcomes(store, [limited(f"later {i}", rate) for i in range(8)])
    assert sum(not isinstance(r, Exception) for r in results) == 6, "full again, no more"
    await store.submit(limited("another key", Limits("k2", rpm=6)))


async def test_both_limits_count_only_what_they_let_in(store: Store, clock: Clock) -> None:
    both = Limits("k1", max_unfinished=2, rpm=3)
    results = await outcomes(store, [limited(f"r{i}", both) for i in range(3)])
    assert [isinstance(r, LimitExceeded) for r in results].count(True) == 1
    claimed = await store.claim("w", 2, LEASE)
    for job in claimed:
        assert await complete_one(store, job.id, "w", {})
    # The cap refused the third, so it took no place in the rate: one more is let in now.
    await store.submit(limited("third", both))
    with pytest.raises(LimitExceeded) as caught:
        await store.submit(limited("fourth", both))
    assert caught.value.kind == "rate"


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_two_stores_on_one_database_let_in_no_more_than_the_cap(
    dialect: str, tmp_path: Path
) -> None:
    """As two API processes would: each its own store, submitting at once."""
    cap = Limits("k1", max_unfinished=25, rpm=40)
    async with database_url(dialect, tmp_path) as url:
        stores = [await open_store(url) for _ in range(2)]
        try:
            await stores[0].migrate()
            requests = [limited(f"r{i}", cap) for i in range(120)]
            results = await asyncio.gather(
                *(stores[i % 2].submit(r) for i, r in enumerate(requests)),
                return_exceptions=True,
            )
            assert all(isinstance(r, tuple | LimitExceeded) for r in results), results
            assert sum(isinstance(r, tuple) for r in results) == 25
            assert await stored(stores[1]) == 25
            for job in await stores[0].claim("w", 25, LEASE):
                assert await complete_one(stores[1], job.id, "w", {})
            more = await asyncio.gather(
                *(stores[i % 2].submit(limited(f"s{i}", cap)) for i in range(40)),
                return_exceptions=True,
            )
            # The rate's 40 less the 25, and what a second refills meanwhile at most.
            assert sum(isinstance(r, tuple) for r in more) in (15, 16)
        finally:
            for s in stores:
                await s.close()
