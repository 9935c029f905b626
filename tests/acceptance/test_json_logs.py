"""`chatq serve --log-format json`: every line it logs is one JSON object, and every line about
a request carries that request's id."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.acceptance.conftest import PATH, chat, serving, wait_finished, write_config
from tests.fakes.upstream import FakeUpstream, Reply
from tests.harness import create_key


def test_every_line_is_json_and_names_its_request(
    tmp_path: Path, module_upstream: FakeUpstream
) -> None:
    config = write_config(tmp_path / "chatq.toml", module_upstream.base_url)
    module_upstream.script(Reply(status=503))  # one retry: a line from inside the job's run
    args = ("--log-format", "json", "--access-log")
    with serving("sqlite", tmp_path, config, *args) as server:
        key = create_key(server.database, "json-logs")
        with server.client(key) as client:
            created = client.post(PATH, json=chat("log me", model="fake-model")).json()
            assert wait_finished(client, created["id"])["status"] == "COMPLETED"
    request_id = created["id"]

    records: list[dict[str, Any]] = []
    for line in server.log().splitlines():
        record = json.loads(line)  # fails the test on any line that is not JSON
        assert {"time", "level", "logger", "message"} <= set(record), line
        datetime.fromisoformat(record["time"])
        records.append(record)
    loggers = {r["logger"] for r in records}
    assert {"chatq", "chatq.worker", "chatq.access"} <= loggers, loggers

    # Every line that mentions the request carries its id, and the id is on no other line.
    assert {r.get("request_id") for r in records} == {None, request_id}
    about = [r for r in records if request_id in r["message"]]
    mine = [r for r in records if r.get("request_id") == request_id]
    assert about and all(r in mine for r in about), about
    messages = " | ".join(r["message"] for r in mine)
    assert "attempt 1 failed" in messages and f"job {request_id} COMPLETED" in messages, messages
