"""The client's retries (chatq batch run): the server's Retry-After sets the pause, else a
doubling backoff; what a retry cannot fix is raised at once. Pauses are recorded, not slept."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from chatq.client import batch
from chatq.client.http import ServerError, Unreachable


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("chatq.client.batch.asyncio.sleep", record)
    return slept


def failing(*errors: Exception) -> Callable[[], Awaitable[str]]:
    """A call that raises errors in turn, then answers "ok"."""
    left = list(errors)

    async def call() -> str:
        if left:
            raise left.pop(0)
        return "ok"

    return call


async def test_a_limit_is_retried_when_the_server_says(pauses: list[float]) -> None:
    limited = ServerError(429, "rate_limited", "over the rate", retry_after=17.0)
    assert await batch._retrying(failing(limited, limited)) == "ok"
    assert pauses == [17.0, 17.0]


async def test_without_retry_after_the_pause_doubles(pauses: list[float]) -> None:
    errors = [ServerError(503, "unavailable", "busy"), Unreachable("refused")] * 2
    assert await batch._retrying(failing(*errors)) == "ok"
    assert pauses == [0.5, 1.0, 2.0, 4.0]


async def test_a_far_retry_after_is_capped(pauses: list[float]) -> None:
    limited = ServerError(429, "rate_limited", "over the rate", retry_after=3600.0)
    assert await batch._retrying(failing(limited)) == "ok"
    assert pauses == [60.0]


async def test_what_a_retry_cannot_fix_is_raised_at_once(pauses: list[float]) -> None:
    with pytest.raises(ServerError) as refused:
        await batch._retrying(failing(ServerError(400, "invalid_request", "bad", 5.0)))
    assert refused.value.status == 400 and pauses == []


async def test_retries_end(pauses: list[float]) -> None:
    with pytest.raises(Unreachable):
        await batch._retrying(failing(*[Unreachable("refused")] * 20))
    assert len(pauses) == batch._RETRIES
