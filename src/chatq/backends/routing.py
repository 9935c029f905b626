"""Route a model name to the backend that serves it: exact names first, then glob patterns."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from chatq.backends.base import Backend
from chatq.backends.echo import EchoBackend
from chatq.backends.local import LocalBackend, local_model_available
from chatq.backends.openai import OpenAIBackend
from chatq.config import BackendConfig

_GLOB_CHARS = frozenset("*?[")


class Router:
    def __init__(self, routes: Sequence[tuple[Sequence[str], Backend]]) -> None:
        self._exact: dict[str, Backend] = {}
        self._globs: list[tuple[str, Backend]] = []
        self._names: list[str] = []
        for patterns, backend in routes:
            for pattern in patterns:
                self._names.append(pattern)
                if _GLOB_CHARS & set(pattern):
                    self._globs.append((pattern, backend))
                else:
                    self._exact.setdefault(pattern, backend)
        self._backends = [backend for _, backend in routes]

    def resolve(self, model: str) -> Backend | None:
        backend = self._exact.get(model)
        if backend is not None:
            return backend
        for pattern, candidate in self._globs:
            if fnmatch.fnmatchcase(model, pattern):
                return candidate
        return None

    def models(self) -> list[str]:
        """The names and patterns served, in config order, for error messages."""
        return list(self._names)

    async def aclose(self) -> None:
        for backend in self._backends:
            await backend.aclose()


def default_backend_configs() -> tuple[BackendConfig, ...]:
    """What serves requests when the config file names no backend: the local model when the
    `local` extra is installed, and echo."""
    echo = BackendConfig(name="echo", type="echo", models=("echo",))
    if local_model_available():
        return (BackendConfig(name="smollm2", type="local", models=("smollm2",)), echo)
    return (echo,)


def build_router(configs: Sequence[BackendConfig]) -> Router:
    routes: list[tuple[Sequence[str], Backend]] = []
    for config in configs or default_backend_configs():
        routes.append((config.models, build_backend(config)))
    return Router(routes)


def build_backend(config: BackendConfig) -> Backend:
    if config.type == "echo":
        return EchoBackend(config.name)
    if config.type == "openai":
        return OpenAIBackend(config)
    return LocalBackend(config)
