"""Batches against the running stack: one flow run for a batch, each job its own story."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.job import BATCHES, JobRequest, result_path
from tests.conftest import Uploaded, User
from tests.support.stackkit import (
    RUN_STAGES,
    as_user,
    create_batch,
    flow_run,
    new_job_id,
    outputs,
    prefect_api,
    read_job,
    request_fields,
    statuses,
    sweep_once,
    trigger_jobs,
    trigger_prefect,
    upload,
    wait_finished,
    wait_run_finished,
)

BATCH_DEPLOYMENT = "greeting-batch/greeting-batch"


def batch_runs(stack: Any, batch_id: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = trigger_prefect(stack).call(
        "POST", "/flow_runs/filter", {"flow_runs": {"name": {"any_": [f"batch-{batch_id}"]}}}
    )
    return runs


def test_a_batch_runs_as_one_flow_run_and_each_job_moves_on_its_own(
    stack: Any, clients: Any, uploaded: Uploaded
) -> None:
    user, video = uploaded.user, uploaded.path
    batch_id, job_ids = create_batch(stack, user, video, ["Anna", "Ben", "Cara", "Dev"])

    jobs = {job_id: wait_finished(clients, job_id, 120) for job_id in job_ids}
    assert {j["status"] for j in jobs.values()} == {"completed"}, [
        j.get("error") for j in jobs.values()
    ]
    [run] = batch_runs(stack, batch_id)
    assert run["parameters"] == {"batch_id": batch_id}
    assert run["idempotency_key"] == f"batch:{batch_id}"
    for job in jobs.values():
        assert job["flowRunId"] == run["id"]
        # queued comes first unless the run moved the job before the trigger marked it.
        assert [s for s in statuses(job) if s != "queued"] == [*RUN_STAGES, "completed"]
    assert outputs(clients, user) == sorted(result_path(user.uid, j) for j in job_ids)
    done = wait_run_finished(stack, run["id"])
    assert done["state_type"] == "COMPLETED"
    assert done["state"]["message"] == "4 completed"


def test_duplicate_batch_event_starts_nothing_and_foreign_jobs_are_left_alone(
    stack: Any, clients: Any, make_user: Callable[[], User], sample_video: Path
) -> None:
    """The batch list is the client's word: another user's job listed in it is not taken."""
    alice, bob = make_user(), make_user()
    bobs_job = new_job_id()
    as_user(stack, bob).create_job(
        bobs_job,
        JobRequest(**request_fields(bob, upload(clients, bob, sample_video), batch_id="bobs")),
    )
    video = upload(clients, alice, sample_video)
    batch_id = uuid.uuid4().hex
    alices_job = new_job_id()
    as_user(stack, alice).create_job(
        alices_job, JobRequest(**request_fields(alice, video, batch_id=batch_id))
    )
    as_user(stack, alice).create(
        BATCHES, batch_id, {"userId": alice.uid, "jobIds": [alices_job, bobs_job]}, ("createdAt",)
    )
    job = wait_finished(clients, alices_job, 120)
    assert job["status"] == "completed", job.get("error")

    # The event delivered again, as at-least-once delivery may: no job waits, so no new run.
    # (Two deliveries at once would both ask Prefect with the key batch:<id>: one run.)
    batch = clients.db.collection(BATCHES).document(batch_id).get().to_dict()
    again = trigger_jobs.start_batch(
        clients.db,
        prefect_api.PrefectApi(stack.s.prefect_api),
        prefect_api.PrefectUnavailable,
        BATCH_DEPLOYMENT,
        batch_id,
        batch,
        120,  # the trigger's default JOBS_PER_MINUTE
    )
    assert again is None
    assert len(batch_runs(stack, batch_id)) == 1
    assert read_job(clients, alices_job)["history"] == job["history"]

    bobs = read_job(clients, bobs_job)
    assert bobs["status"] == "pending" and "flowRunId" not in bobs
    assert outputs(clients, bob) == []


def test_cancelling_one_job_leaves_the_rest_of_its_batch_running(
    stack: Any, clients: Any, uploaded: Uploaded
) -> None:
    user, video = uploaded.user, uploaded.path
    batch_id, job_ids = create_batch(stack, user, video, [f"Name {i}" for i in range(6)])
    last = job_ids[-1]
    # What the trigger does with the user's cancel request (that path, through the rules and a
    # request document, is test_trigger_stack's), done at once: a request's first delivery can
    # take the Functions emulator seconds to start, by which time six short jobs may be done.
    assert trigger_jobs.cancel(clients.db, trigger_prefect(stack), last)

    jobs = {j: wait_finished(clients, j, 120) for j in job_ids}
    assert jobs[last]["status"] == "cancelled"
    assert {jobs[j]["status"] for j in job_ids[:-1]} == {"completed"}
    assert "completed" not in statuses(jobs[last])
    assert result_path(user.uid, last) not in outputs(clients, user)
    [run] = batch_runs(stack, batch_id)
    assert wait_run_finished(stack, run["id"])["state"]["message"] in (
        "5 completed",  # cancelled before the run took it
        "1 cancelled, 5 completed",  # cancelled while the run held it
    )


def test_jobs_whose_batch_document_never_came_are_started_by_the_sweep(
    stack: Any, clients: Any, prefect_client: Any, uploaded: Uploaded
) -> None:
    """A client that died between its jobs and its batch document loses nothing."""
    user, video = uploaded.user, uploaded.path
    job_id = new_job_id()
    as_user(stack, user).create_job(
        job_id, JobRequest(**request_fields(user, video, batch_id="never-written"))
    )
    assert read_job(clients, job_id)["status"] == "pending"
    done = sweep_once(clients, prefect_client, {job_id})
    assert done == [(job_id, "start", "started")]
    job = wait_finished(clients, job_id, 120)
    assert job["status"] == "completed", job.get("error")
    assert flow_run(stack, job["flowRunId"])["name"] == f"job-{job_id}-attempt-0"
