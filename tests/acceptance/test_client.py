"""The command-line client (chatq ask, submit, get, wait, cancel, ls, batch run), run as a
user runs it, against `chatq serve` on SQLite and `chatq api` + `chatq worker` on PostgreSQL."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import (
    PATH,
    deployed,
    pages,
    wait_finished,
    wait_started,
    write_config,
)
from tests.fakes.upstream import FakeUpstream, Reply, unused_port
from tests.harness import ChatqServer, chatq_env, create_key, run_cli
from tests.waiting import eventually

CANCELLED = "cancelled"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def deployment(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    module_upstream: FakeUpstream,
) -> Iterator[ChatqServer]:
    workdir = tmp_path_factory.mktemp("client")
    config = write_config(workdir / "chatq.toml", module_upstream.base_url)
    with deployed(request.param, workdir, config) as server:
        yield server


_owners = iter(range(1_000_000))


@pytest.fixture
def key(deployment: ChatqServer) -> str:
    """A key of a fresh owner: each test sees only its own requests."""
    return create_key(deployment.database, f"client-{next(_owners)}-{time.monotonic_ns()}")


@pytest.fixture
def env(deployment: ChatqServer, key: str) -> dict[str, str]:
    """The client's environment: the server's URL and the key, by their env twins."""
    return chatq_env(CHATQ_URL=deployment.base_url, CHATQ_API_KEY=key)


def unique(text: str) -> str:
    return f"{text} {time.monotonic_ns()}"


def started(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """The client as a running process, its stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "chatq", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def stopped(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """The process's exit status, stdout and stderr, once it ends (killed by its pid if it
    has not within 60 s)."""
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    return proc.returncode, out, err


def requests_of(deployment: ChatqServer, key: str) -> list[dict[str, Any]]:
    """Every request of the key's owner, from the server."""
    with deployment.client(key) as client:
        return [r for page in pages(client, 1000, most=100) for r in page["requests"]]


def test_ask_prints_the_answer_as_it_is_generated(
    deployment: ChatqServer, key: str, env: dict[str, str], module_upstream: FakeUpstream
) -> None:
    prompt = unique("tell me a story in pieces")
    hold = threading.Event()
    module_upstream.rule(prompt, Reply(pieces=4, hold=hold, hold_after=1))
    proc = started("ask", prompt, "--model", "fake-model", env=env)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        request_id = proc.stderr.readline().split()[1]
        # The first piece is printed while the upstream holds back the rest.
        first = os.read(proc.stdout.fileno(), 4096).decode()
        answer = f"upstream: {prompt}"
        assert first and answer.startswith(first) and first != answer
        with deployment.client(key) as client:
            assert client.get(f"{PATH}/{request_id}").json()["status"] == "IN_PROGRESS"
    finally:
        hold.set()
        module_upstream.rule(prompt, None)
    code, rest, err = stopped(proc)
    assert code == 0, err
    assert first + rest == answer + "\n"


def test_ctrl_c_cancels_the_request_on_the_server(
    deployment: ChatqServer, key: str, env: dict[str, str], module_upstream: FakeUpstream
) -> None:
    prompt = unique("a slow one")
    hold = threading.Event()
    module_upstream.rule(prompt, Reply(hold=hold))
    proc = started("ask", prompt, "--model", "fake-model", env=env)
    try:
        assert proc.stderr is not None
        request_id = proc.stderr.readline().split()[1]
        with deployment.client(key) as client:
            wait_started(client, request_id)
            os.kill(proc.pid, signal.SIGINT)
            code, _, err = stopped(proc)
            assert code == 130, err
            assert f"cancelled request {request_id}" in err
            job = wait_finished(client, request_id)
    finally:
        hold.set()
        module_upstream.rule(prompt, None)
    assert job["status"] == "FAILED" and CANCELLED in job["error_message"]


def test_submit_wait_get_cancel_and_ls(
    deployment: ChatqServer, key: str, env: dict[str, str]
) -> None:
    prompt = unique("hello from the client, in a prompt longer than a preview")
    submitted = run_cli("submit", prompt, "--model", "echo", env=env)
    assert submitted.returncode == 0, submitted.stderr
    request_id = submitted.stdout.strip()

    waited = run_cli("wait", request_id, env=env)
    assert waited.returncode == 0, waited.stderr
    assert "COMPLETED" in waited.stdout and waited.stdout.rstrip().endswith(prompt)
    assert (
        json.loads(run_cli("wait", request_id, "--json", env=env).stdout)["status"] == "COMPLETED"
    )

    got = run_cli("get", request_id, "--json", env=env)
    assert got.returncode == 0
    job = json.loads(got.stdout)
    assert job["id"] == request_id and job["response"]["choices"][0]["message"]["content"] == prompt

    # A create body from stdin, the flat form, with an idempotency key: twice, one request.
    body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "from stdin"}]})
    first = run_cli(
        "submit", "--file", "-", "--idempotency-key", "k1", "--json", env=env, stdin=body
    )
    again = run_cli(
        "submit", "--file", "-", "--idempotency-key", "k1", "--json", env=env, stdin=body
    )
    assert first.returncode == again.returncode == 0, first.stderr
    assert json.loads(first.stdout)["id"] == json.loads(again.stdout)["id"]
    other = json.loads(first.stdout)["id"]
    run_cli("wait", other, env=env)

    cancelled = run_cli("cancel", request_id, env=env)
    assert cancelled.returncode == 0 and cancelled.stdout.split() == [request_id, "COMPLETED"]
    assert json.loads(run_cli("cancel", request_id, "--json", env=env).stdout) == job

    listed = run_cli("ls", env=env)
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "MODEL", "CREATED", "PROMPT"]
    assert [line.split()[0] for line in lines[1:]] == [other, request_id], "newest first"
    assert all(line.split()[1:3] == ["COMPLETED", "echo"] for line in lines[1:])
    # The prompt, where the server gives it (GET .../{id}/request, the dashboard's route).
    with deployment.client(key) as client:
        has_prompts = client.get(f"{PATH}/{request_id}/request").status_code == 200
    previews = [line[lines[0].index("PROMPT") :] for line in lines[1:]]
    assert previews == (["from stdin", prompt[:39] + "…"] if has_prompts else ["", ""])
    as_json = json.loads(run_cli("ls", "--json", "--limit", "1", env=env).stdout)
    assert [r["id"] for r in as_json] == [other]
    assert json.loads(run_cli("ls", "--json", "--status", "FAILED", env=env).stdout) == []
    none = run_cli("ls", "--status", "created,in_progress", env=env)
    assert none.returncode == 0 and none.stdout.strip() == "no requests"


def test_a_failed_request_exits_1_from_wait_and_ask(
    env: dict[str, str], module_upstream: FakeUpstream
) -> None:
    prompt = unique("this one fails")
    refusal = {"error": {"message": "the model refuses", "type": "invalid_request_error"}}
    module_upstream.rule(prompt, Reply(status=400, json_body=refusal))
    try:
        asked = run_cli("ask", prompt, "--model", "fake-model", env=env)
        request_id = run_cli("submit", prompt, "--model", "fake-model", env=env).stdout.strip()
        waited = run_cli("wait", request_id, env=env)
    finally:
        module_upstream.rule(prompt, None)
    assert asked.returncode == 1 and "failed:" in asked.stderr, asked.stderr
    assert waited.returncode == 1 and "FAILED" in waited.stdout
    assert waited.stderr.startswith(f"chatq: request {request_id} failed: ")
    assert len(waited.stderr.splitlines()) == 1


def test_errors_are_one_line_with_an_exit_status_that_says_what_kind(
    deployment: ChatqServer, env: dict[str, str]
) -> None:
    def one_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
        assert done.returncode == code, (done.returncode, done.stderr)
        assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("chatq: ")
        assert all(word in done.stderr for word in words), done.stderr

    one_line(run_cli("get", "no-such-request", env=env), 3, "404", "not_found")
    one_line(run_cli("submit", "hi", "--model", "gpt-99", env=env), 2, "400", "invalid_model")
    wrong_key = {**env, "CHATQ_API_KEY": "cq-wrong"}
    one_line(run_cli("ls", env=wrong_key), 4, "401", "authentication_error")
    no_key = {k: v for k, v in env.items() if k != "CHATQ_API_KEY"}
    one_line(run_cli("ls", env=no_key), 4, "CHATQ_API_KEY")
    nobody = f"http://127.0.0.1:{unused_port()}"
    one_line(run_cli("ls", "--url", nobody, env=env), 5, "cannot reach", nobody)
    one_line(run_cli("ls", "--url", "ftp://x", env=env), 2, "--url")
    one_line(run_cli("submit", env=env), 2, "PROMPT")
    # A key that may make one request a minute: its second is refused for now.
    made = run_cli(
        "keys", "create", unique("one-a-minute"), "--rpm", "1", "--database", deployment.database
    )
    limited = {**env, "CHATQ_API_KEY": made.stdout.strip().splitlines()[-1]}
    assert run_cli("submit", "one", "--model", "echo", env=limited).returncode == 0
    one_line(run_cli("submit", "two", "--model", "echo", env=limited), 6, "429", "rate_limited")
    # A flag beats its env twin.
    assert (
        run_cli("ls", "--url", deployment.base_url, env={**env, "CHATQ_URL": nobody}).returncode
        == 0
    )


def test_ask_defaults_to_the_first_model_the_server_lists(env: dict[str, str]) -> None:
    done = run_cli("ask", "which model?", "--json", env=env)
    assert done.returncode == 0, done.stderr
    # The config lists fake-model first (sonar* is a pattern: served, not listed).
    assert json.loads(done.stdout)["model"] == "fake-model"


def write_lines(path: Path, lines: Sequence[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def read_output(path: Path) -> dict[str, dict[str, Any]]:
    """The output file's lines by custom_id; each custom_id must be there once."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    by_id = {line["custom_id"]: line for line in lines}
    assert len(by_id) == len(lines), "a custom_id written twice"
    return by_id


def openai_line(custom_id: str, content: str, model: str = "echo") -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def test_batch_run_good_and_bad_lines(
    deployment: ChatqServer,
    key: str,
    env: dict[str, str],
    tmp_path: Path,
    module_upstream: FakeUpstream,
) -> None:
    failing = unique("the upstream refuses this")
    module_upstream.rule(failing, Reply(status=400, json_body={"error": {"message": "no"}}))
    source = write_lines(
        tmp_path / "in.jsonl",
        [
            openai_line("a", "first"),
            {
                "custom_id": "b",
                "request": openai_line("", "second")["body"],
                "metadata": {"x": "1"},
            },
            "this is not json",
            {"body": openai_line("", "no custom_id")["body"]},
            openai_line("c", "unknown model", model="gpt-99"),
            openai_line("a", "a repeated custom_id"),
            openai_line("d", failing, model="fake-model"),
            {**openai_line("e", "wrong url"), "url": "/v1/embeddings"},
            "",
            openai_line("f", "last"),
        ],
    )
    target = tmp_path / "out.jsonl"
    try:
        done = run_cli("batch", "run", str(source), "-o", str(target), env=env)
    finally:
        module_upstream.rule(failing, None)
    assert done.returncode == 1, done.stderr
    for number, reason in ((3, "not JSON"), (4, "custom_id"), (6, "repeats"), (8, "url")):
        assert f"{source}:{number}: " in done.stderr and reason in done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith("batch: ")]
    assert progress and "finished" in progress[-1] and "req/s" in progress[-1]
    assert "\x1b[" not in done.stderr, "no terminal codes when stderr is not a terminal"

    out = read_output(target)
    assert set(out) == {"a", "b", "c", "d", "e", "f"}
    for custom_id, content in (("a", "first"), ("b", "second"), ("f", "last")):
        line = out[custom_id]
        assert line["error"] is None and line["response"]["status_code"] == 200
        assert line["response"]["body"]["choices"][0]["message"]["content"] == content
        assert line["id"] == line["response"]["request_id"]
    assert out["c"]["response"]["status_code"] == 400
    assert out["c"]["error"]["code"] == "invalid_model"
    assert out["d"]["response"] is None and out["d"]["error"]["code"] == "request_failed"
    assert out["e"]["error"]["code"] == "invalid_line"
    stored = {r["id"]: r for r in requests_of(deployment, key)}
    assert set(stored) == {out[c]["id"] for c in "abdf"}
    assert stored[out["b"]["id"]]["metadata"] == {"x": "1"}


def test_batch_run_resumes_after_ctrl_c_and_submits_nothing_twice(
    deployment: ChatqServer,
    key: str,
    env: dict[str, str],
    tmp_path: Path,
    module_upstream: FakeUpstream,
) -> None:
    hold = threading.Event()
    slow = [unique(f"held {n}") for n in range(3)]
    for content in slow:
        module_upstream.rule(content, Reply(hold=hold))
    lines = [openai_line(f"fast-{n}", f"fast {n}") for n in range(30)]
    lines[5:5] = [openai_line(f"slow-{n}", content, "fake-model") for n, content in enumerate(slow)]
    source = write_lines(tmp_path / "in.jsonl", lines)
    target = tmp_path / "out.jsonl"
    args = ("batch", "run", str(source), "-o", str(target), "--concurrency", "8")
    try:
        proc = started(*args, "--progress-every", "0.2", env=env)
        eventually(
            lambda: len(target.read_text().splitlines()) if target.exists() else 0,
            lambda written: written == 30,
            what="every fast request to be written",
            timeout=60,
        )
        os.kill(proc.pid, signal.SIGINT)
        code, _, err = stopped(proc)
        assert code == 130, err
        assert "run the same command again to resume" in err
        assert len(read_output(target)) == 30
    finally:
        hold.set()
        for content in slow:
            module_upstream.rule(content, None)

    again = run_cli(*args, env=env)
    assert again.returncode == 0, again.stderr
    assert "resuming; 30 already" in again.stderr
    out = read_output(target)
    assert set(out) == {line["custom_id"] for line in lines}
    assert all(line["error"] is None for line in out.values())
    stored = requests_of(deployment, key)
    assert len(stored) == len(lines), "a request was submitted twice"
    assert {r["id"] for r in stored} == {line["id"] for line in out.values()}


def test_batch_run_keeps_at_most_concurrency_requests_unfinished(
    env: dict[str, str], tmp_path: Path, module_upstream: FakeUpstream
) -> None:
    """Every request reaches the upstream (the worker's concurrency is far higher), so the
    upstream's peak of calls at once is at most the client's bound."""
    contents = [unique(f"bounded {n}") for n in range(8)]
    for content in contents:
        module_upstream.rule(content, Reply(delay_s=0.1))
    lines = [openai_line(f"b{n}", c, "fake-model") for n, c in enumerate(contents)]
    source = write_lines(tmp_path / "in.jsonl", lines)
    module_upstream.reset_peak()
    try:
        done = run_cli(
            "batch", "run", str(source), "-o", str(tmp_path / "out"), "--concurrency", "2", env=env
        )
    finally:
        for content in contents:
            module_upstream.rule(content, None)
    assert done.returncode == 0, done.stderr
    assert len(read_output(tmp_path / "out")) == 8
    assert 1 <= module_upstream.peak_in_flight <= 2


def test_batch_run_of_a_file_that_is_not_there(env: dict[str, str], tmp_path: Path) -> None:
    done = run_cli("batch", "run", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "o"), env=env)
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_batch_progress_bar_on_a_terminal(env: dict[str, str], tmp_path: Path) -> None:
    """With stderr a terminal, rich draws the bar (and its counts) instead of plain lines."""
    source = write_lines(tmp_path / "in.jsonl", [openai_line(f"t{n}", "tty") for n in range(5)])
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatq", "batch", "run", str(source), "-o", str(tmp_path / "o")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
        env={**env, "COLUMNS": "160", "TERM": "xterm-256color"},
    )
    os.close(secondary)
    seen = b""
    try:
        while chunk := _read_pty(main):
            seen += chunk
    finally:
        os.close(main)
        code = proc.wait(timeout=60)
    text = seen.decode(errors="replace")
    assert code == 0, text
    assert "5/5" in text and "done 5" in text and "failed 0" in text and "━" in text
    assert "batch: 5/5 finished" not in text, "the bar, not the plain lines"


def _read_pty(fd: int) -> bytes:
    """What the terminal shows next; b"" once the other side has closed it."""
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: the process has exited and closed its side
        return b""


def test_client_commands_need_no_server_settings(env: dict[str, str], tmp_path: Path) -> None:
    """A client command ignores the server's environment (a config file that is not there)."""
    done = run_cli("ls", env={**env, "CHATQ_CONFIG": str(tmp_path / "missing.toml")})
    assert done.returncode == 0, done.stderr
