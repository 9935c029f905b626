"""Configured prices: read from the config file, found by model name or pattern, and used for
usage.cost only when the upstream reported none."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatq.backends.normalize import completion_response, normalize_completion
from chatq.backends.pricing import priced
from chatq.config import ConfigError, ModelPrice, build_settings

PRICED = """
[[backends]]
name = "up"
type = "openai"
base_url = "http://127.0.0.1:9/v1"
models = ["llama-3.1-8b", "sonar*"]
[backends.prices]
"llama-3.1-8b" = { prompt_per_1m = 0.2, completion_per_1m = 0.6 }
"sonar-pro" = { prompt_per_1m = 3, completion_per_1m = 15 }
"sonar*" = { prompt_per_1m = 1, completion_per_1m = 1 }
"""


def settings_of(tmp_path: Path, text: str) -> object:
    path = tmp_path / "chatq.toml"
    path.write_text(text)
    return build_settings({"config": str(path)}, {})


def test_prices_by_exact_name_then_pattern(tmp_path: Path) -> None:
    (backend,) = settings_of(tmp_path, PRICED).backends  # type: ignore[attr-defined]
    assert backend.price("llama-3.1-8b") == ModelPrice(prompt_per_1m=0.2, completion_per_1m=0.6)
    assert backend.price("sonar-pro") == ModelPrice(prompt_per_1m=3, completion_per_1m=15)
    assert backend.price("sonar") == ModelPrice(prompt_per_1m=1, completion_per_1m=1)
    assert backend.price("llama-3.1-70b") is None


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        ('"gpt-4o" = { prompt_per_1m = 1 }', "a price for 'gpt-4o', which it does not serve"),
        ('"sonar" = { prompt_per_1m = -1 }', "greater than or equal to 0"),
        ('"sonar" = { prompt_per_1m = nan }', "finite number"),
        ('"sonar" = { per_token = 1 }', "Extra inputs are not permitted"),
    ],
)
def test_bad_prices_are_refused_with_a_message(tmp_path: Path, prices: str, message: str) -> None:
    text = PRICED.split("[backends.prices]")[0] + "[backends.prices]\n" + prices + "\n"
    with pytest.raises(ConfigError, match=message):
        settings_of(tmp_path, text)


def test_a_price_fills_the_cost_the_upstream_left_out() -> None:
    raw = {
        "choices": [{"message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 500},
    }
    response = priced(
        normalize_completion(raw, "r1", "m"),
        ModelPrice(prompt_per_1m=0.2, completion_per_1m=0.6),
    )
    assert response["usage"]["cost"] == {
        "input_tokens_cost": 0.0002,
        "output_tokens_cost": 0.0003,
        "total_cost": 0.0005,
    }
    assert response["usage"]["total_tokens"] == 1500


def test_a_price_prices_our_own_backends_answers() -> None:
    response = priced(
        completion_response("r1", "echo", "hi there", 3, 2), ModelPrice(prompt_per_1m=1e6)
    )
    assert response["usage"]["cost"]["total_cost"] == 3.0


def test_the_upstreams_own_cost_is_kept() -> None:
    raw = {
        "choices": [{"message": {"role": "assistant", "content": "hi"}}],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 10,
            "cost": {"input_tokens_cost": 0.5, "total_cost": 0.5, "request_cost": 0.005},
        },
    }
    normalized = normalize_completion(raw, "r1", "m")
    assert priced(normalized, ModelPrice(prompt_per_1m=99, completion_per_1m=99)) == normalized
