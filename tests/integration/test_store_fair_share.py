"""Fair share and priority, on every dialect: claims interleave owners, so one owner's
backlog cannot starve another's; priority orders an owner's own waiting requests."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatq.domain import NewRequest
from chatq.store import Store
from tests.integration.stores import fresh_store, new_request

LEASE = 30.0


def new(content: str, owner: str, priority: int = 0, key: str | None = None) -> NewRequest:
    request = new_request(content, owner)
    return NewRequest.create(owner, request.request, key, priority=priority)


async def submit_all(store: Store, *requests: NewRequest) -> None:
    """One at a time, in order: each its own batch."""
    for request in requests:
        await store.submit(request)


async def claim_order(store: Store, batch: int = 1) -> list[str]:
    """The contents of every waiting request, in the order claims of batch take them."""
    order: list[str] = []
    while claimed := await store.claim("w", batch, LEASE):
        order += [job.request["messages"][0]["content"] for job in claimed]
    return order


async def test_a_new_owner_takes_turns_with_a_backlog(store: Store) -> None:
    await submit_all(store, *(new(f"a{i}", "a") for i in range(40)))
    await submit_all(store, *(new(f"b{i}", "b") for i in range(5)))
    order = await claim_order(store)
    assert sorted(order) == sorted([f"a{i}" for i in range(40)] + [f"b{i}" for i in range(5)])
    b_places = [order.index(f"b{i}") for i in range(5)]
    # b's requests alternate with a's from the first turn after they arrived, not after a's 40.
    assert b_places == sorted(b_places) and b_places[-1] < 12, order
    assert [o for o in order if o.startswith("a")] == [f"a{i}" for i in range(40)]


async def test_a_batch_claim_interleaves_owners(store: Store) -> None:
    await submit_all(store, *(new(f"a{i}", "a") for i in range(100)))
    await submit_all(store, *(new(f"b{i}", "b") for i in range(100)))
    await submit_all(store, *(new(f"c{i}", "c") for i in range(10)))
    first = await store.claim("w", 30, LEASE)
    owners = [job.request["messages"][0]["content"][0] for job in first]
    assert len(first) == 30
    # Every owner got a third of the batch, give or take the turn a had before the others
    # arrived; strict FIFO would have given a all 30.
    assert all(9 <= owners.count(o) <= 11 for o in "abc"), owners


async def test_priority_orders_an_owners_own_requests(store: Store) -> None:
    await submit_all(
        store,
        new("low-1", "a"),
        new("low-2", "a"),
        new("urgent", "a", priority=5),
        new("high", "a", priority=1),
        new("low-3", "a"),
        new("lowest", "a", priority=-3),
    )
    assert await claim_order(store) == ["urgent", "high", "low-1", "low-2", "low-3", "lowest"]
    await submit_all(store, new("x-1", "a"), new("x-2", "a", priority=2), new("x-3", "a"))
    first, second = await store.claim("w", 2, LEASE), await store.claim("w", 5, LEASE)
    assert [j.request["messages"][0]["content"] for j in first] in (["x-2", "x-1"], ["x-1", "x-2"])
    assert [j.request["messages"][0]["content"] for j in second] == ["x-3"]


async def test_priority_does_not_take_other_owners_turns(store: Store) -> None:
    await submit_all(store, *(new(f"a{i}", "a") for i in range(10)))
    await submit_all(store, *(new(f"b{i}", "b", priority=1000) for i in range(10)))
    order = await claim_order(store)
    first_ten = [o[0] for o in order[:10]]
    assert first_ten.count("a") >= 4 and first_ten.count("b") >= 4, order


async def test_a_released_request_keeps_its_turn(store: Store) -> None:
    await submit_all(store, *(new(f"a{i}", "a") for i in range(3)))
    (first,) = await store.claim("w", 1, LEASE)
    await submit_all(store, *(new(f"b{i}", "b") for i in range(3)))
    assert await store.release("w", [first.id]) == 1
    assert (await claim_order(store))[0] == "a0"


async def test_an_owner_that_caught_up_starts_a_new_lane_at_the_head(store: Store) -> None:
    """An owner whose requests were all claimed is not pushed back for what it had before."""
    await submit_all(store, *(new(f"b{i}", "b") for i in range(20)))
    assert len(await store.claim("w", 20, LEASE)) == 20
    await submit_all(store, *(new(f"a{i}", "a") for i in range(20)))
    await submit_all(store, new("b-again", "b"))
    assert (await claim_order(store))[:3].count("b-again") == 1


def mixed() -> list[NewRequest]:
    """Three owners' requests, interleaved, some with a priority."""
    return [
        new("b0", "b"),
        new("a-next", "a"),
        new("b1", "b", priority=2),
        new("c0", "c"),
        new("a-last", "a"),
        new("b2", "b"),
        new("c1", "c", priority=-1),
        new("c2", "c"),
    ]


@pytest.mark.parametrize("backlog", [True, False], ids=["after-a-backlog", "empty-queue"])
async def test_a_mixed_batch_takes_the_places_single_submits_take(
    store: Store, dialect: str, tmp_path: Path, backlog: bool
) -> None:
    """A batch of several owners' requests is claimed in the order the same requests
    submitted one at a time are: each takes its place in its owner's lane as it comes."""
    (tmp_path / "singles").mkdir()
    async with fresh_store(dialect, tmp_path / "singles") as singles:
        for each in (store, singles):
            if backlog:
                await submit_all(each, *(new(f"a{i}", "a") for i in range(6)))
                assert len(await each.claim("w", 2, LEASE)) == 2
        outcomes = await store.submit_many(mixed())
        assert all(not isinstance(o, Exception) and o[1] for o in outcomes)
        await submit_all(singles, *mixed())
        one_by_one = await claim_order(singles)
    in_a_batch = await claim_order(store)
    assert in_a_batch == one_by_one
    waiting = [f"a{i}" for i in range(2, 6)] if backlog else []
    waiting += [n.request["messages"][0]["content"] for n in mixed()]
    assert sorted(in_a_batch) == sorted(waiting)


@pytest.mark.parametrize("held_waits", [True, False], ids=["held-waiting", "held-running"])
async def test_replays_in_a_batch_take_no_place(
    store: Store, dialect: str, tmp_path: Path, held_waits: bool
) -> None:
    """A batch's rows whose idempotency key is held already, by the table or by an earlier
    row of the batch, are replays: they take no place in a lane, as one at a time. With the
    held request running, the queue is empty and the batch's first row is a replay."""
    batch = [
        new("a-held", "a", key="held"),
        new("b0", "b"),
        new("a-dup", "a", key="dup"),
        new("a-dup", "a", key="dup"),
        new("a1", "a"),
        new("c0", "c"),
        new("a2", "a"),
    ]
    (tmp_path / "singles").mkdir()
    async with fresh_store(dialect, tmp_path / "singles") as singles:
        for each in (store, singles):
            await each.submit(new("a-held", "a", key="held"))
            if not held_waits:
                assert len(await each.claim("w", 1, LEASE)) == 1
        outcomes = await store.submit_many(batch)
        assert [not isinstance(o, Exception) and o[1] for o in outcomes] == [
            False,
            True,
            True,
            False,
            True,
            True,
            True,
        ]
        await submit_all(singles, *batch)
        one_by_one = await claim_order(singles)
    assert await claim_order(store) == one_by_one
