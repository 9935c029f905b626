"""A batch of wrapped create bodies read in one step: the raw JSON validated by pydantic
straight into dicts, with the same constraints as the models of api/models.py.

The models cost a batch of 1,000 most of its time: about 11 µs an item to validate into
model instances and 8 µs to dump each back into the dict that is stored, against about 4 µs
an item for the whole body here, parse included (docs/benchmarks.md section 14). This is
only a way to accept: a body it refuses is read again, item by item, through the models,
whose errors are the ones the client sees. tests/unit/test_fast_bodies.py checks that what
this accepts the models accept too, and read the same."""

from __future__ import annotations

from typing import Annotated, NotRequired

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from chatq.api.models import (
    CONTENT,
    MAX_BATCH,
    Content,
    IdempotencyKey,
    ModelName,
    Priority,
    RequestMetadata,
    Role,
    Stream,
    WebhookUrl,
)


@with_config(ConfigDict(extra="allow"))
class _Message(TypedDict):
    role: Role
    content: Annotated[Content, CONTENT]


@with_config(ConfigDict(extra="allow"))
class ChatRequest(TypedDict):
    """ApiChatCompletionsRequest, as the dict that is stored (only the fields sent)."""

    model: ModelName
    messages: Annotated[list[_Message], Field(min_length=1)]
    stream: NotRequired[Stream]


class CreateBody(TypedDict):
    """AsyncApiChatCompletionsRequest (the wrapped form), as a dict of the fields sent."""

    request: ChatRequest
    idempotency_key: NotRequired[IdempotencyKey]
    webhook_url: NotRequired[WebhookUrl]
    metadata: NotRequired[RequestMetadata | None]
    priority: NotRequired[Priority]


class _Batch(TypedDict):
    requests: Annotated[list[CreateBody], Field(min_length=1, max_length=MAX_BATCH)]


_BATCH = TypeAdapter(_Batch)


def valid_batch(raw: bytes) -> list[CreateBody] | None:
    """The items of a batch body whose every item is a valid wrapped create body; None for
    any other body, to be read the models' way."""
    try:
        return _BATCH.validate_json(raw)["requests"]
    except ValidationError:
        return None
