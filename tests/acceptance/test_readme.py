"""The README's examples run as printed (only the address is swapped for the test server's)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.harness import ChatqServer, chatq_env
from tests.waiting import eventually

README = (Path(__file__).parents[2] / "README.md").read_text()
DEFAULT_ADDRESS = "http://127.0.0.1:8000"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def block_containing(language: str, needle: str) -> str:
    found = [b for b in blocks(language) if needle in b]
    assert len(found) == 1, f"one {language} block with {needle!r}"
    return found[0]


def run(command: list[str], server: ChatqServer, key: str) -> str:
    env = chatq_env(CHATQ_KEY=key)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_curl_example(server: ChatqServer, new_key: Callable[[], str]) -> None:
    if subprocess.run(["which", "curl"], capture_output=True, check=False).returncode != 0:
        pytest.fail("curl is needed to check the README's curl example")
    key = new_key()
    submit = block_containing("bash", "capital of France").replace(DEFAULT_ADDRESS, server.base_url)
    created = json.loads(run(["bash", "-c", submit], server, key))
    assert created["status"] == "CREATED"

    reads = block_containing("bash", '<id> -H "Authorization').replace(
        DEFAULT_ADDRESS, server.base_url
    )
    list_line, get_line = reads.strip().splitlines()
    listed = json.loads(run(["bash", "-c", list_line], server, key))
    assert [r["id"] for r in listed["requests"]] == [created["id"]]
    get_command = ["bash", "-c", get_line.replace("<id>", created["id"])]
    got = eventually(
        lambda: json.loads(run(get_command, server, key)),
        lambda got: got["status"] not in ("CREATED", "IN_PROGRESS"),
        what="the README's GET to show the request finished",
        timeout=60,
        interval=0.2,
    )
    assert got["status"] == "COMPLETED", got
    assert got["response"]["choices"][0]["message"]["content"].strip(), "a real answer"


def test_sdk_example(server: ChatqServer, new_key: Callable[[], str]) -> None:
    script = block_containing("python", "from perplexity import Perplexity")
    out = run(
        [sys.executable, "-c", script.replace(DEFAULT_ADDRESS, server.base_url)], server, new_key()
    )
    lines = out.strip().splitlines()
    status, _, answer = lines[0].partition(" ")
    assert status == "COMPLETED" and answer.strip(), "the local model wrote a real answer"
    assert lines[-1].endswith(" COMPLETED"), "then the list: the one request, COMPLETED"


def test_wait_watch_stop_example(server: ChatqServer, new_key: Callable[[], str]) -> None:
    """The 'Wait, watch, stop' curl commands, one by one, with the id the first one made."""
    block = block_containing("bash", "Prefer: wait=").replace(DEFAULT_ADDRESS, server.base_url)
    lines = [line for line in block.replace("\\\n", " ").splitlines() if not line.startswith("#")]
    header, create, *per_request = lines
    key = new_key()

    def curl(command: str) -> str:
        return run(["bash", "-c", f"{header}\n{command}"], server, key)

    created = json.loads(curl(create))
    assert created["status"] == "COMPLETED", "Prefer: wait=30 waited for the answer"
    outputs = [curl(command.replace("<id>", created["id"])) for command in per_request]
    waited, events, cancelled, deleted = outputs
    assert json.loads(waited) == created
    assert "event: delta" in events and "event: done" in events, events
    assert json.loads(cancelled) == created, "a finished request is not changed by a cancel"
    assert deleted == "", "204"
    assert "not_found" in curl(per_request[0].replace("<id>", created["id"]))


def test_batch_example(server: ChatqServer, new_key: Callable[[], str]) -> None:
    """The batch curl command: both items created, in order; sent again, the same two."""
    command = block_containing("bash", "completions/batch").replace(
        DEFAULT_ADDRESS, server.base_url
    )
    key = new_key()
    first = json.loads(run(["bash", "-c", command], server, key))["results"]
    assert [r["status"] for r in first] == ["CREATED", "CREATED"]
    again = json.loads(run(["bash", "-c", command], server, key))["results"]
    assert [r["id"] for r in again] == [r["id"] for r in first], "nothing created twice"


def test_command_line_client_batch_example(
    server: ChatqServer, new_key: Callable[[], str], tmp_path: Path
) -> None:
    """The 'Command-line client' batch run, as printed, with chatq on the PATH: both lines
    answered into results.jsonl."""
    block = block_containing("bash", "chatq batch run")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = chatq_env(CHATQ_URL=server.base_url, CHATQ_API_KEY=new_key(), PATH=path)
    done = subprocess.run(
        ["bash", "-c", block],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    answers = {
        x["custom_id"]: x["response"]["body"]["choices"][0]["message"]["content"] for x in lines
    }
    assert answers == {"q1": "Name a river.", "q2": "Name a lake."}


def test_label_and_find_example(server: ChatqServer, new_key: Callable[[], str]) -> None:
    """The 'Label and find requests' curl commands: a labelled create, then the filtered list
    finds it once it has finished."""
    block = block_containing("bash", "metadata.batch=").replace(DEFAULT_ADDRESS, server.base_url)
    header, create, find = block.replace("\\\n", " ").strip().splitlines()
    key = new_key()

    def curl(command: str) -> str:
        return run(["bash", "-c", f"{header}\n{command}"], server, key)

    created = json.loads(curl(create))
    assert created["metadata"] == {"batch": "nightly-7"}
    found = eventually(
        lambda: json.loads(curl(find))["requests"],
        lambda found: bool(found),
        what="the labelled request to finish and be listed",
        timeout=30,
        interval=0.2,
    )
    assert [(r["id"], r["status"]) for r in found] == [(created["id"], "COMPLETED")]


def test_sync_route_sdk_example(server: ChatqServer, new_key: Callable[[], str]) -> None:
    """Both SDKs' plain chat.completions.create against the sync route, as the README shows."""
    script = block_containing("python", "from openai import OpenAI")
    out = run(
        [sys.executable, "-c", script.replace(DEFAULT_ADDRESS, server.base_url)], server, new_key()
    )
    perplexity_answer, _, openai_answer = out.partition("\n")
    assert perplexity_answer.strip(), "the Perplexity SDK printed the local model's answer"
    assert openai_answer.strip(), "the OpenAI SDK streamed the local model's answer"


@pytest.mark.timeout(600)
def test_quick_start_installs_and_serves(tmp_path: Path) -> None:
    """The quick start's one command, as printed, plus a free port and a scratch database."""
    (command,) = [line for line in block_containing("bash", "scripts/serve").splitlines() if line]
    root = Path(__file__).parents[2]
    args = ["--port", "0", "--database", f"sqlite:///{tmp_path / 'chatq.db'}"]
    proc = subprocess.Popen(
        [*command.split(), *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=chatq_env(),
    )
    try:
        assert proc.stdout is not None
        printed = []
        for line in proc.stdout:  # bounded by the test's timeout; ends if the process does
            printed.append(line.strip())
            if line.startswith("chatq listening on "):
                break
        assert printed and printed[-1].startswith("chatq listening on "), printed
        base = printed[-1].removeprefix("chatq listening on ")
        notice = next(i for i, line in enumerate(printed) if "No API keys yet" in line)
        key = printed[notice + 1]  # the first-run key, printed right after the notice
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            assert client.get("/async/chat/completions").json()["requests"] == []
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()
