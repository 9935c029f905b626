"""Make an upstream's chat completion parse under the official SDK's CompletionResponse."""

from __future__ import annotations

import time
from typing import Any

from chatq.domain import JSON

_ZERO_COST = {"input_tokens_cost": 0.0, "output_tokens_cost": 0.0, "total_cost": 0.0}
_FINISH_REASONS = {"stop", "length"}


class MalformedCompletion(ValueError):
    """The upstream answered 2xx with something that is not a chat completion."""


def normalize_completion(raw: Any, request_id: str, model: str) -> JSON:
    """Fill what the SDK requires (choices[].delta, usage.cost, ...); keep everything else."""
    if not isinstance(raw, dict):
        raise MalformedCompletion("upstream response is not a JSON object")
    choices = raw.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedCompletion("upstream response has no choices")
    out: JSON = dict(raw)
    out["id"] = str(raw.get("id") or request_id)
    out["model"] = str(raw.get("model") or model)
    created = raw.get("created")
    out["created"] = int(created) if isinstance(created, int | float) else int(time.time())
    out["object"] = "chat.completion"
    out["choices"] = [_choice(c, i) for i, c in enumerate(choices)]
    out["usage"] = _usage(raw.get("usage"))
    return out


def _choice(raw: Any, position: int) -> JSON:
    if not isinstance(raw, dict) or not isinstance(raw.get("message"), dict):
        raise MalformedCompletion(f"upstream choice {position} has no message")
    message = dict(raw["message"])
    message.setdefault("role", "assistant")
    if message.get("content") is None:
        message["content"] = ""
    choice: JSON = dict(raw)
    choice["index"] = raw.get("index") if isinstance(raw.get("index"), int) else position
    choice["message"] = message
    choice["delta"] = raw["delta"] if isinstance(raw.get("delta"), dict) else dict(message)
    finish = raw.get("finish_reason")
    # The SDK knows only "stop" and "length"; anything else (tool_calls, content_filter)
    # ended the turn, which is what "stop" says.
    choice["finish_reason"] = finish if finish in _FINISH_REASONS or finish is None else "stop"
    return choice


def _usage(raw: Any) -> JSON:
    usage: JSON = dict(raw) if isinstance(raw, dict) else {}
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    usage["prompt_tokens"] = prompt
    usage["completion_tokens"] = completion
    usage["total_tokens"] = _count(usage.get("total_tokens")) or prompt + completion
    cost = usage.get("cost")
    usage["cost"] = {**_ZERO_COST, **cost} if isinstance(cost, dict) else dict(_ZERO_COST)
    return usage


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and value >= 0 else 0


def completion_response(
    request_id: str,
    model: str,
    content: str,
    prompt_tokens: int,
    completion_tokens: int,
    finish_reason: str = "stop",
) -> JSON:
    """A CompletionResponse built by a backend of ours (echo, local)."""
    message = {"role": "assistant", "content": content}
    return {
        "id": request_id,
        "model": model,
        "created": int(time.time()),
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": message, "delta": dict(message), "finish_reason": finish_reason}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "cost": dict(_ZERO_COST),
        },
    }
