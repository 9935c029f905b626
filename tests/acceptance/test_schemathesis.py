"""Schemathesis against the served /openapi.json: every check, negative data included.

Zero 5xx, zero responses outside their documented schema, status or content type; invalid
input refused, valid input accepted, auth enforced, created requests readable (stateful
phase, through the create -> get link). Exceptions to "valid input is accepted" are in
schemathesis.toml beside this file, with the reason for each.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ChatqServer, create_key, database_url

CONFIG = Path(__file__).with_name("schemathesis.toml")
ST = Path(sys.executable).with_name("st")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChatqServer]:
    """`chatq serve` routing one instant model, so the thousands of requests made finish."""
    workdir = tmp_path_factory.mktemp("schemathesis")
    config = workdir / "chatq.toml"
    config.write_text('[[backends]]\nname = "echo"\ntype = "echo"\nmodels = ["echo"]\n')
    with database_url(request.param, workdir) as url:
        proc = ChatqServer(workdir, "--database", url, "--config", str(config)).start()
        try:
            yield proc
        finally:
            assert proc.stop() in (0, -15), proc.log()


@pytest.mark.timeout(400)
def test_the_served_schema_holds_under_schemathesis(server: ChatqServer) -> None:
    key = create_key(server.database, "schemathesis")
    done = subprocess.run(
        [
            str(ST),
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{server.base_url}/openapi.json",
            "--checks",
            "all",
            "--mode",
            "all",
            "--max-examples",
            "50",
            "--workers",
            "1",
            "--continue-on-failure",
            "--header",
            f"Authorization: Bearer {key}",
        ],
        capture_output=True,
        text=True,
        timeout=360,
        cwd=server.workdir,
        check=False,
    )
    report = done.stdout[-8000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    # Every generated case passed. Warnings may remain: which operations on one request the
    # stateful phase's random walk reaches varies, and an event id (tagged to its request)
    # cannot be generated from a schema, so most fuzzed ones are refused.
    tally = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert tally is not None and tally[1] == tally[2], report
    # Every phase ran, and the stateful phase followed every link: the 8 create links the
    # schema declares, and those schemathesis infers (GET /v1/models -> /v1/models/{model}).
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in done.stdout, report
    links = re.search(r"(\d+) covered / (\d+) selected / (\d+) total", done.stdout)
    assert links is not None and links[1] == links[2] == links[3], report
    assert int(links[3]) >= 9, report
    assert "Traceback" not in server.log(), server.log()
