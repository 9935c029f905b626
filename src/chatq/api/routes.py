"""The async routes of Perplexity's API, served under both of its path families
(/async/chat/completions and /v1/async/sonar) by the same handlers: create (with
Prefer: wait), list, get (with ?wait=), and chatq's own cancel, delete and event stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from chatq.api.auth import SECURED, Authenticated, Caller
from chatq.api.batch import create_batch
from chatq.api.bodies import create_body
from chatq.api.errors import ApiError, error_responses, sse_event_schema
from chatq.api.events import BEFORE_ALL, InvalidEventId, events_of
from chatq.api.filters import METADATA_PARAMETER, STATUS_PARAMETER, list_filter
from chatq.api.models import (
    CREATE_BODY_SCHEMA,
    NO_NUL,
    AsyncApiChatCompletionsBatchResponse,
    AsyncApiChatCompletionsRequest,
    AsyncApiChatCompletionsResponse,
    ListAsyncApiChatCompletionsResponse,
    SubmittedRequest,
)
from chatq.api.pagination import InvalidToken, OtherFilters
from chatq.api.submission import IDEMPOTENCY_HEADER, idempotency_key, submit
from chatq.api.waiting import MAX_WAIT_S, preferred_wait, unless_disconnected, until_finished
from chatq.api.webhooks import WebhookDelivery, request_webhook
from chatq.domain import ListFilter
from chatq.objects import full_object, summary

# The two path families, and what their operation ids end with in the OpenAPI document.
FAMILIES = {"/async/chat/completions": "", "/v1/async/sonar": "_sonar"}

CREATE_BODY = {
    "required": True,
    "content": {"application/json": {"schema": CREATE_BODY_SCHEMA}},
}
BATCH_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/AsyncApiChatCompletionsBatchRequest"}
        }
    },
}
PREFER_HEADER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": "wait=S (RFC 7240): answer with the finished request if it finishes "
    f"within S seconds (at most {MAX_WAIT_S:g}); Preference-Applied says it did.",
    "schema": {"type": "string"},
}
LAST_EVENT_ID_HEADER = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "Resume after this event: the id of the last event received.",
    "schema": {"type": "string"},
}
EVENTS_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events: status, delta, done.",
        "content": {"text/event-stream": {"schema": sse_event_schema("status", "delta", "done")}},
    }
}
# A 422 for the routes that read their body by hand (api/bodies.py), as FastAPI documents it.
VALIDATION_ERROR: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "Validation Error",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
        },
    }
}
MAX_UNIX_TIME = 253_402_300_799  # the last second of the year 9999
WaitQuery = Annotated[
    float | None,
    Query(
        ge=0,
        le=MAX_WAIT_S,
        description="Seconds to wait for the request to finish before answering with it as it is.",
    ),
]


def async_routes(prefix: str) -> APIRouter:
    """The async routes under prefix, one of FAMILIES."""
    suffix = FAMILIES[prefix]
    router = APIRouter(prefix=prefix, tags=["async chat completions"])
    # What the stateful tests (and clients) may do with the id a create returns.
    links = {
        name: {
            "operationId": f"{operation}{suffix}",
            "parameters": {"api_request": "$response.body#/id"},
            "description": description,
        }
        for name, operation, description in (
            (
                "GetAsyncChatCompletion",
                "get_async_chat_completion",
                "The `id` returned is the `api_request` to poll.",
            ),
            (
                "StreamAsyncChatCompletionEvents",
                "stream_async_chat_completion_events",
                "Its event stream.",
            ),
            ("CancelAsyncChatCompletion", "cancel_async_chat_completion", "Stop it."),
            (
                "DeleteAsyncChatCompletion",
                "delete_async_chat_completion",
                "Delete it once finished.",
            ),
        )
    }

    def route(method: str, path: str, endpoint: Any, operation: str, **options: Any) -> None:
        options.setdefault("openapi_extra", SECURED)
        options.setdefault("response_model", AsyncApiChatCompletionsResponse)
        operation_id = f"{operation}{suffix}"
        router.add_api_route(path, endpoint, methods=[method], operation_id=operation_id, **options)

    route(
        "POST",
        "",
        create,
        "create_async_chat_completion",
        summary="Create Async Chat Completion",
        responses={
            200: {"links": links},
            **error_responses(400, 401, 409, 429),
            **VALIDATION_ERROR,
        },
        openapi_extra={
            **SECURED,
            "parameters": [IDEMPOTENCY_HEADER, PREFER_HEADER],
            "requestBody": CREATE_BODY,
        },
    )
    route(
        "POST",
        "/batch",
        create_batch,
        "create_async_chat_completions_batch",
        summary="Create Async Chat Completions in a Batch",
        description="Creates up to 1000 requests in one transaction. Each item is a create "
        "body and is checked as create checks one; the results are in the order sent, each "
        "the created request or the error of that item alone (the others are stored). "
        "Limits count every item: items over them fail with a 429 error each, and a batch "
        "of which they let in none is a 429 with Retry-After.",
        response_model=AsyncApiChatCompletionsBatchResponse,
        responses={**error_responses(400, 401, 429), **VALIDATION_ERROR},
        openapi_extra={**SECURED, "requestBody": BATCH_BODY},
    )
    route(
        "GET",
        "",
        list_requests,
        "list_async_chat_completions",
        summary="List Async Chat Completions",
        description="Lists all asynchronous chat completion requests for the authenticated "
        "user, newest first; the filters narrow the list, and a next_token is valid only "
        "with the filters it was issued with.",
        response_model=ListAsyncApiChatCompletionsResponse,
        responses=error_responses(400, 401),
        openapi_extra={**SECURED, "parameters": [STATUS_PARAMETER, METADATA_PARAMETER]},
    )
    route(
        "GET",
        "/{api_request}",
        get_request,
        "get_async_chat_completion",
        summary="Get Async Chat Completion",
        responses=error_responses(401, 404),
    )
    route(
        "GET",
        "/{api_request}/request",
        get_submitted,
        "get_async_chat_completion_request",
        summary="Get Async Chat Completion Request",
        description="The chat request as it was submitted (its messages and every other "
        "field), and how many times a worker has started it.",
        response_model=SubmittedRequest,
        responses=error_responses(401, 404),
    )
    route(
        "POST",
        "/{api_request}/cancel",
        cancel_request,
        "cancel_async_chat_completion",
        summary="Cancel Async Chat Completion",
        description="A request not yet started fails at once; a running one is stopped by "
        "its worker within a second and fails; a finished one is returned unchanged.",
        responses=error_responses(401, 404),
    )
    route(
        "DELETE",
        "/{api_request}",
        delete_request,
        "delete_async_chat_completion",
        status_code=204,
        summary="Delete Async Chat Completion",
        description="Deletes a finished request and all that is stored with it.",
        response_model=None,
        response_class=Response,
        responses={204: {"description": "Deleted."}, **error_responses(401, 404, 409)},
    )
    route(
        "GET",
        "/{api_request}/events",
        request_events,
        "stream_async_chat_completion_events",
        summary="Stream Async Chat Completion Events",
        description="status events at each transition, delta events with the text of a "
        "request submitted with stream: true, and a last done event with the full object.",
        response_model=None,
        response_class=Response,
        responses={**EVENTS_RESPONSE, **error_responses(400, 401, 404)},
        openapi_extra={**SECURED, "parameters": [LAST_EVENT_ID_HEADER]},
    )
    route(
        "GET",
        "/{api_request}/webhook",
        request_webhook,
        "get_async_chat_completion_webhook",
        summary="Get Async Chat Completion Webhook",
        description="The request's webhook delivery: its state, the next try, and every "
        "attempt with the receiver's status code or what went wrong. 404 if the request has "
        "no webhook.",
        response_model=WebhookDelivery,
        responses=error_responses(401, 404),
    )
    return router


async def create(caller: Authenticated, http: Request) -> JSONResponse:
    body = await create_body(http)
    found, headers = await created(caller, body, http)
    return JSONResponse(found, headers=headers)


async def created(
    caller: Caller, body: AsyncApiChatCompletionsRequest, http: Request
) -> tuple[dict[str, Any], dict[str, str] | None]:
    """What a create answers for body (its headers read from http): the request's full
    object, and the response's own headers."""
    key = idempotency_key(http, body.idempotency_key)
    job = await submit(
        caller.ctx,
        caller.owner,
        body.request,
        key,
        body.webhook_url,
        caller.webhook_url,
        body.metadata,
        body.priority,
        caller.limits,
    )
    wait = preferred_wait(http.headers.get("prefer"))
    if wait is not None and not job.finished:
        connected, waited = await unless_disconnected(
            http, until_finished(caller.ctx.store, caller.owner, job.id, wait)
        )
        if connected and waited is not None:
            job = waited
    if wait is not None and job.finished:
        return full_object(job), {"Preference-Applied": f"wait={wait:g}"}
    return full_object(job), None


async def list_requests(
    caller: Authenticated,
    http: Request,
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
    model: Annotated[
        str | None,
        Query(min_length=1, max_length=256, pattern=NO_NUL, description="Only this model's."),
    ] = None,
    created_after: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_UNIX_TIME,
            description="Only requests created at or after this time (unix seconds).",
        ),
    ] = None,
    created_before: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_UNIX_TIME,
            description="Only requests created before this time (unix seconds).",
        ),
    ] = None,
) -> JSONResponse:
    narrowed = list_filter(http, model, created_after, created_before)
    return JSONResponse(await page_of(caller, limit, next_token, narrowed))


async def page_of(
    caller: Caller, limit: int, next_token: str | None, narrowed: ListFilter
) -> dict[str, Any]:
    """A list page: the caller's requests that narrowed lets through, newest first."""
    owner, ctx = caller.owner, caller.ctx
    scope = narrowed.scope()
    before: int | None = None
    if next_token is not None:
        try:
            before = ctx.tokens.decode(owner, next_token, scope)
        except OtherFilters:
            raise ApiError(
                400,
                "next_token was issued for a list with other filters: send the same status, "
                "model, created_after, created_before and metadata filters as the page it "
                "came with",
                "invalid_next_token",
            ) from None
        except InvalidToken:
            raise ApiError(
                400, "next_token is malformed or not yours", "invalid_next_token"
            ) from None
    page, more = await ctx.store.list_page(owner, limit, before, narrowed)
    token = ctx.tokens.encode(owner, page[-1].seq, scope) if more and page else None
    return {"requests": [summary(s) for s in page], "next_token": token}


async def get_request(
    api_request: str, caller: Authenticated, http: Request, wait: WaitQuery = None
) -> Response:
    store = caller.ctx.store
    if wait:
        connected, job = await unless_disconnected(
            http, until_finished(store, caller.owner, api_request, wait)
        )
        if not connected:
            # Nobody reads it; the access log shows the client left (as nginx logs it), not
            # a 404 for a request that is there.
            return Response(status_code=499)
    else:
        job = await store.get(caller.owner, api_request)
    if job is None:
        raise not_found(api_request)
    return JSONResponse(full_object(job))


async def get_submitted(api_request: str, caller: Authenticated) -> JSONResponse:
    found = await caller.ctx.store.submitted(caller.owner, api_request)
    if found is None:
        raise not_found(api_request)
    return JSONResponse({"id": api_request, "request": found.request, "attempts": found.attempts})


async def cancel_request(api_request: str, caller: Authenticated) -> JSONResponse:
    job = await caller.ctx.store.cancel(caller.owner, api_request)
    if job is None:
        raise not_found(api_request)
    return JSONResponse(full_object(job))


async def delete_request(api_request: str, caller: Authenticated) -> Response:
    deleted = await caller.ctx.store.delete(caller.owner, api_request)
    if deleted is None:
        raise not_found(api_request)
    if not deleted:
        raise ApiError(
            409, f"request {api_request!r} has not finished: cancel it first", "conflict"
        )
    return Response(status_code=204)


async def request_events(api_request: str, caller: Authenticated, http: Request) -> Response:
    ctx, owner = caller.ctx, caller.owner
    after = BEFORE_ALL
    last = http.headers.get("last-event-id")
    if last is not None:
        try:
            after = ctx.event_ids.decode(api_request, last)
        except InvalidEventId:
            raise ApiError(
                400, "Last-Event-ID is not the id of an event of this request", "invalid_event_id"
            ) from None
    if await ctx.store.get(owner, api_request) is None:
        raise not_found(api_request)

    async def frames() -> AsyncIterator[ServerSentEvent]:
        async for event in events_of(ctx.store, owner, api_request, after, summary, full_object):
            yield ServerSentEvent(
                data=json.dumps(event.data, separators=(",", ":"), ensure_ascii=False),
                event=event.kind,
                id=ctx.event_ids.encode(api_request, event.position),
            )

    # Proxies must pass events through as they come, not buffer them.
    return EventSourceResponse(frames(), headers={"X-Accel-Buffering": "no"})


def not_found(api_request: str) -> ApiError:
    return ApiError(404, f"no async chat completion request {api_request!r}")
