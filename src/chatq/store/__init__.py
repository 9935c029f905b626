"""Storage: the Store protocol and its dialects. Only this package runs SQL."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

from chatq.store.errors import (
    DatabaseMissing,
    IdempotencyConflict,
    LimitExceeded,
    StoreUnavailable,
    UnstorableRequest,
    UnsupportedDatabase,
)
from chatq.store.protocol import KeyLimit, Store

__all__ = [
    "DatabaseMissing",
    "IdempotencyConflict",
    "KeyLimit",
    "LimitExceeded",
    "Store",
    "StoreUnavailable",
    "UnstorableRequest",
    "UnsupportedDatabase",
    "open_store",
]


async def open_store(
    url: str,
    *,
    clock: Callable[[], float] = time.time,
    pool_size: int = 10,
    must_exist: bool = False,
) -> Store:
    """Open (but do not migrate) the store a database URL names.

    must_exist: refuse a SQLite file that is not there yet, rather than create an empty one."""
    if url.startswith("sqlite:"):
        from chatq.store.sqlite.store import SqliteStore

        path = _sqlite_path(url)
        if must_exist and not await asyncio.to_thread(os.path.exists, path):
            raise DatabaseMissing(
                f"no database at {path} ({url}); start 'chatq serve' or run "
                "'chatq migrate' there first, or pass --database (or CHATQ_DATABASE_URL)"
            )
        return await SqliteStore.open(path, clock=clock)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from chatq.store.postgres.store import PostgresStore
        except ImportError as exc:
            raise UnsupportedDatabase(
                f"PostgreSQL needs asyncpg: pip install 'chatq[postgres]' ({exc})"
            ) from None
        return await PostgresStore.open(url, clock=clock, pool_size=pool_size)
    raise UnsupportedDatabase(
        f"unsupported database URL {url!r}: use sqlite:///relative.db, "
        "sqlite:////abs/path.db or postgresql://user@host:port/db"
    )


def _sqlite_path(url: str) -> str:
    """sqlite:///relative.db -> $PWD/relative.db, sqlite:////abs.db -> /abs.db (SQLAlchemy's
    rule), made absolute so that messages name the file exactly."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise UnsupportedDatabase(f"not a sqlite URL with a path: {url!r}")
    return os.path.abspath(url[len(prefix) :])
