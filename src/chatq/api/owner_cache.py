"""Holders (owner, default webhook) of recently seen API keys, so that most requests skip a
trip to the database."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from chatq.domain import KeyHolder


class OwnerCache:
    """Holders of keys seen in the last ttl_s seconds, so most requests skip the key lookup.

    A revoked key is refused, and a changed default webhook used, within ttl_s (0 turns the
    cache off). Only keys that were found
    are kept, and at most max_keys of them, so unknown keys cannot grow it."""

    def __init__(
        self, ttl_s: float, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self._max_keys = max_keys
        self._clock = clock
        self._owners: OrderedDict[str, tuple[KeyHolder, float]] = OrderedDict()

    def get(self, secret_hash: str) -> KeyHolder | None:
        found = self._owners.get(secret_hash)
        if found is None:
            return None
        owner, expires = found
        if self._clock() >= expires:
            del self._owners[secret_hash]
            return None
        return owner

    def put(self, secret_hash: str, owner: KeyHolder) -> None:
        if self.ttl_s <= 0:
            return
        self._owners[secret_hash] = (owner, self._clock() + self.ttl_s)
        self._owners.move_to_end(secret_hash)
        while len(self._owners) > self._max_keys:
            self._owners.popitem(last=False)
