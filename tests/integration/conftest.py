"""Fixtures for the integration tests: stores of every dialect, workers, routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatq.store import Store
from tests.integration.stores import DIALECTS, Clock, fresh_store
from tests.integration.working import live_store, router

__all__ = ["live_store", "router"]  # fixtures defined with the worker helpers


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
