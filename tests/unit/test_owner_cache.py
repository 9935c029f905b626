"""The owner cache: a key's owner is remembered for ttl_s, then looked up again."""

from __future__ import annotations

from chatq.api.owner_cache import OwnerCache
from chatq.domain import KeyHolder

ALICE, BOB, CAROL = (
    KeyHolder("alice", None),
    KeyHolder("bob", "https://b.example"),
    KeyHolder("carol", None),
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_owner_is_remembered_for_ttl_s_and_no_longer() -> None:
    clock = Clock()
    cache = OwnerCache(ttl_s=5, clock=clock)
    assert cache.get("h1") is None
    cache.put("h1", ALICE)
    clock.now += 4.9
    assert cache.get("h1") == ALICE
    clock.now += 0.1
    assert cache.get("h1") is None
    # Expired entries are dropped, not only hidden.
    assert cache.get("h1") is None and len(cache._owners) == 0


def test_ttl_zero_remembers_nothing() -> None:
    cache = OwnerCache(ttl_s=0, clock=Clock())
    cache.put("h1", ALICE)
    assert cache.get("h1") is None


def test_the_oldest_keys_make_room_past_max_keys() -> None:
    cache = OwnerCache(ttl_s=60, max_keys=2, clock=Clock())
    cache.put("h1", ALICE)
    cache.put("h2", BOB)
    cache.put("h1", ALICE)  # seen again: now the newest
    cache.put("h3", CAROL)
    assert [cache.get(h) for h in ("h1", "h2", "h3")] == [ALICE, None, CAROL]
