"""The Store contract for webhooks, on every dialect: the outbox row is written with every
terminal transition, claims are leased and disjoint, attempts are recorded under the claim,
410s disable a URL until it is set again, secrets rotate, retention and delete take the
deliveries with their requests."""

from __future__ import annotations

import asyncio

from chatq.domain import (
    CANCELLED,
    COMPLETED_EVENT,
    FAILED_EVENT,
    ApiKey,
    Delivery,
    DeliveryResult,
    DeliveryStatus,
    KeyHolder,
    NewRequest,
    delivery_id,
)
from chatq.store import Store
from tests.integration.stores import OWNER, Clock, complete_one

LEASE = 30.0
HOOK = "https://receiver.example/hook"


async def submitted(
    store: Store, content: str = "hi", webhook: str | None = HOOK, named: bool = True
) -> str:
    request = {"model": "echo", "messages": [{"role": "user", "content": content}]}
    new = NewRequest.create(OWNER, request, webhook_url=webhook, webhook_named=named)
    job, _ = await store.submit(new)
    return job.id


async def claim_one(store: Store, worker: str = "d1") -> Delivery:
    (claimed,) = await store.claim_deliveries(worker, 10, LEASE)
    return claimed


async def test_completing_queues_a_delivery_in_the_same_transition(
    store: Store, clock: Clock
) -> None:
    hooked, plain = await submitted(store, "hooked"), await submitted(store, "plain", None)
    job = await store.get(OWNER, hooked)
    assert job is not None and job.webhook_url == HOOK
    assert await store.claim_deliveries("d1", 10, LEASE) == [], "nothing finished yet"
    await store.claim("w1", 2, LEASE)
    clock.advance(1)
    assert await store.complete_many("w1", [(hooked, {"a": 1}), (plain, {"b": 2})]) == {
        hooked,
        plain,
    }
    delivery = await claim_one(store)
    assert delivery == Delivery(
        id=delivery_id(hooked),
        request_id=hooked,
        owner=OWNER,
        url=HOOK,
        event_type=COMPLETED_EVENT,
        created_at=clock.now,
        attempts=0,
        window_start=clock.now,
    )
    assert delivery.id.startswith("msg_") and "-" not in delivery.id
    assert await store.webhook_delivery(OWNER, plain) is None, "no webhook, no delivery"


async def test_every_path_to_failed_queues_a_failed_event(store: Store, clock: Clock) -> None:
    failed, cancelled_waiting = await submitted(store, "fail"), await submitted(store, "cw")
    released, rescued, lost = (
        await submitted(store, "released"),
        await submitted(store, "rescued"),
        await submitted(store, "lost"),
    )
    cancelled = await store.cancel(OWNER, cancelled_waiting)
    assert cancelled is not None and cancelled.error_message == CANCELLED
    await store.claim("w1", 1, LEASE)  # failed
    await store.claim("w2", 1, LEASE)  # released
    await store.claim("w3", 2, LEASE)  # rescued, lost
    assert await store.fail(failed, "w1", "upstream said no")
    await store.cancel(OWNER, released)
    assert await store.release("w2", [released]) == 1
    await store.cancel(OWNER, rescued)
    clock.advance(LEASE + 1)
    assert await store.rescue(max_deliveries=1) == (0, 2)
    claimed = await store.claim_deliveries("d1", 10, LEASE)
    assert {d.request_id for d in claimed} == {failed, cancelled_waiting, released, rescued, lost}
    assert {d.event_type for d in claimed} == {FAILED_EVENT}


async def test_a_late_terminal_transition_queues_nothing_more(store: Store) -> None:
    request_id = await submitted(store)
    await store.claim("w1", 1, LEASE)
    assert await complete_one(store, request_id, "w1", {})
    first = await claim_one(store)
    assert not await store.fail(request_id, "w1", "late")
    assert await store.cancel(OWNER, request_id) is not None
    assert await store.claim_deliveries("d2", 10, LEASE) == [], "one event per request"
    record = await store.webhook_delivery(OWNER, request_id)
    assert record is not None and record.id == first.id and record.event_type == COMPLETED_EVENT


async def finished_with_delivery(store: Store, content: str = "hi") -> str:
    request_id = await submitted(store, content)
    await store.claim("w1", 1, LEASE)
    assert await complete_one(store, request_id, "w1", {"ok": True})
    return request_id


async def test_claims_are_leased_and_disjoint(store: Store, clock: Clock) -> None:
    ids = {await finished_with_delivery(store, f"r{i}") for i in range(30)}
    batches = await asyncio.gather(*(store.claim_deliveries(f"d{n}", 4, LEASE) for n in range(10)))
    claimed = [d.request_id for batch in batches for d in batch]
    assert len(claimed) == len(set(claimed)) == 30 and set(claimed) == ids
    assert await store.claim_deliveries("late", 10, LEASE) == [], "leased"
    clock.advance(LEASE + 1)
    again = await store.claim_deliveries("late", 100, LEASE)
    assert {d.request_id for d in again} == ids, "a dead worker's claims come due again"


async def test_claims_keep_to_each_owners_share(store: Store) -> None:
    mine = {await finished_with_delivery(store, f"r{i}") for i in range(5)}
    other = NewRequest.create("bob", {"model": "echo", "messages": []}, webhook_url=HOOK)
    bobs, _ = await store.submit(other)
    await store.claim("w1", 1, LEASE)
    assert await complete_one(store, bobs.id, "w1", {"ok": True})

    first = await store.claim_deliveries("d1", 10, LEASE, per_owner=3, in_flight={OWNER: 1})
    assert sorted(d.owner for d in first) == [OWNER, OWNER, "bob"], "2 more of mine, 1 of bob's"
    assert await store.claim_deliveries("d1", 10, LEASE, 3, {OWNER: 3}) == [], "mine: at share"
    rest = await store.claim_deliveries("d1", 10, LEASE, 3, {OWNER: 2, "bob": 1})
    assert len(rest) == 1 and {d.request_id for d in first + rest} < mine | {bobs.id}
    assert len(await store.claim_deliveries("d1", 10, LEASE, 3)) == 2, "the last two of mine"


def result(
    delivery: Delivery,
    at: float,
    status: DeliveryStatus,
    code: int | None,
    error: str | None = None,
    next_attempt_at: float | None = None,
    disable_url: bool = False,
) -> DeliveryResult:
    return DeliveryResult(delivery, at, status, code, error, next_attempt_at, disable_url)


async def test_attempts_are_recorded_under_the_claim(store: Store, clock: Clock) -> None:
    request_id = await finished_with_delivery(store)
    delivery = await claim_one(store, "d1")
    clock.advance(2)
    retry_at = clock.now + 5
    retry = result(
        delivery, clock.now, DeliveryStatus.PENDING, 500, error="HTTP 500", next_attempt_at=retry_at
    )
    assert not await store.record_delivery("intruder", retry), "not its claim"
    assert await store.record_delivery("d1", retry)
    assert not await store.record_delivery("d1", retry), "the claim ended with the record"
    record = await store.webhook_delivery(OWNER, request_id)
    assert record is not None and record.status is DeliveryStatus.PENDING
    assert (record.attempts, record.next_attempt_at, record.last_error) == (1, retry_at, "HTTP 500")
    assert [(a.attempt, a.at, a.status_code, a.error) for a in record.history] == [
        (1, clock.now, 500, "HTTP 500")
    ]
    assert await store.claim_deliveries("d2", 10, LEASE) == [], "not due yet"
    clock.advance(5)
    again = await claim_one(store, "d2")
    assert again.id == delivery.id and again.attempts == 1
    assert await store.record_delivery(
        "d2", result(again, clock.now, DeliveryStatus.DELIVERED, 204)
    )
    done = await store.webhook_delivery(OWNER, request_id)
    assert done is not None and done.status is DeliveryStatus.DELIVERED
    assert done.delivered_at == clock.now and done.next_attempt_at is None
    assert [a.status_code for a in done.history] == [500, 204]
    assert await store.webhook_delivery("mallory", request_id) is None, "owner-scoped"
    assert await store.claim_deliveries("d3", 10, LEASE) == []


async def test_a_410_disables_the_url_until_it_is_set_again(store: Store) -> None:
    await store.insert_key(ApiKey("k1", "bot", OWNER, 1.0, None, HOOK), "hash-1")
    assert await store.key_holder("hash-1") == KeyHolder(OWNER, HOOK, key_id="k1")
    request_id = await finished_with_delivery(store)
    delivery = await claim_one(store)
    gone = result(delivery, 5.0, DeliveryStatus.FAILED, 410, error="410 Gone", disable_url=True)
    assert await store.record_delivery("d1", gone)
    assert await store.webhook_url_disabled(OWNER, HOOK)
    assert not await store.webhook_url_disabled("bob", HOOK), "for that owner only"
    record = await store.webhook_delivery(OWNER, request_id)
    assert record is not None and record.status is DeliveryStatus.FAILED

    await submitted(store, "by the key's default", named=False)
    assert await store.webhook_url_disabled(OWNER, HOOK), "a default is not set again"
    await submitted(store, "named again")
    assert not await store.webhook_url_disabled(OWNER, HOOK)

    assert await store.record_delivery("d1", gone) is False
    await store.record_delivery("d9", gone)  # a 410 disables even after the claim was lost
    assert await store.webhook_url_disabled(OWNER, HOOK)
    assert await store.set_key_webhook("bot", HOOK) == 1
    assert not await store.webhook_url_disabled(OWNER, HOOK), "set again on the key"
    assert await store.set_key_webhook("k1", None) == 1
    assert await store.key_holder("hash-1") == KeyHolder(OWNER, None, key_id="k1")
    assert await store.set_key_webhook("nobody", HOOK) == 0


async def test_replay_makes_a_delivery_due_again_with_the_same_id(
    store: Store, clock: Clock
) -> None:
    request_id = await finished_with_delivery(store)
    delivery = await claim_one(store)
    failed = result(delivery, clock.now, DeliveryStatus.FAILED, 410, error="gone", disable_url=True)
    assert await store.record_delivery("d1", failed)
    (listed,) = await store.list_deliveries(failed_only=True, limit=10)
    assert listed.id == delivery.id and listed.status is DeliveryStatus.FAILED
    clock.advance(100)
    assert await store.replay_delivery(delivery.id)
    assert not await store.webhook_url_disabled(OWNER, HOOK), "replay sets the URL again"
    again = await claim_one(store, "d2")
    assert again.id == delivery.id and again.window_start == clock.now
    assert await store.list_deliveries(failed_only=True, limit=10) == []
    assert await store.replay_delivery(request_id), "by request id too"
    assert not await store.replay_delivery("msg_nothing")


async def test_a_delivery_context_is_its_request_secrets_and_url_state(store: Store) -> None:
    request_id = await finished_with_delivery(store)
    delivery = await claim_one(store)
    context = await store.delivery_context(delivery)
    assert context is not None and context.job == await store.get(OWNER, request_id)
    assert context.secrets == await store.webhook_secrets(OWNER), "made on first use, kept"
    assert not context.url_disabled
    gone = result(delivery, 5.0, DeliveryStatus.FAILED, 410, error="410 Gone", disable_url=True)
    assert await store.record_delivery("d1", gone)
    again = await store.delivery_context(delivery)
    assert again is not None and again.url_disabled and again.secrets == context.secrets
    assert await store.delete(OWNER, request_id)
    assert await store.delivery_context(delivery) is None, "its request is gone"


async def test_release_hands_back_unmade_deliveries(store: Store, clock: Clock) -> None:
    a, b = await finished_with_delivery(store, "a"), await finished_with_delivery(store, "b")
    assert len(await store.claim_deliveries("d1", 10, LEASE)) == 2
    assert await store.release_deliveries("d2") == 0, "not d2's"
    assert await store.claim_deliveries("d2", 10, LEASE) == [], "still d1's"
    assert await store.release_deliveries("d1") == 2
    again = await store.claim_deliveries("d3", 10, LEASE)
    assert {d.request_id for d in again} == {a, b} and {d.attempts for d in again} == {0}


async def test_secrets_are_made_once_and_rotate(store: Store, clock: Clock) -> None:
    first = await store.webhook_secrets(OWNER)
    assert first.current.startswith("whsec_") and first.previous is None
    assert await store.webhook_secrets(OWNER) == first
    assert (await store.webhook_secrets("bob")).current != first.current
    assert first.signing(clock.now, 60) == [first.current]
    rotated = await store.rotate_webhook_secret(OWNER)
    assert rotated.previous == first.current and rotated.current != first.current
    assert rotated.rotated_at == clock.now
    assert rotated.signing(clock.now + 59, 60) == [rotated.current, first.current]
    assert rotated.signing(clock.now + 60, 60) == [rotated.current]
    assert await store.webhook_secrets(OWNER) == rotated


async def test_purge_and_delete_take_deliveries_with_their_requests(
    store: Store, clock: Clock
) -> None:
    purged, deleted, delivered = (
        await finished_with_delivery(store, "purged"),
        await finished_with_delivery(store, "deleted"),
        await finished_with_delivery(store, "delivered"),
    )
    for delivery in await store.claim_deliveries("d1", 10, LEASE):
        await store.record_delivery(
            "d1", result(delivery, clock.now, DeliveryStatus.DELIVERED, 200)
        )
    assert await store.delete(OWNER, deleted) is True
    assert await store.webhook_delivery(OWNER, deleted) is None
    clock.advance(10)
    await finished_with_delivery(store, "later")
    assert await store.purge(finished_before=clock.now - 1) == 2
    assert await store.webhook_delivery(OWNER, purged) is None
    assert await store.webhook_delivery(OWNER, delivered) is None
    remaining = await store.list_deliveries(failed_only=False, limit=10)
    assert [d.status for d in remaining] == [DeliveryStatus.PENDING]


async def test_wait_for_deliveries_wakes_on_a_terminal_transition(store: Store) -> None:
    request_id = await submitted(store)
    await store.claim("w1", 1, LEASE)
    await store.wait_for_deliveries(timeout=5)  # a listening dialect may wake as it connects
    waiter = asyncio.create_task(store.wait_for_deliveries(timeout=30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    assert await complete_one(store, request_id, "w1", {})
    await asyncio.wait_for(waiter, timeout=5)
