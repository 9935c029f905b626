"""Throwaway PostgreSQL databases for tests: created fresh, dropped after, never skipped.

The server is CHATQ_TEST_POSTGRES (default: the local one on 127.0.0.1:5432). If it cannot
be reached the tests that need it fail, loudly, as CI must not pass without PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ADMIN_URL = os.environ.get("CHATQ_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def url_for(database: str) -> str:
    parts = urlsplit(ADMIN_URL)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def create_database() -> str:
    name = f"chatq_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextmanager
def temporary_database_sync() -> Iterator[str]:
    """temporary_database, for code that runs outside an event loop (subprocess tests)."""
    name = asyncio.run(create_database())
    try:
        yield url_for(name)
    finally:
        asyncio.run(drop_database(name))


@asynccontextmanager
async def temporary_database() -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped on exit."""
    name = await create_database()
    try:
        yield url_for(name)
    finally:
        await drop_database(name)
