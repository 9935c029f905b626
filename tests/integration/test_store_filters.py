"""Metadata and list filters, as every dialect's store keeps and applies them."""

from __future__ import annotations

import asyncio

from chatq.domain import ListFilter, NewRequest, Status
from chatq.store import Store
from tests.integration.stores import OWNER, Clock, new_request

# Keys and values a database could mistake for something else: quotes, a JSON path, a
# LIKE pattern, SQL, non-ASCII.
ODD = {
    "$.team": "a'b\"c",
    "key with spaces": "%_",
    "é☃": "'; DROP TABLE requests; --",
    "[0]": "",
    "a.b": "x" * 512,
}


def labelled(content: str, metadata: dict[str, str], model: str = "echo") -> NewRequest:
    request = new_request(content, model=model).request
    return NewRequest.create(OWNER, request, metadata=metadata)


async def ids(store: Store, narrowed: ListFilter, limit: int = 100) -> list[str]:
    page, more = await store.list_page(OWNER, limit, None, narrowed)
    assert not more
    return [s.id for s in page]


async def test_metadata_is_kept_as_given_and_returned_everywhere(store: Store) -> None:
    given = {"z": "last", "a": "first", **ODD}
    job, _ = await store.submit(labelled("m", given))
    plain, _ = await store.submit(new_request("plain"))
    assert job.metadata == given and list(job.metadata) == list(given), "order kept"
    got = await store.get(OWNER, job.id)
    assert got is not None and got.metadata == given
    page, _ = await store.list_page(OWNER, 10, None)
    assert [s.metadata for s in page] == [{}, given]
    assert plain.metadata == {}


async def test_each_filter_alone_and_together(store: Store, clock: Clock) -> None:
    made = []
    for n, (model, metadata) in enumerate(
        [
            ("echo", {"team": "a"}),
            ("other", {"team": "a", "env": "prod"}),
            ("echo", {"team": "b", "env": "prod"}),
            ("echo", {}),
        ]
    ):
        clock.advance(10)
        job, _ = await store.submit(labelled(f"r{n}", metadata, model))
        made.append(job)
    first, second, third, fourth = (j.id for j in made)
    claimed = await store.claim("w", 1, 30)
    assert [c.id for c in claimed] == [first]
    await store.cancel(OWNER, second)  # CREATED -> FAILED

    assert await ids(store, ListFilter(statuses=frozenset({Status.CREATED}))) == [fourth, third]
    assert await ids(store, ListFilter(statuses=frozenset({Status.FAILED, Status.IN_PROGRESS})))
    assert await ids(
        store, ListFilter(statuses=frozenset({Status.FAILED, Status.IN_PROGRESS}))
    ) == [second, first]
    assert await ids(store, ListFilter(statuses=frozenset(Status))) == [
        fourth,
        third,
        second,
        first,
    ]
    assert await ids(store, ListFilter(model="other")) == [second]
    assert await ids(store, ListFilter(metadata=(("team", "a"),))) == [second, first]
    assert await ids(store, ListFilter(metadata=(("env", "prod"), ("team", "a")))) == [second]
    assert await ids(store, ListFilter(metadata=(("team", "c"),))) == []
    times = [j.created_at for j in made]
    assert await ids(store, ListFilter(created_after=times[1])) == [fourth, third, second]
    assert await ids(store, ListFilter(created_before=times[1])) == [first]
    window = ListFilter(created_after=times[1], created_before=times[3])
    assert await ids(store, window) == [third, second]
    assert await ids(store, ListFilter(created_after=times[3], created_before=times[1])) == []
    together = ListFilter(
        statuses=frozenset({Status.CREATED}), model="echo", metadata=(("env", "prod"),)
    )
    assert await ids(store, together) == [third]


async def test_metadata_filters_match_odd_keys_and_values_exactly(store: Store) -> None:
    job, _ = await store.submit(labelled("odd", ODD))
    await store.submit(labelled("near", {k: v + " " for k, v in ODD.items()}))
    for pair in ODD.items():
        assert await ids(store, ListFilter(metadata=(pair,))) == [job.id], pair
    assert await ids(store, ListFilter(metadata=(("$.team", "a'b"),))) == []
    assert await ids(store, ListFilter(metadata=(("key with spaces", "x"),))) == []


async def test_filtered_pages_are_keyset_pages_of_one_owner(store: Store) -> None:
    mine = [(await store.submit(labelled(f"p{n}", {"k": "v"})))[0].id for n in range(7)]
    await asyncio.gather(
        *(
            store.submit(
                NewRequest.create("bob", {"model": "echo", "messages": []}, metadata={"k": "v"})
            )
            for _ in range(3)
        )
    )
    narrowed = ListFilter(statuses=frozenset({Status.CREATED}), metadata=(("k", "v"),))
    seen: list[str] = []
    before: int | None = None
    while True:
        page, more = await store.list_page(OWNER, 3, before, narrowed)
        seen.extend(s.id for s in page)
        if not more:
            break
        before = page[-1].seq
    assert seen == list(reversed(mine))
