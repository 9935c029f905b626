"""The owner cache: a key's owner is remembered for ttl_s, then looked up again."""

from __future__ import annotations

from chatq.api.owner_cache import OwnerCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_owner_is_remembered_for_ttl_s_and_no_longer() -> None:
    clock = Clock()
    cache = OwnerCache(ttl_s=5, clock=clock)
    assert cache.get("h1") is None
    cache.put("h1", "alice")
    clock.now += 4.9
    assert cache.get("h1") == "alice"
    clock.now += 0.1
    assert cache.get("h1") is None
    # Expired entries are dropped, not only hidden.
    assert cache.get("h1") is None and len(cache._owners) == 0


def test_ttl_zero_remembers_nothing() -> None:
    cache = OwnerCache(ttl_s=0, clock=Clock())
    cache.put("h1", "alice")
    assert cache.get("h1") is None


def test_the_oldest_keys_make_room_past_max_keys() -> None:
    cache = OwnerCache(ttl_s=60, max_keys=2, clock=Clock())
    cache.put("h1", "alice")
    cache.put("h2", "bob")
    cache.put("h1", "alice")  # seen again: now the newest
    cache.put("h3", "carol")
    assert [cache.get(h) for h in ("h1", "h2", "h3")] == ["alice", None, "carol"]
