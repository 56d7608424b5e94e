"""Helpers the tests against the running stack share: users' jobs, uploads, Prefect look-ups.

The trigger's own modules (triggers/jobs.py, triggers/prefect_api.py) are imported from their
folder, as the Functions runtime imports them.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jobs as trigger_jobs  # triggers/ is on the path (pyproject: pytest pythonpath)
import prefect_api

from flows.job import COLLECTION, JobRequest, result_path
from flows.lifecycle import results_prefix
from flows.settings import Settings
from greetings.client.enduser import FirestoreAsUser
from tests.conftest import User, wait_for

DEPLOYMENT = "greeting-pipeline/greeting-pipeline"
DEAD_PREFECT = "http://127.0.0.1:9/api"  # nothing listens on the discard port
RUN_STAGES = ["validating-input", "processing-audio", "generating-video", "uploading-result"]
TERMINAL_RUN_STATES = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
# The sweep's thresholds for tests that call its pieces: act now, not after minutes.
EAGER = Settings(retry_backoff_seconds=0, heartbeat_stale_seconds=60, pending_grace_seconds=0)


def new_job_id() -> str:
    return f"it-{uuid.uuid4().hex[:16]}"


def upload(clients: Any, user: User, source: Path, name: str | None = None) -> str:
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:32]
    path = f"user-uploads/{user.uid}/{name or digest + source.suffix}"
    clients.bucket.blob(path).upload_from_filename(str(source), content_type="video/mp4")
    return path


def as_user(stack: Any, user: User) -> FirestoreAsUser:
    return FirestoreAsUser(
        f"http://{stack.s.firestore_emulator_host}/v1", stack.s.project_id, user.id_token
    )


def request_fields(user: User, input_video: str, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "user_id": user.uid,
        "input_video": input_video,
        "prospect_name": "Jane",
        "voice_id": "espeak:en-us",
        "greeting_end_second": 1.5,
    }
    fields.update(overrides)
    return fields


def submit(stack: Any, user: User, input_video: str, **overrides: Any) -> str:
    """Creates a job as the user, as a browser would; the trigger takes it from there."""
    job_id = new_job_id()
    as_user(stack, user).create_job(
        job_id, JobRequest(**request_fields(user, input_video, **overrides))
    )
    return job_id


def seed(clients: Any, user: User, input_video: str, **fields: Any) -> str:
    """Creates a job document as admin with server fields already set (e.g. a failed job)."""
    job_id = new_job_id()
    doc = JobRequest(**request_fields(user, input_video)).to_firestore()
    doc.update(fields)
    clients.db.collection(COLLECTION).document(job_id).create(doc)
    return job_id


def seed_pending_without_trigger(clients: Any, user: User, input_video: str, **fields: Any) -> str:
    """A `pending` job the created-trigger never started (it was lost, or Prefect was down).

    Created under a status the trigger ignores, then moved to `pending` by an update, which the
    update trigger ignores too: the document is exactly what a lost trigger leaves behind.
    """
    job_id = seed(clients, user, input_video, status="seeding", **fields)
    clients.db.collection(COLLECTION).document(job_id).update({"status": "pending"})
    return job_id


def read_job(clients: Any, job_id: str) -> dict[str, Any]:
    return clients.db.collection(COLLECTION).document(job_id).get().to_dict() or {}


def finished(job: dict[str, Any]) -> bool:
    return job.get("status") in ("completed", "failed", "cancelled")


def wait_finished(clients: Any, job_id: str, timeout_s: float) -> dict[str, Any]:
    """The job once it is completed, failed or cancelled (the test fails after `timeout_s`)."""
    job: dict[str, Any] = wait_for(lambda: read_job(clients, job_id), finished, timeout_s)
    return job


def statuses(job: dict[str, Any], attempt: int | None = None) -> list[str]:
    return [
        e["status"]
        for e in job.get("history", [])
        if attempt is None or int(e.get("attempt", 0)) == attempt
    ]


def flow_runs(stack: Any, job_id: str) -> list[dict[str, Any]]:
    """Every Prefect flow run of a job, whatever the attempt, oldest first."""
    # Through the trigger's client, which asks again when a busy server answers 503.
    runs: list[dict[str, Any]] = trigger_prefect(stack).call(
        "POST",
        "/flow_runs/filter",
        {
            "flow_runs": {"name": {"like_": f"job-{job_id}-attempt-"}},
            "sort": "START_TIME_ASC",
            "limit": 50,
        },
    )
    return sorted(runs, key=lambda r: r["created"])


def flow_run(stack: Any, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = trigger_prefect(stack).call("GET", f"/flow_runs/{run_id}")
    return run


def run_log_messages(stack: Any, run_id: str) -> list[str]:
    """What a flow run has logged so far (the worker ships its logs every few seconds)."""
    logs: list[dict[str, Any]] = trigger_prefect(stack).call(
        "POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}
    )
    return [str(log["message"]) for log in logs]


def wait_run_finished(stack: Any, run_id: str, timeout_s: float = 60) -> dict[str, Any]:
    run: dict[str, Any] = wait_for(
        lambda: flow_run(stack, run_id), lambda r: r["state_type"] in TERMINAL_RUN_STATES, timeout_s
    )
    return run


def worker_record(stack: Any) -> dict[str, Any]:
    """The stack worker's record in its work pool (status, last_heartbeat_time, ...)."""
    from greetings.stack.manager import WORKER_NAME

    workers = trigger_prefect(stack).call(
        "POST", f"/work_pools/{stack.s.work_pool}/workers/filter", {}
    )
    [record] = [w for w in workers if w["name"] == WORKER_NAME]
    return dict(record)


def stored_results(clients: Any, user: User) -> list[str]:
    """Everything stored for the user's jobs: videos and their thumbnails."""
    bucket = clients.bucket
    return sorted(b.name for b in bucket.client.list_blobs(bucket, prefix=results_prefix(user.uid)))


def outputs(clients: Any, user: User) -> list[str]:
    """The user's result videos (their thumbnails left out)."""
    return [name for name in stored_results(clients, user) if name.endswith(".mp4")]


def trigger_prefect(stack: Any) -> Any:
    return prefect_api.PrefectApi(stack.s.prefect_api)


def start_attempt(clients: Any, orchestrator: Any, job_id: str, attempt: int) -> str | None:
    """What the trigger's on_job_created does once it decided to start an attempt."""
    result: str | None = trigger_jobs.start_attempt(
        clients.db, orchestrator, prefect_api.PrefectUnavailable, DEPLOYMENT, job_id, attempt
    )
    return result


def sweep_once(
    clients: Any, prefect_client: Any, mine: set[str], settings: Settings = EAGER
) -> list[tuple[str, str, str]]:
    """One pass of the sweep over this test's own jobs: (job, action, outcome) per action."""
    from flows.sweep import act, load_candidates, plan_sweep

    candidates = {k: v for k, v in load_candidates(clients.db).items() if k in mine}
    done: list[tuple[str, str, str]] = []
    for action in plan_sweep(candidates, datetime.now(UTC), settings):
        outcome, _ = act(clients.db, prefect_client, action)
        done.append((action.job_id, action.kind, outcome))
    return done


def completed_once(
    stack: Any, clients: Any, user: User, job_id: str, attempt: int = 0
) -> dict[str, Any]:
    """The job once it completed exactly once, on `attempt`: each stage once, one completed flow
    run with that attempt's key, one result (the test fails otherwise)."""
    job: dict[str, Any] = wait_finished(clients, job_id, 120)
    assert job["status"] == "completed", job.get("error")
    assert job.get("retryCount", 0) == attempt
    assert "error" not in job
    assert [s for s in statuses(job, attempt) if s != "queued"][-5:] == [*RUN_STAGES, "completed"]
    assert statuses(job).count("completed") == 1
    run = flow_run(stack, job["flowRunId"])
    assert run["idempotency_key"] == f"{job_id}:{attempt}"
    assert run["parameters"] == {"job_id": job_id, "attempt": attempt}
    assert wait_run_finished(stack, job["flowRunId"])["state_type"] == "COMPLETED"
    assert outputs(clients, user) == [result_path(user.uid, job_id)]
    return job


def create_batch(
    stack: Any, user: User, video: str, names: list[str], **overrides: Any
) -> tuple[str, list[str]]:
    """A batch of jobs on one upload, created as the user does (one commit)."""
    batch_id = uuid.uuid4().hex
    jobs = {
        new_job_id(): JobRequest(
            **request_fields(user, video, prospect_name=name, batch_id=batch_id, **overrides)
        )
        for name in names
    }
    as_user(stack, user).create_batch(batch_id, jobs)
    return batch_id, list(jobs)
