"""Log output: the default text lines, or (--log-format json) one JSON object per line with
time, level, logger and message, and request_id on every line about a request.

A line is about a request when it is logged with extra={"request_id": ...}, or from code
running in request_context(id): a worker runs each job's task in one, so everything logged
while it runs the job (its retries, its backend, its result) names the job."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "chatq_request_id", default=None
)


def request_context(request_id: str) -> contextvars.Context:
    """A copy of the current context in which log lines are about request_id."""
    context = contextvars.copy_context()
    context.run(_request_id.set, request_id)
    return context


class RequestIdFilter(logging.Filter):
    """Gives a record the request id of the context it is logged in, unless it has one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request_id = _request_id.get()
            if request_id is not None:
                record.request_id = request_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a traceback is a string field)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: int, log_format: LogFormat) -> None:
    """Send every log line, chatq's and its libraries', to stderr in log_format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RequestIdFilter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    # Neither format shows where a line was logged from, nor its thread or process: the
    # logging module's documented switches (the HOWTO's "Optimization") spare each record
    # finding them: a fifth of what a record cost (the worker logs a line per job).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # uvicorn's start-up lines repeat what chatq says itself (the listen address, once);
    # its warnings and errors still show.
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, level))
