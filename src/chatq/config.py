"""One typed settings object, built once from flags, environment and the config file.

Precedence: command-line flag, then environment variable, then config file, then default.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator


class ConfigError(Exception):
    """The settings cannot be built; the message says what to fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendConfig(_Strict):
    name: str = Field(min_length=1)
    type: Literal["openai", "local", "echo"]
    models: tuple[str, ...] = Field(min_length=1)
    base_url: str | None = None
    api_key_env: str | None = None
    upstream_model: str | None = None
    model_path: str | None = None  # local: a GGUF file (default: SmolLM2 from the local extra)
    context_size: int = Field(default=2048, ge=128, description="local: context window, tokens")
    max_concurrency: int = Field(default=64, ge=1)
    timeout_s: float = Field(default=600.0, gt=0)
    # Resolved from api_key_env when the settings are built; never read from the file itself.
    api_key: SecretStr | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _openai_needs_url(self) -> BackendConfig:
        if self.type == "openai" and not self.base_url:
            raise ValueError(f"backend {self.name!r}: type 'openai' needs base_url")
        return self


class WorkerSettings(_Strict):
    concurrency: int = Field(default=256, ge=1, description="jobs being run per worker")
    lease_s: float = Field(default=30.0, gt=0, description="a claim expires unless renewed")
    poll_interval_s: float = Field(default=1.0, gt=0, description="idle wait between polls")
    max_attempts: int = Field(default=5, ge=1, description="upstream attempts per job")
    max_deliveries: int = Field(default=5, ge=1, description="claims before a job is failed")
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    deadline_s: float = Field(default=1800.0, gt=0, description="overall time per job")
    grace_s: float = Field(default=30.0, ge=0, description="shutdown grace for in-flight jobs")
    retention_days: float = Field(default=7.0, gt=0, description="finished jobs kept this long")


class Settings(_Strict):
    database_url: str = "sqlite:///chatq.db"
    pool_size: int = Field(default=10, ge=1, description="PostgreSQL connections per process")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_request_bytes: int = Field(
        default=10 * 2**20, ge=1024, description="larger request bodies are refused with 413"
    )
    key_cache_s: float = Field(
        default=5.0, ge=0, description="a revoked API key is refused within this long; 0: at once"
    )
    config_path: Path | None = None
    worker: WorkerSettings = WorkerSettings()
    backends: tuple[BackendConfig, ...] = ()


# flag name -> (environment twin, settings field)
ENV_TWINS: dict[str, str] = {
    "database": "CHATQ_DATABASE_URL",
    "config": "CHATQ_CONFIG",
    "host": "CHATQ_HOST",
    "port": "CHATQ_PORT",
    "concurrency": "CHATQ_WORKER_CONCURRENCY",
}


def build_settings(flags: Mapping[str, Any], env: Mapping[str, str]) -> Settings:
    """Merge flags (None means not given), environment and the config file into Settings."""

    def pick(flag: str) -> Any:
        value = flags.get(flag)
        return value if value is not None else env.get(ENV_TWINS[flag])

    config_path = pick("config")
    file_values: dict[str, Any] = _read_config_file(Path(config_path)) if config_path else {}

    merged: dict[str, Any] = dict(file_values)
    for flag, field in (("database", "database_url"), ("host", "host"), ("port", "port")):
        value = pick(flag)
        if value is not None:
            merged[field] = value
    concurrency = pick("concurrency")
    if concurrency is not None:
        merged["worker"] = {**merged.get("worker", {}), "concurrency": concurrency}
    if config_path:
        merged["config_path"] = Path(config_path)
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
