"""The sweep's decisions, as a plain function of the jobs and the time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jobs as trigger_jobs  # triggers/ is on the path (pyproject: pytest pythonpath)

from flows import orchestration
from flows.settings import Settings
from flows.sweep import plan_sweep

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SETTINGS = Settings(
    max_retries=3, retry_backoff_seconds=60, heartbeat_stale_seconds=120, pending_grace_seconds=60
)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def failed(attempt: int, retryable: bool, since: float) -> dict[str, Any]:
    return {
        "status": "failed",
        "retryCount": attempt,
        "updatedAt": ago(since),
        "error": {"code": "tts-unavailable", "message": "m", "retryable": retryable},
    }


def kinds(jobs: dict[str, dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(a.kind, a.job_id, a.attempt) for a in plan_sweep(jobs, NOW, SETTINGS)]


def test_retryable_failures_are_retried_after_their_backoff() -> None:
    jobs = {
        "a": failed(0, True, since=61),  # waited 60 s: retry
        "b": failed(0, True, since=30),  # too soon
        "c": failed(1, True, since=119),  # second retry waits 120 s: too soon
        "d": failed(2, True, since=241),  # third retry waits 240 s: retry
        "e": failed(3, True, since=9999),  # limit reached
        "f": failed(0, False, since=9999),  # the user's input: never retried
    }
    assert kinds(jobs) == [("retry", "a", 0), ("retry", "d", 2)]


def test_rate_limited_jobs_are_left_to_their_owner() -> None:
    # Retryable, but only by the owner's retry request, which takes from their allowance.
    limited = failed(0, True, since=9999)
    limited["error"] = {**limited["error"], "code": "rate-limited"}
    assert kinds({"a": limited}) == []


def test_stuck_jobs_are_reaped_by_heartbeat() -> None:
    jobs = {
        "stale": {"status": "generating-video", "heartbeatAt": ago(121), "flowRunId": "r"},
        "fresh": {"status": "generating-video", "heartbeatAt": ago(10)},
        "queued-stale": {"status": "queued", "heartbeatAt": ago(500), "retryCount": 1},
        "done": {"status": "completed", "heartbeatAt": ago(9999)},
    }
    assert kinds(jobs) == [("reap", "queued-stale", 1), ("reap", "stale", 0)]
    reap = plan_sweep({"stale": jobs["stale"]}, NOW, SETTINGS)[0]
    assert reap.flow_run_id == "r"
    assert not reap.queued
    # A queued job has no worker yet: the sweep asks Prefect before reaping it.
    assert plan_sweep({"q": jobs["queued-stale"]}, NOW, SETTINGS)[0].queued


def test_lost_pending_jobs_are_started_after_a_grace_period() -> None:
    jobs = {
        "lost": {"status": "pending", "createdAt": ago(61)},
        "new": {"status": "pending", "createdAt": ago(5)},
        "has-run": {"status": "pending", "createdAt": ago(500), "flowRunId": "r"},
        "prefect-was-down": {
            "status": "pending",
            "createdAt": ago(500),
            "updatedAt": ago(70),
            "retryCount": 1,
        },
    }
    assert kinds(jobs) == [("start", "lost", 0), ("start", "prefect-was-down", 1)]


def test_trigger_and_sweep_agree_on_idempotency_keys() -> None:
    """Both sides must name an attempt's run the same way, or a job could run twice."""
    assert trigger_jobs.idempotency_key("job-1", 2) == orchestration.idempotency_key("job-1", 2)
    assert trigger_jobs.flow_run_name("job-1", 2) == orchestration.flow_run_name("job-1", 2)


def test_trigger_and_flows_agree_on_statuses() -> None:
    from flows.job import TERMINAL_STATUSES, JobStatus

    names = [
        trigger_jobs.PENDING,
        trigger_jobs.QUEUED,
        trigger_jobs.FAILED,
        trigger_jobs.CANCELLED,
    ]
    assert all(JobStatus(name) for name in names)
    assert {s.value for s in TERMINAL_STATUSES} == trigger_jobs.TERMINAL
    assert trigger_jobs.COLLECTION == "greetingJobs"
