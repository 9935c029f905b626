"""Backend types by the name a config's `type` gives. Each module is imported only when a
backend of its type is built, so a process that builds none (the API) loads none."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from chatq.backends.base import Backend

if TYPE_CHECKING:  # the settings validate a backend's type against this table
    from chatq.config import BackendConfig


def _echo(config: BackendConfig) -> Backend:
    from chatq.backends.echo import EchoBackend

    return EchoBackend(config.name)


def _local(config: BackendConfig) -> Backend:
    if config.engine == "contexts":
        from chatq.backends.local import LocalBackend

        return LocalBackend(config)
    from chatq.backends.local_batch import LocalBatchBackend

    return LocalBatchBackend(config)


def _openai(config: BackendConfig) -> Backend:
    from chatq.backends.openai import OpenAIBackend

    return OpenAIBackend(config)


BACKEND_TYPES: dict[str, Callable[[BackendConfig], Backend]] = {
    "echo": _echo,
    "local": _local,
    "openai": _openai,
}
