"""Breaking the real stack on purpose: the worker killed in the middle of a render.

This test kills the shared worker process (SIGKILL, no clean-up of any kind) and starts a new
one the way a user would (`greetings stack up`): run it on its own, never beside other tests
that use the stack.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flows.job import result_path
from flows.media import run_ffmpeg
from flows.settings import Settings
from greetings.samples import make_sample_video
from greetings.stack.procs import group_members
from tests.conftest import User, wait_for
from tests.support.stackkit import outputs, read_job, submit, sweep_once, upload, wait_finished

pytestmark = pytest.mark.stack

# A long input makes the render last seconds (it still copies every packet), so the kill lands
# inside it; 9 minutes stays under the 10-minute input cap.
LONG_MINUTES = 9
REAP_FAST = Settings(retry_backoff_seconds=0, heartbeat_stale_seconds=3, pending_grace_seconds=0)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("long")
    minute = make_sample_video(folder / "minute.mp4", seconds=60, width=640, height=360)
    listing = folder / "list.ffconcat"
    listing.write_text("ffconcat version 1.0\n" + f"file {minute.name}\n" * LONG_MINUTES)
    long = folder / "long.mp4"
    run_ffmpeg(["-f", "concat", "-i", str(listing), "-c", "copy", str(long)])
    return long


def test_worker_killed_mid_render_is_reaped_and_completes_once(
    stack: Any,
    clients: Any,
    prefect_client: Any,
    make_user: Callable[[], User],
    long_video: Path,
) -> None:
    user = make_user()
    job_id = submit(stack, user, upload(clients, user, long_video), prospect_name="Kill Test")
    wait_for(
        lambda: read_job(clients, job_id),
        lambda j: j.get("status") in ("generating-video", "uploading-result", "completed"),
        120,
        every_s=0.02,
    )
    dead_pid = stack.pid("prefect-worker")
    worker_pgid = stack.process_groups()["prefect-worker"]
    os.killpg(worker_pgid, signal.SIGKILL)
    killed = read_job(clients, job_id)
    assert killed["status"] == "generating-video", "the kill must land inside the render"
    wait_for(lambda: group_members(worker_pgid), lambda members: not members, 10)
    scratch = [p for p in (stack.state / "work").iterdir() if f"-{job_id}-" in p.name]
    assert scratch, "the killed run's scratch folder is there to be cleaned up"

    # What a user does: bring the stack back up. The new worker removes the dead one's folder.
    stack.up(echo=lambda _: None)
    assert stack.pid("prefect-worker") not in (None, dead_pid)
    assert not [p for p in scratch if p.exists()]

    # The sweep reaps the job once its heartbeat is stale, then retries it as attempt 1.
    time.sleep(REAP_FAST.heartbeat_stale_seconds + 1)
    assert sweep_once(clients, prefect_client, {job_id}, REAP_FAST) == [(job_id, "reap", "reaped")]
    reaped = read_job(clients, job_id)
    assert (reaped["status"], reaped["error"]["code"]) == ("failed", "worker-lost")
    assert reaped["error"]["retryable"] is True
    assert sweep_once(clients, prefect_client, {job_id}, REAP_FAST) == [
        (job_id, "retry", "retried")
    ]
    job = wait_finished(clients, job_id, 180)
    assert job["status"] == "completed", job.get("error")
    assert job["retryCount"] == 1
    completions = [e for e in job["history"] if e["status"] == "completed"]
    assert len(completions) == 1 and completions[0]["attempt"] == 1
    assert outputs(clients, user) == [result_path(user.uid, job_id)]
    # The run marks the job completed just before it leaves (and removes) its scratch folder.
    wait_for(
        lambda: [p for p in (stack.state / "work").iterdir() if f"-{job_id}-" in p.name],
        lambda leftovers: leftovers == [],
        15,
    )
