from __future__ import annotations

from chatq.backends.routing import Router, build_router
from chatq.config import BackendConfig


def test_exact_names_beat_globs_and_first_glob_wins() -> None:
    router = build_router(
        [
            BackendConfig(name="a", type="echo", models=("sonar*", "x")),
            BackendConfig(name="b", type="echo", models=("sonar-pro", "*")),
        ]
    )
    assert _name(router, "sonar-pro") == "b"
    assert _name(router, "sonar-small") == "a"
    assert _name(router, "x") == "a"
    assert _name(router, "anything") == "b"
    assert router.models() == ["sonar*", "x", "sonar-pro", "*"]


def test_unrouted_model_resolves_to_none() -> None:
    router = build_router([BackendConfig(name="a", type="echo", models=("echo",))])
    assert router.resolve("Echo") is None
    assert router.resolve("echo?") is None


def test_without_config_echo_is_served() -> None:
    assert _name(build_router([]), "echo") == "echo"


def _name(router: Router, model: str) -> str:
    backend = router.resolve(model)
    assert backend is not None
    return backend.name
