"""The async chat completions routes of Perplexity's API, and the health routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from chatq.api.auth import SECURED, Authenticated
from chatq.api.context import ApiContext
from chatq.api.errors import ApiError, error_response, error_responses, has_non_finite
from chatq.api.models import (
    MAX_IDEMPOTENCY_KEY,
    AsyncApiChatCompletionsRequest,
    AsyncApiChatCompletionsResponse,
    ListAsyncApiChatCompletionsResponse,
)
from chatq.api.pagination import InvalidToken
from chatq.domain import Job, NewRequest, Status, Summary
from chatq.store import IdempotencyConflict, StoreUnavailable, UnstorableRequest

IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "The same as the body's idempotency_key; if both are sent they must agree.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
}

async_routes = APIRouter(prefix="/async/chat/completions", tags=["async chat completions"])
health_routes = APIRouter(tags=["service"])


@async_routes.post(
    "",
    summary="Create Async Chat Completion",
    operation_id="create_async_chat_completion",
    response_model=AsyncApiChatCompletionsResponse,
    responses={
        200: {
            "links": {
                "GetAsyncChatCompletion": {
                    "operationId": "get_async_chat_completion",
                    "parameters": {"api_request": "$response.body#/id"},
                    "description": "The `id` returned is the `api_request` to poll.",
                }
            }
        },
        **error_responses(400, 401, 409),
    },
    openapi_extra={**SECURED, "parameters": [IDEMPOTENCY_HEADER]},
)
async def create(
    body: AsyncApiChatCompletionsRequest, caller: Authenticated, http: Request
) -> JSONResponse:
    owner, ctx = caller.owner, caller.ctx
    idempotency_header = _idempotency_header(http)
    request = body.request
    if request.stream:
        raise ApiError(400, "stream=true is not supported: async results are fetched, not streamed")
    key = body.idempotency_key
    if idempotency_header is not None and key is not None and idempotency_header != key:
        raise ApiError(400, "the Idempotency-Key header and the idempotency_key field differ")
    key = key if key is not None else idempotency_header
    if ctx.models.route(request.model) is None:
        served = ", ".join(ctx.models.models())
        raise ApiError(400, f"unknown model {request.model!r}; served: {served}", "invalid_model")
    stored = request.model_dump(exclude_unset=True)
    if has_non_finite(stored):
        raise ApiError(400, "NaN and Infinity are not valid JSON numbers")
    try:
        job, _created = await ctx.store.submit(NewRequest.create(owner, stored, key))
    except IdempotencyConflict as exc:
        raise ApiError(
            409,
            f"idempotency_key {key!r} was already used for a different request ({exc.existing_id})",
            "idempotency_conflict",
        ) from None
    except UnstorableRequest as exc:
        raise ApiError(400, f"the request cannot be stored: {exc}") from None
    return JSONResponse(full_object(job))


@async_routes.get(
    "",
    summary="List Async Chat Completions",
    description="Lists all asynchronous chat completion requests for the authenticated user.",
    operation_id="list_async_chat_completions",
    response_model=ListAsyncApiChatCompletionsResponse,
    responses=error_responses(400, 401),
    openapi_extra=SECURED,
)
async def list_requests(
    caller: Authenticated,
    limit: Annotated[
        int, Query(ge=1, le=1000, description="Maximum number of requests to return.")
    ] = 20,
    next_token: Annotated[
        str | None,
        Query(
            description="Token for fetching the next page of results. "
            "Ensure this token is URL-encoded when passed as a query parameter."
        ),
    ] = None,
) -> JSONResponse:
    owner, ctx = caller.owner, caller.ctx
    before: int | None = None
    if next_token is not None:
        try:
            before = ctx.tokens.decode(owner, next_token)
        except InvalidToken:
            raise ApiError(
                400, "next_token is malformed or not yours", "invalid_next_token"
            ) from None
    page, more = await ctx.store.list_page(owner, limit, before)
    token = ctx.tokens.encode(owner, page[-1].seq) if more and page else None
    return JSONResponse({"requests": [summary(s) for s in page], "next_token": token})


@async_routes.get(
    "/{api_request}",
    summary="Get Async Chat Completion",
    operation_id="get_async_chat_completion",
    response_model=AsyncApiChatCompletionsResponse,
    responses=error_responses(401, 404),
    openapi_extra=SECURED,
)
async def get_request(api_request: str, caller: Authenticated) -> JSONResponse:
    job = await caller.ctx.store.get(caller.owner, api_request)
    if job is None:
        raise ApiError(404, f"no async chat completion request {api_request!r}")
    return JSONResponse(full_object(job))


def _idempotency_header(http: Request) -> str | None:
    """Read by hand: a FastAPI Header parameter showed in the submit profile (benchmarks.md)."""
    value = http.headers.get("idempotency-key")
    if value is not None and not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY:
        problem = "string_too_short" if not value else "string_too_long"
        raise RequestValidationError(
            [
                {
                    "type": problem,
                    "loc": ("header", "Idempotency-Key"),
                    "msg": f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
                    "input": value,
                }
            ]
        )
    return value


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


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def summary(row: Summary) -> dict[str, Any]:
    return {
        "id": row.id,
        "model": row.model,
        "status": row.status.value,
        "created_at": int(row.created_at),
        "started_at": _ts(row.started_at),
        "completed_at": _ts(row.completed_at),
        "failed_at": _ts(row.failed_at),
    }


def full_object(job: Job) -> dict[str, Any]:
    out = summary(job)
    out["response"] = job.response if job.status is Status.COMPLETED else None
    out["error_message"] = job.error_message if job.status is Status.FAILED else None
    return out
