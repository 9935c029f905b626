"""One typed settings object, built once from flags, environment and the config file.

Precedence: command-line flag, then environment variable, then config file, then default.
OPTIONS declares each setting that a flag and an environment variable can give, once: the
command line, the environment and the settings object are all built from it.
"""

from __future__ import annotations

import fnmatch
import logging
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from chatq.backends.registry import BACKEND_TYPES
from chatq.logs import LogFormat


class ConfigError(Exception):
    """The settings cannot be built; the message says what to fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelPrice(_Strict):
    """What a model's tokens cost, in the currency of your choice (Perplexity's and OpenAI's
    are USD), per million tokens."""

    prompt_per_1m: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    completion_per_1m: float = Field(default=0.0, ge=0, allow_inf_nan=False)


class BackendConfig(_Strict):
    name: str = Field(min_length=1)
    type: str = Field(description="one of the backend types: " + ", ".join(sorted(BACKEND_TYPES)))
    models: tuple[str, ...] = Field(min_length=1)
    base_url: str | None = None
    api_key_env: str | None = None
    upstream_model: str | None = None
    model_path: str | None = None  # local: a GGUF file (default: SmolLM2 from the local extra)
    context_size: int = Field(default=2048, ge=128, description="local: context window, tokens")
    max_concurrency: int = Field(default=64, ge=1)
    # local: "batch" decodes concurrent requests together in one llama.cpp context, up to
    # `parallel` at a time; "contexts" gives each request a context of its own, one per core.
    engine: Literal["batch", "contexts"] = "contexts"
    parallel: int = Field(
        default=8, ge=1, le=256, description="local, batch engine: requests decoded together"
    )
    timeout_s: float = Field(default=600.0, gt=0)
    # By model name or glob pattern (exact names first, then patterns in file order): fills
    # usage.cost of a response whose upstream reported none.
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    # Resolved from api_key_env when the settings are built; never read from the file itself.
    api_key: SecretStr | None = Field(default=None, exclude=True)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in BACKEND_TYPES:
            known = ", ".join(sorted(BACKEND_TYPES))
            raise ValueError(f"unknown backend type {value!r}; known: {known}")
        return value

    @model_validator(mode="after")
    def _openai_needs_url(self) -> BackendConfig:
        if self.type == "openai" and not self.base_url:
            raise ValueError(f"backend {self.name!r}: type 'openai' needs base_url")
        return self

    @model_validator(mode="after")
    def _prices_of_served_models(self) -> BackendConfig:
        """A price for a model name this backend does not serve is a typo, not a setting (a
        pattern is taken as it is)."""
        for model in self.prices:
            if set(model) & set("*?["):
                continue
            if not any(fnmatch.fnmatchcase(model, p) for p in self.models):
                raise ValueError(
                    f"backend {self.name!r}: a price for {model!r}, which it does not serve "
                    f"(its models: {', '.join(self.models)})"
                )
        return self

    def price(self, model: str) -> ModelPrice | None:
        """The price of a model this backend serves, if one is set."""
        found = self.prices.get(model)
        if found is not None:
            return found
        for pattern, price in self.prices.items():
            if fnmatch.fnmatchcase(model, pattern):
                return price
        return None


class WorkerSettings(_Strict):
    concurrency: int = Field(
        default=256, ge=1, description="backend calls a worker has in flight at once"
    )
    lease_s: float = Field(default=30.0, gt=0, description="a claim expires unless renewed")
    poll_interval_s: float = Field(default=1.0, gt=0, description="idle wait between polls")
    max_attempts: int = Field(default=5, ge=1, description="upstream attempts per job")
    max_deliveries: int = Field(default=5, ge=1, description="claims before a job is failed")
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    deadline_s: float = Field(default=1800.0, gt=0, description="overall time per job")
    grace_s: float = Field(default=30.0, ge=0, description="shutdown grace for in-flight jobs")
    retention_days: float = Field(default=7.0, gt=0, description="finished jobs kept this long")
    text_flush_s: float = Field(
        default=0.2, gt=0, description="streamed text is checkpointed this often"
    )
    cancel_poll_s: float = Field(
        default=0.5, gt=0, description="a busy worker looks for cancels at least this often"
    )


class WebhookSettings(_Strict):
    allow_private_networks: bool = Field(
        default=False,
        description="deliver webhooks to loopback, private, link-local and other non-public "
        "addresses too (cloud metadata addresses stay refused)",
    )
    timeout_s: float = Field(
        default=10.0, gt=0, description="an attempt that has no answer within this long failed"
    )
    horizon_s: float = Field(
        default=86_400.0, gt=0, description="retries of a delivery stop this long after its event"
    )
    backoff_base_s: float = Field(default=1.0, ge=0, description="first retry within this long")
    backoff_max_s: float = Field(default=3600.0, ge=0, description="longest wait between tries")
    concurrency: int = Field(default=64, ge=1, description="deliveries in flight per worker")
    per_owner_concurrency: int = Field(
        default=8, ge=1, description="deliveries in flight per worker for any one owner"
    )
    signature_overlap_s: float = Field(
        default=86_400.0, ge=0, description="after a rotation, the old secret signs too this long"
    )
    poll_interval_s: float = Field(
        default=1.0, gt=0, description="idle look for due deliveries (a new one wakes at once)"
    )


class LimitSettings(_Strict):
    """The limits of keys that set none of their own (chatq keys create/update)."""

    max_unfinished: int = Field(
        default=0,
        ge=0,
        description="requests of one owner CREATED or IN_PROGRESS at once, past which a "
        "create gets 429 (0: no limit)",
    )
    rpm: int = Field(
        default=0,
        ge=0,
        description="requests a minute one key may create, past which a create gets 429 "
        "(0: no limit)",
    )


LOG_LEVELS = ("debug", "info", "warning", "error")


class Settings(_Strict):
    database_url: str = Field(
        default="sqlite:///chatq.db",
        description="database URL: sqlite:///relative.db, sqlite:////abs.db or postgresql://...",
    )
    pool_size: int = Field(default=10, ge=1, description="PostgreSQL connections per process")
    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="port to listen on (0: any)")
    max_request_bytes: int = Field(
        default=10 * 2**20, ge=1024, description="larger request bodies are refused with 413"
    )
    key_cache_s: float = Field(
        default=5.0, ge=0, description="a revoked API key is refused within this long; 0: at once"
    )
    log_level: str = Field(
        default="info", description="least severe log lines shown: " + ", ".join(LOG_LEVELS)
    )
    log_format: LogFormat = Field(
        default="text",
        description="text, or json: one JSON object a line (time, level, logger, message, "
        "and request_id on lines about a request)",
    )
    access_log: bool = Field(default=False, description="log a line per HTTP request")
    metrics_require_key: bool = Field(
        default=False, description="GET /metrics answers only a request with a valid API key"
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="address a worker's --metrics-port listens on"
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="a worker alone serves GET /metrics on this port (0: any; unset: none)",
    )
    config_path: Path | None = Field(
        default=None, description="TOML config file: [[backends]], [worker] and these settings"
    )
    worker: WorkerSettings = WorkerSettings()
    webhooks: WebhookSettings = WebhookSettings()
    limits: LimitSettings = LimitSettings()
    backends: tuple[BackendConfig, ...] = ()

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"log level {value!r} is not one of {', '.join(LOG_LEVELS)}")
        return value.lower()

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("backends")
    @classmethod
    def _unique_names(cls, value: tuple[BackendConfig, ...]) -> tuple[BackendConfig, ...]:
        names = [b.name for b in value]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"backend names must be unique; repeated: {', '.join(repeated)}")
        return value

    @property
    def log_level_number(self) -> int:
        return logging.getLevelNamesMapping()[self.log_level.upper()]


# The commands an option belongs to.
EVERY = frozenset({"serve", "api", "worker", "migrate", "keys", "webhooks", "usage"})
HTTP = frozenset({"serve", "api"})
WORKER = frozenset({"serve", "worker"})
WORKER_ALONE = frozenset({"worker"})
EVERY_SERVER = HTTP | WORKER  # the commands that can serve GET /metrics


@dataclass(frozen=True, slots=True)
class Option:
    """A setting that a flag and an environment variable can give."""

    flag: str  # --flag, and the key under which argparse hands its value over
    env: str
    field: str  # where it goes in Settings: "port", or "worker.concurrency"
    commands: frozenset[str]
    kind: Callable[[str], Any] | None = str  # the flag's argument type; None: a switch
    settings: type[BaseModel] = Settings  # the object the field is in (the client has its own)

    @property
    def help(self) -> str:
        """The field's description and default, and the environment twin."""
        model: type[BaseModel] = self.settings
        *parents, name = self.field.split(".")
        for parent in parents:
            model = model.model_fields[parent].annotation  # type: ignore[assignment]
        field = model.model_fields[name]
        default = "" if field.default in (None, False) else f" (default {field.default})"
        return f"{field.description}{default} (env: {self.env})"


OPTIONS = (
    Option("database", "CHATQ_DATABASE_URL", "database_url", EVERY),
    Option("config", "CHATQ_CONFIG", "config_path", EVERY),
    Option("log-level", "CHATQ_LOG_LEVEL", "log_level", EVERY),
    Option("log-format", "CHATQ_LOG_FORMAT", "log_format", EVERY),
    Option("host", "CHATQ_HOST", "host", HTTP),
    Option("port", "CHATQ_PORT", "port", HTTP, int),
    Option("access-log", "CHATQ_ACCESS_LOG", "access_log", HTTP, None),
    Option(
        "metrics-require-key",
        "CHATQ_METRICS_REQUIRE_KEY",
        "metrics_require_key",
        EVERY_SERVER,
        None,
    ),
    Option("metrics-host", "CHATQ_METRICS_HOST", "metrics_host", WORKER_ALONE),
    Option("metrics-port", "CHATQ_METRICS_PORT", "metrics_port", WORKER_ALONE, int),
    Option("concurrency", "CHATQ_WORKER_CONCURRENCY", "worker.concurrency", WORKER, int),
    Option(
        "webhooks-allow-private-networks",
        "CHATQ_WEBHOOKS_ALLOW_PRIVATE_NETWORKS",
        "webhooks.allow_private_networks",
        WORKER,
        None,
    ),
)


def build_settings(flags: Mapping[str, Any], env: Mapping[str, str]) -> Settings:
    """Merge flags (by OPTIONS' flag names; None means not given), environment and the config
    file into Settings."""
    given: dict[str, Any] = {}
    for option in OPTIONS:
        value = flags.get(option.flag)
        given[option.field] = value if value is not None else env.get(option.env)

    config_path = given.pop("config_path")
    merged: dict[str, Any] = _read_config_file(Path(config_path)) if config_path else {}
    if config_path:
        merged["config_path"] = Path(config_path)
    for field, value in given.items():
        if value is not None:
            *parents, name = field.split(".")
            section = merged
            for parent in parents:
                section = section.setdefault(parent, {})
                if not isinstance(section, dict):
                    raise ConfigError(f"config file: [{parent}] must be a table")
            section[name] = value
    merged["backends"] = [_with_secret(b, env) for b in merged.get("backends", [])]
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _with_secret(backend: Any, env: Mapping[str, str]) -> Any:
    if not isinstance(backend, dict) or not backend.get("api_key_env"):
        return backend
    name = backend["api_key_env"]
    if name not in env:
        raise ConfigError(f"backend {backend.get('name')!r}: environment variable {name} is unset")
    return {**backend, "api_key": env[name]}


def _explain(exc: ValidationError) -> str:
    lines = ["invalid settings:"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)
