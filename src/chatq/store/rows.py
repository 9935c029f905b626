"""Rows to domain objects, and domain objects to column values, for every dialect.

Queries of every dialect select the columns store/queries.py lists, in its order (the field
order of Summary and Job), so one mapping serves both.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from chatq.domain import (
    ClaimedJob,
    Delivery,
    DeliveryAttempt,
    DeliveryRecord,
    DeliveryStatus,
    Job,
    Metadata,
    Status,
    Summary,
)


def summary_values(
    row: Any,
) -> tuple[int, str, str, Status, float, float | None, float | None, float | None, Metadata]:
    metadata: Metadata = orjson.loads(row[8]) if row[8] is not None else {}
    return (row[0], row[1], row[2], Status(row[3]), row[4], row[5], row[6], row[7], metadata)


def summary_from_row(row: Any) -> Summary:
    return Summary(*summary_values(row))


def page_from_rows(rows: Any, limit: int) -> tuple[list[Summary], bool]:
    """A list page from up to limit + 1 rows: the extra row only says that more exist."""
    page = [summary_from_row(r) for r in rows]
    return page[:limit], len(page) > limit


def job_from_row(row: Any) -> Job:
    response = json.loads(row[11]) if row[11] is not None else None
    return Job(
        *summary_values(row), row[9], row[10], response, row[12], row[13], bool(row[14]), row[15]
    )


def claimed_from_rows(rows: Any) -> list[ClaimedJob]:
    """Claim rows (queries.CLAIMED_COLUMNS), oldest first."""
    ordered = sorted(rows, key=lambda r: int(r[0]))
    return [ClaimedJob(r[1], r[2], json.loads(r[3]), int(r[4]), r[5], int(r[6])) for r in ordered]


def delivery_from_row(row: Any) -> Delivery:
    """A claimed delivery (queries.DELIVERY_COLUMNS)."""
    return Delivery(row[0], row[1], row[2], row[3], row[4], row[5], int(row[6]), row[7])


def record_from_row(row: Any, history: tuple[DeliveryAttempt, ...] = ()) -> DeliveryRecord:
    """A delivery as shown (queries.DELIVERY_RECORD_COLUMNS), with its attempts if read."""
    return DeliveryRecord(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        DeliveryStatus(row[6]),
        int(row[7]),
        row[8],
        row[9],
        row[10],
        history,
    )


def attempt_from_row(row: Any) -> DeliveryAttempt:
    return DeliveryAttempt(int(row[0]), row[1], row[2], row[3])


def dumps(value: Any) -> str:
    """Compact JSON text for a response or request column.

    orjson encodes a completion about 15x faster than json, which shows in the worker's queue
    drain. What orjson refuses (integers past 64 bits, lone surrogates, non-string keys) goes
    through json instead, so nothing json could store is refused. NaN and infinities, which
    are not JSON, are stored as null.
    """
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"))
