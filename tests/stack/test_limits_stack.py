"""Per-user limits against the running stack: new jobs per minute (the trigger's token bucket).

The stack's trigger runs with the default allowance (GREETINGS_JOBS_PER_MINUTE, 120 a minute),
which the Functions emulator reads once, at start. Rather than restart it or create 121 jobs, the
test gives one user an allowance of their own, as an operator would: `jobsPerMinute` on the
server-only `userQuotas/{uid}` document (triggers/quota.py), written as admin before their first
job. At 2 a minute a token comes back every 30 s, far longer than the test's burst takes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.cloud.firestore import SERVER_TIMESTAMP

from flows.job import COLLECTION, REQUESTS, RequestAction
from tests.conftest import User, wait_for
from tests.support.stackkit import (
    as_user,
    completed_once,
    flow_runs,
    outputs,
    read_job,
    statuses,
    submit,
    upload,
    wait_finished,
)

pytestmark = pytest.mark.stack

QUOTAS = "userQuotas"
ALLOWANCE = 2  # jobs a minute for the busy user
JOBS = 4


def handled(clients: Any, job_id: str, request_id: str) -> dict[str, Any]:
    """The request once the trigger has written its outcome."""
    request = clients.db.collection(COLLECTION).document(job_id).collection(REQUESTS)
    done: dict[str, Any] = wait_for(
        lambda: request.document(request_id).get().to_dict() or {}, lambda r: "outcome" in r, 30
    )
    return done


def test_jobs_over_a_users_allowance_are_rate_limited_and_other_users_are_not(
    stack: Any, clients: Any, make_user: Callable[[], User], sample_video: Path
) -> None:
    busy, other = make_user(), make_user()
    clients.db.collection(QUOTAS).document(busy.uid).set({"jobsPerMinute": ALLOWANCE})
    video = upload(clients, busy, sample_video)
    mine = [submit(stack, busy, video, prospect_name=f"Name {i}") for i in range(JOBS)]
    theirs = submit(stack, other, upload(clients, other, sample_video))

    # The other user's job, created in the same minute, is not held up by the busy one.
    completed_once(stack, clients, other, theirs)

    jobs = {job_id: wait_finished(clients, job_id, 120) for job_id in mine}
    done = [j for j, job in jobs.items() if job["status"] == "completed"]
    limited = [j for j, job in jobs.items() if job["status"] == "failed"]
    # Which ones the trigger saw first is its business; how many is the allowance's. A token
    # comes back every 30 s: a trigger slowed past that between two jobs may start one more.
    assert ALLOWANCE <= len(done) < JOBS, {j: job.get("error") for j, job in jobs.items()}
    assert len(limited) == JOBS - len(done)
    for job_id in limited:
        job = jobs[job_id]
        assert job["error"]["code"] == "rate-limited"
        assert job["error"]["retryable"] is True
        assert f"You may start {ALLOWANCE} new jobs a minute" in job["error"]["message"]
        assert "Retry it in" in job["error"]["message"]
        # Refused before any run: straight from pending to failed, nothing made.
        assert statuses(job) == ["failed"]
        assert job["history"][-1]["errorCode"] == "rate-limited"
        assert "flowRunId" not in job
        assert flow_runs(stack, job_id) == []
    assert len(outputs(clients, busy)) == len(done)

    # A retry starts a job too, so it takes from the same allowance: refused while it is spent,
    # the job left as it was, its attempts unspent. The jobs above may have taken longer than the
    # 30 s a token takes to come back at 2 a minute: spend the bucket now, at 1 a minute, so the
    # retry below meets an empty one however slow this machine was.
    clients.db.collection(QUOTAS).document(busy.uid).set(
        {"jobsPerMinute": 1, "tokens": 0, "refilledAt": SERVER_TIMESTAMP}
    )
    again = limited[0]
    refused = handled(
        clients, again, as_user(stack, busy).request(again, busy.uid, RequestAction.RETRY)
    )
    assert refused["outcome"] == "refused"
    assert "Retry it in" in refused["message"], refused["message"]
    job = read_job(clients, again)
    assert (job["status"], job.get("retryCount", 0)) == ("failed", 0)

    # An operator raises the allowance, and fills the bucket so that it counts at once (the
    # refusal just above left it empty: at 120 a minute the first token would take 0.5 s, and a
    # retry sent sooner was refused "Retry it in 1 s"); the retry now runs attempt 1 to completion.
    clients.db.collection(QUOTAS).document(busy.uid).update(
        {"jobsPerMinute": 120, "tokens": 120, "refilledAt": SERVER_TIMESTAMP}
    )
    retrying = handled(
        clients, again, as_user(stack, busy).request(again, busy.uid, RequestAction.RETRY)
    )
    assert retrying["outcome"] == "retrying", retrying["message"]
    job = wait_finished(clients, again, 120)
    assert (job["status"], job["retryCount"]) == ("completed", 1), job.get("error")
