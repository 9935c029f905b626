"""GET /admin/summary: what an admin key sees of the whole server (the dashboard's admin
view): the queue per status and model, and every owner's usage per model."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from chatq.api.auth import SECURED, Authenticated
from chatq.api.errors import ApiError, error_responses
from chatq.api.models import AdminSummary
from chatq.api.usage import EndQuery, StartQuery, usage_rows, usage_sums

admin_routes = APIRouter(tags=["admin"])


@admin_routes.get(
    "/admin/summary",
    operation_id="get_admin_summary",
    summary="Get Admin Summary",
    description="Admin keys only (chatq keys create NAME --admin): the unfinished requests of "
    "every owner per status and model, and each owner's usage per model from start to end "
    "(as GET /usage counts it). Any other key gets 403.",
    response_model=AdminSummary,
    responses=error_responses(400, 401, 403),
    openapi_extra=SECURED,
)
async def admin_summary(
    caller: Authenticated, start: StartQuery = None, end: EndQuery = None
) -> JSONResponse:
    if not caller.admin:
        raise ApiError(403, "only an admin key may read the admin summary")
    store = caller.ctx.store
    queue = await store.queue_by_model()
    usage = await usage_rows(store, None, start, end, "model")
    return JSONResponse(
        {
            "queue": [
                {"status": d.status.value, "model": d.model, "requests": d.requests} for d in queue
            ],
            "usage": [{"owner": r.owner, "model": r.model, **usage_sums(r)} for r in usage],
        }
    )
