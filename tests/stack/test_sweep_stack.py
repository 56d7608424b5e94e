"""The sweep (flows/sweep.py) for real: Firestore emulator, Prefect server and worker, Storage.

Each test seeds its own jobs as admin and sweeps only those (the stack is shared: other tests'
jobs are in the same collection), with thresholds of zero so nothing waits minutes; the last test
runs the `retry-failed-jobs` flow itself, in process, with the production thresholds.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Uploaded
from tests.support.stackkit import (
    RUN_STAGES,
    completed_once,
    flow_run,
    flow_runs,
    read_job,
    seed,
    seed_pending_without_trigger,
    statuses,
    sweep_once,
    trigger_prefect,
)

pytestmark = pytest.mark.stack


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def failed_retryable(since: datetime) -> dict[str, Any]:
    return {
        "status": "failed",
        "retryCount": 0,
        "progress": 30,
        "createdAt": since,
        "updatedAt": since,
        "completedAt": since,
        "error": {
            "code": "tts-unavailable",
            "message": "The voice service did not answer.",
            "retryable": True,
        },
        "history": [
            {"status": "queued", "at": since, "attempt": 0},
            {"status": "validating-input", "at": since, "attempt": 0},
            {"status": "processing-audio", "at": since, "attempt": 0},
            {"status": "failed", "at": since, "attempt": 0, "errorCode": "tts-unavailable"},
        ],
    }


def unpooled_run(stack: Any, job_id: str, state: dict[str, Any]) -> str:
    """A greeting-pipeline run of attempt 0 in `state`, in no work pool: no worker ever takes it."""
    prefect = trigger_prefect(stack)
    flow = prefect.call("GET", "/flows/name/greeting-pipeline")
    run = prefect.call(
        "POST",
        "/flow_runs/",
        {
            "flow_id": flow["id"],
            "name": f"job-{job_id}-attempt-0",
            "parameters": {"job_id": job_id, "attempt": 0},
            "idempotency_key": f"{job_id}:0",
            "state": state,
        },
    )
    run_id: str = run["id"]
    return run_id


def test_a_retryable_failure_is_retried_as_a_new_attempt_and_completes(
    stack: Any, clients: Any, uploaded: Uploaded, prefect_client: Any
) -> None:
    user, video = uploaded.user, uploaded.path
    job_id = seed(clients, user, video, **failed_retryable(ago(1)))

    assert sweep_once(clients, prefect_client, {job_id}) == [(job_id, "retry", "retried")]
    job = read_job(clients, job_id)
    assert job["retryCount"] == 1
    assert job["status"] != "failed"
    assert "completedAt" not in job or job["status"] == "completed"

    job = completed_once(stack, clients, user, job_id, 1)
    assert statuses(job, 1)[0] == "pending"
    assert [r["idempotency_key"] for r in flow_runs(stack, job_id)] == [f"{job_id}:1"]
    # Nothing left to do for it.
    assert sweep_once(clients, prefect_client, {job_id}) == []


def test_a_stuck_job_is_reaped_its_run_marked_crashed_then_retried(
    stack: Any, clients: Any, uploaded: Uploaded, prefect_client: Any
) -> None:
    """A worker died mid-render: heartbeat stale, its Prefect run still says Running."""
    user, input_video = uploaded.user, uploaded.path
    # The dead worker's run: Running, in no work pool, so no worker will ever pick it up.
    job_id = seed(clients, user, input_video, status="seeding")
    dead_run = unpooled_run(stack, job_id, {"type": "RUNNING", "name": "Running"})
    beat = ago(90)  # stale for the 60 s used here, not yet for the scheduled sweep's 120 s
    clients.db.collection("greetingJobs").document(job_id).update(
        {
            "status": "generating-video",
            "retryCount": 0,
            "progress": 55,
            "flowRunId": dead_run,
            "createdAt": beat,
            "updatedAt": beat,
            "heartbeatAt": beat,
            "history": [
                {"status": s, "at": beat, "attempt": 0, "flowRunId": dead_run}
                for s in ["queued", *RUN_STAGES[:3]]
            ],
        }
    )

    assert sweep_once(clients, prefect_client, {job_id}) == [(job_id, "reap", "reaped")]
    job = read_job(clients, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "worker-lost"
    assert job["error"]["retryable"] is True
    assert flow_run(stack, dead_run)["state_type"] == "CRASHED"

    assert sweep_once(clients, prefect_client, {job_id}) == [(job_id, "retry", "retried")]
    job = completed_once(stack, clients, user, job_id, 1)
    assert statuses(job, 0)[-1] == "failed"
    runs = flow_runs(stack, job_id)
    assert [(r["id"], r["state_type"]) for r in runs] == [
        (dead_run, "CRASHED"),
        (job["flowRunId"], "COMPLETED"),
    ]


def test_a_pending_job_whose_trigger_was_lost_is_started(
    stack: Any, clients: Any, uploaded: Uploaded, prefect_client: Any
) -> None:
    user, video = uploaded.user, uploaded.path
    # Past this test's grace (0 s), not yet past the scheduled sweep's (60 s), which would
    # otherwise race this test for the job.
    job_id = seed_pending_without_trigger(clients, user, video, createdAt=ago(30))
    assert "flowRunId" not in read_job(clients, job_id)
    assert flow_runs(stack, job_id) == []

    assert sweep_once(clients, prefect_client, {job_id}) == [(job_id, "start", "started")]
    job = completed_once(stack, clients, user, job_id, 0)
    assert [r["id"] for r in flow_runs(stack, job_id)] == [job["flowRunId"]]


def test_the_retry_failed_jobs_flow_retries_and_leaves_a_table_artifact(
    stack: Any,
    clients: Any,
    uploaded: Uploaded,
    prefect_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The flow as deployed, with the production thresholds, run in process.

    Its candidates are narrowed to this test's jobs: the shared collection holds other tests'
    jobs (stale ones among them), and sweeping them here would act on jobs other tests are
    watching and make this test's run time depend on theirs. The query itself still runs.
    Production thresholds: the seeded failure is ten minutes old, past the first backoff.
    """
    from flows import sweep

    user, video = uploaded.user, uploaded.path
    job_id = seed(clients, user, video, **failed_retryable(ago(600)))
    fresh = seed(clients, user, video, **failed_retryable(ago(1)))
    mine = {job_id, fresh}
    load_all = sweep.load_candidates
    monkeypatch.setattr(
        sweep, "load_candidates", lambda db: {k: v for k, v in load_all(db).items() if k in mine}
    )

    counts = sweep.retry_failed_jobs()
    assert counts == {"retried": 1}
    # Failed a second ago: still inside its backoff, left alone.
    assert read_job(clients, fresh)["status"] == "failed"
    assert flow_runs(stack, fresh) == []

    artifacts = trigger_prefect(stack).call(
        "POST",
        "/artifacts/filter",
        {
            "artifacts": {"key": {"any_": ["retry-failed-jobs"]}},
            "sort": "CREATED_DESC",
            "limit": 20,
        },
    )
    tables: list[tuple[dict[str, Any], list[dict[str, str]]]] = []
    for artifact in artifacts:
        data = artifact["data"]
        tables.append((artifact, json.loads(data) if isinstance(data, str) else data))
    ours = [(a, rows) for a, rows in tables if any(r.get("job") == job_id for r in rows)]
    assert len(ours) == 1, tables[:3]
    artifact, rows = ours[0]
    assert artifact["type"] == "table"
    assert [(r["job"], r["action"], r["outcome"]) for r in rows] == [(job_id, "retry", "retried")]
    assert "retried" in artifact["description"]
    sweep_run = flow_run(stack, artifact["flow_run_id"])
    assert sweep_run["state_type"] == "COMPLETED"

    completed_once(stack, clients, user, job_id, 1)


def test_a_queued_job_waiting_for_a_worker_is_not_reaped(
    stack: Any, clients: Any, uploaded: Uploaded, prefect_client: Any
) -> None:
    """A long queue is not a dead worker: while its run waits in Prefect, the job is left alone."""
    user, video = uploaded.user, uploaded.path
    job_id = seed(clients, user, video, status="seeding")
    # Scheduled an hour from now and in no work pool: it waits, as behind a long queue.
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    waiting_run = unpooled_run(
        stack,
        job_id,
        {"type": "SCHEDULED", "name": "Scheduled", "state_details": {"scheduled_time": later}},
    )
    beat = ago(90)
    clients.db.collection("greetingJobs").document(job_id).update(
        {
            "status": "queued",
            "retryCount": 0,
            "flowRunId": waiting_run,
            "createdAt": beat,
            "updatedAt": beat,
            "heartbeatAt": beat,
        }
    )
    assert sweep_once(clients, prefect_client, {job_id}) == [(job_id, "reap", "skipped")]
    assert read_job(clients, job_id)["status"] == "queued"
    assert flow_run(stack, waiting_run)["state_type"] == "SCHEDULED"
    # Once its run is gone (crashed, say), the same job is reaped.
    trigger_prefect(stack).call(
        "POST",
        f"/flow_runs/{waiting_run}/set_state",
        {"state": {"type": "CRASHED", "name": "Crashed"}, "force": True},
    )
    assert sweep_once(clients, prefect_client, {job_id}) == [(job_id, "reap", "reaped")]
    assert read_job(clients, job_id)["error"]["code"] == "worker-lost"
