"""Backoff for transient upstream errors: exponential, full jitter, Retry-After honoured."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int,
    base_s: float,
    max_s: float,
    retry_after: float | None = None,
    rand: random.Random | None = None,
) -> float:
    """Seconds to wait before attempt number attempt+1 (attempt counts from 1)."""
    ceiling = min(max_s, base_s * 2 ** (attempt - 1))
    delay = (rand or random).uniform(0, ceiling)
    if retry_after is not None:
        # The upstream said when: never sooner, but never past our own ceiling either.
        delay = max(delay, min(retry_after, max_s))
    return delay
