"""The Store contract, verb by verb; every dialect must pass all of it."""

from __future__ import annotations

import asyncio

import pytest

from chatq.domain import (
    JSON,
    ApiKey,
    KeyHolder,
    ModelDepth,
    NewRequest,
    QueueDepth,
    Status,
    Submitted,
)
from chatq.store import IdempotencyConflict, Store
from tests.integration.stores import OWNER, Clock, complete_one, new_request

LEASE = 30.0


def new(content: str = "hi", owner: str = OWNER, key: str | None = None) -> NewRequest:
    """With a field the store must keep verbatim, as it keeps every field."""
    return new_request(content, owner, key=key, x=[1, 2.5])


async def test_submit_then_get(store: Store, clock: Clock) -> None:
    submitted = new("hello")
    job, created = await store.submit(submitted)
    assert created
    assert job.id == submitted.id and job.owner == OWNER and job.model == "echo"
    assert job.status is Status.CREATED
    assert job.created_at == clock.now
    assert job.started_at is job.completed_at is job.failed_at is None
    assert await store.get(OWNER, submitted.id) == job


async def test_submitted_is_the_request_as_sent_with_its_attempts(store: Store) -> None:
    sent = new("hello")
    await store.submit(sent)
    assert await store.submitted(OWNER, sent.id) == Submitted(sent.request, 0)
    (claimed,) = await store.claim("w1", 1, LEASE)
    assert await store.submitted(OWNER, sent.id) == Submitted(sent.request, claimed.attempts)
    assert claimed.attempts == 1
    assert await store.submitted("mallory", sent.id) is None, "scoped to the owner"
    assert await store.submitted(OWNER, "missing") is None


async def test_get_is_scoped_to_the_owner(store: Store) -> None:
    job, _ = await store.submit(new())
    assert await store.get("mallory", job.id) is None
    assert await store.get(OWNER, "missing") is None


async def test_idempotent_replay_returns_the_existing_job(store: Store) -> None:
    first, created = await store.submit(new("same", key="k"))
    again, created_again = await store.submit(new("same", key="k"))
    assert created and not created_again
    assert again == first


async def test_idempotency_key_bound_to_another_request_conflicts(store: Store) -> None:
    first, _ = await store.submit(new("one", key="k"))
    with pytest.raises(IdempotencyConflict) as caught:
        await store.submit(new("two", key="k"))
    assert caught.value.existing_id == first.id


async def test_idempotency_is_per_owner(store: Store) -> None:
    a, _ = await store.submit(new("same", key="k"))
    b, created = await store.submit(new("same", owner="bob", key="k"))
    assert created and a.id != b.id


async def test_concurrent_duplicates_make_one_job(store: Store) -> None:
    results = await asyncio.gather(*(store.submit(new("race", key="r")) for _ in range(25)))
    assert len({job.id for job, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    page, more = await store.list_page(OWNER, 100, None)
    assert len(page) == 1 and not more


async def test_a_burst_of_submits_gets_each_its_own_outcome(store: Store) -> None:
    """Submits that share a group-committed batch: new ones, a replay, a conflict, and two
    with the same fresh key in the same batch."""
    held, _ = await store.submit(new("held", key="held"))
    plain = [new(f"b{i}") for i in range(40)]
    keyed = [
        new("held", key="held"),
        new("other", key="held"),
        new("f", key="f"),
        new("f", key="f"),
    ]
    outcomes = await asyncio.gather(
        *(store.submit(n) for n in plain + keyed), return_exceptions=True
    )
    for submitted, outcome in zip(plain, outcomes, strict=False):
        assert not isinstance(outcome, BaseException)
        assert outcome[0].id == submitted.id and outcome[1]
    replay, conflict, fresh_a, fresh_b = outcomes[40:]
    assert not isinstance(replay, BaseException) and replay == (held, False)
    assert isinstance(conflict, IdempotencyConflict) and conflict.existing_id == held.id
    assert not isinstance(fresh_a, BaseException) and not isinstance(fresh_b, BaseException)
    assert fresh_a[0].id == fresh_b[0].id == keyed[2].id
    assert (fresh_a[1], fresh_b[1]) == (True, False)
    page, more = await store.list_page(OWNER, 100, None)
    assert [s.id for s in page] == [keyed[2].id, *(n.id for n in reversed(plain)), held.id]
    assert not more


async def test_list_page_is_newest_first_keyset(store: Store) -> None:
    ids = [(await store.submit(new(f"m{i}")))[0].id for i in range(5)]
    await store.submit(new("not mine", owner="bob"))
    page, more = await store.list_page(OWNER, 2, None)
    assert [s.id for s in page] == ids[:2:-1][:2] == [ids[4], ids[3]]
    assert more
    page2, more2 = await store.list_page(OWNER, 2, page[-1].seq)
    assert [s.id for s in page2] == [ids[2], ids[1]]
    assert more2
    page3, more3 = await store.list_page(OWNER, 2, page2[-1].seq)
    assert [s.id for s in page3] == [ids[0]]
    assert not more3
    exact, more_exact = await store.list_page(OWNER, 5, None)
    assert len(exact) == 5 and not more_exact, "no further page exactly at the end"


async def test_claim_oldest_first_with_a_lease(store: Store, clock: Clock) -> None:
    submitted_at = clock.now
    ids = [(await store.submit(new(f"c{i}")))[0].id for i in range(3)]
    clock.advance(5)
    claimed = await store.claim("w1", 2, LEASE)
    assert [c.id for c in claimed] == ids[:2]
    assert [c.created_at for c in claimed] == [submitted_at] * 2
    assert claimed[0].request["messages"][0]["content"] == "c0"
    assert claimed[0].request["x"] == [1, 2.5]
    assert all(c.attempts == 1 for c in claimed)
    job = await store.get(OWNER, ids[0])
    assert job is not None and job.status is Status.IN_PROGRESS and job.started_at == clock.now
    rest = await store.claim("w2", 10, LEASE)
    assert [c.id for c in rest] == [ids[2]]
    assert await store.claim("w3", 10, LEASE) == []
    assert await store.claim("w3", 0, LEASE) == []


async def test_concurrent_claims_are_disjoint(store: Store) -> None:
    ids = {(await store.submit(new(f"d{i}")))[0].id for i in range(60)}
    batches = await asyncio.gather(*(store.claim(f"w{n}", 7, LEASE) for n in range(12)))
    claimed = [c.id for batch in batches for c in batch]
    assert len(claimed) == len(set(claimed)), "no job claimed twice"
    assert set(claimed) == ids


async def test_complete_is_guarded(store: Store, clock: Clock) -> None:
    job, _ = await store.submit(new())
    assert not await complete_one(store, job.id, "w1", {"x": 1}), "not claimed yet"
    await store.claim("w1", 1, LEASE)
    assert not await complete_one(store, job.id, "intruder", {"x": 1}), "someone else's lease"
    clock.advance(1)
    assert await complete_one(store, job.id, "w1", {"answer": 42})
    done = await store.get(OWNER, job.id)
    assert done is not None and done.status is Status.COMPLETED
    assert done.response == {"answer": 42} and done.completed_at == clock.now
    assert not await complete_one(store, job.id, "w1", {"answer": 0}), "already finished"
    assert not await store.fail(job.id, "w1", "late failure")
    final = await store.get(OWNER, job.id)
    assert final == done


async def test_complete_many_records_only_our_jobs(store: Store, clock: Clock) -> None:
    a, b, c, d, e = [(await store.submit(new(f"m{i}")))[0] for i in range(5)]
    await store.claim("w1", 3, LEASE)  # a, b, c
    await store.claim("w2", 1, LEASE)  # d; e stays CREATED
    assert await complete_one(store, c.id, "w1", {"early": True})
    clock.advance(1)
    results: list[tuple[str, JSON]] = [
        (a.id, {"n": 1}),
        (b.id, {"n": 2, "text": "é"}),
        (c.id, {"late": True}),  # already finished
        (d.id, {"n": 4}),  # someone else's lease
        (e.id, {"n": 5}),  # not claimed
        ("missing", {}),
    ]
    assert await store.complete_many("w1", results) == {a.id, b.id}
    for job_id, response in results[:2]:
        done = await store.get(OWNER, job_id)
        assert done is not None and done.status is Status.COMPLETED
        assert done.response == response and done.completed_at == clock.now
    early = await store.get(OWNER, c.id)
    assert early is not None and early.response == {"early": True}
    for job_id, status in ((d.id, Status.IN_PROGRESS), (e.id, Status.CREATED)):
        untouched = await store.get(OWNER, job_id)
        assert untouched is not None and untouched.status is status
        assert untouched.response is None and untouched.completed_at is None
    assert await store.complete_many("w1", []) == set()
    assert await store.complete_many("w1", [(a.id, {"again": 1})]) == set(), "finished"
    assert await store.complete_many("w2", [(d.id, {"n": 4})]) == {d.id}


async def test_fail_is_guarded(store: Store, clock: Clock) -> None:
    job, _ = await store.submit(new())
    await store.claim("w1", 1, LEASE)
    assert not await store.fail(job.id, "w2", "nope")
    assert await store.fail(job.id, "w1", "upstream said no")
    failed = await store.get(OWNER, job.id)
    assert failed is not None and failed.status is Status.FAILED
    assert failed.error_message == "upstream said no" and failed.failed_at == clock.now
    assert not await complete_one(store, job.id, "w1", {})


async def test_renew_extends_only_our_leases(store: Store, clock: Clock) -> None:
    a, _ = await store.submit(new("a"))
    b, _ = await store.submit(new("b"))
    await store.claim("w1", 1, LEASE)
    await store.claim("w2", 1, LEASE)
    clock.advance(LEASE - 1)
    assert await store.renew("w1", LEASE) == 1
    clock.advance(2)  # w2's lease has now expired, w1's has not
    assert await store.rescue(max_deliveries=5) == (1, 0)
    job_a = await store.get(OWNER, a.id)
    job_b = await store.get(OWNER, b.id)
    assert job_a is not None and job_a.status is Status.IN_PROGRESS
    assert job_b is not None and job_b.status is Status.CREATED and job_b.started_at is None
    assert not await complete_one(store, b.id, "w2", {}), "a rescued job is no longer w2's"
    again = await store.claim("w3", 5, LEASE)
    assert [c.id for c in again] == [b.id] and again[0].attempts == 2


async def test_rescue_gives_up_after_max_deliveries(store: Store, clock: Clock) -> None:
    job, _ = await store.submit(new())
    for delivery in range(1, 4):
        claimed = await store.claim(f"w{delivery}", 1, LEASE)
        assert [c.attempts for c in claimed] == [delivery]
        clock.advance(LEASE + 1)
        requeued, failed = await store.rescue(max_deliveries=3)
        assert (requeued, failed) == ((1, 0) if delivery < 3 else (0, 1))
    final = await store.get(OWNER, job.id)
    assert final is not None and final.status is Status.FAILED
    assert final.error_message is not None and "lost 3 times" in final.error_message


async def test_release_hands_jobs_back_without_counting_a_delivery(store: Store) -> None:
    a, _ = await store.submit(new("a"))
    b, _ = await store.submit(new("b"))
    await store.claim("w1", 2, LEASE)
    assert await store.release("w2", [a.id]) == 0, "not w2's to release"
    assert await store.release("w1", [a.id, b.id]) == 2
    assert await store.release("w1", []) == 0
    for job_id in (a.id, b.id):
        job = await store.get(OWNER, job_id)
        assert job is not None and job.status is Status.CREATED and job.started_at is None
    again = await store.claim("w3", 5, LEASE)
    assert [c.attempts for c in again] == [1, 1]


async def test_purge_deletes_only_old_finished_jobs(store: Store, clock: Clock) -> None:
    done, _ = await store.submit(new("done"))
    failed, _ = await store.submit(new("failed"))
    running, _ = await store.submit(new("running"))
    waiting, _ = await store.submit(new("waiting"))
    await store.claim("w", 3, LEASE)
    await complete_one(store, done.id, "w", {})
    await store.fail(failed.id, "w", "x")
    finished_at = clock.now
    clock.advance(100)
    assert await store.purge(finished_before=finished_at) == 0
    assert await store.purge(finished_before=finished_at + 1) == 2
    assert await store.get(OWNER, done.id) is None
    assert await store.get(OWNER, failed.id) is None
    assert await store.get(OWNER, running.id) is not None
    assert await store.get(OWNER, waiting.id) is not None


async def test_keys(store: Store, clock: Clock) -> None:
    assert await store.count_keys() == 0
    key = ApiKey(id="k1", name="laptop", owner="alice", created_at=clock.now, revoked_at=None)
    await store.insert_key(key, "hash-1")
    assert await store.key_holder("hash-1") == KeyHolder("alice", None, key_id="k1")
    assert await store.key_holder("hash-2") is None
    assert await store.list_keys() == [key]
    assert await store.count_keys() == 1
    assert await store.revoke_key("k1")
    assert not await store.revoke_key("k1"), "already revoked"
    assert await store.key_holder("hash-1") is None
    (listed,) = await store.list_keys()
    assert listed.revoked_at == clock.now


async def test_secret_is_created_once(store: Store) -> None:
    first = await store.secret("next_token")
    assert len(first) == 32
    assert await store.secret("next_token") == first
    assert await store.secret("other") != first


async def test_wait_for_work_wakes_on_submit(store: Store) -> None:
    # The first wait may return at once: a dialect that listens wakes its waiters when it
    # (re)connects, as anything that arrived while nobody listened would be missed.
    await store.wait_for_work(timeout=5)
    waiter = asyncio.create_task(store.wait_for_work(timeout=30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await store.submit(new())
    await asyncio.wait_for(waiter, timeout=5)


async def test_queue_depth_counts_unfinished_requests_and_pending_deliveries(
    store: Store,
) -> None:
    assert await store.queue_depth() == QueueDepth(0, 0, 0)
    hooked = [
        NewRequest.create(OWNER, {"model": "echo", "messages": []}, webhook_url="https://h.example")
        for _ in range(2)
    ]
    for submitted in [*hooked, *(new(f"d{i}", owner=f"o{i % 2}") for i in range(4))]:
        await store.submit(submitted)
    assert await store.queue_depth() == QueueDepth(6, 0, 0), "every owner's"
    claimed = await store.claim("w1", 3, LEASE)  # oldest first: both hooked, one plain
    assert await store.queue_depth() == QueueDepth(3, 3, 0)
    assert await complete_one(store, claimed[0].id, "w1", {"ok": True})
    assert await store.fail(claimed[1].id, "w1", "boom")
    assert await store.fail(claimed[2].id, "w1", "boom")
    assert await store.queue_depth() == QueueDepth(3, 0, 2), "hooked: each queued a delivery"


async def test_queue_by_model_counts_every_owners_unfinished_requests(store: Store) -> None:
    assert await store.queue_by_model() == []
    for i, model in enumerate(["echo", "b-model", "echo", "b-model", "echo"]):
        await store.submit(new_request(f"q{i}", owner=f"o{i % 2}", model=model))
    claimed = await store.claim("w1", 2, LEASE)  # oldest first: one echo, one b-model
    assert await complete_one(store, claimed[0].id, "w1", {"ok": True})
    assert await store.queue_by_model() == [
        ModelDepth(Status.CREATED, "b-model", 1),
        ModelDepth(Status.CREATED, "echo", 2),
        ModelDepth(Status.IN_PROGRESS, claimed[1].model, 1),
    ], "a finished request is not counted"


async def test_ping(store: Store) -> None:
    await store.ping()
