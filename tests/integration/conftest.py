"""Stores for the conformance suite: every dialect, fresh, migrated, on a controllable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatq.store import Store, open_store

DIALECTS = ["sqlite"]


class Clock:
    """A clock the test moves by hand: leases and retention without sleeping."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def fresh_store(dialect: str, tmp_path: Path, clock: Clock) -> Store:
    if dialect == "sqlite":
        store = await open_store(f"sqlite:///{tmp_path / 'conformance.db'}", clock=clock)
    else:  # pragma: no cover - a new dialect must be added here
        raise AssertionError(dialect)
    await store.migrate()
    return store


@pytest.fixture(params=DIALECTS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[Store]:
    opened = await fresh_store(request.param, tmp_path, clock)
    try:
        yield opened
    finally:
        await opened.close()
