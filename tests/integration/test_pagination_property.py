"""Walking the pages sees every request that existed when the walk began exactly once, and
ends, however page sizes and concurrent submissions (by this owner and others) interleave;
a filtered walk likewise sees exactly the requests that matched its filters when it began,
once each, while requests (matching or not) are submitted and another owner's change."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hypothesis import event, given, settings, target
from hypothesis import strategies as st

from chatq.api.pagination import TokenCodec
from chatq.domain import ListFilter, NewRequest, Status
from chatq.store import Store
from tests.integration.stores import DIALECTS, Clock, fresh_store, new_request

Step = tuple[int, int, str]  # page size, submissions made after reading the page, by whom


async def submit(store: Store, owner: str) -> str:
    job, _ = await store.submit(new_request(owner, owner))
    return job.id


async def walk(dialect: str, initial: list[str], steps: list[Step]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with fresh_store(dialect, Path(tmp), Clock()) as store:
            codec = TokenCodec(await store.secret("next_token"))
            existing = [await submit(store, owner) for owner in initial]
            alice_existing = [i for i, o in zip(existing, initial, strict=True) if o == "alice"]
            seen: list[str] = []
            token: str | None = None
            for page_number in range(len(alice_existing) + 2):
                size, newcomers, by = steps[page_number % len(steps)]
                before = codec.decode("alice", token) if token is not None else None
                page, more = await store.list_page("alice", size, before)
                seen.extend(s.id for s in page)
                for _ in range(newcomers):
                    await submit(store, by)
                token = codec.encode("alice", page[-1].seq) if more else None
                if token is None:
                    break
            assert token is None, "the walk ended"
            assert seen == list(reversed(alice_existing)), "each existing once, newest first"


@settings(max_examples=60, deadline=None)
@given(
    initial=st.lists(st.sampled_from(["alice", "bob"]), max_size=40),
    steps=st.lists(
        st.tuples(st.integers(1, 12), st.integers(0, 4), st.sampled_from(["alice", "bob"])),
        min_size=1,
        max_size=12,
    ),
    dialect=st.sampled_from(DIALECTS),
)
def test_walk_sees_each_existing_request_exactly_once(
    initial: list[str], steps: list[Step], dialect: str
) -> None:
    asyncio.run(walk(dialect, initial, steps))


# ---- filtered walks

MODELS = ["echo", "other"]
LABELS = [("team", "a"), ("team", "b"), ("env", "prod")]
START = 1_800_000_000.0  # the clock's time before the first submit; each submit is 1 s later
Spec = tuple[str, str, tuple[tuple[str, str], ...], Status]  # owner, model, metadata, status
labels = st.lists(st.sampled_from(LABELS), max_size=2, unique_by=lambda pair: pair[0])
newcomer = st.tuples(st.sampled_from(["alice", "bob"]), st.sampled_from(MODELS), labels)
FilteredStep = tuple[int, list[tuple[str, str, list[tuple[str, str]]]], int]


async def submit_labelled(
    store: Store, clock: Clock, owner: str, model: str, metadata: Sequence[tuple[str, str]]
) -> str:
    clock.advance(1)
    request = {"model": model, "messages": [{"role": "user", "content": owner}]}
    job, _ = await store.submit(NewRequest.create(owner, request, metadata=dict(metadata)))
    return job.id


async def settle(store: Store, ids: list[str], statuses: list[Status]) -> None:
    """Move each request to its status (all are CREATED, and nothing else is stored)."""
    claimed = {c.id for c in await store.claim("w", len(ids), 60)}
    assert claimed == set(ids)
    by_status = {s: [i for i, t in zip(ids, statuses, strict=True) if t is s] for s in Status}
    await store.release("w", by_status[Status.CREATED])
    await store.complete_many("w", [(i, {"id": i}) for i in by_status[Status.COMPLETED]])
    for i in by_status[Status.FAILED]:
        assert await store.fail(i, "w", "no")


def matches(narrowed: ListFilter, spec: Spec, created_at: float) -> bool:
    _, model, metadata, status = spec
    return (
        (not narrowed.statuses or status in narrowed.statuses)
        and narrowed.model in (None, model)
        and (narrowed.created_after is None or created_at >= narrowed.created_after)
        and (narrowed.created_before is None or created_at < narrowed.created_before)
        and set(narrowed.metadata) <= set(dict(metadata).items())
    )


async def filtered_walk(
    dialect: str, specs: list[Spec], narrowed: ListFilter, steps: list[FilteredStep]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clock = Clock(START)
        async with fresh_store(dialect, Path(tmp), clock) as store:
            codec = TokenCodec(await store.secret("next_token"))
            ids = [await submit_labelled(store, clock, o, m, md) for o, m, md, _ in specs]
            if ids:
                await settle(store, ids, [spec[3] for spec in specs])
            expected = [
                request_id
                for n, (request_id, spec) in enumerate(zip(ids, specs, strict=True))
                if spec[0] == "alice" and matches(narrowed, spec, START + n + 1)
            ]
            target(len(expected))  # steer towards walks of many pages
            event(f"matching: {min(len(expected), 9)}")
            bobs = [i for i, spec in zip(ids, specs, strict=True) if spec[0] == "bob"]
            scope = narrowed.scope()
            seen: list[str] = []
            token: str | None = None
            for page_number in range(len(expected) + 2):
                size, newcomers, cancels = steps[page_number % len(steps)]
                before = codec.decode("alice", token, scope) if token is not None else None
                page, more = await store.list_page("alice", size, before, narrowed)
                seen.extend(s.id for s in page)
                # Meanwhile: new requests of both owners, some of them matching; bob's change.
                for owner, model, metadata in newcomers:
                    await submit_labelled(store, clock, owner, model, metadata)
                for request_id in bobs[:cancels]:
                    await store.cancel("bob", request_id)
                token = codec.encode("alice", page[-1].seq, scope) if more else None
                if token is None:
                    break
            assert token is None, "the walk ended"
            assert seen == list(reversed(expected)), "each matching one once, newest first"


@settings(max_examples=60, deadline=None)
@given(
    specs=st.lists(
        st.tuples(
            st.sampled_from(["alice", "alice", "bob"]),
            st.sampled_from(MODELS),
            labels.map(tuple),
            st.sampled_from(list(Status)),
        ),
        min_size=12,
        max_size=40,
    ),
    # Each part often absent, so that many walks match many requests.
    narrowed=st.builds(
        ListFilter,
        statuses=st.just(frozenset()) | st.frozensets(st.sampled_from(list(Status)), min_size=1),
        model=st.none() | st.sampled_from(MODELS),
        created_after=st.none() | st.integers(0, 20).map(lambda n: START + n),
        created_before=st.none() | st.integers(10, 45).map(lambda n: START + n),
        metadata=st.just(()) | labels.map(lambda pairs: tuple(sorted(pairs))),
    ),
    steps=st.lists(
        st.tuples(st.integers(1, 12), st.lists(newcomer, max_size=3), st.integers(0, 2)),
        min_size=1,
        max_size=12,
    ),
    dialect=st.sampled_from(DIALECTS),
)
def test_a_filtered_walk_sees_each_matching_request_exactly_once(
    specs: list[Spec], narrowed: ListFilter, steps: list[FilteredStep], dialect: str
) -> None:
    asyncio.run(filtered_walk(dialect, specs, narrowed, steps))
