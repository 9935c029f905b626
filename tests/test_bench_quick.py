"""Benchmarks are not tests, but CI checks that bench/ runs, in its quick mode."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench"


def quick(script: str, timeout: float = 280) -> str:
    """Run bench/SCRIPT --quick; its stdout, once it has exited 0."""
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "script", ["api.py", "wakeup.py", "list_scale.py", "longpoll_wakeup.py", "batch_submit.py"]
)
def test_bench_runs_in_quick_mode(script: str) -> None:
    stdout = quick(script)
    rows = [line for line in stdout.splitlines() if line.startswith(("| sqlite", "| postgres"))]
    assert {row.split("|")[1].strip() for row in rows} == {"sqlite", "postgres"}
    for row in rows:
        ratio = float(row.rstrip(" |").rsplit("|", 1)[1])
        assert ratio > 0, row
        assert re.search(r"\d", row.split("|")[3])


@pytest.mark.timeout(300)
def test_local_model_bench_runs_in_quick_mode() -> None:
    stdout = quick("local.py")
    ratio_row = next(line for line in stdout.splitlines() if line.startswith("| ratio"))
    ratios = [float(cell) for cell in ratio_row.strip(" |").split("|")[1:]]
    assert len(ratios) == 2 and all(r > 0 for r in ratios)


@pytest.mark.timeout(120)
def test_queue_drain_bench_runs_in_quick_mode() -> None:
    stdout = quick("queue_drain.py", timeout=100)
    rows = [line for line in stdout.splitlines() if line.startswith("| ")]
    rates = [float(row.strip(" |").rsplit("|", 1)[1].replace(",", "")) for row in rows[2:]]
    assert len(rates) == 3 and all(rate > 0 for rate in rates), stdout


@pytest.mark.timeout(300)
def test_long_jobs_bench_runs_in_quick_mode() -> None:
    stdout = quick("long_jobs.py")
    rows = [line.split("|")[1:-1] for line in stdout.splitlines() if line.startswith("| ")]
    by_run = {cells[0].strip(): [c.strip() for c in cells] for cells in rows[2:]}
    assert set(by_run) == {"sqlite", "postgres", "backend alone"}, stdout
    for cells in by_run.values():
        assert float(cells[6]) > 0  # ideal / wall
    for store in ("sqlite", "postgres"):
        assert float(by_run[store][7]) > 0  # / backend alone
        assert float(by_run[store][8]) > 0  # worker peak RSS MB
        assert int(by_run[store][11]) > 0  # the upstream saw calls in flight
        assert by_run[store][12] == "0"  # no request failed
    assert "worker event loop: uvloop" in stdout, stdout


@pytest.mark.timeout(300)
def test_many_waiters_bench_runs_in_quick_mode() -> None:
    stdout = quick("many_waiters.py")
    rows = [line.split("|")[1:-1] for line in stdout.splitlines() if line.startswith("| ")]
    by_store = {cells[0].strip(): [c.strip() for c in cells] for cells in rows[2:]}
    assert set(by_store) == {"sqlite", "postgres"}, stdout
    for cells in by_store.values():
        assert cells[3] == "200"  # every long-poll and stream answered after the cancels
        assert float(cells[5]) > 0  # RSS held MB
        assert all(n.isdigit() for n in cells[9].split(" / "))  # DB connections
        assert float(cells[10]) > 0  # RSS held / before


@pytest.mark.timeout(300)
def test_stream_cost_bench_runs_in_quick_mode() -> None:
    stdout = quick("stream_cost.py")
    rows = [line.split("|")[1:-1] for line in stdout.splitlines() if line.startswith("| ")]
    by_store = {cells[0].strip(): [c.strip() for c in cells] for cells in rows[2:]}
    assert set(by_store) == {"sqlite", "postgres"}, stdout
    for cells in by_store.values():
        assert all(float(t) > 0 for t in cells[4:8])  # job and answer p50s, both modes
        assert float(cells[10]) > 0 and float(cells[11]) > 0  # ratios stream / plain


@pytest.mark.timeout(300)
def test_sync_overhead_bench_runs_in_quick_mode() -> None:
    stdout = quick("sync_overhead.py")
    overheads, stages = (
        [line.split("|")[1:-1] for line in block.splitlines() if line.startswith("| ")][2:]
        for block in stdout.split("\n\n")[:3:2]
    )
    assert [cells[0].strip() for cells in overheads] == ["sqlite", "postgres"], stdout
    for cells in overheads:
        assert all(float(c) > 0 for c in (cells[2], cells[3], cells[6]))  # p50s, ratio
    assert [cells[0].strip() for cells in stages] == ["sqlite", "postgres"], stdout
    for cells in stages:
        assert len(cells) == 5 and all(float(c) > 0 for c in cells[1:])  # ms in each stage


@pytest.mark.timeout(300)
def test_webhook_delivery_bench_runs_in_quick_mode() -> None:
    stdout = quick("webhook_delivery.py")
    latency, drain = (
        [[c.strip() for c in line.split("|")[1:-1]] for line in block.splitlines()][2:]
        for block in stdout.strip().split("\n\n")
    )
    assert [cells[0] for cells in latency] == ["sqlite", "postgres"], stdout
    for cells in latency:
        assert all(float(c) > 0 for c in cells[2:])  # p50, p99, round trip, ratio
    assert [cells[0] for cells in drain] == [
        "without webhooks",
        "a webhook on every request",
        "ratio with / without",
    ], stdout
    assert float(drain[0][2].replace(",", "")) > 0 and float(drain[2][2]) > 0
    assert float(drain[1][3]) > 0  # every event arrived, some time after the first claim


@pytest.mark.timeout(300)
def test_fair_share_bench_runs_in_quick_mode() -> None:
    stdout = quick("fair_share.py")
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in stdout.splitlines()][2:]
    assert [(cells[0], cells[1]) for cells in rows] == [
        (store, order)
        for store in ("sqlite", "postgres")
        for order in (
            "fair share",
            "strict FIFO (B submitted as A)",
            "p50 ratio FIFO / fair share",
        )
    ], stdout
    for cells in rows:
        assert float(cells[5]) > 0, cells  # a p50 queue wait, or the ratio of two
