"""Configured prices: the cost of a response whose upstream reported none."""

from __future__ import annotations

from chatq.config import ModelPrice
from chatq.domain import JSON

_PER = 1_000_000
_COST_FIELDS = ("input_tokens_cost", "output_tokens_cost", "total_cost")


def priced(response: JSON, price: ModelPrice) -> JSON:
    """response with usage.cost computed from its tokens at price, unless the upstream
    reported a cost of its own (a normalized response without one has a cost of zeros)."""
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return response
    given = usage.get("cost")
    cost: JSON = given if isinstance(given, dict) else {}
    if any(cost.get(f) not in (0, None) for f in _COST_FIELDS):
        return response
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    input_cost = _round(prompt * price.prompt_per_1m / _PER) if isinstance(prompt, int) else 0.0
    output_cost = (
        _round(completion * price.completion_per_1m / _PER) if isinstance(completion, int) else 0.0
    )
    return {
        **response,
        "usage": {
            **usage,
            "cost": {
                **cost,
                "input_tokens_cost": input_cost,
                "output_tokens_cost": output_cost,
                "total_cost": _round(input_cost + output_cost),
            },
        },
    }


def _round(amount: float) -> float:
    # Sums of prices per million tokens: 12 decimals are exact enough, and spare the
    # 1.4000000000000001e-06 that float arithmetic leaves behind.
    return round(amount, 12)
