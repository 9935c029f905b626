"""POST .../batch: up to MAX_BATCH create bodies in one call, stored in one transaction.

Each item is read and checked as the create route reads and checks its body; an item that
fails (a schema violation, an unserved model, an idempotency conflict, a limit) fails
alone, as an error in its place of the results, and the others are stored. Limits count
each item: the ones the key's limits refuse fail with a 429 error of their own; if they
let in none of the batch, the whole batch is a 429 with Retry-After, as a create is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from chatq.api.auth import Authenticated
from chatq.api.bodies import is_json, json_body, validated, wrapped
from chatq.api.errors import ApiError
from chatq.api.fast_bodies import valid_batch
from chatq.api.models import AsyncApiChatCompletionsBatchRequest
from chatq.api.submission import new_request, refusal
from chatq.domain import JSON, Metadata, NewRequest
from chatq.json_text import response_body
from chatq.objects import full_object
from chatq.store import IdempotencyConflict, LimitExceeded, UnstorableRequest

Result = dict[str, Any]
# An item's own fields: the chat request as stored, its idempotency key, webhook URL,
# metadata and priority.
Fields = tuple[JSON, str | None, str | None, Metadata | None, int]


async def create_batch(caller: Authenticated, http: Request) -> Response:
    if http.headers.get("idempotency-key") is not None:
        raise ApiError(
            400,
            "a batch takes no Idempotency-Key header: give each item its own idempotency_key",
        )
    items: Sequence[Fields | ApiError] | None = None
    if is_json(http.headers.get("content-type")):
        items = fast_fields(await http.body())
    if items is None:
        items = model_fields(await json_body(http))
    results: list[Result | None] = [None] * len(items)
    news: list[tuple[int, NewRequest]] = []
    for place, item in enumerate(items):
        if isinstance(item, ApiError):
            results[place] = _error(item)
            continue
        request, key, webhook_url, metadata, priority = item
        try:
            new = new_request(
                caller.ctx,
                caller.owner,
                request,
                key,
                webhook_url,
                caller.webhook_url,
                metadata,
                priority,
                caller.limits,
            )
        except ApiError as exc:
            results[place] = _error(exc)
        else:
            news.append((place, new))
    outcomes = await caller.ctx.store.submit_many([new for _, new in news])
    limited: list[LimitExceeded] = []
    for (place, new), outcome in zip(news, outcomes, strict=True):
        if isinstance(outcome, LimitExceeded):
            limited.append(outcome)
        if isinstance(outcome, IdempotencyConflict | LimitExceeded | UnstorableRequest):
            results[place] = _error(refusal(outcome, new.idempotency_key))
        elif isinstance(outcome, Exception):
            raise outcome
        else:
            results[place] = full_object(outcome[0])
    if limited and not any(isinstance(o, tuple) for o in outcomes):
        raise _none_let_in(limited)
    # orjson: a thousand full objects were 8% of the route's time through json.dumps.
    return Response(response_body({"results": results}), media_type="application/json")


def fast_fields(raw: bytes) -> list[Fields] | None:
    """The fields of each item of a batch body whose every item is a valid wrapped create
    body (api/fast_bodies.py); None for any other body."""
    bodies = valid_batch(raw)
    if bodies is None:
        return None
    return [
        (
            cast(JSON, body["request"]),  # a TypedDict is a plain dict
            body.get("idempotency_key"),
            body.get("webhook_url"),
            body.get("metadata"),
            body.get("priority", 0),
        )
        for body in bodies
    ]


def model_fields(parsed: Any) -> list[Fields | ApiError]:
    """The fields of each item of a parsed batch body, read one by one through the models,
    or the item's schema violation (an error of the whole body is raised)."""
    batch = validated(AsyncApiChatCompletionsBatchRequest, parsed)
    items: list[Fields | ApiError] = []
    for item in batch.requests:
        try:
            body = wrapped(item)
        except RequestValidationError as exc:
            items.append(ApiError(422, _described(exc), "invalid_request"))
        else:
            request = body.request.model_dump(exclude_unset=True)
            items.append(
                (request, body.idempotency_key, body.webhook_url, body.metadata, body.priority)
            )
    return items


def _none_let_in(limited: list[LimitExceeded]) -> ApiError:
    """The key's limits let in none of the batch: a 429 for it all, to be retried when the
    soonest of them may let one in."""
    soonest = refusal(min(limited, key=lambda exc: exc.retry_after), None)
    return ApiError(
        429,
        f"the key's limits let in none of this batch's requests: {soonest.message}",
        soonest.type,
        soonest.headers,
    )


def _error(exc: ApiError) -> Result:
    return {"error": {"message": exc.message, "type": exc.type, "code": exc.status}}


def _described(exc: RequestValidationError) -> str:
    """A schema violation of an item, as one line: where in the item, and what is wrong."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"][1:])  # after "body"
        problems.append(f"{where or 'the item'}: {error['msg']}")
    return "; ".join(problems)
