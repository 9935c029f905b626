"""The health routes, without auth: /healthz (the process is up), /readyz (the store answers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from chatq.api.context import ApiContext
from chatq.api.errors import error_response, error_responses
from chatq.store import StoreUnavailable

health_routes = APIRouter(tags=["service"])


@health_routes.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health_routes.get("/readyz", summary="The store is reachable", responses=error_responses(503))
async def readyz(http: Request) -> Any:
    ctx: ApiContext = http.app.state.context
    try:
        await ctx.store.ping()
    except StoreUnavailable as exc:
        return error_response(503, f"store unreachable: {exc}")
    return {"status": "ok"}
