"""The store's submit_many, on every dialect: a client's batch stored in one transaction, an
outcome per request in order, each request failing alone, limits counting every request."""

from __future__ import annotations

import asyncio

import asyncpg

from chatq.domain import Limits, NewRequest
from chatq.store import IdempotencyConflict, LimitExceeded, Store
from chatq.store.postgres.store import PostgresStore
from tests.integration.stores import OWNER, new_request
from tests.integration.test_store_limits import limited, stored
from tests.pg import temporary_database


async def test_a_batch_is_stored_in_order_with_an_outcome_each(store: Store) -> None:
    """New requests, a replay of an earlier key, a conflict with it, and two requests with
    the same fresh key in the batch itself (the second replays the first)."""
    held, _ = await store.submit(new_request("held", key="held"))
    plain = [new_request(f"p{i}") for i in range(5)]
    keyed = [
        new_request("held", key="held"),
        new_request("other", key="held"),
        new_request("f", key="f"),
        new_request("f", key="f"),
    ]
    outcomes = await store.submit_many(plain + keyed)
    assert len(outcomes) == 9
    for submitted, outcome in zip(plain, outcomes, strict=False):
        assert not isinstance(outcome, Exception)
        job, created = outcome
        assert created and job.id == submitted.id
    replay, conflict, fresh, fresh_again = outcomes[5:]
    assert replay == (held, False)
    assert isinstance(conflict, IdempotencyConflict) and conflict.existing_id == held.id
    assert not isinstance(fresh, Exception) and not isinstance(fresh_again, Exception)
    assert fresh[0].id == fresh_again[0].id == keyed[2].id
    assert (fresh[1], fresh_again[1]) == (True, False)
    page, more = await store.list_page(OWNER, 100, None)
    assert [s.id for s in page] == [keyed[2].id, *(n.id for n in reversed(plain)), held.id]
    assert not more
    assert await store.submit_many([]) == []


async def test_the_same_batch_again_stores_nothing_new(store: Store) -> None:
    batch = [new_request(f"k{i}", key=f"k{i}") for i in range(20)]
    first = await store.submit_many(batch)
    again = await store.submit_many([new_request(f"k{i}", key=f"k{i}") for i in range(20)])
    jobs = [o[0] for o in first if not isinstance(o, Exception)]
    assert [job.id for job in jobs] == [n.id for n in batch]
    assert again == [(job, False) for job in jobs]
    assert await stored(store) == 20


async def test_a_batch_carries_each_requests_webhook_metadata_and_priority(store: Store) -> None:
    news = [
        NewRequest.create(
            OWNER,
            new_request(f"m{i}").request,
            webhook_url=f"https://hooks.example/{i}",
            webhook_named=True,
            metadata={"n": str(i)},
            priority=10 * i,
        )
        for i in range(3)
    ]
    for new, outcome in zip(news, await store.submit_many(news), strict=True):
        assert not isinstance(outcome, Exception)
        job = await store.get(OWNER, outcome[0].id)
        assert job is not None
        assert (job.metadata, job.webhook_url) == (new.metadata, new.webhook_url)
    claimed = [(await store.claim("w", 1, 30.0))[0].id for _ in news]
    assert claimed == [n.id for n in reversed(news)], "highest priority first"


async def test_a_created_request_is_answered_as_it_is_stored(store: Store) -> None:
    """What a submit answers for a request it created is what GET then reads, field for
    field (SQLite builds it from what it inserted instead of reading the row back)."""
    news = [
        new_request("plain"),
        new_request("keyed", key="kept", stream=True),
        NewRequest.create(
            "bob",
            new_request("labelled").request,
            "labelled",
            webhook_url="https://hooks.example/x",
            webhook_named=True,
            metadata={"team": "search", "run": "7"},
            priority=-3,
        ),
    ]
    outcomes = await store.submit_many(news)
    single, _ = await store.submit(new_request("single", owner="bob"))
    answered = [o[0] for o in outcomes if not isinstance(o, Exception)] + [single]
    assert len(answered) == 4
    for job in answered:
        assert job == await store.get(job.owner, job.id)
    assert answered[1].stream and answered[1].request_hash
    assert answered[2].metadata == {"team": "search", "run": "7"}


async def test_limits_count_every_request_of_a_batch(store: Store) -> None:
    """Over the cap, the requests past it fail alone; a replay of a stored key is not
    counted."""
    cap = Limits("k1", max_unfinished=3)
    first = await store.submit_many([limited(f"c{i}", cap, key=f"c{i}") for i in range(5)])
    assert [isinstance(o, LimitExceeded) for o in first] == [False] * 3 + [True] * 2
    assert all(o.kind == "unfinished" for o in first if isinstance(o, LimitExceeded))
    again = await store.submit_many([limited(f"c{i}", cap, key=f"c{i}") for i in range(4)])
    assert [isinstance(o, LimitExceeded) for o in again] == [False] * 3 + [True]
    assert await stored(store) == 3

    rate = Limits("k2", rpm=4)
    outcomes = await store.submit_many(
        [NewRequest.create("bob", new_request(f"r{i}").request, limits=rate) for i in range(6)]
    )
    refused = [o for o in outcomes if isinstance(o, LimitExceeded)]
    assert len(refused) == 2 and all(o.kind == "rate" for o in refused)
    assert isinstance(outcomes[4], LimitExceeded) and isinstance(outcomes[5], LimitExceeded)
    assert await stored(store, "bob") == 4


async def test_a_batch_is_one_transaction_and_wakes_workers_once() -> None:
    """PostgreSQL folds the work notifications of one transaction into one: a listener hears
    exactly one for a batch of 50 (and 50 for 50 single submits in a row)."""
    async with temporary_database() as url:
        store = await PostgresStore.open(url)
        listener = await asyncpg.connect(url)
        heard: asyncio.Queue[str] = asyncio.Queue()
        try:
            await store.migrate()
            await listener.add_listener("chatq_work", lambda *args: heard.put_nowait(args[2]))
            outcomes = await store.submit_many([new_request(f"n{i}") for i in range(50)])
            assert all(not isinstance(o, Exception) and o[1] for o in outcomes)
            await listener.execute("SELECT 1")  # notifications arrive before this answer
            assert heard.qsize() == 1
            for i in range(3):
                await store.submit(new_request(f"single {i}"))
            await listener.execute("SELECT 1")
            assert heard.qsize() == 4
        finally:
            await listener.close()
            await store.close()


async def test_a_batch_larger_than_a_group_commit_is_stored_whole(store: Store) -> None:
    outcomes = await store.submit_many([new_request(f"b{i}") for i in range(1000)])
    assert sum(1 for o in outcomes if not isinstance(o, Exception) and o[1]) == 1000
    assert await stored(store) == 1000


async def test_a_deleted_requests_seq_is_never_given_again(store: Store) -> None:
    """seq is the list's cursor: a request deleted from the end of the table leaves its seq
    behind it (SQLite places a batch's seqs itself, as AUTOINCREMENT would)."""
    outcomes = await store.submit_many([new_request(f"s{i}") for i in range(3)])
    newest = [o[0] for o in outcomes if not isinstance(o, Exception)][-1]
    while claimed := await store.claim("w", 10, 30.0):
        assert await store.complete_many("w", [(j.id, {"ok": True}) for j in claimed])
    assert await store.delete(OWNER, newest.id) is True
    (batched,) = await store.submit_many([new_request("after")])
    single, _ = await store.submit(new_request("single"))
    assert not isinstance(batched, Exception)
    assert newest.seq < batched[0].seq < single.seq
