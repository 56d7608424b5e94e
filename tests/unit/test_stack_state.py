"""What the local stack keeps on disk between `stack up`s."""

from __future__ import annotations

from pathlib import Path

import pytest

from greetings.settings import StackSettings
from greetings.stack.manager import Service, Stack

EVERY_SERVICE = {
    "prefect-server",
    "storage-emulator",
    "storage-proxy",
    "firebase-emulators",
    "prefect-worker",
}


def _stack_with_an_object(tmp_path: Path) -> tuple[Stack, Path]:
    stack = Stack(StackSettings(state_dir=tmp_path))
    kept = tmp_path / "storage" / ".cloudstorage" / "bucket" / "greeting-results" / "a.mp4"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"result")
    return stack, kept


def starting_services(stack: Stack, names: set[str]) -> dict[str, Service]:
    return {svc.name: svc for svc in stack.services() if svc.name in names}


def test_a_fresh_firestore_drops_the_objects_no_job_points_at(tmp_path: Path) -> None:
    stack, kept = _stack_with_an_object(tmp_path)
    stack._drop_orphaned_objects(starting_services(stack, EVERY_SERVICE))
    assert not kept.exists()
    assert (tmp_path / "storage").is_dir()


@pytest.mark.parametrize(
    "starting",
    [
        pytest.param(set(), id="everything-running"),
        pytest.param({"prefect-worker"}, id="worker-only"),
        # Deleting under a running Storage emulator would leave its listing lying.
        pytest.param({"firebase-emulators"}, id="storage-still-running"),
        pytest.param({"storage-emulator", "storage-proxy"}, id="firestore-still-running"),
    ],
)
def test_objects_stay_while_their_jobs_can(tmp_path: Path, starting: set[str]) -> None:
    stack, kept = _stack_with_an_object(tmp_path)
    stack._drop_orphaned_objects(starting_services(stack, starting))
    assert kept.read_bytes() == b"result"
