"""The Store contract for cancel, delete, streamed text and watching, on every dialect (the
rest of the contract is in test_store_conformance.py)."""

from __future__ import annotations

import asyncio
import contextlib

from chatq.domain import CANCELLED, NewRequest, Status, TextPiece
from chatq.store import Store
from chatq.store.feed import Change, Watch
from tests.integration.stores import Clock, complete_one

OWNER = "alice"
LEASE = 30.0


async def submitted(store: Store, content: str = "hi") -> str:
    request = {"model": "echo", "messages": [{"role": "user", "content": content}]}
    job, _ = await store.submit(NewRequest.create(OWNER, request))
    return job.id


async def next_change(watch: Watch) -> Change:
    change = await watch.next(timeout=10)
    assert change is not None, "no change announced"
    return change


async def test_cancel_of_a_waiting_request_fails_it_at_once(store: Store, clock: Clock) -> None:
    request_id = await submitted(store)
    clock.advance(1)
    cancelled = await store.cancel(OWNER, request_id)
    assert cancelled is not None and cancelled.status is Status.FAILED
    assert cancelled.error_message == CANCELLED and cancelled.failed_at == clock.now
    assert await store.claim("w1", 10, LEASE) == [], "a cancelled request is never run"
    again = await store.cancel(OWNER, request_id)
    assert again == cancelled, "cancel is idempotent"


async def test_cancel_is_scoped_to_the_owner(store: Store) -> None:
    request_id = await submitted(store)
    assert await store.cancel("mallory", request_id) is None
    assert await store.cancel(OWNER, "missing") is None
    job = await store.get(OWNER, request_id)
    assert job is not None and job.status is Status.CREATED


async def test_cancel_of_a_running_request_is_left_to_its_worker(store: Store) -> None:
    request_id = await submitted(store)
    await store.claim("w1", 1, LEASE)
    assert await store.cancel_requested("w1") == []
    marked = await store.cancel(OWNER, request_id)
    assert marked is not None and marked.status is Status.IN_PROGRESS
    assert await store.cancel_requested("w1") == [request_id]
    assert await store.cancel_requested("w2") == []
    assert await store.fail(request_id, "w1", CANCELLED)
    assert await store.cancel_requested("w1") == []
    finished = await store.get(OWNER, request_id)
    assert finished is not None and finished.error_message == CANCELLED
    assert await store.cancel(OWNER, request_id) == finished, "a finished request is unchanged"


async def test_wait_for_cancel_wakes_on_a_cancel(store: Store) -> None:
    request_id = await submitted(store)
    await store.claim("w1", 1, LEASE)
    await store.wait_for_cancel(timeout=5)  # a listening dialect may wake once as it connects
    waiter = asyncio.create_task(store.wait_for_cancel(timeout=30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await store.cancel(OWNER, request_id)
    await asyncio.wait_for(waiter, timeout=5)


async def test_a_cancelled_request_is_never_handed_back(store: Store, clock: Clock) -> None:
    released, rescued = await submitted(store, "released"), await submitted(store, "rescued")
    await store.claim("w1", 1, LEASE)
    await store.claim("w2", 1, LEASE)
    await store.cancel(OWNER, released)
    await store.cancel(OWNER, rescued)
    assert await store.release("w1", [released]) == 1
    clock.advance(LEASE + 1)
    assert await store.rescue(max_deliveries=5) == (0, 1)
    for request_id in (released, rescued):
        job = await store.get(OWNER, request_id)
        assert job is not None and job.status is Status.FAILED, request_id
        assert job.error_message == CANCELLED
    assert await store.claim("w3", 10, LEASE) == []


async def test_delete_only_a_finished_request(store: Store) -> None:
    waiting = await submitted(store, "waiting")
    done = await submitted(store, "done")
    claimed = await store.claim("w1", 2, LEASE)
    await store.append_text("w1", [TextPiece(done, claimed[1].run, 0, "some text")])
    assert await store.delete(OWNER, waiting) is False, "unfinished: left as it is"
    assert await store.delete("mallory", done) is None
    assert await complete_one(store, done, "w1", {"x": 1})
    assert await store.delete(OWNER, done) is True
    assert await store.get(OWNER, done) is None
    assert await store.read_text(done, claimed[1].run) == "", "its text went with it"
    assert await store.delete(OWNER, done) is None, "gone"
    assert await store.get(OWNER, waiting) is not None


async def test_text_is_stored_per_run_only_while_held(store: Store) -> None:
    request_id = await submitted(store)
    (claimed,) = await store.claim("w1", 1, LEASE)
    assert claimed.run == 1
    run = claimed.run
    await store.append_text(
        "w1", [TextPiece(request_id, run, 0, "Hello"), TextPiece(request_id, run, 5, ", wor")]
    )
    await store.append_text("w1", [TextPiece(request_id, run, 5, ", wor")])  # a retried write
    await store.append_text("w2", [TextPiece(request_id, run, 10, "not w2's")])
    assert await store.read_text(request_id, run) == "Hello, wor"

    assert await store.new_run(request_id, "w2") is None, "not w2's"
    assert await store.new_run(request_id, "w1") == 2
    await store.append_text("w1", [TextPiece(request_id, run, 10, "ld")])  # an old run: dropped
    await store.append_text("w1", [TextPiece(request_id, 2, 0, "Hi")])
    assert await store.read_text(request_id, run) == "Hello, wor"
    assert await store.read_text(request_id, 2) == "Hi"
    job = await store.get(OWNER, request_id)
    assert job is not None and job.runs == 2
    assert await store.fail(request_id, "w1", CANCELLED)
    await store.append_text("w1", [TextPiece(request_id, 2, 2, " there")])
    assert await store.read_text(request_id, 2) == "Hi", "nothing after the request ended"


async def test_each_claim_starts_a_run(store: Store, clock: Clock) -> None:
    request_id = await submitted(store)
    (first,) = await store.claim("w1", 1, LEASE)
    clock.advance(LEASE + 1)
    await store.rescue(max_deliveries=5)
    (second,) = await store.claim("w2", 1, LEASE)
    assert (first.run, second.run) == (1, 2)
    assert await store.release("w2", [request_id]) == 1
    (third,) = await store.claim("w3", 1, LEASE)
    assert third.run == 3, "a hand-back does not count a delivery but does start a run"
    assert third.attempts == 2


async def seen_by_watcher(store: Store, watch: Watch) -> tuple[Status, int, str]:
    """What a watcher knows after the next change: the status, run and text it announces,
    or, for a change that says only "look again", what the store then says."""
    change = await next_change(watch)
    job = await store.get(OWNER, watch.request_id)
    assert job is not None
    if change.status is not None:
        runs = job.runs if change.runs is None else change.runs
        return change.status, runs, await store.read_text(job.id, runs)
    if change.piece is not None:
        return job.status, change.piece.run, change.piece.text
    return job.status, job.runs, await store.read_text(job.id, job.runs)


async def test_watch_announces_status_changes_and_text(store: Store) -> None:
    request_id = await submitted(store)
    with store.watch(request_id) as watch:
        (claimed,) = await store.claim("w1", 1, LEASE)
        run = claimed.run
        while (seen := await seen_by_watcher(store, watch))[0] is not Status.IN_PROGRESS:
            pass
        assert seen == (Status.IN_PROGRESS, run, "")

        await store.append_text("w1", [TextPiece(request_id, run, 0, "Hello")])
        while (seen := await seen_by_watcher(store, watch))[2] != "Hello":
            pass

        assert await complete_one(store, request_id, "w1", {"done": True})
        while (seen := await seen_by_watcher(store, watch))[0] is not Status.COMPLETED:
            pass


async def test_watch_costs_nothing_for_other_requests(store: Store) -> None:
    watched, other = await submitted(store, "watched"), await submitted(store, "other")
    with store.watch(watched) as watch:
        claimed = await store.claim("w1", 2, LEASE)
        assert [c.id for c in claimed] == [watched, other]
        await complete_one(store, other, "w1", {})
        changes = []
        while (change := await watch.next(timeout=1.5)) is not None:
            changes.append(change)
    assert changes and all(c.request_id == watched for c in changes)
    assert Status.COMPLETED not in {c.status for c in changes}


async def test_status_changes_of_a_whole_batch_reach_their_watchers(store: Store) -> None:
    """A claim of 150 requests: each watcher is told its request's new status, although
    this store listened only for work when the watching began."""
    await store.wait_for_work(0.01)
    probe = await submitted(store, "probe")
    assert len(await store.claim("w1", 1, LEASE)) == 1
    with store.watch(probe) as watch:
        # Until the store hears status changes (at once on SQLite, once its listener has
        # added the channel on PostgreSQL), changes say only "look again".
        while (await next_change(watch)).status is None:
            assert await store.new_run(probe, "w1") is not None
    ids = [await submitted(store, f"job {i}") for i in range(150)]
    with contextlib.ExitStack() as stack:
        watches = [stack.enter_context(store.watch(i)) for i in ids]
        assert len(await store.claim("w1", 150, LEASE)) == 150
        for watch in watches:
            while (change := await next_change(watch)).status is None:
                pass  # SQLite's poller may say "look again" first
            assert (change.status, change.runs) == (Status.IN_PROGRESS, 1)
