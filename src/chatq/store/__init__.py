"""Storage: the Store protocol and its dialects. Only this package runs SQL."""

from __future__ import annotations

import time
from collections.abc import Callable

from chatq.store.protocol import Store, StoreUnavailable

__all__ = ["Store", "StoreUnavailable", "UnsupportedDatabase", "open_store", "sqlite_path"]


class UnsupportedDatabase(ValueError):
    pass


def sqlite_path(url: str) -> str:
    """sqlite:///relative.db -> relative.db, sqlite:////abs.db -> /abs.db (SQLAlchemy's rule)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise UnsupportedDatabase(f"not a sqlite URL with a path: {url!r}")
    return url[len(prefix) :]


async def open_store(
    url: str, clock: Callable[[], float] = time.time, pool_size: int = 10
) -> Store:
    """Open (but do not migrate) the store a database URL names."""
    if url.startswith("sqlite:"):
        from chatq.store.sqlite.store import SqliteStore

        return await SqliteStore.open(sqlite_path(url), clock=clock)
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
