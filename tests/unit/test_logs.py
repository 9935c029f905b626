from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from chatq.logs import JsonFormatter, RequestIdFilter, request_context


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own writing JSON lines to a buffer, as --log-format json sets up."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("chatq.test-logs")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_in_a_request_context_carries_its_id(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = logged
    logger.info("outside %d", 1)
    request_context("req-1").run(logger.warning, "inside %s", "the job")
    logger.info("named", extra={"request_id": "req-2"})
    # An explicit id wins over the context's.
    request_context("req-1").run(logger.info, "both", extra={"request_id": "req-3"})
    got = [(line["level"], line["message"], line.get("request_id")) for line in lines(out)]
    assert got == [
        ("INFO", "outside 1", None),
        ("WARNING", "inside the job", "req-1"),
        ("INFO", "named", "req-2"),
        ("INFO", "both", "req-3"),
    ]
    first = lines(out)[0]
    assert first["logger"] == "chatq.test-logs" and first["time"].endswith("+00:00")


def test_a_traceback_stays_on_its_line(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = logged
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logger.exception("it failed: %r", 'quote"d')
    (line,) = lines(out)
    assert line["message"] == "it failed: 'quote\"d'"
    assert (
        line["exception"].startswith("Traceback") and "ValueError: bad\nvalue" in line["exception"]
    )
