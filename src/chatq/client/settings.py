"""The command-line client's settings: which server, which key, which model; built once, the
way config.py builds the server's (flag, then environment variable, then default)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from chatq.config import ConfigError, Option

DEFAULT_URL = "http://127.0.0.1:8000"


class ClientSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(default=DEFAULT_URL, description="the chatq server to talk to")
    key: SecretStr | None = Field(
        default=None, description="the API key, sent as a bearer token (chatq keys create)"
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        description="model of the requests made (default: the first the server lists)",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1]) < 1:
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")


# The client commands; every one talks HTTP to a server.
CLIENT = frozenset({"ask", "submit", "get", "wait", "cancel", "ls", "batch"})
MAKES_REQUESTS = frozenset({"ask", "submit"})

CLIENT_OPTIONS = (
    Option("url", "CHATQ_URL", "url", CLIENT, settings=ClientSettings),
    Option("key", "CHATQ_API_KEY", "key", CLIENT, settings=ClientSettings),
    Option("model", "CHATQ_MODEL", "model", MAKES_REQUESTS, settings=ClientSettings),
)


def build_client_settings(flags: Mapping[str, Any], env: Mapping[str, str]) -> ClientSettings:
    """ClientSettings from flags (None: not given) and the environment."""
    given: dict[str, Any] = {}
    for option in CLIENT_OPTIONS:
        value = flags.get(option.flag)
        value = value if value is not None else env.get(option.env)
        if value is not None:
            given[option.field] = value
    try:
        return ClientSettings.model_validate(given)
    except ValidationError as exc:
        flag = {o.field: o.flag for o in CLIENT_OPTIONS}
        problems = "; ".join(
            f"--{flag.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(problems) from None
