"""GET /usage: what an owner's finished requests used, per day and model, from the usage
table that each terminal transition adds to (never counted on read)."""

from __future__ import annotations

import time
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from chatq.api.auth import SECURED, Authenticated
from chatq.api.errors import ApiError, error_responses
from chatq.api.models import NO_NUL, UsageResponse
from chatq.domain import USAGE_DAYS, UsageGrouping, UsageRow, usage_range
from chatq.store import Store

_DAY = r"^\d{4}-\d{2}-\d{2}$"
_DATE: dict[str, object] = {"format": "date"}  # a calendar date: 2026-02-30 fits the pattern

StartQuery = Annotated[
    str | None,
    Query(
        pattern=_DAY,
        json_schema_extra=_DATE,
        description=f"First UTC day, YYYY-MM-DD (default: {USAGE_DAYS - 1} days before end).",
    ),
]
EndQuery = Annotated[
    str | None,
    Query(
        pattern=_DAY,
        json_schema_extra=_DATE,
        description="Last UTC day, YYYY-MM-DD (default: today).",
    ),
]

usage_routes = APIRouter(tags=["usage"])


@usage_routes.get(
    "/usage",
    operation_id="get_usage",
    summary="Get Usage",
    description="Requests, tokens and cost of the caller's requests that finished (COMPLETED "
    "or FAILED) from start to end, inclusive: per UTC day and model, or per day "
    "(group_by=day) or per model (group_by=model) over the range. Counted once, when each "
    "request finished; kept when requests are deleted or purged. A start after end is an "
    "empty range.",
    response_model=UsageResponse,
    responses=error_responses(400, 401, 403),
    openapi_extra=SECURED,
)
async def get_usage(
    caller: Authenticated,
    start: StartQuery = None,
    end: EndQuery = None,
    group_by: Annotated[
        Literal["model", "day"] | None,
        Query(description="Sum over every model of a day (day) or every day of a model (model)."),
    ] = None,
    owner: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=256,
            pattern=NO_NUL,
            description="Another owner's usage: admin keys only (default: the caller's owner).",
        ),
    ] = None,
) -> JSONResponse:
    if owner is not None and owner != caller.owner and not caller.admin:
        raise ApiError(403, "only an admin key may read another owner's usage")
    rows = await usage_rows(caller.ctx.store, owner or caller.owner, start, end, group_by)
    return JSONResponse(
        {"data": [{"date": r.day, "model": r.model, **usage_sums(r)} for r in rows]}
    )


async def usage_rows(
    store: Store, owner: str | None, start: str | None, end: str | None, group_by: UsageGrouping
) -> list[UsageRow]:
    """The store's usage report over the days a query's start and end name (owner None:
    every owner's, by owner); a start after end is an empty range."""
    first, last = usage_range(
        None if start is None else _day("start", start),
        None if end is None else _day("end", end),
        time.time(),
    )
    if first > last:
        return []
    return await store.usage(owner, first.isoformat(), last.isoformat(), group_by)


def usage_sums(row: UsageRow) -> dict[str, int | float]:
    """A usage row's sums, as the wire names them."""
    return {
        "requests": row.requests,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.total_tokens,
        "cost": row.cost,
    }


def _day(name: str, value: str) -> date:
    """A YYYY-MM-DD the query's pattern let through, if it is a calendar date."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f"{name}: {value!r} is not a date (YYYY-MM-DD)") from None
