"""The model table: which configured backend serves a model name (exact names first, then
glob patterns in config order). The API needs only this to accept or refuse a model; it
builds no backend."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from chatq.backends.local import local_model_available
from chatq.config import BackendConfig

_GLOB_CHARS = frozenset("*?[")


class ModelTable:
    def __init__(self, backends: Sequence[BackendConfig]) -> None:
        self.backends = tuple(backends)
        self._exact: dict[str, BackendConfig] = {}
        self._globs: list[tuple[str, BackendConfig]] = []
        for config in backends:
            for pattern in config.models:
                if _GLOB_CHARS & set(pattern):
                    self._globs.append((pattern, config))
                else:
                    self._exact.setdefault(pattern, config)

    @classmethod
    def from_config(cls, backends: Sequence[BackendConfig]) -> ModelTable:
        """The configured backends, or the defaults when the config names none."""
        return cls(backends or default_backends())

    def route(self, model: str) -> BackendConfig | None:
        """The backend that serves model, or None."""
        config = self._exact.get(model)
        if config is not None:
            return config
        for pattern, candidate in self._globs:
            if fnmatch.fnmatchcase(model, pattern):
                return candidate
        return None

    def metric_label(self, model: str) -> str:
        """How metrics name model: itself if the table names it, else the glob that routes
        it, so that clients' model names cannot make series without bound."""
        if model in self._exact:
            return model
        for pattern, _ in self._globs:
            if fnmatch.fnmatchcase(model, pattern):
                return pattern
        return "unrouted"

    def models(self) -> list[str]:
        """The names and patterns served, in config order, for error messages and listings."""
        return [pattern for config in self.backends for pattern in config.models]

    def named(self) -> dict[str, str]:
        """The exact names served, in config order, each with the name of its backend. A
        pattern names no model a client could pick, so it is left out."""
        return {model: config.name for model, config in self._exact.items()}


def default_backends() -> tuple[BackendConfig, ...]:
    """What serves requests when the config file names no backend: the local model when the
    `local` extra is installed, and echo."""
    echo = BackendConfig(name="echo", type="echo", models=("echo",))
    if local_model_available():
        return (BackendConfig(name="smollm2", type="local", models=("smollm2",)), echo)
    return (echo,)
