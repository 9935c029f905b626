"""Gets made at once (PostgreSQL reads them together in one query) each answer for their own
owner and id: never another owner's request, None for one that is not there."""

from __future__ import annotations

import asyncio

from chatq.store import Store
from tests.integration.stores import new_request


async def test_concurrent_gets_each_see_only_their_owners_request(store: Store) -> None:
    alice, _ = await store.submit(new_request("a", owner="alice"))
    bob, _ = await store.submit(new_request("b", owner="bob"))
    asked = [
        ("alice", alice.id),
        ("bob", bob.id),
        ("bob", alice.id),  # alice's id, asked by bob
        ("alice", "no-such-request"),
        ("alice", alice.id),  # the same get twice in one batch
    ]
    found = await asyncio.gather(*(store.get(owner, i) for owner, i in asked))
    assert [None if job is None else (job.owner, job.id) for job in found] == [
        ("alice", alice.id),
        ("bob", bob.id),
        None,
        None,
        ("alice", alice.id),
    ]


async def test_a_get_sees_a_submit_made_while_other_gets_were_reading(store: Store) -> None:
    first, _ = await store.submit(new_request("first"))
    reading = [asyncio.ensure_future(store.get(first.owner, first.id)) for _ in range(20)]
    await asyncio.sleep(0)  # the gets are asked (and the first of them read) ...
    later, _ = await store.submit(new_request("later"))  # ... before this commits
    assert await store.get(later.owner, later.id) is not None
    assert all(job is not None for job in await asyncio.gather(*reading))
