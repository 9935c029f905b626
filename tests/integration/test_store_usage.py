"""The Store contract for usage, on every dialect: each terminal transition counts its
request once, in its transaction, with the tokens and cost of its final response; a
transition whose guard matched nothing counts nothing; reading counts nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chatq.domain import JSON, ApiKey, KeyHolder, UsageRow, utc_day
from chatq.store import Store
from tests.integration.stores import OWNER, Clock, complete_one, new_request

LEASE = 30.0
# 2027-01-15 23:59:58 UTC: two seconds before a new UTC day.
BEFORE_MIDNIGHT = 1_800_057_598.0
DAY = "2027-01-15"
NEXT_DAY = "2027-01-16"


def answer(prompt: int, completion: int, cost: float | None = None) -> JSON:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cost is not None:
        usage["cost"] = {"input_tokens_cost": 0.0, "output_tokens_cost": 0.0, "total_cost": cost}
    return {"choices": [], "usage": usage}


async def running(
    store: Store, *contents: str, owner: str = OWNER, model: str = "echo"
) -> list[str]:
    """Submit requests and claim them all (by worker w1): their ids, in order."""
    ids = [(await store.submit(new_request(c, owner, model)))[0].id for c in contents]
    claimed = await store.claim("w1", len(ids), LEASE)
    assert {j.id for j in claimed} == set(ids)
    return ids


async def everything(store: Store, day: str = DAY) -> list[UsageRow]:
    return await store.usage(None, day, day)


def row(owner: str | None, day: str | None, model: str | None, *sums: float) -> UsageRow:
    requests, prompt, completion, total, cost = sums
    return UsageRow(
        owner, day, model, int(requests), int(prompt), int(completion), int(total), cost
    )


@pytest.fixture
def late_clock(clock: Clock) -> Clock:
    clock.now = BEFORE_MIDNIGHT - 100
    return clock


async def test_completions_count_their_tokens_and_cost_once(
    store: Store, late_clock: Clock
) -> None:
    a, b, c = await running(store, "a", "b", "c")
    (d,) = await running(store, "d", model="other")
    done = await store.complete_many(
        "w1",
        [(a, answer(3, 4, 0.25)), (b, answer(10, 1)), (c, answer(0, 0, 0.5)), (d, answer(1, 2))],
    )
    assert done == {a, b, c, d}
    assert await everything(store) == [
        row(OWNER, DAY, "echo", 3, 13, 5, 18, 0.75),
        row(OWNER, DAY, "other", 1, 1, 2, 3, 0.0),
    ]
    # Completing again (a late duplicate of the batch) moves nothing and counts nothing.
    assert await store.complete_many("w1", [(a, answer(100, 100, 9.0))]) == set()
    for _ in range(3):  # and reading counts nothing either
        assert (await everything(store))[0] == row(OWNER, DAY, "echo", 3, 13, 5, 18, 0.75)


async def test_every_way_to_fail_counts_a_request_with_no_tokens(
    store: Store, late_clock: Clock
) -> None:
    failed, cancelled_running, lost, lost_cancelled = await running(store, "f", "c", "l", "lc")
    assert await store.fail(failed, "w1", "upstream said no")
    await store.cancel(OWNER, cancelled_running)
    assert await store.release("w1", [cancelled_running]) == 1  # FAILED: its cancel is pending
    waiting = (await store.submit(new_request("w")))[0].id
    await store.cancel(OWNER, waiting)  # CREATED -> FAILED at once
    await store.cancel(OWNER, lost_cancelled)
    late_clock.advance(LEASE + 1)  # w1 is gone: its leases expire
    assert await store.rescue(max_deliveries=1) == (0, 2)  # both given up
    assert await everything(store) == [row(OWNER, DAY, "echo", 5, 0, 0, 0, 0.0)]
    job = await store.get(OWNER, lost)
    assert job is not None and job.failed_at is not None, "given up by the rescue: counted"


async def test_a_job_handed_back_or_requeued_is_counted_once_when_it_finishes(
    store: Store, late_clock: Clock
) -> None:
    (handed_back,) = await running(store, "h")
    assert await store.release("w1", [handed_back]) == 1
    (requeued,) = [j.id for j in await store.claim("w2", 1, LEASE)]
    late_clock.advance(LEASE + 1)
    assert await store.rescue(max_deliveries=5) == (1, 0)
    assert await everything(store) == [], "back in the queue: not finished, not counted"
    (again,) = await store.claim("w3", 1, LEASE)
    assert again.id == requeued == handed_back
    # The worker that lost its lease answers late: its guard fails, nothing is counted.
    assert not await complete_one(store, handed_back, "w2", answer(50, 50))
    assert await complete_one(store, handed_back, "w3", answer(2, 3, 0.01))
    assert await everything(store) == [row(OWNER, DAY, "echo", 1, 2, 3, 5, 0.01)]


async def test_racing_terminal_transitions_count_one(store: Store, late_clock: Clock) -> None:
    ids = await running(store, *(f"r{i}" for i in range(20)))
    # A batch completes every request while each is failed and cancelled at once: only the
    # transition that wins a request's guard counts it; the others move nothing.
    completed, outcomes, _ = await asyncio.gather(
        store.complete_many("w1", [(i, answer(1, 2)) for i in ids]),
        asyncio.gather(*(store.fail(i, "w1", "racing") for i in ids)),
        asyncio.gather(*(store.cancel(OWNER, i) for i in ids)),
    )
    failed = {i for i, ok in zip(ids, outcomes, strict=True) if ok}
    assert not completed & failed and completed | failed == set(ids)
    assert await store.complete_many("w1", [(i, answer(1, 2)) for i in ids]) == set()
    assert await everything(store) == [
        row(OWNER, DAY, "echo", 20, len(completed), 2 * len(completed), 3 * len(completed), 0.0)
    ]


async def test_the_day_is_the_utc_date_of_the_terminal_transition(
    store: Store, late_clock: Clock
) -> None:
    before, after = await running(store, "before", "after")
    late_clock.now = BEFORE_MIDNIGHT
    assert await complete_one(store, before, "w1", answer(1, 0))
    late_clock.advance(3)  # 00:00:01 the next day
    assert await complete_one(store, after, "w1", answer(0, 1))
    assert utc_day(late_clock.now) == NEXT_DAY
    assert await store.usage(OWNER, DAY, NEXT_DAY) == [
        row(None, DAY, "echo", 1, 1, 0, 1, 0.0),
        row(None, NEXT_DAY, "echo", 1, 0, 1, 1, 0.0),
    ]
    assert await store.usage(OWNER, NEXT_DAY, NEXT_DAY) == [
        row(None, NEXT_DAY, "echo", 1, 0, 1, 1, 0.0)
    ]
    assert await store.usage(OWNER, "2027-01-17", "2027-02-01") == []


async def test_reports_group_by_day_by_model_and_by_owner(store: Store, late_clock: Clock) -> None:
    alice = await running(store, "a1", "a2", model="m1")
    (alice_m2,) = await running(store, "a3", model="m2")
    (bob,) = await running(store, "b1", owner="bob", model="m1")
    await store.complete_many("w1", [(alice[0], answer(1, 1, 1.0)), (alice_m2, answer(2, 2, 2.0))])
    await store.complete_many("w1", [(bob, answer(5, 5, 5.0))])
    late_clock.advance(200)  # the next day
    await store.complete_many("w1", [(alice[1], answer(3, 3, 3.0))])
    first, last = DAY, NEXT_DAY
    assert await store.usage(OWNER, first, last, "day") == [
        row(None, DAY, None, 2, 3, 3, 6, 3.0),
        row(None, NEXT_DAY, None, 1, 3, 3, 6, 3.0),
    ]
    assert await store.usage(OWNER, first, last, "model") == [
        row(None, None, "m1", 2, 4, 4, 8, 4.0),
        row(None, None, "m2", 1, 2, 2, 4, 2.0),
    ]
    assert await store.usage("bob", first, last) == [row(None, DAY, "m1", 1, 5, 5, 10, 5.0)]
    assert await store.usage(None, first, last, "model") == [
        row(OWNER, None, "m1", 2, 4, 4, 8, 4.0),
        row(OWNER, None, "m2", 1, 2, 2, 4, 2.0),
        row("bob", None, "m1", 1, 5, 5, 10, 5.0),
    ]


async def test_usage_outlives_delete_and_purge(store: Store, late_clock: Clock) -> None:
    deleted, purged = await running(store, "d", "p")
    await store.complete_many("w1", [(deleted, answer(1, 1)), (purged, answer(2, 2))])
    assert await store.delete(OWNER, deleted)
    assert await store.purge(late_clock.now + 1) == 1
    assert await everything(store) == [row(OWNER, DAY, "echo", 2, 3, 3, 6, 0.0)]


@pytest.mark.parametrize(
    ("usage", "counted"),
    [
        ({"prompt_tokens": 2.7, "completion_tokens": -3, "total_tokens": 9}, (2, 0, 9, 0.0)),
        ({"prompt_tokens": "5", "completion_tokens": True, "total_tokens": None}, (0, 0, 0, 0.0)),
        ({"prompt_tokens": 10**30, "cost": {"total_cost": "0.5"}}, (2**31 - 1, 0, 0, 0.0)),
        ({"prompt_tokens": float("nan"), "cost": {"total_cost": 7}}, (0, 0, 0, 7.0)),
        ({"cost": [1, 2]}, (0, 0, 0, 0.0)),
        ("not an object", (0, 0, 0, 0.0)),
    ],
)
async def test_odd_usage_counts_by_one_rule_on_every_dialect(
    store: Store, late_clock: Clock, usage: object, counted: tuple[int, int, int, float]
) -> None:
    (request_id,) = await running(store, "odd")
    assert await complete_one(store, request_id, "w1", {"choices": [], "usage": usage})
    prompt, completion, total, cost = counted
    assert await everything(store) == [row(OWNER, DAY, "echo", 1, prompt, completion, total, cost)]


async def test_admin_keys(store: Store, clock: Clock) -> None:
    await store.insert_key(ApiKey("k1", "ops", "ops", clock.now, None, admin=True), "hash-1")
    await store.insert_key(ApiKey("k2", "user", "user", clock.now, None), "hash-2")
    assert await store.key_holder("hash-1") == KeyHolder("ops", None, admin=True, key_id="k1")
    assert await store.key_holder("hash-2") == KeyHolder("user", None, admin=False, key_id="k2")
    assert [(k.id, k.admin) for k in await store.list_keys()] == [("k1", True), ("k2", False)]
