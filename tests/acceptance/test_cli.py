"""The command line, run as a user runs it."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

import chatq
from chatq.client.settings import CLIENT_OPTIONS
from chatq.config import OPTIONS
from tests.acceptance.conftest import PATH, chat, wait_finished
from tests.harness import ChatqServer, chatq_env, run_cli


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["api"],
        ["worker"],
        ["migrate"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "update"],
        ["webhooks", "secret"],
        ["webhooks", "deliveries"],
        ["webhooks", "replay"],
        ["usage"],
        ["ask"],
        ["submit"],
        ["get"],
        ["wait"],
        ["cancel"],
        ["ls"],
        ["batch", "run"],
    ],
)
def test_every_flag_names_its_env_twin(command: list[str]) -> None:
    done = run_cli(*command, "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    options = [option for option in (*OPTIONS, *CLIENT_OPTIONS) if command[0] in option.commands]
    server, client = {"database", "config"}, {"url", "key"}
    assert server <= {o.flag for o in options} or client <= {o.flag for o in options}
    for option in options:
        assert f"--{option.flag}" in text
        assert f"(env: {option.env})" in text


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"chatq {chatq.__version__}"


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'keys.db'}"
    assert run_cli("migrate", "--database", db).returncode == 0
    empty = run_cli("keys", "list", "--database", db)
    assert empty.returncode == 0 and "no keys yet" in empty.stdout
    created = run_cli("keys", "create", "ci-bot", "--owner", "team-a", "--database", db)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("cq-") and len(secret) > 40
    key_id = secret.split("-")[1]

    listed = run_cli("keys", "list", "--database", db)
    assert listed.returncode == 0
    assert key_id in listed.stdout and "ci-bot" in listed.stdout and "owner=team-a" in listed.stdout
    assert "active" in listed.stdout
    assert secret not in listed.stdout, "secrets are shown once, at creation"
    with sqlite3.connect(tmp_path / "keys.db") as conn:
        stored = conn.execute("SELECT secret_hash FROM api_keys").fetchall()
    conn.close()
    assert stored and secret not in str(stored), "stored hashed"

    assert run_cli("keys", "revoke", key_id, "--database", db).returncode == 0
    assert "revoked" in run_cli("keys", "list", "--database", db).stdout
    again = run_cli("keys", "revoke", key_id, "--database", db)
    assert again.returncode == 1 and "no active key" in again.stderr


def test_env_twin_selects_the_database(tmp_path: Path) -> None:
    env = chatq_env(CHATQ_DATABASE_URL=f"sqlite:///{tmp_path / 'env.db'}")
    assert run_cli("migrate", env=env).returncode == 0
    assert (tmp_path / "env.db").exists()
    assert run_cli("keys", "create", "x", env=env).returncode == 0


@pytest.mark.parametrize("command", [["keys", "list"], ["keys", "create", "me"], ["worker"]])
def test_a_command_that_needs_the_database_refuses_a_missing_file(
    tmp_path: Path, command: list[str]
) -> None:
    """Run from the wrong directory, it says where it looked instead of making a database
    that the running server does not read."""
    done = run_cli(*command, "--database", "sqlite:///elsewhere.db", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"no database at {tmp_path / 'elsewhere.db'}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "elsewhere.db").exists()


def test_migrate_applies_once(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'm.db'}"
    first = run_cli("migrate", "--database", db)
    assert first.returncode == 0 and "applied: 0001_init" in first.stdout
    second = run_cli("migrate", "--database", db)
    assert second.returncode == 0 and "already up to date" in second.stdout


def test_bad_settings_exit_2_with_a_message(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[[backends]]\nname = 'x'\ntype = 'openai'\nmodels = ['m']\n")
    done = run_cli("serve", "--config", str(config))
    assert done.returncode == 2
    assert "needs base_url" in done.stderr and "Traceback" not in done.stderr
    unsupported = run_cli("migrate", "--database", "mysql://x")
    assert unsupported.returncode == 2 and "unsupported database URL" in unsupported.stderr


def test_unreachable_database_exits_1_with_a_message() -> None:
    # Port 9 on loopback: nothing listens there, so the connection is refused at once.
    done = run_cli("migrate", "--database", "postgresql://nobody@127.0.0.1:9/none")
    assert done.returncode == 1
    assert "database is unreachable" in done.stderr and "Traceback" not in done.stderr


def test_serve_on_an_empty_database_prints_a_working_first_key(tmp_path: Path) -> None:
    # The relative form resolves against the working directory, as SQLAlchemy's does.
    server = ChatqServer(tmp_path, "--database", "sqlite:///fresh.db").start()
    try:
        key = server.stdout_lines[-2]
        assert "created key 'default'" in server.stdout_lines[-3]
        with server.client(key) as client:
            assert client.get("/async/chat/completions").status_code == 200
    finally:
        assert server.stop() in (0, -15)
    assert (tmp_path / "fresh.db").exists()

    again = ChatqServer(tmp_path, "--database", "sqlite:///fresh.db").start()
    try:
        assert not any("created key" in line for line in again.stdout_lines)
    finally:
        again.stop()
    log = again.log()
    assert "worker" in log and "stopped" in log, "the worker drained on SIGTERM"


def test_api_and_worker_as_separate_processes(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'split.db'}"
    assert run_cli("migrate", "--database", db).returncode == 0
    key = run_cli("keys", "create", "split", "--database", db).stdout.strip().splitlines()[-1]
    api = ChatqServer(tmp_path, "--database", db, command="api").start()
    try:
        with api.client(key) as client:
            created = client.post(PATH, json=chat("hi")).json()
            assert created["status"] == "CREATED"
            worker = ChatqServer(tmp_path, "--database", db, command="worker").start()
            try:
                body = wait_finished(client, created["id"])
            finally:
                assert worker.stop() in (0, -15)
    finally:
        api.stop()
    assert body["status"] == "COMPLETED"
    assert body["response"]["choices"][0]["message"]["content"] == "hi"


def test_access_log_names_each_request_but_never_its_key(tmp_path: Path) -> None:
    quiet = ChatqServer(tmp_path, "--database", "sqlite:///quiet.db").start()
    key = quiet.stdout_lines[-2]
    try:
        with quiet.client(key) as client:
            assert client.get("/async/chat/completions").status_code == 200
    finally:
        quiet.stop()
    assert "/async/chat/completions" not in quiet.log(), "off unless asked for"

    server = ChatqServer(tmp_path, "--database", "sqlite:///quiet.db", "--access-log").start()
    try:
        with server.client(key) as client:
            assert client.get("/async/chat/completions?limit=3").status_code == 200
        with server.client("cq-wrong") as client:
            assert client.get("/async/chat/completions").status_code == 401
    finally:
        server.stop()
    log = server.log()
    assert re.search(r"chatq\.access: 127\.0\.0\.1 GET /async/chat/completions\?limit=3 200 ", log)
    assert re.search(r"chatq\.access: 127\.0\.0\.1 GET /async/chat/completions 401 ", log)
    assert key not in log and "cq-wrong" not in log
