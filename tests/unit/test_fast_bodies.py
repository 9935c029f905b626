"""The batch route's one-step reading (api/fast_bodies.py) against the models' reading of
each item: whatever the fast one accepts, the models accept and read the same; and a batch
of items the models all accept as wrapped bodies is read the fast way (else it is useless)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatq.api.batch import fast_fields, model_fields
from chatq.api.errors import ApiError
from chatq.domain import MAX_METADATA_PAIRS, MAX_PRIORITY

# Each field: values that fit and values on either side of every constraint, in the JSON
# types a client could send instead.
odd: st.SearchStrategy[Any] = st.sampled_from([None, True, 0, 1, 2.5, 7.0, "", "x", [], {}])
text = st.one_of(
    st.sampled_from(
        ["", "a", "echo", "other", "a\x00b", "é", "x" * 64, "x" * 65, "x" * 256, "x" * 257]
    ),
    st.text(max_size=8),
)
content = st.one_of(
    text,
    st.none(),
    st.lists(st.dictionaries(st.sampled_from(["type", "text"]), st.one_of(text, odd)), max_size=2),
    odd,
)
metadata = st.one_of(
    st.dictionaries(text, st.one_of(text, odd), max_size=3),
    st.just({f"k{i}": "v" for i in range(MAX_METADATA_PAIRS + 1)}),
    st.just({f"k{i}": "v" for i in range(MAX_METADATA_PAIRS)}),
    odd,
)
priority = st.one_of(
    st.integers(-2 * MAX_PRIORITY, 2 * MAX_PRIORITY),
    st.sampled_from([MAX_PRIORITY, MAX_PRIORITY + 1, -MAX_PRIORITY - 1, 3.0, 3.5, "3"]),
    odd,
)
safe_text = st.text(max_size=5).filter(lambda t: "\x00" not in t)
valid_item = st.fixed_dictionaries(
    {
        "request": st.fixed_dictionaries(
            {
                "model": st.sampled_from(["echo", "other"]),
                "messages": st.lists(
                    st.fixed_dictionaries(
                        {"role": st.sampled_from(["user", "system"]), "content": st.text()}
                    ),
                    min_size=1,
                    max_size=2,
                ),
            },
            optional={"stream": st.booleans(), "max_tokens": st.integers(1, 100)},
        )
    },
    optional={
        "idempotency_key": safe_text.filter(bool),
        "metadata": st.dictionaries(safe_text.filter(bool), safe_text, max_size=3),
        "priority": st.integers(-MAX_PRIORITY, MAX_PRIORITY),
    },
)
# Where an item can go wrong, and what can be put there: each a path into the item.
CHANGES: list[tuple[tuple[Any, ...], st.SearchStrategy[Any]]] = [
    (("request", "model"), st.one_of(text, odd)),
    (("request", "messages"), st.one_of(st.just([]), odd)),
    (("request", "messages", 0, "role"), st.one_of(text, odd)),
    (("request", "messages", 0, "content"), content),
    (("request", "messages", 0, "name"), st.one_of(text, odd)),
    (("request", "stream"), st.one_of(st.sampled_from(["true", "no", 1, 0, 2]), odd)),
    (("request", "temperature"), st.one_of(st.floats(allow_nan=False, allow_infinity=False), odd)),
    (("request",), odd),
    (("idempotency_key",), st.one_of(text, odd)),
    (("webhook_url",), st.one_of(st.sampled_from(["http://example.com/h", "ftp://x"]), odd)),
    (("metadata",), metadata),
    (("priority",), priority),
    (("surplus",), text),
]


def changed(item: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """item with the field at path set to value (removed, for REMOVED)."""
    *parents, last = path
    where: Any = item
    for part in parents:
        where = where[part]
    if value is REMOVED:
        where.pop(last, None)
    else:
        where[last] = value
    return item


REMOVED = object()


def both_readings(items: list[Any]) -> tuple[Any, list[Any]]:
    raw = json.dumps({"requests": items}).encode()
    return fast_fields(raw), model_fields(json.loads(raw))


@pytest.mark.parametrize(
    ("path", "values"), CHANGES, ids=[".".join(map(str, p)) for p, _ in CHANGES]
)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_what_the_fast_reading_accepts_the_models_read_the_same(
    path: tuple[Any, ...], values: st.SearchStrategy[Any], data: st.DataObject
) -> None:
    """A batch of valid items, one with a field changed: read alike, or not the fast way
    because the models refuse it."""
    items = data.draw(st.lists(valid_item, min_size=1, max_size=3))
    value = data.draw(st.one_of(values, st.just(REMOVED)) if isinstance(path[-1], str) else values)
    items[0] = changed(items[0], path, value)
    fast, by_models = both_readings(items)
    if fast is not None:
        assert list(fast) == by_models
    else:
        assert any(isinstance(i, ApiError) for i in by_models), "a valid batch not read fast"


def test_the_flat_form_is_read_by_the_models_only() -> None:
    flat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "priority": 2}
    fast, by_models = both_readings([flat])
    assert fast is None
    assert by_models == [({"model": "echo", "messages": flat["messages"]}, None, None, None, 2)]


@settings(max_examples=100, deadline=None)
@given(st.lists(valid_item, min_size=1, max_size=4))
def test_a_batch_of_valid_wrapped_items_is_read_the_fast_way(items: list[Any]) -> None:
    fast, by_models = both_readings(items)
    assert fast is not None
    assert list(fast) == by_models


def test_numbers_the_models_coerce_are_coerced_alike() -> None:
    chat = {"model": "echo", "messages": [{"role": "user", "content": "hi", "name": "n"}]}
    items = [
        {"request": {**chat, "stream": True}, "priority": 7.0},
        {"request": {**chat, "stream": False}, "metadata": {}, "idempotency_key": None},
    ]
    fast, by_models = both_readings(items)
    assert fast is not None and list(fast) == by_models
    (request, _, _, _, priority), (second, key, _, metadata, _) = by_models
    assert request["stream"] is True and priority == 7
    assert second["stream"] is False and metadata == {} and key is None


@pytest.mark.parametrize("stream", ["true", 0, 1])
def test_a_stream_that_is_not_a_json_boolean_is_refused_both_ways(stream: Any) -> None:
    chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    fast, (by_models,) = both_readings([{"request": chat}])
    assert fast is None and isinstance(by_models, ApiError)
