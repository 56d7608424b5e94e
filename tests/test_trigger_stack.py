"""The trigger (triggers/, in the Functions emulator) against the real stack.

Duplicate deliveries, cancel, retry and a Prefect outage, end to end: Firestore, Auth and
Functions emulators, the Storage emulator, the Prefect server and its process worker. Nothing is
faked; the one thing a test may not do to the shared stack (stop Prefect) is done by pointing the
trigger's own Prefect client at a closed port.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from flows.enduser import FirestoreAsUser
from flows.job import COLLECTION, JobRequest, result_path
from flows.settings import Settings
from tests.conftest import User, wait_for

TRIGGERS = Path(__file__).resolve().parent.parent / "triggers"
sys.path.insert(0, str(TRIGGERS))
try:
    import jobs as trigger_jobs
    import prefect_api
finally:
    sys.path.remove(str(TRIGGERS))

pytestmark = pytest.mark.stack

DEPLOYMENT = "greeting-pipeline/greeting-pipeline"
DEAD_PREFECT = "http://127.0.0.1:9/api"  # nothing listens on the discard port
RUN_STAGES = ["validating-input", "processing-audio", "generating-video", "uploading-result"]
TERMINAL_RUN_STATES = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
# The sweep's thresholds for tests that call its pieces: act now, not after minutes.
EAGER = Settings(retry_backoff_seconds=0, heartbeat_stale_seconds=60, pending_grace_seconds=0)


# --- helpers (the patterns of test_pipeline_stack.py) --------------------------------------------


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


def statuses(job: dict[str, Any], attempt: int | None = None) -> list[str]:
    return [
        e["status"]
        for e in job.get("history", [])
        if attempt is None or int(e.get("attempt", 0)) == attempt
    ]


def flow_runs(stack: Any, job_id: str) -> list[dict[str, Any]]:
    """Every Prefect flow run of a job, whatever the attempt, oldest first."""
    response = requests.post(
        f"{stack.s.prefect_api}/flow_runs/filter",
        json={
            "flow_runs": {"name": {"like_": f"job-{job_id}-attempt-"}},
            "sort": "START_TIME_ASC",
            "limit": 50,
        },
        timeout=10,
    )
    response.raise_for_status()
    runs: list[dict[str, Any]] = response.json()
    return sorted(runs, key=lambda r: r["created"])


def flow_run(stack: Any, run_id: str) -> dict[str, Any]:
    response = requests.get(f"{stack.s.prefect_api}/flow_runs/{run_id}", timeout=10)
    response.raise_for_status()
    run: dict[str, Any] = response.json()
    return run


def wait_run_finished(stack: Any, run_id: str, timeout_s: float = 60) -> dict[str, Any]:
    run: dict[str, Any] = wait_for(
        lambda: flow_run(stack, run_id), lambda r: r["state_type"] in TERMINAL_RUN_STATES, timeout_s
    )
    return run


def outputs(clients: Any, user: User) -> list[str]:
    bucket = clients.bucket
    return sorted(
        b.name for b in bucket.client.list_blobs(bucket, prefix=f"greeting-results/{user.uid}/")
    )


def trigger_prefect(stack: Any) -> Any:
    return prefect_api.PrefectApi(stack.s.prefect_api)


def start_attempt(clients: Any, orchestrator: Any, job_id: str, attempt: int) -> str | None:
    """What the trigger's on_job_created does once it decided to start an attempt."""
    result: str | None = trigger_jobs.start_attempt(
        clients.db, orchestrator, prefect_api.PrefectUnavailable, DEPLOYMENT, job_id, attempt
    )
    return result


@pytest.fixture
def prefect_client(stack: Any) -> Iterator[Any]:
    """A real Prefect client on the stack's server (the sweep's side of orchestration).

    Prefect fixes its settings when first imported, before the stack fixture exports
    PREFECT_API_URL, so the URL is set here explicitly.
    """
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: stack.s.prefect_api}),
        get_client(sync_client=True) as client,
    ):
        yield client


def sweep_once(clients: Any, prefect_client: Any, mine: set[str]) -> list[tuple[str, str, str]]:
    """One pass of the sweep over this test's own jobs: (job, action, outcome) per action."""
    from flows.sweep import act, load_candidates, plan_sweep

    candidates = {k: v for k, v in load_candidates(clients.db).items() if k in mine}
    done: list[tuple[str, str, str]] = []
    for action in plan_sweep(candidates, datetime.now(UTC), EAGER):
        outcome, _ = act(clients.db, prefect_client, action)
        done.append((action.job_id, action.kind, outcome))
    return done


# --- duplicate delivery ---------------------------------------------------------------------------


def test_duplicate_deliveries_make_one_flow_run_and_one_result(
    stack: Any, clients: Any, make_user: Callable[[], User], sample_video: Path
) -> None:
    """The created event handled once by the trigger and three more times: one run, one result."""
    user = make_user()
    job_id = submit(stack, user, upload(clients, user, sample_video))

    # Three more deliveries, concurrent with the trigger's own and with each other. (The local
    # Prefect server's SQLite may answer a burst of writes with 503 "retry"; PrefectApi retries
    # those a few times, but on a loaded machine a delivery can still give up: it then returns
    # None and, being a duplicate, must leave the job alone.)
    returned: list[str | None] = []
    threads = [
        threading.Thread(
            target=lambda: returned.append(
                start_attempt(clients, trigger_prefect(stack), job_id, 0)
            )
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    job = wait_for(lambda: read_job(clients, job_id), finished, 120)
    assert job["status"] == "completed", job.get("error")
    runs = flow_runs(stack, job_id)
    assert [r["id"] for r in runs] == [job["flowRunId"]]
    assert runs[0]["idempotency_key"] == f"{job_id}:0"
    assert len(returned) == 3
    assert set(returned) <= {job["flowRunId"], None}, returned
    assert wait_run_finished(stack, job["flowRunId"])["state_type"] == "COMPLETED"
    # Each stage once, one completion, one result.
    assert [s for s in statuses(job) if s != "queued"] == [*RUN_STAGES, "completed"]
    assert statuses(job).count("queued") <= 1
    assert outputs(clients, user) == [result_path(user.uid, job_id)]

    # A late duplicate changes nothing, whether Prefect answers or is down at that moment.
    assert start_attempt(clients, trigger_prefect(stack), job_id, 0) == job["flowRunId"]
    dead = prefect_api.PrefectApi(DEAD_PREFECT, timeout_s=2)
    assert start_attempt(clients, dead, job_id, 0) is None
    after = read_job(clients, job_id)
    assert after["status"] == "completed"
    assert "error" not in after, "a late duplicate during an outage marked a finished job"
    assert after["history"] == job["history"]
    assert len(flow_runs(stack, job_id)) == 1


# --- cancel ---------------------------------------------------------------------------------------


def test_cancel_right_after_creation_cancels_the_job_and_its_run(
    stack: Any, clients: Any, make_user: Callable[[], User], sample_video: Path
) -> None:
    user = make_user()
    job_id = submit(stack, user, upload(clients, user, sample_video))
    as_user(stack, user).request_cancel(job_id)  # still pending (or queued): allowed

    job = wait_for(
        lambda: read_job(clients, job_id),
        lambda j: finished(j) and bool(j.get("flowRunId")),
        60,
    )
    assert job["status"] == "cancelled"
    assert "completedAt" in job
    run = wait_run_finished(stack, job["flowRunId"])
    assert run["state_type"] == "CANCELLED", run["state"]
    assert [r["id"] for r in flow_runs(stack, job_id)] == [job["flowRunId"]]
    # Once the run is over nothing can move the job any more: check it stayed cancelled.
    job = read_job(clients, job_id)
    assert job["status"] == "cancelled"
    assert "completed" not in statuses(job)
    assert statuses(job)[-1] == "cancelled"
    assert outputs(clients, user) == []


def test_cancel_during_a_stage_stops_the_run_at_its_next_transition(
    stack: Any, clients: Any, make_user: Callable[[], User], sample_video: Path
) -> None:
    """A run holding a stage sees the cancel at its next transition and its heartbeat stops.

    A real job runs through every stage in about two seconds, too fast to cancel mid-stage
    deterministically; so the job is seeded in `generating-video` as its run left it, the user's
    cancel goes through the rules and the real trigger, and the run's next writes are made with
    the worker's own functions.
    """
    from flows.job import JobStatus
    from flows.transitions import Transition, TransitionRefused, touch_heartbeat, transition

    user = make_user()
    now = datetime.now(UTC)
    job_id = seed(
        clients,
        user,
        upload(clients, user, sample_video),
        status="generating-video",
        retryCount=0,
        progress=55,
        createdAt=now,
        updatedAt=now,
        heartbeatAt=now,
        history=[{"status": s, "at": now, "attempt": 0} for s in ["queued", *RUN_STAGES[:3]]],
    )
    assert touch_heartbeat(clients.db, job_id, 0)
    as_user(stack, user).request_cancel(job_id)
    job = wait_for(lambda: read_job(clients, job_id), finished, 30)
    assert job["status"] == "cancelled"

    with pytest.raises(TransitionRefused) as refused:
        transition(clients.db, job_id, Transition(JobStatus.UPLOADING_RESULT, 0))
    assert refused.value.cancelled
    with pytest.raises(TransitionRefused):
        transition(clients.db, job_id, Transition(JobStatus.COMPLETED, 0))
    assert not touch_heartbeat(clients.db, job_id, 0)
    assert read_job(clients, job_id)["status"] == "cancelled"


# --- retry ----------------------------------------------------------------------------------------


def test_user_retry_after_fixing_the_upload_runs_attempt_1_to_completion(
    stack: Any, clients: Any, make_user: Callable[[], User], sample_video: Path
) -> None:
    user = make_user()
    path = f"user-uploads/{user.uid}/uploaded-late.mp4"
    job_id = submit(stack, user, path)
    failed = wait_for(lambda: read_job(clients, job_id), finished, 90)
    assert (failed["status"], failed["error"]["code"]) == ("failed", "input-not-found")
    first_run = failed["flowRunId"]

    upload(clients, user, sample_video, name="uploaded-late.mp4")
    as_user(stack, user).request_retry(job_id)

    # The first look at attempt 1: it starts clean, nothing of the failed attempt left on it.
    retrying = wait_for(lambda: read_job(clients, job_id), lambda j: j.get("retryCount") == 1, 30)
    if not finished(retrying):
        assert "error" not in retrying
        assert "completedAt" not in retrying, "attempt 1 still shows attempt 0's completedAt"

    job = wait_for(lambda: read_job(clients, job_id), finished, 120)
    assert job["status"] == "completed", job.get("error")
    assert job["retryCount"] == 1
    assert "error" not in job
    runs = flow_runs(stack, job_id)
    assert [(r["name"], r["idempotency_key"]) for r in runs] == [
        (f"job-{job_id}-attempt-0", f"{job_id}:0"),
        (f"job-{job_id}-attempt-1", f"{job_id}:1"),
    ]
    assert runs[0]["id"] == first_run
    assert runs[1]["id"] == job["flowRunId"]
    assert runs[1]["parameters"] == {"job_id": job_id, "attempt": 1}
    assert statuses(job, 0)[-1] == "failed"
    assert [s for s in statuses(job, 1) if s != "queued"] == ["pending", *RUN_STAGES, "completed"]
    assert outputs(clients, user) == [result_path(user.uid, job_id)]


def test_user_retry_over_the_limit_fails_again_without_a_run(
    stack: Any, clients: Any, make_user: Callable[[], User]
) -> None:
    user = make_user()
    now = datetime.now(UTC)
    error = {"code": "tts-unavailable", "message": "The voice service is down.", "retryable": True}
    job_id = seed(
        clients,
        user,
        f"user-uploads/{user.uid}/any.mp4",
        status="failed",
        retryCount=3,
        error=error,
        createdAt=now,
        updatedAt=now,
        history=[{"status": "failed", "at": now, "attempt": 3}],
    )
    as_user(stack, user).request_retry(job_id)

    job = wait_for(
        lambda: read_job(clients, job_id),
        lambda j: j.get("status") == "failed" and len(j.get("history", [])) == 2,
        30,
    )
    assert job["retryCount"] == 3
    assert job["error"]["retryable"] is False
    assert job["error"]["code"] == "tts-unavailable"
    assert "limit" in job["error"]["message"]
    assert "flowRunId" not in job
    assert flow_runs(stack, job_id) == []


# --- Prefect down ---------------------------------------------------------------------------------


def test_prefect_down_leaves_the_job_pending_for_the_sweep_which_starts_it(
    stack: Any,
    clients: Any,
    make_user: Callable[[], User],
    sample_video: Path,
    prefect_client: Any,
) -> None:
    user = make_user()
    job_id = seed_pending_without_trigger(
        clients, user, upload(clients, user, sample_video), createdAt=datetime.now(UTC)
    )
    dead = prefect_api.PrefectApi(DEAD_PREFECT, timeout_s=2)
    assert start_attempt(clients, dead, job_id, 0) is None

    job = read_job(clients, job_id)
    assert job["status"] == "pending"
    assert job["error"]["code"] == "orchestrator-unavailable"
    assert job["error"]["retryable"] is True
    assert "flowRunId" not in job
    assert flow_runs(stack, job_id) == []

    assert sweep_once(clients, prefect_client, {job_id}) == [(job_id, "start", "started")]
    job = wait_for(lambda: read_job(clients, job_id), finished, 120)
    assert job["status"] == "completed", job.get("error")
    assert "error" not in job, "the completed job still says it could not be scheduled"
    runs = flow_runs(stack, job_id)
    assert [(r["id"], r["idempotency_key"]) for r in runs] == [(job["flowRunId"], f"{job_id}:0")]
    assert outputs(clients, user) == [result_path(user.uid, job_id)]
