from __future__ import annotations

import random

from chatq.worker.retry import backoff_delay


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
