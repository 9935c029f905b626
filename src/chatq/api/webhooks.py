"""GET .../{id}/webhook: a request's webhook delivery, with every attempt."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from chatq.api.auth import Authenticated
from chatq.api.errors import ApiError
from chatq.api.models import WebhookDelivery
from chatq.domain import DeliveryRecord

__all__ = ["WebhookDelivery", "request_webhook"]


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def delivery_object(record: DeliveryRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "request_id": record.request_id,
        "url": record.url,
        "event_type": record.event_type,
        "status": record.status.value,
        "created_at": int(record.created_at),
        "delivered_at": _ts(record.delivered_at),
        "next_attempt_at": _ts(record.next_attempt_at),
        "last_error": record.last_error,
        "attempts": [
            {"attempt": a.attempt, "at": int(a.at), "status_code": a.status_code, "error": a.error}
            for a in record.history
        ],
    }


async def request_webhook(api_request: str, caller: Authenticated) -> JSONResponse:
    store, owner = caller.ctx.store, caller.owner
    job = await store.get(owner, api_request)
    if job is None:
        raise ApiError(404, f"no async chat completion request {api_request!r}")
    if job.webhook_url is None:
        raise ApiError(404, f"request {api_request!r} has no webhook")
    record = await store.webhook_delivery(owner, api_request)
    if record is None:  # not finished yet: its event is still to come
        return JSONResponse(
            {
                "id": None,
                "request_id": job.id,
                "url": job.webhook_url,
                "event_type": None,
                "status": "WAITING",
                "created_at": None,
                "delivered_at": None,
                "next_attempt_at": None,
                "last_error": None,
                "attempts": [],
            }
        )
    return JSONResponse(delivery_object(record))
