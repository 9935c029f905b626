"""chatq's JSON text (stored columns, upstream request bodies): orjson's speed, json's reach."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chatq.json_text import dumps, loads


@pytest.mark.parametrize(
    "value",
    [
        {"id": "r1", "choices": [{"message": {"content": 'é 😀 \u2028 \x00 "q"'}}]},
        {"f": 1.5, "e": 1e-7, "max": 2**63 - 1, "min": -(2**63), "l": [True, None, 0.1]},
    ],
)
def test_ordinary_values_round_trip(value: Any) -> None:
    assert json.loads(dumps(value)) == value
    assert loads(dumps(value)) == value


@pytest.mark.parametrize(
    "value",
    [{"seed": 2**70}, {"text": "half a pair: \ud800"}, {1: "int key"}],
    ids=["integer past 64 bits", "lone surrogate", "non-string key"],
)
def test_what_orjson_refuses_is_stored_as_json_stores_it(value: Any) -> None:
    assert dumps(value) == json.dumps(value, separators=(",", ":"))
    assert loads(dumps(value)) == json.loads(dumps(value))


@pytest.mark.parametrize(
    "text",
    [
        '{"seed":123456789012345678901234567890}',  # orjson would make it a float
        '{"n":-18446744073709551616,"m":18446744073709551615}',  # just past, and at, 64 bits
        '"\\ud800"',  # a lone surrogate, escaped: orjson refuses it
        '{"s":"a digit run in a string: 00000000000000000000"}',
        '{"e":1e-7,"f":[0.1,2.5e300],"u":"\\u00e9"}',
    ],
)
def test_what_is_read_back_is_what_json_reads(text: str) -> None:
    value = loads(text)
    assert value == json.loads(text)
    assert [type(v) for v in _leaves(value)] == [type(v) for v in _leaves(json.loads(text))]


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def test_not_a_number_is_stored_as_null() -> None:
    assert json.loads(dumps({"score": float("nan")})) == {"score": None}
