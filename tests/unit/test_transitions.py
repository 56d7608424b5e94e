"""The transition rule: forward only, never out of a terminal status, never for a stale attempt."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from flows.job import ErrorInfo, JobStatus
from flows.transitions import Transition, TransitionRefused, plan_update

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def doc(status: str, attempt: int = 0, **extra: Any) -> dict[str, Any]:
    return {"status": status, "retryCount": attempt, "history": [], **extra}


def test_forward_move_writes_status_progress_history_and_heartbeat() -> None:
    update = plan_update(
        "j", doc("queued"), Transition(JobStatus.VALIDATING_INPUT, 0, "run-1"), NOW
    )
    assert update["status"] == "validating-input"
    assert update["progress"] == 10
    assert update["history"] == [
        {"status": "validating-input", "at": NOW, "attempt": 0, "flowRunId": "run-1"}
    ]
    assert update["heartbeatAt"] == update["updatedAt"] == NOW
    assert update["flowRunId"] == "run-1"
    assert "completedAt" not in update


def test_pending_can_skip_queued_when_the_worker_beats_the_trigger() -> None:
    plan_update("j", doc("pending"), Transition(JobStatus.VALIDATING_INPUT, 0), NOW)


@pytest.mark.parametrize(
    ("current", "to"),
    [
        ("generating-video", JobStatus.VALIDATING_INPUT),
        ("generating-video", JobStatus.GENERATING_VIDEO),
        ("uploading-result", JobStatus.QUEUED),
    ],
)
def test_backward_or_repeated_moves_are_refused(current: str, to: JobStatus) -> None:
    with pytest.raises(TransitionRefused):
        plan_update("j", doc(current), Transition(to, 0), NOW)


@pytest.mark.parametrize("terminal", ["completed", "failed", "cancelled"])
def test_terminal_jobs_never_move(terminal: str) -> None:
    for to in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.UPLOADING_RESULT):
        with pytest.raises(TransitionRefused):
            plan_update("j", doc(terminal), Transition(to, 0), NOW)


def test_stale_attempt_is_refused() -> None:
    with pytest.raises(TransitionRefused, match="stale"):
        plan_update(
            "j", doc("generating-video", attempt=2), Transition(JobStatus.COMPLETED, 1), NOW
        )


def test_cancelled_job_stops_the_run_at_its_next_stage() -> None:
    with pytest.raises(TransitionRefused) as refused:
        plan_update("j", doc("cancelled"), Transition(JobStatus.UPLOADING_RESULT, 0), NOW)
    assert refused.value.cancelled


def test_failure_records_the_error_and_ends_the_job() -> None:
    error = ErrorInfo(code="input-not-video", message="not a video", retryable=False)
    update = plan_update(
        "j", doc("validating-input"), Transition(JobStatus.FAILED, 0, error=error), NOW
    )
    assert update["error"] == {
        "code": "input-not-video",
        "message": "not a video",
        "retryable": False,
    }
    assert update["completedAt"] == NOW
    assert update["history"][-1]["errorCode"] == "input-not-video"


def test_missing_document_is_refused() -> None:
    with pytest.raises(TransitionRefused, match="no longer exists"):
        plan_update("j", None, Transition(JobStatus.COMPLETED, 0), NOW)


def test_completion_fields_ride_along() -> None:
    update = plan_update(
        "j",
        doc("uploading-result"),
        Transition(JobStatus.COMPLETED, 0, fields={"outputPath": "p", "downloadUrl": "u"}),
        NOW,
    )
    assert (update["progress"], update["outputPath"], update["downloadUrl"]) == (100, "p", "u")
