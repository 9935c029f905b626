from __future__ import annotations

from chatq.backends.models import ModelTable
from chatq.config import BackendConfig


def test_exact_names_beat_globs_and_first_glob_wins() -> None:
    table = ModelTable(
        [
            BackendConfig(name="a", type="echo", models=("sonar*", "x")),
            BackendConfig(name="b", type="echo", models=("sonar-pro", "*")),
        ]
    )
    assert _name(table, "sonar-pro") == "b"
    assert _name(table, "sonar-small") == "a"
    assert _name(table, "x") == "a"
    assert _name(table, "anything") == "b"
    assert table.models() == ["sonar*", "x", "sonar-pro", "*"]


def test_named_lists_exact_names_with_the_backend_that_routes_them() -> None:
    table = ModelTable(
        [
            BackendConfig(name="a", type="echo", models=("sonar*", "x", "y")),
            BackendConfig(name="b", type="echo", models=("y", "z", "*")),
        ]
    )
    # Patterns name no model; a name two backends list is routed (and listed) by the first.
    assert table.named() == {"x": "a", "y": "a", "z": "b"}
    assert list(table.named()) == ["x", "y", "z"]


def test_unrouted_model_routes_to_none() -> None:
    table = ModelTable([BackendConfig(name="a", type="echo", models=("echo",))])
    assert table.route("Echo") is None
    assert table.route("echo?") is None


def test_without_config_echo_is_served() -> None:
    assert _name(ModelTable.from_config([]), "echo") == "echo"


def test_metric_labels_are_the_tables_entries_never_a_clients_free_text() -> None:
    table = ModelTable(
        [
            BackendConfig(name="a", type="echo", models=("sonar*", "x")),
            BackendConfig(name="b", type="echo", models=("sonar-pro",)),
        ]
    )
    assert table.metric_label("sonar-pro") == "sonar-pro"
    assert table.metric_label("x") == "x"
    assert table.metric_label("sonar-anything-a-client-chose") == "sonar*"
    assert table.metric_label("gone-from-the-config") == "unrouted"


def _name(table: ModelTable, model: str) -> str:
    backend = table.route(model)
    assert backend is not None
    return backend.name
