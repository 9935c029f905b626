from __future__ import annotations

from pathlib import Path

import pytest

from chatq.config import ConfigError, build_settings


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "chatq.toml"
    path.write_text(text)
    return str(path)


def test_defaults() -> None:
    s = build_settings({}, {})
    assert s.database_url == "sqlite:///chatq.db" and s.port == 8000 and s.backends == ()
    assert s.worker.retention_days == 7


def test_flag_beats_env_beats_file(tmp_path: Path) -> None:
    config = write(tmp_path, 'host = "file"\nport = 1\ndatabase_url = "sqlite:///file.db"\n')
    env = {"CHATQ_CONFIG": config, "CHATQ_PORT": "2", "CHATQ_HOST": "env"}
    s = build_settings({"port": 3}, env)
    assert (s.host, s.port, s.database_url) == ("env", 3, "sqlite:///file.db")
    assert s.config_path == Path(config)


def test_log_format_from_file_env_or_flag(tmp_path: Path) -> None:
    assert build_settings({}, {}).log_format == "text"
    config = write(tmp_path, 'log_format = "json"\n')
    assert build_settings({"config": config}, {}).log_format == "json"
    assert build_settings({}, {"CHATQ_LOG_FORMAT": "JSON"}).log_format == "json"
    env = {"CHATQ_CONFIG": config}
    assert build_settings({"log-format": "text"}, env).log_format == "text"


def test_backends_and_secret_from_env(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """
[worker]
concurrency = 8
[[backends]]
name = "vllm"
type = "openai"
base_url = "http://127.0.0.1:8001/v1"
api_key_env = "VLLM_API_KEY"
models = ["llama-3.1-8b", "sonar*"]
upstream_model = "meta-llama/Llama-3.1-8B-Instruct"
max_concurrency = 4
timeout_s = 60
""",
    )
    s = build_settings({"config": config, "concurrency": 16}, {"VLLM_API_KEY": "sk-1"})
    (b,) = s.backends
    assert b.models == ("llama-3.1-8b", "sonar*") and b.max_concurrency == 4
    assert b.api_key is not None and b.api_key.get_secret_value() == "sk-1"
    assert "sk-1" not in repr(s)
    assert s.worker.concurrency == 16


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("[[backends]]\nname='x'\ntype='openai'\nmodels=['m']\n", {}, "needs base_url"),
        (
            "[[backends]]\nname='x'\ntype='magic'\nmodels=['m']\n",
            {},
            "backends.0.type: .*unknown backend type 'magic'; known: echo, local, openai",
        ),
        (
            "[[backends]]\nname='x'\ntype='echo'\nmodels=['m']\n"
            "[[backends]]\nname='x'\ntype='echo'\nmodels=['n']\n",
            {},
            "backend names must be unique; repeated: x",
        ),
        (
            "[[backends]]\nname='x'\ntype='local'\nmodels=['m']\nengine='gpu'\n",
            {},
            "backends.0.engine: Input should be 'batch' or 'contexts'",
        ),
        (
            "[[backends]]\nname='x'\ntype='local'\nmodels=['m']\nparallel=0\n",
            {},
            "backends.0.parallel: Input should be greater than or equal to 1",
        ),
        ("log_level = 'loud'\n", {}, "log_level"),
        ("log_format = 'xml'\n", {}, "log_format: Input should be 'text' or 'json'"),
        ("[[backends]]\nname='x'\ntype='echo'\nmodels=[]\n", {}, "backends.0.models"),
        ("[[backends]]\nname='x'\ntype='echo'\nmodels=['m']\ncolour='red'\n", {}, "colour"),
        ("[[backends]]\nname='x'\ntype='echo'\nmodels=['m']\napi_key_env='NOPE'\n", {}, "NOPE"),
        ("port = 'eighty'\n", {}, "port"),
        ("[worker]\nlease_s = -1\n", {}, "worker.lease_s"),
        ("this is not toml", {}, "not valid TOML"),
    ],
)
def test_bad_config_says_what_to_fix(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        build_settings({"config": write(tmp_path, text)}, env)


def test_local_engine_from_file(tmp_path: Path) -> None:
    text = "[[backends]]\nname='x'\ntype='local'\nmodels=['m']\n"
    (default,) = build_settings({}, {"CHATQ_CONFIG": write(tmp_path, text)}).backends
    assert (default.engine, default.parallel) == ("contexts", 8)
    chosen = text + "engine='batch'\nparallel=4\n"
    (batch,) = build_settings({}, {"CHATQ_CONFIG": write(tmp_path, chosen)}).backends
    assert (batch.engine, batch.parallel) == ("batch", 4)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        build_settings({"config": str(tmp_path / "nope.toml")}, {})
