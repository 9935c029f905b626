"""The create body, read by hand: either Perplexity's {"request": {...}, ...} or, as some of
Perplexity's own examples send it, the chat request itself ({"model", "messages", ...}, and
chatq's webhook_url, metadata and priority, which are taken out of it).

Errors are FastAPI's own 422s, in the same shape and at the same locations, so a client
cannot tell this body from one FastAPI parsed."""

from __future__ import annotations

import email.message
import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from chatq.api.models import (
    ApiChatCompletionsRequest,
    AsyncApiChatCompletionsRequest,
    ChatqCreateFields,
)

Model = TypeVar("Model", bound=BaseModel)

EXPECTED_SHAPE = (
    'send {"request": {"model": ..., "messages": [...]}} (Perplexity\'s async body) '
    'or the chat request itself, {"model": ..., "messages": [...]}'
)


async def create_body(http: Request) -> AsyncApiChatCompletionsRequest:
    """The create body as the wrapped form, whichever form was sent."""
    return wrapped(await json_body(http))


def wrapped(body: Any) -> AsyncApiChatCompletionsRequest:
    """A parsed create body (or an item of a batch, which is one) as the wrapped form."""
    if isinstance(body, dict) and "request" not in body:
        if "model" in body or "messages" in body:
            return _flat(body)
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body", "request"), "msg": EXPECTED_SHAPE, "input": body}]
        )
    return validated(AsyncApiChatCompletionsRequest, body)


def _flat(body: dict[str, Any]) -> AsyncApiChatCompletionsRequest:
    """The flat form: chatq's own fields are chatq's, never the model's: taken out, so they
    are not sent upstream. Every error of either part is reported, as FastAPI would."""
    own = {name: body.pop(name) for name in ChatqCreateFields.model_fields if name in body}
    errors: list[Any] = []
    parts: list[BaseModel] = []
    for model, part in ((ApiChatCompletionsRequest, body), (ChatqCreateFields, own)):
        try:
            parts.append(validated(model, part))
        except RequestValidationError as exc:
            errors.extend(exc.errors())
    if errors:
        raise RequestValidationError(errors)
    request, fields = parts
    assert isinstance(request, ApiChatCompletionsRequest)
    assert isinstance(fields, ChatqCreateFields)
    return AsyncApiChatCompletionsRequest.model_construct(
        request=request,
        webhook_url=fields.webhook_url,
        metadata=fields.metadata,
        priority=fields.priority,
    )


def chat_body(body: Any) -> ApiChatCompletionsRequest:
    """The body of the sync route: the chat request itself."""
    return validated(ApiChatCompletionsRequest, body)


async def json_body(http: Request) -> Any:
    """The body parsed as FastAPI parses a JSON body: raw bytes for a media type that is not
    JSON, None for no body, a 422 for JSON that does not parse."""
    return parsed_json(await http.body(), http.headers.get("content-type"))


def parsed_json(raw: bytes, content_type: str | None) -> Any:
    """A body sent with content_type, parsed as json_body says."""
    if not raw:
        return None
    if not is_json(content_type):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _undecodable(exc.pos, exc.msg) from None
    except UnicodeDecodeError as exc:
        raise _undecodable(exc.start, "the body is not UTF-8") from None
    except RecursionError:
        raise _undecodable(0, "nested too deeply") from None


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI would parse a body of content_type as JSON: none, or a JSON type."""
    if not content_type or content_type == "application/json":  # the usual one needs no parse
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _undecodable(position: int, why: str) -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "type": "json_invalid",
                "loc": ("body", position),
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": why},
            }
        ]
    )


def validated(model: type[Model], body: Any) -> Model:
    if body is None:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None
