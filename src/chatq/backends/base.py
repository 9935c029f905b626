"""What a backend is: something that turns a stored chat request into a CompletionResponse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from chatq.domain import JSON

# Receives each piece of an answer's text as it is generated, in order, on the event loop's
# thread.
TextSink = Callable[[str], None]


class BackendError(Exception):
    """An upstream call failed; the message says what happened, for error_message.

    kind classes it for the metrics: 4xx, 5xx, timeout, connection, invalid (an answer that
    is not a chat completion), or other."""

    kind = "other"

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class TransientError(BackendError):
    """Worth retrying: connection trouble, timeouts, 408, 429, 5xx, a malformed body."""

    def __init__(
        self, message: str, retry_after: float | None = None, *, kind: str | None = None
    ) -> None:
        super().__init__(message, kind=kind)
        self.retry_after = retry_after


class PermanentError(BackendError):
    """Retrying cannot help (a 4xx other than 408 and 429): fail the request at once."""

    kind = "4xx"


class Backend(Protocol):
    name: str

    async def run(self, request_id: str, request: JSON, on_text: TextSink | None = None) -> JSON:
        """Run one chat request; return a normalized CompletionResponse.

        With on_text, stream: call on_text(piece) with each piece of the answer's text as it
        is generated, in order, on the event loop's thread; the returned response's
        choices[0].message.content is then exactly the concatenation of the pieces. An
        exception raised by on_text ends the call and propagates.

        The request's own `stream` field is ignored: a backend streams exactly when on_text
        is given.

        Cancelling run() stops the work promptly: an upstream connection is closed (never
        returned to a keep-alive pool half-read), a local model stops between tokens. After
        run() has returned or raised, on_text is not called again.

        Raises TransientError or PermanentError."""

    async def aclose(self) -> None: ...
