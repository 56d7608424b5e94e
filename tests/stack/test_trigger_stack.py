"""The trigger (triggers/, in the Functions emulator) against the real stack.

Duplicate deliveries, cancel, retry and a Prefect outage, end to end: Firestore, Auth and
Functions emulators, the Storage emulator, the Prefect server and its process worker. Nothing is
faked; the one thing a test may not do to the shared stack (stop Prefect) is done by pointing the
trigger's own Prefect client at a closed port.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flows.job import COLLECTION, REQUESTS, RequestAction, result_path
from flows.lifecycle import result_paths
from tests.conftest import Uploaded, User, wait_for
from tests.support.stackkit import (
    DEAD_PREFECT,
    RUN_STAGES,
    as_user,
    completed_once,
    finished,
    flow_runs,
    outputs,
    prefect_api,
    read_job,
    seed,
    seed_pending_without_trigger,
    start_attempt,
    statuses,
    stored_results,
    submit,
    sweep_once,
    trigger_prefect,
    upload,
    wait_finished,
    wait_run_finished,
)

pytestmark = pytest.mark.stack


# --- duplicate delivery ---------------------------------------------------------------------------


def test_duplicate_deliveries_make_one_flow_run_and_one_result(
    stack: Any, clients: Any, uploaded: Uploaded
) -> None:
    """The created event handled once by the trigger and three more times: one run, one result."""
    user, video = uploaded.user, uploaded.path
    job_id = submit(stack, user, video)

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

    job = wait_finished(clients, job_id, 120)
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
    dead = prefect_api.PrefectApi(DEAD_PREFECT, timeout_s=2, connect_retries=0)
    assert start_attempt(clients, dead, job_id, 0) is None
    after = read_job(clients, job_id)
    assert after["status"] == "completed"
    assert "error" not in after, "a late duplicate during an outage marked a finished job"
    assert after["history"] == job["history"]
    assert len(flow_runs(stack, job_id)) == 1


# --- cancel ---------------------------------------------------------------------------------------


def test_cancel_right_after_creation_cancels_the_job_and_its_run(
    stack: Any, clients: Any, uploaded: Uploaded
) -> None:
    user, video = uploaded.user, uploaded.path
    job_id = submit(stack, user, video)
    # Still pending (or queued): allowed.
    as_user(stack, user).request(job_id, user.uid, RequestAction.CANCEL)

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
    stack: Any, clients: Any, uploaded: Uploaded
) -> None:
    """A run holding a stage sees the cancel at its next transition and its heartbeat stops.

    A real job runs through every stage in about two seconds, too fast to cancel mid-stage
    deterministically; so the job is seeded in `generating-video` as its run left it, the user's
    cancel goes through the rules and the real trigger, and the run's next writes are made with
    the worker's own functions.
    """
    from flows.job import JobStatus
    from flows.transitions import Transition, TransitionRefused, touch_heartbeat, transition

    user, video = uploaded.user, uploaded.path
    now = datetime.now(UTC)
    job_id = seed(
        clients,
        user,
        video,
        status="generating-video",
        retryCount=0,
        progress=55,
        createdAt=now,
        updatedAt=now,
        heartbeatAt=now,
        history=[{"status": s, "at": now, "attempt": 0} for s in ["queued", *RUN_STAGES[:3]]],
    )
    assert touch_heartbeat(clients.db, job_id, 0)
    as_user(stack, user).request(job_id, user.uid, RequestAction.CANCEL)
    job = wait_finished(clients, job_id, 30)
    assert job["status"] == "cancelled"

    with pytest.raises(TransitionRefused) as refused:
        transition(clients.db, job_id, Transition(JobStatus.UPLOADING_RESULT, 0))
    assert refused.value.cancelled
    with pytest.raises(TransitionRefused):
        transition(clients.db, job_id, Transition(JobStatus.COMPLETED, 0))
    assert not touch_heartbeat(clients.db, job_id, 0)
    assert read_job(clients, job_id)["status"] == "cancelled"


def test_a_runs_next_transition_is_one_write_unless_someone_else_wrote_since(
    stack: Any, clients: Any, uploaded: Uploaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's transitions after its first are written over its own last write in one call;
    a write by anyone else since (a heartbeat, the user's cancel) sends the change back through
    a transaction that decides on the current document."""
    from flows.job import JobStatus
    from flows.transitions import Transition, TransitionRefused, touch_heartbeat, write_transition

    user, video = uploaded.user, uploaded.path
    now = datetime.now(UTC)
    job_id = seed(clients, user, video, status="queued", retryCount=0, history=[], updatedAt=now)
    db = clients.db
    transactions = 0
    begin = db.transaction

    def counted(**kwargs: Any) -> Any:
        nonlocal transactions
        transactions += 1
        return begin(**kwargs)

    monkeypatch.setattr(db, "transaction", counted)

    first = write_transition(db, job_id, Transition(JobStatus.VALIDATING_INPUT, 0, "run-1"))
    assert transactions == 1 and first.update_time is not None
    second = write_transition(db, job_id, Transition(JobStatus.PROCESSING_AUDIO, 0, "run-1"), first)
    assert transactions == 1, "written over the run's last write, without a transaction"
    stored = read_job(clients, job_id)
    assert stored == second.doc
    assert [e["status"] for e in stored["history"]] == ["validating-input", "processing-audio"]

    # A heartbeat wrote since: the precondition fails, and a transaction writes the change.
    assert touch_heartbeat(db, job_id, 0)
    third = write_transition(db, job_id, Transition(JobStatus.GENERATING_VIDEO, 0, "run-1"), second)
    assert transactions == 3  # the heartbeat's and the transition's
    assert [e["status"] for e in read_job(clients, job_id)["history"]] == [
        "validating-input",
        "processing-audio",
        "generating-video",
    ]

    # The user's cancel wrote since: the run's own view would move on, the current one refuses.
    as_user(stack, user).request(job_id, user.uid, RequestAction.CANCEL)
    assert wait_finished(clients, job_id, 30)["status"] == "cancelled"
    with pytest.raises(TransitionRefused) as refused:
        write_transition(db, job_id, Transition(JobStatus.UPLOADING_RESULT, 0, "run-1"), third)
    assert refused.value.cancelled
    assert read_job(clients, job_id)["status"] == "cancelled"


def test_a_conditional_transition_that_loses_to_a_lock_is_written_by_a_transaction(
    stack: Any, clients: Any, uploaded: Uploaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Firestore answers ABORTED when a write loses to a transaction holding the document (seen
    in a 400-job batch: its waiting heartbeat reads every waiting job in one transaction). The
    run's transition must not fail the job for it."""
    from google.api_core import exceptions as gexc
    from google.cloud.firestore_v1.document import DocumentReference

    from flows.job import JobStatus
    from flows.transitions import Transition, write_transition

    user, video = uploaded.user, uploaded.path
    job_id = seed(clients, user, video, status="queued", retryCount=0, history=[])
    first = write_transition(clients.db, job_id, Transition(JobStatus.VALIDATING_INPUT, 0, "r"))
    update = DocumentReference.update
    lost = []

    def losing(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("option") is not None and not lost:
            lost.append(self.id)
            raise gexc.Aborted("Transaction lock timeout.")
        return update(self, *args, **kwargs)

    monkeypatch.setattr(DocumentReference, "update", losing)
    second = write_transition(
        clients.db, job_id, Transition(JobStatus.PROCESSING_AUDIO, 0, "r"), first
    )
    assert lost == [job_id]
    stored = read_job(clients, job_id)
    assert stored["status"] == "processing-audio" == second.doc["status"]
    assert [e["status"] for e in stored["history"]] == ["validating-input", "processing-audio"]


# --- retry ----------------------------------------------------------------------------------------


def test_user_retry_after_fixing_the_upload_runs_attempt_1_to_completion(
    stack: Any, clients: Any, make_user: Callable[[], User], sample_video: Path
) -> None:
    user = make_user()
    path = f"user-uploads/{user.uid}/uploaded-late.mp4"
    job_id = submit(stack, user, path)
    failed = wait_finished(clients, job_id, 90)
    assert (failed["status"], failed["error"]["code"]) == ("failed", "input-not-found")
    first_run = failed["flowRunId"]

    upload(clients, user, sample_video, name="uploaded-late.mp4")
    as_user(stack, user).request(job_id, user.uid, RequestAction.RETRY)

    # The first look at attempt 1: it starts clean, nothing of the failed attempt left on it.
    retrying = wait_for(lambda: read_job(clients, job_id), lambda j: j.get("retryCount") == 1, 30)
    if not finished(retrying):
        assert "error" not in retrying
        assert "completedAt" not in retrying, "attempt 1 still shows attempt 0's completedAt"

    job = wait_finished(clients, job_id, 120)
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


def test_edit_and_retry_runs_the_new_attempt_with_the_changed_fields(
    stack: Any, clients: Any, uploaded: Uploaded
) -> None:
    # "Hey Maximilian Oyelaran-Whitfield," cannot be said in 0.3 s at any tempo: a failure no
    # plain retry can fix. Edited (a later end, a shorter first name), the same job completes.
    user, video = uploaded.user, uploaded.path
    job_id = submit(
        stack,
        user,
        video,
        prospect_name="Maximilian Oyelaran-Whitfield",
        first_name="Maximilian Oyelaran-Whitfield",
        greeting_end_second=0.3,
    )
    failed = wait_finished(clients, job_id, 120)
    assert (failed["status"], failed["error"]["code"]) == ("failed", "greeting-too-long")

    changes = {"greetingEndSecond": 1.5, "firstName": "Max"}
    request_id = as_user(stack, user).request(job_id, user.uid, RequestAction.RETRY, changes)
    requests = clients.db.collection(COLLECTION).document(job_id).collection(REQUESTS)
    handled = wait_for(
        lambda: requests.document(request_id).get().to_dict() or {}, lambda r: "outcome" in r, 30
    )
    assert handled["outcome"] == "retrying"
    assert handled["message"] == (
        "Attempt 1 started with the greeting ending at 1.5 s, the first name 'Max'."
    )
    job = wait_finished(clients, job_id, 120)
    assert job["status"] == "completed", job.get("error")
    assert (job["retryCount"], job["greetingEndSecond"], job["firstName"]) == (1, 1.5, "Max")
    assert job["prospectName"] == "Maximilian Oyelaran-Whitfield"  # the row it came from
    assert statuses(job, 0)[-1] == "failed"
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
    request_id = as_user(stack, user).request(job_id, user.uid, RequestAction.RETRY)

    request = clients.db.collection(COLLECTION).document(job_id).collection(REQUESTS)
    handled = wait_for(
        lambda: request.document(request_id).get().to_dict() or {}, lambda r: "outcome" in r, 30
    )
    assert handled["outcome"] == "refused"
    job = read_job(clients, job_id)
    assert job["status"] == "failed"
    assert len(job["history"]) == 1
    assert "already retried 3 times" in job["error"]["message"]
    assert job["retryCount"] == 3
    assert job["error"]["retryable"] is False
    assert job["error"]["code"] == "tts-unavailable"
    assert "limit" in job["error"]["message"]
    assert "flowRunId" not in job
    assert flow_runs(stack, job_id) == []


# --- Prefect down ---------------------------------------------------------------------------------


def test_prefect_down_leaves_the_job_pending_for_the_sweep_which_starts_it(
    stack: Any, clients: Any, uploaded: Uploaded, prefect_client: Any
) -> None:
    user, video = uploaded.user, uploaded.path
    job_id = seed_pending_without_trigger(clients, user, video, createdAt=datetime.now(UTC))
    dead = prefect_api.PrefectApi(DEAD_PREFECT, timeout_s=2, connect_retries=0)
    assert start_attempt(clients, dead, job_id, 0) is None

    job = read_job(clients, job_id)
    assert job["status"] == "pending"
    assert job["error"]["code"] == "orchestrator-unavailable"
    assert job["error"]["retryable"] is True
    assert "flowRunId" not in job
    assert flow_runs(stack, job_id) == []

    assert sweep_once(clients, prefect_client, {job_id}) == [(job_id, "start", "started")]
    job = wait_finished(clients, job_id, 120)
    assert job["status"] == "completed", job.get("error")
    assert "error" not in job, "the completed job still says it could not be scheduled"
    runs = flow_runs(stack, job_id)
    assert [(r["id"], r["idempotency_key"]) for r in runs] == [(job["flowRunId"], f"{job_id}:0")]
    assert outputs(clients, user) == [result_path(user.uid, job_id)]


# --- delete ---------------------------------------------------------------------------------------


def test_deleting_a_job_removes_its_result_and_its_upload_once_no_job_names_it(
    stack: Any, clients: Any, uploaded: Uploaded
) -> None:
    """A prospect who asks to be forgotten is: the result goes (its link serves nothing), and
    the upload goes with the last job that names it."""
    user, video = uploaded.user, uploaded.path
    first_id = submit(stack, user, video)
    completed_once(stack, clients, user, first_id)
    second_id = submit(stack, user, video, prospect_name="Grace")
    second = wait_finished(clients, second_id, 120)
    assert second["status"] == "completed", second.get("error")
    bucket = clients.bucket

    as_user(stack, user).delete(COLLECTION, first_id)
    wait_for(lambda: bucket.blob(result_path(user.uid, first_id)).exists(), lambda e: not e, 30)
    assert bucket.blob(video).exists(), "the upload went while a job still names it"
    assert bucket.blob(result_path(user.uid, second_id)).exists()
    # The video goes first, its thumbnails just after: wait for the last of them.
    left = sorted(result_paths(user.uid, second_id))
    assert wait_for(lambda: stored_results(clients, user), lambda r: r == left, 30) == left

    as_user(stack, user).delete(COLLECTION, second_id)
    wait_for(lambda: bucket.blob(video).exists(), lambda e: not e, 30)
    # The thumbnails went with their videos.
    assert wait_for(lambda: stored_results(clients, user), lambda r: r == [], 30) == []
