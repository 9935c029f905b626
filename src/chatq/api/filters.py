"""The list's filters, read from the query string: status (repeated or a comma list), model,
created_after, created_before, and metadata.KEY=VALUE (or metadata[KEY]=VALUE, as OpenAPI's
deepObject style writes it). Bad values are FastAPI-style 422s at their query location."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from chatq.api.models import METADATA_SCHEMA
from chatq.domain import (
    MAX_METADATA_KEY,
    MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE,
    ListFilter,
    Status,
)

_STATUSES = ", ".join(f"'{s.value}'" for s in Status)
_EXPECTED_STATUS = _STATUSES.rsplit(", ", 1)[0] + " or " + _STATUSES.rsplit(", ", 1)[1]
METADATA_PREFIX = "metadata"

STATUS_PARAMETER: dict[str, Any] = {
    "name": "status",
    "in": "query",
    "required": False,
    "style": "form",
    "explode": True,
    "description": "Only requests in one of these statuses: repeat the parameter "
    "(status=COMPLETED&status=FAILED) or give a comma-separated list (status=COMPLETED,FAILED).",
    "schema": {"type": "array", "items": {"$ref": "#/components/schemas/AsyncProcessingStatus"}},
}
METADATA_PARAMETER: dict[str, Any] = {
    "name": METADATA_PREFIX,
    "in": "query",
    "required": False,
    "style": "deepObject",
    "explode": True,
    "description": "Only requests whose metadata holds every pair given: "
    "metadata.KEY=VALUE, or metadata[KEY]=VALUE; at most "
    f"{MAX_METADATA_PAIRS} pairs.",
    # As the request's metadata, but keys without brackets: in metadata[KEY] they would nest.
    "schema": {
        **METADATA_SCHEMA,
        "propertyNames": {**METADATA_SCHEMA["propertyNames"], "pattern": r"^[^\x00\[\]]*$"},
    },
}


def list_filter(
    http: Request,
    model: str | None,
    created_after: int | None,
    created_before: int | None,
) -> ListFilter:
    """The filters of a list call: the declared query parameters, and the two read here."""
    return ListFilter(
        statuses=_statuses(http.query_params.getlist("status")),
        model=model,
        created_after=created_after,
        created_before=created_before,
        metadata=_metadata(http.query_params.multi_items()),
    )


def _statuses(given: list[str]) -> frozenset[Status]:
    found = set()
    for index, value in enumerate(part for item in given for part in item.split(",")):
        try:
            found.add(Status(value))
        except ValueError:
            raise _invalid(
                "enum",
                ("status", index),
                f"Input should be {_EXPECTED_STATUS}",
                value,
                {"expected": _EXPECTED_STATUS},
            ) from None
    return frozenset(found)


def _metadata(items: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    pairs: dict[str, str] = {}
    for name, value in items:
        key = _metadata_key(name)
        if key is None:
            continue
        if not 1 <= len(key) <= MAX_METADATA_KEY or "\x00" in key:
            raise _invalid(
                "metadata_key",
                (name,),
                f"a metadata key is 1 to {MAX_METADATA_KEY} characters, with no NUL",
                key,
            )
        if len(value) > MAX_METADATA_VALUE or "\x00" in value:
            raise _invalid(
                "metadata_value",
                (name,),
                f"a metadata value is at most {MAX_METADATA_VALUE} characters, with no NUL",
                value,
            )
        if pairs.get(key, value) != value:
            raise _invalid(
                "metadata_repeated",
                (name,),
                f"metadata key {key!r} is given twice, with different values: no request "
                "can match both",
                value,
            )
        pairs[key] = value
    if len(pairs) > MAX_METADATA_PAIRS:
        raise _invalid(
            "too_long",
            (METADATA_PREFIX,),
            f"at most {MAX_METADATA_PAIRS} metadata filters (a request holds at most "
            f"{MAX_METADATA_PAIRS} pairs)",
            len(pairs),
        )
    return tuple(sorted(pairs.items()))


def _metadata_key(name: str) -> str | None:
    """The key a metadata filter parameter names; None if the parameter is not one."""
    if not name.startswith(METADATA_PREFIX):
        return None
    rest = name[len(METADATA_PREFIX) :]
    if rest.startswith("."):
        return rest[1:]
    if rest.startswith("[") and rest.endswith("]") and len(rest) >= 2:
        key = rest[1:-1]
        if "[" in key or "]" in key:
            # metadata[a][b] nests an object, and a metadata value is a string. The bracket
            # form cannot tell that from a key "a][b", so it names no key with brackets in it
            # (the parameter's schema says so); the dot form names any key.
            raise _invalid(
                "metadata_nested",
                (name,),
                "a metadata value is a string: metadata[KEY][...] nests an object, and "
                "metadata[KEY] names no key with brackets in it (write metadata.KEY=VALUE)",
                name,
            )
        return key
    if rest and not rest.startswith("["):
        return None  # another parameter, such as metadata_x: not ours to judge
    raise _invalid(
        "metadata_filter",
        (name,),
        "filter on metadata as metadata.KEY=VALUE (or metadata[KEY]=VALUE)",
        name,
    )


def _invalid(
    kind: str, loc: tuple[str | int, ...], msg: str, value: Any, ctx: dict[str, Any] | None = None
) -> RequestValidationError:
    error: dict[str, Any] = {"type": kind, "loc": ("query", *loc), "msg": msg, "input": value}
    if ctx:
        error["ctx"] = ctx
    return RequestValidationError([error])
