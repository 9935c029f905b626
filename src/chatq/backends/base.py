"""What a backend is: something that turns a stored chat request into a CompletionResponse."""

from __future__ import annotations

from collections.abc import Callable
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


TextSink = Callable[[str], None]


class Backend(Protocol):
    name: str

    async def run(self, request_id: str, request: JSON, on_text: TextSink | None = None) -> JSON:
        """Run one chat request; return a normalized CompletionResponse.

        With on_text, stream: on_text gets each piece of the answer's text as it is
        generated, in order, on the event loop's thread; the response's
        choices[0].message.content is then exactly the pieces joined. Cancelling run() stops
        the work promptly. Raises TransientError or PermanentError."""

    async def aclose(self) -> None: ...
