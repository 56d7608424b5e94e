"""`greetings stack up | down | status` as a user runs them, against the real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.workdir import process_alive
from greetings.stack.manager import port_in_use
from greetings.stack.procs import group_members

pytestmark = pytest.mark.stack

GREETINGS = str(Path(sys.executable).parent / "greetings")


def greetings(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GREETINGS, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


SERVICES = (
    "prefect-server",
    "storage-emulator",
    "storage-proxy",
    "firebase-emulators",
    "prefect-worker",
)


def test_up_is_idempotent_and_shows_every_service(stack: Any) -> None:
    result = greetings("stack", "up")
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout
    for service in SERVICES:
        assert f"{service}" in result.stdout
    assert result.stdout.count(" healthy ") == len(SERVICES)
    assert f"Prefect UI: http://127.0.0.1:{stack.s.prefect_port}" in result.stdout
    assert f"Firestore: http://127.0.0.1:{stack.s.firestore_port}" in result.stdout
    assert f"Web page: http://127.0.0.1:{stack.s.hosting_port}" in result.stdout
    status = greetings("stack", "status")
    assert status.returncode == 0 and status.stdout.count(" healthy ") == len(SERVICES)


def test_a_busy_port_gets_one_clear_line(stack: Any, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = greetings(
            "stack",
            "up",
            env={"GREETINGS_STATE_DIR": str(tmp_path), "GREETINGS_PREFECT_PORT": str(port)},
        )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port}" in lines[0] and "GREETINGS_PREFECT_PORT" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "pids").exists() or not any((tmp_path / "pids").iterdir())


def test_a_missing_prerequisite_gets_one_clear_line(stack: Any, tmp_path: Path) -> None:
    # A PATH holding only the Python interpreter: ffmpeg, espeak-ng and python3.11 are "missing".
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(sys.executable, bin_dir / "python")
    result = greetings(
        "stack", "up", env={"PATH": str(bin_dir), "GREETINGS_STATE_DIR": str(tmp_path)}
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "is missing: run" in result.stderr


def test_stack_down_leaves_nothing_behind(stack: Any) -> None:
    """Runs last (see conftest): every process of every service is gone, every port free."""
    groups = stack.process_groups()
    trees = stack.process_trees()
    assert set(groups) == set(SERVICES)
    # The Functions emulator's Python workers are in the firebase group: they must go too.
    assert len(group_members(groups["firebase-emulators"])) > 1
    result = greetings("stack", "down")
    assert result.returncode == 0, result.stderr
    assert "no service running, no port bound" in result.stdout
    for name, pgid in groups.items():
        assert group_members(pgid) == [], f"{name} left processes behind"
    # And every descendant, wherever it lives (the Firestore JVM has a session of its own).
    for name, pids in trees.items():
        assert not [p for p in pids if process_alive(p)], f"{name} left descendants behind"
    ports = [port for svc in stack.services() for port in svc.ports.values()]
    assert ports and not [port for port in ports if port_in_use("127.0.0.1", port)]


def test_the_worker_imports_its_flows_before_it_takes_a_run(stack: Any) -> None:
    # A restarted or newly deployed worker's first run started 1.2-1.4 s late, importing them.
    # The stack calls the worker healthy once it has registered, which it does before this.
    started = "Worker 'greetings-local-worker' started!"
    deadline = time.monotonic() + 60
    while started not in (log := (stack.logs / "prefect-worker.log").read_text()):
        assert time.monotonic() < deadline, log[-2000:]
        time.sleep(0.2)
    preloaded = log.find("flows loaded before the first run: ")
    assert 0 <= preloaded < log.find(started)
    line = log[preloaded:].splitlines()[0]
    config = yaml.safe_load(Path("prefect.yaml").read_text())
    for deployment in config["deployments"]:
        assert deployment["entrypoint"] in line


def test_the_worker_runs_on_jemalloc(stack: Any) -> None:
    # The Makefile installs Debian's libjemalloc2: the worker's memory stays flat with it
    # (docs/benchmarks.md), so a worker without it is a regression, not a skip. Its children
    # run on glibc's malloc (flows/worker.py, tests/unit/test_worker_units.py).
    worker = stack.pid("prefect-worker")
    assert worker is not None
    assert "/libjemalloc.so.2" in Path(f"/proc/{worker}/maps").read_text()
