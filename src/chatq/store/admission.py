"""Which new requests of a batch being stored their keys' limits let in: a per-owner cap on
unfinished requests and a per-key rate. Both dialects read the state this needs inside the
batch's transaction (holding the locks that keep other processes from changing it), decide
here, then store only what was let in and write back the keys' new rate state."""

from __future__ import annotations

import math
from collections.abc import Mapping

from chatq.domain import NewRequest
from chatq.store.errors import LimitExceeded

MINUTE_S = 60.0
# When an owner is at its cap, when to try again: a slot frees when one of its requests
# finishes, which only the workers know.
UNFINISHED_RETRY_S = 1.0


def rate_interval(rpm: int) -> float:
    return MINUTE_S / rpm


class Admission:
    """The rate is GCRA, a token bucket kept as one number per key: tat, the time at which
    the key's bucket is full again. A key may make rpm requests at once, then one every
    60/rpm s; a request is let in while tat is at most a minute (less one interval) ahead
    of now."""

    def __init__(
        self,
        now: float,
        tats: Mapping[str, float],
        unfinished: Mapping[str, int],
        held_keys: set[tuple[str, str]],
    ) -> None:
        self.now = now
        self.tats = dict(tats)  # key id -> tat, as updated by what this batch lets in
        self._unfinished = dict(unfinished)  # owner -> unfinished (counted up to its cap)
        self._held = set(held_keys)  # (owner, idempotency key) already stored

    def refusal(self, new: NewRequest) -> LimitExceeded | None:
        """None if new may be stored (and then counted as stored), else why not. A replay
        of an idempotency key already stored is never refused: it stores nothing new."""
        limits = new.limits
        if limits is None:
            return None
        key = (new.owner, new.idempotency_key) if new.idempotency_key is not None else None
        if key is not None and key in self._held:
            return None
        unfinished = self._unfinished.get(new.owner, 0)
        cap = limits.max_unfinished
        if cap is not None and unfinished >= cap:
            return LimitExceeded(
                f"too many unfinished requests: this key allows its owner {cap} CREATED or "
                "IN_PROGRESS at once; retry when some have finished",
                UNFINISHED_RETRY_S,
                "unfinished",
            )
        if limits.rpm is not None:
            interval = rate_interval(limits.rpm)
            tat = max(self.tats.get(limits.key_id, 0.0), self.now)
            ahead = tat - self.now - (MINUTE_S - interval)
            if ahead > 1e-9:
                return LimitExceeded(
                    f"rate limit: this key may make {limits.rpm} requests a minute; retry in "
                    f"{math.ceil(ahead)} s",
                    ahead,
                    "rate",
                )
            self.tats[limits.key_id] = tat + interval
        self._unfinished[new.owner] = unfinished + 1
        if key is not None:
            self._held.add(key)
        return None
