"""Rows to domain objects, and domain objects to column values, for every dialect.

Queries of every dialect select the columns store/queries.py lists, in its order (the field
order of Summary and Job), so one mapping serves both.
"""

from __future__ import annotations

import math
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
    UsageRow,
)
from chatq.json_text import loads

# A request's token counts are capped at this when accounted, so that no upstream's absurd
# count can overflow a sum.
MAX_ACCOUNTED_TOKENS = 2**31 - 1


# A status column's value to its Status: a dict lookup, where Status(value) is an Enum call
# (about a microsecond, paid by every row of a list page).
_STATUSES = {status.value: status for status in Status}


def summary_values(
    row: Any,
) -> tuple[int, str, str, Status, float, float | None, float | None, float | None, Metadata]:
    metadata: Metadata = orjson.loads(row[8]) if row[8] is not None else {}
    return (row[0], row[1], row[2], _STATUSES[row[3]], row[4], row[5], row[6], row[7], metadata)


def summary_from_row(row: Any) -> Summary:
    return Summary(*summary_values(row))


def page_from_rows(rows: Any, limit: int) -> tuple[list[Summary], bool]:
    """A list page from up to limit + 1 rows: the extra row only says that more exist."""
    return [summary_from_row(r) for r in rows[:limit]], len(rows) > limit


def job_from_row(row: Any) -> Job:
    response = loads(row[11]) if row[11] is not None else None
    return Job(
        *summary_values(row), row[9], row[10], response, row[12], row[13], bool(row[14]), row[15]
    )


def claimed_from_rows(rows: Any) -> list[ClaimedJob]:
    """Claim rows (queries.CLAIMED_COLUMNS), oldest first."""
    ordered = sorted(rows, key=lambda r: int(r[0]))
    return [ClaimedJob(r[1], r[2], loads(r[3]), int(r[4]), r[5], int(r[6])) for r in ordered]


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


def accounted_usage(response: Any) -> tuple[int, int, int, float]:
    """(prompt, completion, total tokens, cost) of a response, as usage counts them: a token
    count is a JSON number, truncated and capped at MAX_ACCOUNTED_TOKENS, the cost
    usage.cost.total_cost when a number; anything else counts 0. (SQLite's trigger, migration
    0005, reads stored responses by the same rule.)"""
    usage = response.get("usage") if isinstance(response, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    cost = usage.get("cost")
    total_cost = cost.get("total_cost") if isinstance(cost, dict) else None
    return (
        _tokens(usage.get("prompt_tokens")),
        _tokens(usage.get("completion_tokens")),
        _tokens(usage.get("total_tokens")),
        float(total_cost) if isinstance(total_cost, int | float) and _number(total_cost) else 0.0,
    )


def _number(value: Any) -> bool:
    """A JSON number as stored: finite (NaN and infinities are stored as null), not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _tokens(value: Any) -> int:
    return int(max(0, min(value, MAX_ACCOUNTED_TOKENS))) if _number(value) else 0


def usage_from_row(keys: tuple[str, ...], row: Any) -> UsageRow:
    """A usage report's row: its keys (as queries.USAGE_REPORTS groups them), then the sums."""
    named = dict(zip(keys, row[: len(keys)], strict=True))
    requests, prompt, completion, total, cost = row[len(keys) :]
    return UsageRow(
        named.get("owner"),
        named.get("day"),
        named.get("model"),
        int(requests),
        int(prompt),
        int(completion),
        int(total),
        float(cost),
    )
