"""A batch's pieces without the stack: which listed jobs its run takes, its shared inputs."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from flows import batch as batch_module
from flows import media as media_module
from flows.batch import MediaBudget, SharedInputs, batch_jobs, batch_too_large
from flows.job import ErrorCode, JobError
from flows.media import MediaCancelled, MediaInfo, ProcessLimits, limited
from flows.stages.thumbnails import ThumbnailBase

BATCH = "b-1"


def job(**overrides: Any) -> dict[str, Any]:
    return {"userId": "u", "batchId": BATCH, "retryCount": 0, "status": "pending", **overrides}


def test_takes_the_owners_waiting_jobs_in_the_listed_order() -> None:
    batch = {"userId": "u", "jobIds": ["c", "a", "b"]}
    jobs = {"a": job(), "b": job(status="queued", flowRunId="run-1"), "c": job()}
    assert batch_jobs(batch, BATCH, jobs, "run-1") == ["c", "a", "b"]


def test_skips_what_is_not_this_batchs_to_take() -> None:
    batch = {
        "userId": "u",
        "jobIds": [
            "other-user",
            "other-batch",
            "retried",
            "started",
            "done",
            "elsewhere",
            "missing",
            7,
            "ok",
            "ok",
        ],
    }
    jobs: dict[str, dict[str, Any] | None] = {
        "other-user": job(userId="someone-else"),
        "other-batch": job(batchId="b-2"),
        "retried": job(retryCount=1),
        "started": job(status="validating-input"),
        "done": job(status="cancelled"),
        "elsewhere": job(status="queued", flowRunId="the-sweeps-run"),
        "missing": None,
        "ok": job(),
    }
    assert batch_jobs(batch, BATCH, jobs, "run-1") == ["ok"]


def test_a_batch_without_jobs_takes_nothing() -> None:
    assert batch_jobs({}, BATCH, {}, "run-1") == []


# --- SharedInputs: one download and probe per upload per batch ---------------------------------


def test_shared_inputs_load_each_upload_once_for_concurrent_jobs(tmp_path: Path) -> None:
    calls: list[str] = []
    started = threading.Event()

    def load(object_path: str, dest: Path) -> tuple[Path, Any]:
        calls.append(object_path)
        started.wait(1)  # everyone asks while the first download is still running
        return dest, {"probed": object_path}

    inputs = SharedInputs(tmp_path, load)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(inputs.get, f"video-{i % 2}") for i in range(16)]
        started.set()
        results = [f.result() for f in futures]
    assert sorted(calls) == ["video-0", "video-1"]
    assert len({path for path, _ in results}) == 2


def test_shared_inputs_keep_a_bad_upload_but_not_an_outage(tmp_path: Path) -> None:
    calls: list[str] = []
    outcomes = [
        JobError(ErrorCode.STORAGE_UNAVAILABLE, "down"),
        (tmp_path / "v", {"ok": True}),
    ]

    def load(object_path: str, dest: Path) -> tuple[Path, Any]:
        calls.append(object_path)
        if object_path == "missing":
            raise JobError(ErrorCode.INPUT_NOT_FOUND, "no such upload")
        outcome = outcomes.pop(0)
        if isinstance(outcome, JobError):
            raise outcome
        return outcome

    inputs = SharedInputs(tmp_path, load)
    for _ in range(3):
        with pytest.raises(JobError, match="no such upload"):
            inputs.get("missing")
    assert calls.count("missing") == 1
    with pytest.raises(JobError, match="down"):
        inputs.get("flaky")
    assert inputs.get("flaky") == (tmp_path / "v", {"ok": True})
    assert calls.count("flaky") == 2


def test_shared_thumbnails_are_made_once_per_upload_and_greeting_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[tuple[str, float]] = []

    def make(video: Path, greeting_end_s: float, folder: Path) -> ThumbnailBase:
        made.append((video.name, greeting_end_s))
        return ThumbnailBase(poster=folder / "poster.jpg")

    monkeypatch.setattr(batch_module, "make_thumbnail_base", make)
    inputs = SharedInputs(tmp_path, lambda path, dest: (dest, None))  # type: ignore[arg-type,return-value]
    with ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(inputs.thumbnail_base, "video", Path("v.mp4"), 1.0 + i % 2)
            for i in range(16)
        ]
        bases = [f.result() for f in futures]
    assert sorted(made) == [("v.mp4", 1.0), ("v.mp4", 2.0)]
    assert len({id(b) for b in bases}) == 2

    def broken(video: Path, greeting_end_s: float, folder: Path) -> ThumbnailBase:
        raise RuntimeError("no")

    monkeypatch.setattr(batch_module, "make_thumbnail_base", broken)
    assert inputs.thumbnail_base("other", Path("v.mp4"), 1.0) is None

    def cancelled(video: Path, greeting_end_s: float, folder: Path) -> ThumbnailBase:
        raise MediaCancelled("the job was cancelled")

    # The job that asked first was cancelled: nothing is kept, the next job makes them.
    monkeypatch.setattr(batch_module, "make_thumbnail_base", cancelled)
    with pytest.raises(MediaCancelled):
        inputs.thumbnail_base("third", Path("v.mp4"), 1.0)
    monkeypatch.setattr(batch_module, "make_thumbnail_base", make)
    assert inputs.thumbnail_base("third", Path("v.mp4"), 1.0) is not None


def test_a_batchs_thumbnail_frames_start_with_its_first_render_and_no_job_cancels_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release, started = threading.Event(), threading.Event()
    seen: list[tuple[str, bool]] = []

    def make(video: Path, greeting_end_s: float, folder: Path) -> ThumbnailBase:
        seen.append((threading.current_thread().name, media_module._CANCEL.get() is None))
        started.set()
        release.wait(10)
        return ThumbnailBase(poster=folder / "poster.jpg")

    monkeypatch.setattr(batch_module, "make_thumbnail_base", make)
    monkeypatch.setattr(batch_module, "analyze_input", lambda video, end_s, folder: None)
    inputs = SharedInputs(tmp_path, lambda path, dest: (dest, None))  # type: ignore[arg-type,return-value]
    cancelled = threading.Event()
    cancelled.set()  # the job that asked first is cancelled: the frames serve the others
    with limited(ProcessLimits(), cancelled):
        inputs.analysis("video", Path("v.mp4"), 1.0)
        inputs.analysis("video", Path("v.mp4"), 1.0)  # the second job: nothing new starts
    assert started.wait(5)  # begun while the jobs render, before any asks for them
    assert seen == [("batch-thumbnails", True)]
    release.set()
    inputs.close()  # waits for them: nothing outlives the batch's folder
    assert inputs.thumbnail_base("video", Path("v.mp4"), 1.0) is not None
    assert len(seen) == 1  # made once

    off = SharedInputs(tmp_path / "off", lambda path, dest: (dest, None), thumbnails=False)  # type: ignore[arg-type,return-value]
    off.analysis("video", Path("v.mp4"), 1.0)
    off.close()
    assert len(seen) == 1  # GREETINGS_THUMBNAILS=false: nothing is made early


# --- a batch's total media minutes -----------------------------------------------------------


def test_a_batch_fits_until_its_video_times_its_names_passes_the_limit() -> None:
    assert batch_too_large(90, 400, 600) is None  # exactly 600 minutes
    error = batch_too_large(90, 401, 600)
    assert error is not None
    assert error.code == ErrorCode.BATCH_TOO_LARGE and not error.retryable
    assert error.message == (
        "This batch is 601.5 minutes of video (401 names on a 90 s video), more than the 600 "
        "minutes one batch may hold. Send at most 400 names with this video at once, or a "
        "shorter video."
    )
    # After 500 minutes of the batch's other upload, 100 are left: 66 names of a 90 s video.
    assert "at most 66 names" in (batch_too_large(90, 67, 600, spent_s=500 * 60) or error).message
    assert batch_too_large(90, 66, 600, spent_s=500 * 60) is None


def test_media_budget_counts_each_uploads_jobs() -> None:
    jobs: dict[str, dict[str, Any] | None] = {
        "a": job(inputVideo="long"),
        "b": job(inputVideo="long"),
        "c": job(inputVideo="short"),
        "gone": None,
    }
    budget = MediaBudget.of(10, jobs, ["a", "b", "c", "gone"])
    assert budget.admit("long", 240) is None  # 2 x 4 min: 8 of 10
    over = budget.admit("short", 180)  # 1 x 3 min more: 11
    assert over is not None and "at most 0 names" in over.message
    assert budget.admit("short", 60) is None  # what was refused was not counted


def test_shared_inputs_fail_every_job_of_a_batch_too_large_after_one_probe(
    tmp_path: Path,
) -> None:
    calls: list[str] = []

    def load(object_path: str, dest: Path) -> tuple[Path, MediaInfo]:
        calls.append(object_path)
        return dest, MediaInfo(1000, 120.0, "mov,mp4", None, None)

    inputs = SharedInputs(tmp_path, load, MediaBudget(10, {"video": 6}))  # 12 minutes
    for _ in range(6):
        with pytest.raises(JobError) as failed:
            inputs.get("video")
        assert failed.value.code == ErrorCode.BATCH_TOO_LARGE
    assert calls == ["video"]

    fits = SharedInputs(tmp_path / "fits", load, MediaBudget(10, {"video": 5}))
    assert fits.get("video")[1].duration_s == 120.0
