"""Owner isolation as a property: whatever several keys do, none sees another's request.

Hypothesis drives random interleavings of submits (with idempotency keys shared across
owners), gets of every known id, full list walks and replays of every next_token seen so
far, by every key, against the real server. The model of who owns what accumulates across
examples, because the server does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.acceptance.conftest import PATH, chat, pages
from tests.harness import ChatqServer, create_key

OWNERS = 3


@dataclass
class World:
    """What each owner has submitted, and every next_token each owner was handed."""

    clients: list[httpx.Client]
    owned: list[set[str]] = field(default_factory=lambda: [set() for _ in range(OWNERS)])
    tokens: list[set[str]] = field(default_factory=lambda: [set() for _ in range(OWNERS)])

    def owner_of(self, request_id: str) -> int | None:
        return next((i for i, ids in enumerate(self.owned) if request_id in ids), None)


@pytest.fixture(scope="module")
def world(server: ChatqServer) -> Iterator[World]:
    keys = [create_key(server.database, f"isolation-{i}", owner=f"iso-{i}") for i in range(OWNERS)]
    clients = [server.client(key) for key in keys]
    try:
        yield World(clients)
    finally:
        for client in clients:
            client.close()


owner_index = st.integers(0, OWNERS - 1)
submit = st.tuples(
    st.just("submit"), owner_index, st.sampled_from([None, "shared-1", "shared-2"]), st.text()
)
get = st.tuples(st.just("get"), owner_index)
walk = st.tuples(st.just("walk"), owner_index, st.integers(1, 4))
replay = st.tuples(st.just("replay"), owner_index)
operations = st.lists(st.one_of(submit, get, walk, replay), min_size=1, max_size=12)


def do_submit(world: World, who: int, idem: str | None, text: str) -> None:
    body = chat(text)
    if idem is not None:
        body["idempotency_key"] = idem
    response = world.clients[who].post(PATH, json=body)
    # A replayed key with another body is a 409, but only against the same owner's job.
    if response.status_code == 409:
        assert idem is not None
        return
    assert response.status_code == 200, response.text
    request_id = response.json()["id"]
    assert world.owner_of(request_id) in (None, who), "an idempotency key crossed owners"
    world.owned[who].add(request_id)


def do_get(world: World, who: int) -> None:
    for owner, ids in enumerate(world.owned):
        for request_id in ids:
            response = world.clients[who].get(f"{PATH}/{request_id}")
            if owner == who:
                assert response.status_code == 200, response.text
                assert response.json()["id"] == request_id
            else:
                assert response.status_code == 404, response.text
                assert response.json()["error"]["type"] == "not_found"


def do_walk(world: World, who: int, limit: int) -> None:
    seen: list[str] = []
    for page in pages(world.clients[who], limit, most=10_000):
        seen += [row["id"] for row in page["requests"]]
        if page["next_token"] is not None:
            world.tokens[who].add(page["next_token"])
    assert len(seen) == len(set(seen))
    assert set(seen) == world.owned[who]


def do_replay(world: World, who: int) -> None:
    """Every token ever handed out works for its owner and is refused to everyone else."""
    for owner, tokens in enumerate(world.tokens):
        for token in tokens:
            response = world.clients[who].get(PATH, params={"next_token": token, "limit": 1000})
            if owner == who:
                assert response.status_code == 200, response.text
                assert {row["id"] for row in response.json()["requests"]} <= world.owned[who]
            else:
                assert response.status_code == 400, response.text
                assert response.json()["error"]["type"] == "invalid_next_token"


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_no_key_sees_another_owners_request(world: World, ops: list[tuple[Any, ...]]) -> None:
    for op in ops:
        match op:
            case ("submit", who, idem, text):
                do_submit(world, who, idem, text)
            case ("get", who):
                do_get(world, who)
            case ("walk", who, limit):
                do_walk(world, who, limit)
            case ("replay", who):
                do_replay(world, who)
    for who in range(OWNERS):
        do_walk(world, who, 1000)
