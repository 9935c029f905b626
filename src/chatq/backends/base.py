"""What a backend is: something that turns a stored chat request into a CompletionResponse."""

from __future__ import annotations

from typing import Protocol

from chatq.domain import JSON


class BackendError(Exception):
    """An upstream call failed; the message says what happened, for error_message."""


class TransientError(BackendError):
    """Worth retrying: connection trouble, timeouts, 408, 429, 5xx, a malformed body."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(BackendError):
    """Retrying cannot help (a 4xx other than 408 and 429): fail the request at once."""


class Backend(Protocol):
    name: str

    async def run(self, request_id: str, request: JSON) -> JSON:
        """Run one chat request; return a normalized CompletionResponse.

        Raises TransientError or PermanentError."""

    async def aclose(self) -> None: ...
