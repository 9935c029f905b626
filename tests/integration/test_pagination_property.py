"""Walking the pages sees every request that existed when the walk began exactly once, and
ends, however page sizes and concurrent submissions (by this owner and others) interleave."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from chatq.api.pagination import TokenCodec
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
