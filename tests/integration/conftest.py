"""Fixtures for the integration tests: stores of every dialect, workers, backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatq.store import Store
from tests.integration.stores import DIALECTS, Clock, fresh_store
from tests.integration.working import backends, live_store

__all__ = ["backends", "live_store"]  # fixtures defined with the worker helpers


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def store(dialect: str, tmp_path: Path, clock: Clock) -> AsyncIterator[Store]:
    async with fresh_store(dialect, tmp_path, clock) as opened:
        yield opened
