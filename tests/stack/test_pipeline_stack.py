"""The whole path against the real stack: a job document in, a personalized video out.

Firestore, Auth and Functions emulators (our trigger), the Storage emulator, the Prefect server
and a process worker: nothing is faked.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from flows.job import result_path
from flows.lifecycle import poster_path, thumbnail_path
from flows.media import probe
from flows.stages.thumbnails import make_gif
from tests.conftest import Uploaded, User, wait_for
from tests.support.stackkit import (
    completed_once,
    flow_run,
    read_job,
    submit,
    upload,
    wait_finished,
)

pytestmark = pytest.mark.stack

STAGES = [
    "queued",
    "validating-input",
    "processing-audio",
    "generating-video",
    "uploading-result",
    "completed",
]


def test_trigger_reacts_to_a_new_job(
    stack: Any, clients: Any, make_user: Callable[[], User]
) -> None:
    """The Python function in the Functions emulator sees the document and starts a flow run."""
    user = make_user()
    job_id = submit(stack, user, f"user-uploads/{user.uid}/missing.mp4")
    job = wait_for(lambda: read_job(clients, job_id), lambda j: bool(j.get("flowRunId")), 30)
    assert job["history"][0]["status"] in ("queued", "validating-input")
    run = flow_run(stack, job["flowRunId"])
    assert run["parameters"] == {"job_id": job_id, "attempt": 0}
    assert run["idempotency_key"] == f"{job_id}:0"


def test_job_completes_with_every_stage_in_order(
    stack: Any, clients: Any, make_user: Callable[[], User], sample_video: Path, tmp_path: Path
) -> None:
    user = make_user()
    job_id = submit(stack, user, upload(clients, user, sample_video), prospect_name="Ada")
    job = wait_finished(clients, job_id, 120)
    assert job["status"] == "completed", job.get("error")
    # queued comes first unless the run moved the job before the trigger marked it (a worker
    # that picks runs up at once); then it is left out, never written after a later stage.
    seen = [entry["status"] for entry in job["history"]]
    assert seen in (STAGES, STAGES[1:]), seen
    times = [entry["at"] for entry in job["history"]]
    assert times == sorted(times)
    assert job["progress"] == 100
    assert job["outputPath"] == result_path(user.uid, job_id)
    assert job["completedAt"] >= job["createdAt"]

    # The owner's download URL serves the rendered video.
    response = requests.get(job["downloadUrl"], timeout=30)
    assert response.status_code == 200
    out = tmp_path / "out.mp4"
    out.write_bytes(response.content)
    info, original = probe(out), probe(sample_video)
    assert info.video is not None and info.audio is not None
    assert abs(info.duration_s - original.duration_s) < 0.05
    # The video stream is copied bit for bit.
    assert _video_md5(out) == _video_md5(sample_video)

    # Beside it, for the rep's emails: a poster, and a GIF of the opening with the first name
    # on it, each under its own path with an owner's link.
    assert job["posterPath"] == poster_path(user.uid, job_id)
    assert job["thumbnailPath"] == thumbnail_path(user.uid, job_id)
    poster = requests.get(job["posterUrl"], timeout=30)
    assert (poster.status_code, poster.headers["content-type"]) == (200, "image/jpeg")
    assert poster.content[:3] == b"\xff\xd8\xff"
    gif = requests.get(job["thumbnailUrl"], timeout=30)
    assert (gif.status_code, gif.headers["content-type"]) == (200, "image/gif")
    assert gif.content[:6] == b"GIF89a" and len(gif.content) < 1_000_000
    # The name is drawn on it: its first frame differs from the same GIF without a name in the
    # bottom band, where the name goes, and not above it.
    (tmp_path / "named.gif").write_bytes(gif.content)
    nameless = make_gif(out, "", tmp_path / "nameless.gif")
    rows = zip(_first_frame_rows(tmp_path / "named.gif"), _first_frame_rows(nameless), strict=True)
    # Per row, the mean change of luma: the two palettes and their dithering differ a little
    # everywhere (measured: at most 4 above the name), the name's box changes rows by 14-24.
    change = [sum(abs(a - b) for a, b in zip(x, y, strict=True)) / len(x) for x, y in rows]
    band = len(change) * 2 // 3
    assert max(change[band:]) > 10, "no name in the bottom band"
    assert max(change[:band]) < 7, "the frame above the name changed"


def _first_frame_rows(gif: Path) -> list[bytes]:
    """The GIF's first frame as rows of 8-bit luma."""
    width = 480
    raw = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(gif),
            "-frames:v",
            "1",
            "-pix_fmt",
            "gray",
            "-f",
            "rawvideo",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return [raw[i : i + width] for i in range(0, len(raw), width)]


def _video_md5(path: Path) -> str:
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v", "-c", "copy", "-f", "md5", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_bad_input_fails_the_job_with_a_code_and_no_output(
    stack: Any, clients: Any, make_user: Callable[[], User], tmp_path: Path
) -> None:
    user = make_user()
    text_file = tmp_path / "notes.mp4"
    text_file.write_text("this is not a video\n" * 100)
    job_id = submit(stack, user, upload(clients, user, text_file))
    job = wait_finished(clients, job_id, 90)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "input-not-video"
    assert job["error"]["retryable"] is False
    assert "not a video" in job["error"]["message"]
    assert clients.bucket.get_blob(result_path(user.uid, job_id)) is None


def test_missing_upload_fails_with_input_not_found(
    stack: Any, clients: Any, make_user: Callable[[], User]
) -> None:
    user = make_user()
    job_id = submit(stack, user, f"user-uploads/{user.uid}/never-uploaded.mp4")
    job = wait_finished(clients, job_id, 90)
    assert (job["status"], job["error"]["code"]) == ("failed", "input-not-found")


def test_a_job_without_a_greeting_end_gets_the_one_in_the_recording(
    stack: Any, clients: Any, uploaded: Uploaded
) -> None:
    """The rules let a client leave greetingEndSecond out; the worker finds it ("Hey there,"
    ends the sample's first phrase, its pause runs to about 0.93 s) and writes it on the job."""
    user, video = uploaded.user, uploaded.path
    job_id = submit(stack, user, video, greeting_end_second=None)
    job = completed_once(stack, clients, user, job_id)
    assert 0.7 < job["greetingEndSecond"] < 1.0, job["greetingEndSecond"]
