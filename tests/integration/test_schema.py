"""A fresh migrate yields exactly the schema we expect, and records what it applied:
migrations cannot drift unnoticed, and a second migrate applies nothing."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import asyncpg

from chatq.store import open_store
from tests.pg import temporary_database

SCHEMAS = Path(__file__).parent / "schema"
EXPECTED = SCHEMAS / "sqlite.sql"


def dump_sqlite_schema(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master "
            "WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY type DESC, name"
        ).fetchall()
    conn.close()
    return "".join(f"-- {kind} {name}\n{_one_line(sql)};\n" for kind, name, sql in rows)


def _one_line(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


MIGRATIONS = [
    "0001_init",
    "0002_streams_and_cancel",
    "0003_webhooks",
    "0004_webhook_claims",
    "0005_usage_and_admin",
    "0006_metadata_and_filters",
    "0007_limits_and_priority",
    "0008_outbox_notify_per_statement",
    "0009_list_by_status",
]
RECORDED = "SELECT name FROM schema_migrations ORDER BY version"


async def migrate_twice(url: str) -> None:
    store = await open_store(url)
    try:
        assert await store.migrate() == MIGRATIONS
        assert await store.migrate() == []
    finally:
        await store.close()


async def test_fresh_sqlite_migrate_matches_expected_schema(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    await migrate_twice(f"sqlite:///{db}")
    assert dump_sqlite_schema(db) == EXPECTED.read_text()
    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute(RECORDED)] == MIGRATIONS
    conn.close()


_PG_CATALOG = """
SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type
       || CASE WHEN is_nullable = 'NO' THEN ' not null' ELSE '' END
       || CASE WHEN is_identity = 'YES' THEN ' identity' ELSE '' END
       || coalesce(' default ' || column_default, '')
FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
ORDER BY 1
"""


async def dump_postgres_schema(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return "".join(f"{row[0]}\n" for row in await conn.fetch(_PG_CATALOG))
    finally:
        await conn.close()


async def test_fresh_postgres_migrate_matches_expected_schema() -> None:
    async with temporary_database() as url:
        await migrate_twice(url)
        assert await dump_postgres_schema(url) == (SCHEMAS / "postgres.sql").read_text()
        conn = await asyncpg.connect(url)
        try:
            assert [r[0] for r in await conn.fetch(RECORDED)] == MIGRATIONS
        finally:
            await conn.close()
