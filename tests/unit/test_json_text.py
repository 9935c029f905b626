"""chatq's JSON text (stored columns, upstream request bodies): orjson's speed, json's reach."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chatq.json_text import dumps


@pytest.mark.parametrize(
    "value",
    [
        {"id": "r1", "choices": [{"message": {"content": 'é 😀 \u2028 \x00 "q"'}}]},
        {"f": 1.5, "e": 1e-7, "max": 2**63 - 1, "min": -(2**63), "l": [True, None, 0.1]},
    ],
)
def test_ordinary_values_round_trip(value: Any) -> None:
    assert json.loads(dumps(value)) == value


@pytest.mark.parametrize(
    "value",
    [{"seed": 2**70}, {"text": "half a pair: \ud800"}, {1: "int key"}],
    ids=["integer past 64 bits", "lone surrogate", "non-string key"],
)
def test_what_orjson_refuses_is_stored_as_json_stores_it(value: Any) -> None:
    assert dumps(value) == json.dumps(value, separators=(",", ":"))


def test_not_a_number_is_stored_as_null() -> None:
    assert json.loads(dumps({"score": float("nan")})) == {"score": None}
