"""The wire schemas, named as Perplexity's spec names them (they appear in /openapi.json)."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from chatq.domain import (
    MAX_METADATA_KEY,
    MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE,
    MAX_PRIORITY,
    MIN_PRIORITY,
)

MAX_IDEMPOTENCY_KEY = 256
# Stored as text columns, which PostgreSQL cannot give a NUL character.
NO_NUL = r"^[^\x00]*$"


# The pattern also refuses a lone surrogate (JSON's "\\ud800": no character, so no database
# could match it), as string_unicode.
MetadataKey = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_METADATA_KEY, pattern=NO_NUL)
]
MetadataValue = Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE, pattern=NO_NUL)]
# Written out: pydantic would state the key's pattern as patternProperties, which leaves a
# key that breaks it unconstrained (and schema-valid) instead of refused.
METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "maxProperties": MAX_METADATA_PAIRS,
    "propertyNames": {"minLength": 1, "maxLength": MAX_METADATA_KEY, "pattern": NO_NUL},
    "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_VALUE, "pattern": NO_NUL},
}
RequestMetadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(max_length=MAX_METADATA_PAIRS),
    WithJsonSchema(
        {
            **METADATA_SCHEMA,
            "description": f"Your labels for the request: up to {MAX_METADATA_PAIRS} pairs, "
            f"keys of 1 to {MAX_METADATA_KEY} characters, string values of up to "
            f"{MAX_METADATA_VALUE}. Returned on get and list, and filtered on with "
            "metadata.KEY=VALUE; never sent to the model.",
        }
    ),
]


def _integral(value: object) -> object:
    """908.0 is an integer to JSON Schema (and to clients that write numbers as floats);
    2.5, "5" and true are not, and strict validation refuses them."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Priority = Annotated[
    int,
    Field(
        ge=MIN_PRIORITY,
        le=MAX_PRIORITY,
        strict=True,
        description="Orders this owner's own waiting requests: higher is started first; "
        "equal priorities start oldest first. Other owners' requests take turns with yours "
        f"whatever it is (fair share). An integer from {MIN_PRIORITY} to {MAX_PRIORITY}.",
    ),
    # After the constraints, so that they stay the integer's (minimum and maximum in the
    # schema); it runs before them.
    BeforeValidator(_integral),
]
WebhookUrl = Annotated[
    str | None,
    Field(
        description="chatq POSTs the signed async_chat_completion.completed or .failed event "
        "here when the request ends (default: the API key's webhook, if it has one). An http "
        "or https URL; anything else is a 400 invalid_webhook_url.",
    ),
]


# The constraints of a create body's fields, written once: the models below and the batch
# route's TypedDicts (api/fast_bodies.py) both check them.
Role = Literal["system", "user", "assistant", "tool"]
Content = str | list[dict[str, Any]] | None
CONTENT = Field(description="Text, or a list of content chunks as Perplexity accepts them.")
ModelName = Annotated[str, Field(min_length=1, max_length=256, pattern=NO_NUL)]
IdempotencyKey = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY,
        pattern=NO_NUL,
        description="Replays with the same key and request return the same object.",
    ),
]
# A JSON boolean: strict, so 0, 1 and "true" are refused as the schema says, not read as one.
Stream = Annotated[
    bool | None,
    Field(
        strict=True,
        description="true: publish the text as it is generated, as delta events on the "
        "request's event stream (the sync route: as chat.completion.chunk events). The "
        "stored result is the whole response either way.",
    ),
]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: Annotated[Content, CONTENT]


class ApiChatCompletionsRequest(BaseModel):
    """A chat request. Fields beyond these are kept verbatim and passed to the backend."""

    model_config = ConfigDict(extra="allow")

    model: ModelName
    messages: list[ChatMessage] = Field(min_length=1)
    stream: Stream = None


class AsyncApiChatCompletionsRequest(BaseModel):
    request: ApiChatCompletionsRequest
    idempotency_key: IdempotencyKey = None
    webhook_url: WebhookUrl = None
    metadata: RequestMetadata | None = None
    priority: Priority = 0


# A create body: the wrapped form, or the chat request itself (the flat form, api/bodies.py).
CREATE_BODY_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"$ref": "#/components/schemas/AsyncApiChatCompletionsRequest"},
        {"$ref": "#/components/schemas/ApiChatCompletionsRequest"},
    ]
}
MAX_BATCH = 1000


class AsyncApiChatCompletionsBatchRequest(BaseModel):
    """Requests to create at once, in one transaction. Each item is read as a create body
    is; an item that is not one fails alone, in its place in the results."""

    # Any: the items are read one by one (api/batch.py), so that a bad one fails alone.
    requests: Annotated[
        list[Any],
        Field(min_length=1, max_length=MAX_BATCH),
        WithJsonSchema(
            {
                "type": "array",
                "items": CREATE_BODY_SCHEMA,
                "minItems": 1,
                "maxItems": MAX_BATCH,
                "description": f"1 to {MAX_BATCH} create bodies, each as POST "
                "/async/chat/completions takes one (with its own idempotency_key, "
                "webhook_url, metadata and priority).",
            }
        ),
    ]


class ChatqCreateFields(BaseModel):
    """chatq's own fields of a flat create body (the chat request itself): taken out of it,
    never sent to the model."""

    webhook_url: WebhookUrl = None
    metadata: RequestMetadata | None = None
    priority: Priority = 0


class AsyncProcessingStatus(enum.StrEnum):
    """The status of an asynchronous processing job."""

    CREATED = "CREATED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class ChatMessageOutput(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class Choice(BaseModel):
    model_config = ConfigDict(extra="allow")

    index: int
    message: ChatMessageOutput
    delta: ChatMessageOutput
    finish_reason: Literal["stop", "length"] | None = None


class Cost(BaseModel):
    model_config = ConfigDict(extra="allow")

    input_tokens_cost: float
    output_tokens_cost: float
    total_cost: float


class UsageInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: Cost


class CompletionResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    model: str
    created: int
    object: str = "chat.completion"
    choices: list[Choice]
    usage: UsageInfo | None = None
    citations: list[str] | None = None
    search_results: list[dict[str, Any]] | None = None


class AsyncApiChatCompletionsResponseSummary(BaseModel):
    id: str = Field(title="ID")
    created_at: int = Field(description="Unix timestamp of when the request was created.")
    started_at: int | None = Field(None, description="Unix timestamp of when processing started.")
    completed_at: int | None = Field(
        None, description="Unix timestamp of when processing completed."
    )
    failed_at: int | None = Field(None, description="Unix timestamp of when processing failed.")
    model: str
    status: AsyncProcessingStatus
    metadata: dict[str, str] = Field(
        default_factory=dict, description="The metadata given on create ({} if none)."
    )


class AsyncApiChatCompletionsResponse(AsyncApiChatCompletionsResponseSummary):
    response: CompletionResponse | None = None
    error_message: str | None = None


class ListAsyncApiChatCompletionsResponse(BaseModel):
    requests: list[AsyncApiChatCompletionsResponseSummary]
    next_token: str | None = Field(None, description="Token for fetching the next page of results.")


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: int


class ErrorResponse(BaseModel):
    error: ErrorDetail


class AsyncApiChatCompletionsBatchResponse(BaseModel):
    results: list[AsyncApiChatCompletionsResponse | ErrorResponse] = Field(
        description="One per item, in the order sent: the created request (or, for a "
        "replayed idempotency_key, the request it made before), or why that item alone "
        "was not stored."
    )


class WebhookAttempt(BaseModel):
    attempt: int = Field(description="1 for the first attempt, and so on.")
    at: int = Field(description="Unix timestamp of the attempt.")
    status_code: int | None = Field(None, description="The receiver's HTTP status, if it answered.")
    error: str | None = Field(None, description="What went wrong, if anything.")


class WebhookDeliveryStatus(enum.StrEnum):
    """WAITING: the request has not finished yet; PENDING: to be tried (again) at
    next_attempt_at; DELIVERED: a 2xx was received; FAILED: given up."""

    WAITING = "WAITING"
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


class WebhookDelivery(BaseModel):
    id: str | None = Field(description="The webhook-id header of every attempt (msg_...).")
    request_id: str
    url: str
    event_type: str | None = Field(
        description="async_chat_completion.completed or async_chat_completion.failed."
    )
    status: WebhookDeliveryStatus
    created_at: int | None = Field(description="Unix timestamp of the event.")
    delivered_at: int | None = None
    next_attempt_at: int | None = Field(None, description="Unix timestamp of the next try.")
    last_error: str | None = None
    attempts: list[WebhookAttempt]


class UsageRecord(BaseModel):
    date: str | None = Field(
        description="The UTC day (YYYY-MM-DD) the requests finished; null with group_by=model."
    )
    model: str | None = Field(description="The model requested; null with group_by=day.")
    requests: int = Field(description="Requests that finished (COMPLETED or FAILED).")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float = Field(
        description="The sum of the responses' usage.cost.total_cost: the upstream's, or "
        "computed from the configured prices."
    )


class UsageResponse(BaseModel):
    data: list[UsageRecord]


class Model(BaseModel):
    """A model this server routes, as OpenAI's model list names one."""

    id: str = Field(description="The name to send as a request's model.")
    object: Literal["model"] = "model"
    created: int = Field(description="Unix timestamp of when this API process started.")
    owned_by: str = Field(description="The name of the configured backend that serves it.")


class ListModelsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class SubmittedRequest(BaseModel):
    """A request as its client submitted it: what the dashboard's request page shows."""

    id: str
    request: dict[str, Any] = Field(
        description="The chat request as submitted: model, messages and every other field."
    )
    attempts: int = Field(
        description="How many times a worker has started it: 0 while it waits; more than 1 "
        "if a worker died and another took it over."
    )


class QueueCount(BaseModel):
    status: Literal["CREATED", "IN_PROGRESS"]
    model: str
    requests: int


class OwnerUsageRecord(BaseModel):
    owner: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float


class AdminSummary(BaseModel):
    """What an admin key sees of the whole server."""

    queue: list[QueueCount] = Field(
        description="Unfinished requests of every owner per status and model (now)."
    )
    usage: list[OwnerUsageRecord] = Field(
        description="Each owner's usage per model over the range, as GET /usage counts it."
    )
