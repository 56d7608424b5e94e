"""Issue #7's provider faults end to end: ElevenLabs misbehaving, and Prefect down for real.

ElevenLabs is the session's fake server (tests/conftest.py), which the stack's worker calls
through the official SDK; everything else is the real stack. Scripted answers are one global
queue, so each test scripts right before it creates its job, which speaks with a voice id never
used before: the speech cache (kept across sessions, keyed by voice and text) must not answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flows.job import result_path
from flows.stages.synthesize import TTS_RETRIES
from greetings.stack.manager import Stack
from tests.conftest import FAKE_ELEVENLABS_TIMEOUT_S, Uploaded, User, wait_for
from tests.support.fake_elevenlabs import (
    FakeElevenLabs,
    hang,
    server_error,
    too_many_concurrent_requests,
    unauthorized,
)
from tests.support.stackkit import (
    RUN_STAGES,
    flow_runs,
    outputs,
    read_job,
    statuses,
    submit,
    sweep_once,
    upload,
    wait_finished,
    wait_run_finished,
    worker_record,
)

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

SPOKEN = "Hey Ada,"  # what the fake is asked to say
# A hung answer outlasts the test: only the worker's timeout can end the wait.
HANG_S = 240.0


def submit_spoken(
    stack: Stack, clients: Any, fake: FakeElevenLabs, user: User, video: Path
) -> tuple[str, str]:
    """A job the fake speaks, in a new voice of its own; returns (job id, voice id)."""
    voice = f"itvoice{uuid.uuid4().hex[:13]}"  # an ElevenLabs id's shape: 20 alphanumerics
    fake.add_voice(voice)
    job_id = submit(stack, user, upload(clients, user, video), prospect_name="Ada", voice_id=voice)
    return job_id, voice


def run_states(stack: Stack, job_id: str) -> list[str]:
    return [wait_run_finished(stack, r["id"])["state_type"] for r in flow_runs(stack, job_id)]


# --- ElevenLabs -----------------------------------------------------------------------------------


def test_elevenlabs_429_twice_then_served_completes_and_bills_once(
    stack: Stack,
    clients: Any,
    fake: FakeElevenLabs,
    make_user: Callable[[], User],
    sample_video: Path,
) -> None:
    user = make_user()
    fake.script(too_many_concurrent_requests(), too_many_concurrent_requests())
    job_id, voice = submit_spoken(stack, clients, fake, user, sample_video)

    job = wait_finished(clients, job_id, 120)
    assert job["status"] == "completed", job.get("error")
    # Three requests for this greeting, one answered with audio; nobody else called.
    assert (fake.calls_for(SPOKEN), fake.billed_for(SPOKEN)) == (3, 1)
    assert (fake.calls, fake.billed) == (3, 1)
    assert {(r.voice_id, r.headers["xi-api-key"]) for r in fake.requests} == {(voice, fake.api_key)}
    # The task retried inside the one attempt: one run, each stage once.
    assert [s for s in statuses(job) if s != "queued"] == [*RUN_STAGES, "completed"]
    assert int(job.get("retryCount") or 0) == 0
    assert run_states(stack, job_id) == ["COMPLETED"]
    assert outputs(clients, user) == [result_path(user.uid, job_id)]


def test_elevenlabs_500_beyond_the_retries_fails_retryably_and_the_sweep_completes_it(
    stack: Stack,
    clients: Any,
    prefect_client: Any,
    fake: FakeElevenLabs,
    make_user: Callable[[], User],
    sample_video: Path,
) -> None:
    user = make_user()
    fake.script(*[server_error()] * (TTS_RETRIES + 1))
    job_id, voice = submit_spoken(stack, clients, fake, user, sample_video)

    # The task's retries back off 2, 4, 8 and 16 s (+-50%) before the job fails.
    job = wait_finished(clients, job_id, 150)
    assert job["status"] == "failed"
    assert (job["error"]["code"], job["error"]["retryable"]) == ("tts-unavailable", True)
    assert "HTTP 500" in job["error"]["message"]
    assert (fake.calls_for(SPOKEN), fake.billed_for(SPOKEN)) == (TTS_RETRIES + 1, 0)
    assert {r.voice_id for r in fake.requests} == {voice}

    # ElevenLabs is back (nothing more is scripted): the sweep retries the job, once.
    assert sweep_once(clients, prefect_client, {job_id}) == [(job_id, "retry", "retried")]
    job = wait_finished(clients, job_id, 120)
    assert job["status"] == "completed", job.get("error")
    assert "error" not in job
    assert job["retryCount"] == 1
    assert (fake.calls_for(SPOKEN), fake.billed_for(SPOKEN)) == (TTS_RETRIES + 2, 1)
    assert (fake.calls, fake.billed) == (TTS_RETRIES + 2, 1)
    assert run_states(stack, job_id) == ["FAILED", "COMPLETED"]
    assert outputs(clients, user) == [result_path(user.uid, job_id)]


def test_elevenlabs_401_fails_for_good_with_a_message_about_the_key(
    stack: Stack,
    clients: Any,
    prefect_client: Any,
    fake: FakeElevenLabs,
    make_user: Callable[[], User],
    sample_video: Path,
) -> None:
    user = make_user()
    fake.script(unauthorized())
    job_id, voice = submit_spoken(stack, clients, fake, user, sample_video)

    job = wait_finished(clients, job_id, 120)
    assert job["status"] == "failed"
    assert (job["error"]["code"], job["error"]["retryable"]) == ("tts-auth", False)
    assert "API key" in job["error"]["message"]
    assert "GREETINGS_ELEVENLABS_API_KEY" in job["error"]["message"]
    assert fake.api_key not in job["error"]["message"]
    # Not retried by the task, and the sweep leaves it alone.
    assert (fake.calls_for(SPOKEN), fake.billed_for(SPOKEN)) == (1, 0)
    assert [r.voice_id for r in fake.requests] == [voice]
    assert sweep_once(clients, prefect_client, {job_id}) == []
    assert run_states(stack, job_id) == ["FAILED"]
    assert outputs(clients, user) == []


def test_elevenlabs_hung_answer_times_out_and_the_retry_completes_the_job(
    stack: Stack,
    clients: Any,
    fake: FakeElevenLabs,
    make_user: Callable[[], User],
    sample_video: Path,
) -> None:
    user = make_user()
    fake.script(hang(HANG_S))
    job_id, voice = submit_spoken(stack, clients, fake, user, sample_video)

    job = wait_finished(clients, job_id, 120)
    assert job["status"] == "completed", job.get("error")
    hung, served = fake.requests_for(SPOKEN)
    assert hung.voice_id == served.voice_id == voice
    # The worker gave up on the hung answer after its timeout, not when the fake let go.
    waited = served.at - hung.at
    assert FAKE_ELEVENLABS_TIMEOUT_S <= waited < FAKE_ELEVENLABS_TIMEOUT_S + 30, waited
    assert fake.billed_for(SPOKEN) == 1
    assert run_states(stack, job_id) == ["COMPLETED"]
    assert outputs(clients, user) == [result_path(user.uid, job_id)]


# --- Prefect down ---------------------------------------------------------------------------------


def test_prefect_down_when_the_trigger_fires_the_sweep_starts_the_job_once_it_is_back(
    stack: Stack, clients: Any, prefect_client: Any, uploaded: Uploaded
) -> None:
    user, video = uploaded.user, uploaded.path
    worker_pid = stack.pid("prefect-worker")
    assert worker_pid is not None
    server = next(svc for svc in stack.services() if svc.name == "prefect-server")
    try:
        assert stack._stop(server), "the Prefect server was not running"
        job_id = submit(stack, user, video)
        job = wait_for(
            lambda: read_job(clients, job_id),
            lambda j: "error" in j or j.get("status") != "pending",
            120,
        )
    finally:
        stack.up(echo=lambda _: None)  # starts only what is stopped: the Prefect server
    back = datetime.now(UTC)
    assert job["status"] == "pending"
    assert (job["error"]["code"], job["error"]["retryable"]) == ("orchestrator-unavailable", True)
    assert "flowRunId" not in job

    # The worker rode out the outage: same process, heartbeating to the restarted server.
    assert stack.pid("prefect-worker") == worker_pid
    worker = wait_for(
        lambda: worker_record(stack),
        lambda w: (
            w["status"] == "ONLINE" and datetime.fromisoformat(w["last_heartbeat_time"]) > back
        ),
        90,
        every_s=1,
    )
    assert worker["status"] == "ONLINE"

    assert sweep_once(clients, prefect_client, {job_id}) == [(job_id, "start", "started")]
    job = wait_finished(clients, job_id, 120)
    assert job["status"] == "completed", job.get("error")
    assert "error" not in job
    assert run_states(stack, job_id) == ["COMPLETED"]
    assert outputs(clients, user) == [result_path(user.uid, job_id)]
