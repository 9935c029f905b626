"""Backoff for transient errors (an upstream's, a webhook receiver's, the server's for the
client): exponential, full jitter, Retry-After honoured."""

from __future__ import annotations

import email.utils
import random
import time


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
        # The other side said when: never sooner, but never past our own ceiling either.
        delay = max(delay, min(retry_after, max_s))
    return delay


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
