from __future__ import annotations

from typing import Any

import pytest

from chatq.backends.normalize import MalformedCompletion, normalize_completion


def upstream(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "llama",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    body.update(overrides)
    return body


def test_fills_delta_and_cost_the_sdk_requires() -> None:
    out = normalize_completion(upstream(), "req-1", "asked-model")
    choice = out["choices"][0]
    assert choice["delta"] == {"role": "assistant", "content": "hi"}
    assert out["usage"]["cost"] == {
        "input_tokens_cost": 0.0,
        "output_tokens_cost": 0.0,
        "total_cost": 0.0,
    }
    assert out["id"] == "cmpl-1" and out["model"] == "llama" and out["created"] == 1700000000


def test_keeps_what_the_upstream_gave() -> None:
    cost = {
        "input_tokens_cost": 1.0,
        "output_tokens_cost": 2.0,
        "total_cost": 3.0,
        "request_cost": 5,
    }
    out = normalize_completion(
        upstream(
            citations=["https://example.com"],
            search_results=[{"title": "t", "url": "u"}],
            usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "cost": cost},
        ),
        "r",
        "m",
    )
    assert out["citations"] == ["https://example.com"]
    assert out["search_results"] == [{"title": "t", "url": "u"}]
    assert out["usage"]["cost"] == cost


def test_fills_missing_ids_usage_and_content() -> None:
    body = upstream(id=None, model=None, created="yesterday", usage=None)
    body["choices"] = [{"message": {"content": None}, "finish_reason": "tool_calls"}]
    out = normalize_completion(body, "req-9", "asked")
    assert out["id"] == "req-9" and out["model"] == "asked" and isinstance(out["created"], int)
    assert out["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": ""},
        "delta": {"role": "assistant", "content": ""},
        "finish_reason": "stop",
    }
    assert out["usage"]["total_tokens"] == 0


def test_length_finish_reason_is_kept() -> None:
    body = upstream()
    body["choices"][0]["finish_reason"] = "length"
    assert normalize_completion(body, "r", "m")["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    "body",
    [
        [],
        "text",
        {},
        {"choices": []},
        {"choices": "x"},
        {"choices": [{"text": "legacy completion"}]},
        {"choices": [None]},
    ],
)
def test_rejects_what_is_not_a_chat_completion(body: Any) -> None:
    with pytest.raises(MalformedCompletion):
        normalize_completion(body, "r", "m")
