"""A fresh migrate yields exactly the schema we expect: migrations cannot drift unnoticed."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from chatq.store import open_store

EXPECTED = Path(__file__).parent / "schema" / "sqlite.sql"


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


async def test_fresh_sqlite_migrate_matches_expected_schema(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    store = await open_store(f"sqlite:///{db}")
    try:
        assert await store.migrate() == ["0001_init"]
    finally:
        await store.close()
    assert dump_sqlite_schema(db) == EXPECTED.read_text()
