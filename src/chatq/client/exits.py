"""The client's exit statuses, and the one line a failure prints."""

from __future__ import annotations

import sys

from chatq.client.http import ServerError, Unreachable

OK = 0
FAILED = 1  # the request (or any request of a batch) FAILED, or a batch line was bad
USAGE = 2  # bad flags or input, or the server refused the request as invalid (400, 409, 413, 422)
NOT_FOUND = 3  # no such request (404)
AUTH = 4  # no key, a wrong or revoked key, or not allowed (401, 403)
UNAVAILABLE = 5  # the server is unreachable or answered 5xx
LIMITED = 6  # a limit of the key refused the request for now (429)
INTERRUPTED = 130  # Ctrl-C


def fail(message: str) -> None:
    """One line on stderr."""
    print(f"chatq: {message}", file=sys.stderr, flush=True)


def server_error(exc: ServerError | Unreachable) -> int:
    """Say what went wrong in one line, and the exit status that names its kind."""
    if isinstance(exc, Unreachable):
        fail(str(exc))
        return UNAVAILABLE
    fail(f"{exc.message} ({exc.status} {exc.kind})")
    return status_of(exc.status)


def status_of(http_status: int) -> int:
    if http_status in (401, 403):
        return AUTH
    if http_status == 404:
        return NOT_FOUND
    if http_status == 429:
        return LIMITED
    if http_status >= 500:
        return UNAVAILABLE
    return USAGE
