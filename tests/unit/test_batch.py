"""A batch's pieces without the stack: which listed jobs its run takes, its shared inputs."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from flows.batch import SharedInputs, batch_jobs
from flows.job import ErrorCode, JobError

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
