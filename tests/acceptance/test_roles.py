"""Each process role builds only what it runs, and says what it does in its log.

`chatq api` with the local model configured never loads llama.cpp; `chatq worker`, which
runs the local model's jobs, does, and its own log lines still appear after it has."""

from __future__ import annotations

import re
from pathlib import Path

from tests.acceptance.conftest import PATH, UPSTREAM_KEY, chat, wait_finished, write_config
from tests.fakes.upstream import FakeUpstream
from tests.harness import ChatqServer, create_key, run_cli


def loaded_libraries(process: ChatqServer) -> set[str]:
    """The shared objects mapped into a running process, by file name."""
    assert process.proc is not None
    maps = Path(f"/proc/{process.proc.pid}/maps").read_text()
    return {Path(line.split()[-1]).name for line in maps.splitlines() if ".so" in line}


def is_llama(library: str) -> bool:
    return library.startswith(("libllama", "libggml"))


def test_api_never_loads_llama_cpp_and_the_worker_still_logs_after_a_local_job(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    config = write_config(tmp_path / "chatq.toml", upstream.base_url)
    db = f"sqlite:///{tmp_path / 'roles.db'}"
    assert run_cli("migrate", "--database", db).returncode == 0
    key = create_key(db, "roles")
    common = ("--database", db, "--config", str(config))
    env = {"FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
    api = ChatqServer(tmp_path, *common, command="api", env=env).start()
    worker = ChatqServer(tmp_path, *common, command="worker", env=env)
    try:
        worker.start()
        with api.client(key) as client:
            created = client.post(PATH, json=chat("Say hi.", "smollm2", max_tokens=8)).json()
            done = wait_finished(client, created["id"], timeout=60)
            assert done["status"] == "COMPLETED", done
        assert not any(is_llama(lib) for lib in loaded_libraries(api)), "the API built a backend"
        assert any(is_llama(lib) for lib in loaded_libraries(worker)), "the check can tell"
    finally:
        api_code = api.stop()
        worker_code = worker.stop()
    assert {api_code, worker_code} <= {0, -15}, (api.log()[-2000:], worker.log()[-2000:])

    log = worker.log()
    job_line = re.search(
        rf"job {created['id']} COMPLETED: model smollm2, 1 attempt\(s\), "
        r"waited \d+\.\d+s, ran \d+\.\d+s",
        log,
    )
    assert job_line, log[-3000:]
    assert re.search(r"worker \S+ stopped", log[job_line.end() :]), (
        "logs still reach stderr after llama.cpp has loaded: " + log[-3000:]
    )
    assert "Uvicorn running" not in api.log() and "uvicorn.error" not in api.log()
    listening = [line for line in api.stdout_lines if "listening on" in line]
    assert len(listening) == 1, api.stdout_lines
