from __future__ import annotations

import email.utils
import random
import time

from chatq.retry import backoff_delay, parse_retry_after


def test_exponential_ceiling_with_full_jitter() -> None:
    rand = random.Random(7)
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 30.0)):
        delays = [backoff_delay(attempt, 0.5, 30.0, rand=rand) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8, "jitter spans the range"
        assert min(delays) < ceiling * 0.2


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    rand = random.Random(1)
    assert all(backoff_delay(1, 0.5, 30.0, retry_after=7, rand=rand) >= 7 for _ in range(50))
    assert backoff_delay(1, 0.5, 30.0, retry_after=3600, rand=rand) == 30.0


def test_retry_after_is_read_as_seconds_or_as_a_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-3") == 0.0
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    seconds = parse_retry_after(in_a_minute)
    assert seconds is not None and 55 <= seconds <= 60
    assert parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0
    for unreadable in (None, "", "soon"):
        assert parse_retry_after(unreadable) is None
