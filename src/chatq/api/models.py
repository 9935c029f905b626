"""The wire schemas, named as Perplexity's spec names them (they appear in /openapi.json)."""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_IDEMPOTENCY_KEY = 256
# Stored as text columns, which PostgreSQL cannot give a NUL character.
NO_NUL = r"^[^\x00]*$"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = Field(
        description="Text, or a list of content chunks as Perplexity accepts them."
    )


class ApiChatCompletionsRequest(BaseModel):
    """A chat request. Fields beyond these are kept verbatim and passed to the backend."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256, pattern=NO_NUL)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = Field(
        default=None,
        description="true: publish the text as it is generated, as delta events on the "
        "request's event stream (the sync route: as chat.completion.chunk events). The "
        "stored result is the whole response either way.",
    )


class AsyncApiChatCompletionsRequest(BaseModel):
    request: ApiChatCompletionsRequest
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY,
        pattern=NO_NUL,
        description="Replays with the same key and request return the same object.",
    )


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
