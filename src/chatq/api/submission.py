"""Submitting a chat request, as the async create route and the sync route both do."""

from __future__ import annotations

import math

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from chatq.api.context import ApiContext
from chatq.api.errors import ApiError, has_non_finite
from chatq.api.models import MAX_IDEMPOTENCY_KEY, ApiChatCompletionsRequest
from chatq.domain import JSON, Job, Limits, Metadata, NewRequest
from chatq.store import IdempotencyConflict, LimitExceeded, UnstorableRequest
from chatq.webhooks import InvalidWebhookUrl, check_webhook_url

IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "The same as the body's idempotency_key; if both are sent they must agree.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
}


async def submit(
    ctx: ApiContext,
    owner: str,
    request: ApiChatCompletionsRequest,
    key: str | None,
    webhook_url: str | None = None,
    key_webhook: str | None = None,
    metadata: Metadata | None = None,
    priority: int = 0,
    limits: Limits | None = None,
) -> Job:
    """Store a request durably (its model must be served); the stored request, or the
    existing one that a replayed idempotency key names (with its own metadata and webhook).
    Its webhook is webhook_url, else the key's default. Over the key's limits: a 429 with
    Retry-After, and nothing stored."""
    stored = request.model_dump(exclude_unset=True)
    new = new_request(ctx, owner, stored, key, webhook_url, key_webhook, metadata, priority, limits)
    try:
        job, _created = await ctx.store.submit(new)
    except (IdempotencyConflict, LimitExceeded, UnstorableRequest) as exc:
        raise refusal(exc, key) from None
    return job


def new_request(
    ctx: ApiContext,
    owner: str,
    request: JSON,
    key: str | None,
    webhook_url: str | None = None,
    key_webhook: str | None = None,
    metadata: Metadata | None = None,
    priority: int = 0,
    limits: Limits | None = None,
) -> NewRequest:
    """The request to store, once what the store cannot check is checked (the webhook URL,
    the model, the numbers); an ApiError (400) if it is not fit to store. request is the
    validated chat request as a dict of the fields sent (what is stored)."""
    if webhook_url is not None:
        try:
            check_webhook_url(webhook_url)
        except InvalidWebhookUrl as exc:
            raise ApiError(400, str(exc), "invalid_webhook_url") from None
    model = request["model"]
    if ctx.models.route(model) is None:
        served = ", ".join(ctx.models.models())
        raise ApiError(400, f"unknown model {model!r}; served: {served}", "invalid_model")
    if has_non_finite(request):
        raise ApiError(400, "NaN and Infinity are not valid JSON numbers")
    return NewRequest.create(
        owner,
        request,
        key,
        webhook_url=webhook_url if webhook_url is not None else key_webhook,
        webhook_named=webhook_url is not None,
        metadata=metadata,
        priority=priority,
        limits=limits,
    )


def refusal(
    exc: IdempotencyConflict | LimitExceeded | UnstorableRequest, key: str | None
) -> ApiError:
    """What the store's refusal of a request answers: 409, 429 with Retry-After, or 400."""
    if isinstance(exc, IdempotencyConflict):
        return ApiError(
            409,
            f"idempotency_key {key!r} was already used for a different request ({exc.existing_id})",
            "idempotency_conflict",
        )
    if isinstance(exc, LimitExceeded):
        type_ = "rate_limited" if exc.kind == "rate" else "too_many_unfinished_requests"
        retry_after = str(max(1, math.ceil(exc.retry_after)))
        return ApiError(429, exc.message, type_, {"Retry-After": retry_after})
    return ApiError(400, f"the request cannot be stored: {exc}")


def idempotency_key(http: Request, in_body: str | None = None) -> str | None:
    """The idempotency key of the body or of the Idempotency-Key header (they must agree).

    The header is read by hand: a FastAPI Header parameter showed in the submit profile
    (benchmarks.md)."""
    return idempotency_key_of(http.headers.get("idempotency-key"), in_body)


def idempotency_key_of(header: str | None, in_body: str | None = None) -> str | None:
    """The idempotency key of the body or of an Idempotency-Key header's value."""
    if header is not None and not 1 <= len(header) <= MAX_IDEMPOTENCY_KEY:
        problem = "string_too_short" if not header else "string_too_long"
        raise RequestValidationError(
            [
                {
                    "type": problem,
                    "loc": ("header", "Idempotency-Key"),
                    "msg": f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
                    "input": header,
                }
            ]
        )
    if header is not None and in_body is not None and header != in_body:
        raise ApiError(400, "the Idempotency-Key header and the idempotency_key field differ")
    return in_body if in_body is not None else header
