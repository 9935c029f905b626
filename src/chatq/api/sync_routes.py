"""The synchronous chat route, POST /chat/completions (Perplexity's) and
/v1/chat/completions (OpenAI's), on the same durable queue: submit, then wait.

The answer is the CompletionResponse; with stream: true, OpenAI's chat.completion.chunk
server-sent events, fed by the request's event stream. The request's id is in the
X-Request-Id header: a client that goes away has not cancelled anything, and can fetch the
result later with GET /async/chat/completions/{id}."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from chatq.api.auth import SECURED, Authenticated
from chatq.api.bodies import chat_body, json_body
from chatq.api.errors import ApiError, error_response, error_responses, sse_event_schema
from chatq.api.events import BEFORE_ALL, events_of
from chatq.api.models import CompletionResponse
from chatq.api.routes import VALIDATION_ERROR
from chatq.api.submission import IDEMPOTENCY_HEADER, idempotency_key, submit
from chatq.api.waiting import unless_disconnected, until_finished
from chatq.domain import Job, Status
from chatq.objects import full_object, summary

REQUEST_ID_HEADER = "X-Request-Id"
CHAT_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ApiChatCompletionsRequest"}}
    },
}

sync_routes = APIRouter(tags=["chat completions"])


async def chat_completion(caller: Authenticated, http: Request) -> Response:
    request = chat_body(await json_body(http))
    key = idempotency_key(http)
    job = await submit(
        caller.ctx, caller.owner, request, key, key_webhook=caller.webhook_url, limits=caller.limits
    )
    headers = {REQUEST_ID_HEADER: job.id}
    if request.stream:
        # Perplexity's route streams as Perplexity does by default (stream_mode "full"): each
        # chunk also carries the message so far, and every delta names its role; its SDK's
        # chunk model requires both. OpenAI's route streams OpenAI's chunks: deltas only.
        perplexity = http.scope["route"].path == "/chat/completions"
        chunks = _chunks(caller, job, perplexity)
        return EventSourceResponse(chunks, headers={**headers, "X-Accel-Buffering": "no"})
    connected, finished = await unless_disconnected(
        http, until_finished(caller.ctx.store, caller.owner, job.id, None)
    )
    if not connected:
        return Response(status_code=499, headers=headers)  # nobody reads it: the job goes on
    if finished is None:
        raise ApiError(404, f"request {job.id!r} was deleted before it finished")
    if finished.status is Status.COMPLETED and finished.response is not None:
        return JSONResponse(finished.response, headers=headers)
    return error_response(502, _failure(finished), "request_failed", headers)


for _path, _suffix in (("/chat/completions", ""), ("/v1/chat/completions", "_v1")):
    sync_routes.add_api_route(
        _path,
        chat_completion,
        methods=["POST"],
        summary="Create Chat Completion",
        description="Submits the request to the queue and answers once it has finished.",
        operation_id=f"create_chat_completion{_suffix}",
        response_model=CompletionResponse,
        responses={
            200: {
                "description": "The CompletionResponse; with stream: true, "
                "chat.completion.chunk server-sent events ending with data: [DONE].",
                "content": {"text/event-stream": {"schema": sse_event_schema("message", "error")}},
                "headers": {
                    REQUEST_ID_HEADER: {
                        "description": "The request's id, to fetch it later.",
                        "schema": {"type": "string"},
                    }
                },
            },
            **error_responses(400, 401, 404, 409, 429, 502),
            **VALIDATION_ERROR,
        },
        openapi_extra={**SECURED, "parameters": [IDEMPOTENCY_HEADER], "requestBody": CHAT_BODY},
    )


async def _chunks(
    caller: Authenticated, job: Job, perplexity: bool
) -> AsyncIterator[ServerSentEvent]:
    """The request's events as chat.completion.chunk events, then [DONE]; with perplexity,
    each chunk also holds the message so far."""
    first = True
    run = None
    text = ""
    async for event in events_of(
        caller.ctx.store, caller.owner, job.id, BEFORE_ALL, summary, full_object
    ):
        if event.kind == "status":
            if run is not None and event.data["run"] != run and not first:
                yield _error(_restarted(job))
                return
            run = event.data["run"]
        elif event.kind == "delta":
            delta: dict[str, Any] = {"content": event.data["content"]}
            text += event.data["content"]
            if first or perplexity:
                delta = {"role": "assistant", **delta}
            first = False
            yield _data(_chunk(job, delta, None, text if perplexity else None))
        elif event.kind == "done":
            done = event.data
            if done["status"] != Status.COMPLETED.value:
                yield _error({"message": done["error_message"], "type": "request_failed"})
                return
            response = done["response"] or {}
            choice = (response.get("choices") or [{}])[0]
            answer = (choice.get("message") or {}).get("content", text)
            final = _chunk(
                job,
                {"role": "assistant"} if first or perplexity else {},
                choice.get("finish_reason"),
                answer if perplexity else None,
            )
            if response.get("usage") is not None:
                final["usage"] = response["usage"]
            for extra in ("citations", "search_results"):
                if response.get(extra) is not None:
                    final[extra] = response[extra]
            yield _data(final)
            yield ServerSentEvent(data="[DONE]")
            return


def _chunk(
    job: Job, delta: dict[str, Any], finish_reason: str | None, message: str | None = None
) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    if message is not None:
        choice["message"] = {"role": "assistant", "content": message}
    return {
        "id": job.id,
        "object": "chat.completion.chunk",
        "created": int(job.created_at),
        "model": job.model,
        "choices": [choice],
    }


def _data(payload: dict[str, Any], event: str | None = None) -> ServerSentEvent:
    return ServerSentEvent(
        data=json.dumps(payload, separators=(",", ":"), ensure_ascii=False), event=event
    )


def _error(error: dict[str, Any]) -> ServerSentEvent:
    """An error event: data {"error": {...}}, which the openai SDK raises, named `error`,
    which the perplexityai SDK raises (it would parse an unnamed one as a chunk)."""
    return _data({"error": error}, "error")


def _failure(job: Job) -> str:
    return f"request {job.id} failed: {job.error_message}"


def _restarted(job: Job) -> dict[str, Any]:
    return {
        "message": f"request {job.id} restarted after part of its answer was sent; fetch the "
        f"result with GET /async/chat/completions/{job.id}",
        "type": "request_restarted",
    }
