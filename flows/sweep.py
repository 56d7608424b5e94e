"""The `retry-failed-jobs` flow (every 5 minutes): the backstop that brings failed work back.

- retries `failed` jobs whose error is retryable, up to `max_retries`, with backoff (not
  `rate-limited` ones: their owner retries those, within their allowance);
- reaps jobs whose worker is gone (running stage, stale heartbeat) as `failed` / `worker-lost`;
- starts `pending` jobs that never got a flow run (the trigger was lost or Prefect was down).
Deciding is a plain function (`plan_sweep`); acting on the decisions is the flow.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from google.cloud import firestore
from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import SyncPrefectClient, get_client

from flows import orchestration
from flows.clients import worker_clients
from flows.job import COLLECTION, RUNNING_STAGES, ErrorCode, ErrorInfo, JobStatus
from flows.settings import Settings
from flows.transitions import Transition, TransitionRefused, start_new_attempt, transition

Kind = Literal["retry", "reap", "start"]


@dataclass(frozen=True)
class Action:
    kind: Kind
    job_id: str
    attempt: int
    detail: str
    flow_run_id: str | None = None
    # A queued job has no worker yet: its stale heartbeat may only mean a long queue.
    queued: bool = False


def _as_datetime(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _older_than(value: Any, now: datetime, seconds: float) -> bool:
    moment = _as_datetime(value)
    return moment is None or now - moment >= timedelta(seconds=seconds)


def plan_sweep(jobs: dict[str, dict[str, Any]], now: datetime, settings: Settings) -> list[Action]:
    """What the sweep should do with these jobs (documents by id) at `now`."""
    actions: list[Action] = []
    for job_id, job in sorted(jobs.items()):
        status, attempt = job.get("status"), int(job.get("retryCount") or 0)
        error = job.get("error") or {}
        if status == JobStatus.FAILED:
            if not error.get("retryable") or attempt >= settings.max_retries:
                continue
            if error.get("code") == ErrorCode.RATE_LIMITED:
                # Its owner retries it, and that retry takes from their allowance of new jobs
                # per minute; a retry from here would start every refused job at once.
                continue
            wait_s = settings.retry_backoff_seconds * 2**attempt
            if _older_than(job.get("updatedAt"), now, wait_s):
                actions.append(
                    Action("retry", job_id, attempt, f"{error.get('code')}: attempt {attempt + 1}")
                )
        elif status in (JobStatus.QUEUED, *RUNNING_STAGES):
            beat = job.get("heartbeatAt") or job.get("updatedAt")
            if _older_than(beat, now, settings.heartbeat_stale_seconds):
                actions.append(
                    Action(
                        "reap",
                        job_id,
                        attempt,
                        f"stuck in {status}",
                        job.get("flowRunId"),
                        queued=status == JobStatus.QUEUED,
                    )
                )
        elif status == JobStatus.PENDING and not job.get("flowRunId"):
            since = job.get("updatedAt") or job.get("createdAt")
            if _older_than(since, now, settings.pending_grace_seconds):
                actions.append(Action("start", job_id, attempt, "never got a flow run"))
    return actions


def load_candidates(db: firestore.Client) -> dict[str, dict[str, Any]]:
    """The jobs the sweep may act on: failed, running and pending ones (terminal ones are not)."""
    wanted = [JobStatus.FAILED, JobStatus.PENDING, JobStatus.QUEUED, *RUNNING_STAGES]
    query = db.collection(COLLECTION).where(
        filter=firestore.FieldFilter("status", "in", [s.value for s in wanted])
    )
    return {snap.id: snap.to_dict() or {} for snap in query.stream()}


def start(db: firestore.Client, prefect: SyncPrefectClient, job_id: str, attempt: int) -> str:
    flow_run_id = orchestration.create_job_run(prefect, job_id, attempt)
    with contextlib.suppress(TransitionRefused):  # the run already moved the job on
        transition(db, job_id, Transition(JobStatus.QUEUED, attempt, flow_run_id))
    return flow_run_id


def act(db: firestore.Client, prefect: SyncPrefectClient, action: Action) -> tuple[str, str]:
    """Carries out one action; returns (outcome, detail) for the summary."""
    if action.kind == "reap":
        if action.queued and orchestration.run_is_waiting(prefect, action.flow_run_id):
            # Still in Prefect's queue, waiting for a free worker: alive, just late.
            return "skipped", "still waiting for a worker"
        error = ErrorInfo(
            code=ErrorCode.WORKER_LOST,
            message="The worker processing this job stopped responding; it will be retried.",
            retryable=True,
        )
        transition(db, action.job_id, Transition(JobStatus.FAILED, action.attempt, error=error))
        if action.flow_run_id and orchestration.run_is_live(prefect, action.flow_run_id):
            orchestration.mark_crashed(prefect, action.flow_run_id, "heartbeat lost; reaped")
        return "reaped", action.detail
    if action.kind == "retry":
        attempt = start_new_attempt(db, action.job_id, action.attempt)
        if attempt is None:
            return "skipped", "changed meanwhile"
        return "retried", f"flow run {start(db, prefect, action.job_id, attempt)}"
    return "started", f"flow run {start(db, prefect, action.job_id, action.attempt)}"


@flow(name="retry-failed-jobs", log_prints=True, persist_result=False)
def retry_failed_jobs() -> dict[str, int]:
    """Retries, reaps and starts what needs it; returns counts by outcome."""
    logger = get_run_logger()
    clients = worker_clients()
    now = datetime.now(UTC)
    actions = plan_sweep(load_candidates(clients.db), now, clients.settings)
    rows: list[dict[str, str]] = []
    counts: dict[str, int] = {}
    with get_client(sync_client=True) as prefect:
        for action in actions:
            try:
                outcome, detail = act(clients.db, prefect, action)
            except TransitionRefused as refused:
                outcome, detail = "skipped", str(refused)
            except Exception as exc:
                logger.exception("job %s: %s failed", action.job_id, action.kind)
                outcome, detail = "error", f"{type(exc).__name__}: {exc}"
            counts[outcome] = counts.get(outcome, 0) + 1
            rows.append(
                {"job": action.job_id, "action": action.kind, "outcome": outcome, "detail": detail}
            )
    logger.info("sweep: %d candidates acted on: %s", len(actions), counts or "nothing to do")
    create_table_artifact(
        key="retry-failed-jobs",
        table=rows or [{"job": "-", "action": "-", "outcome": "nothing to do", "detail": ""}],
        description=f"Sweep at {now.isoformat()}: {counts or 'nothing to do'}",
    )
    return counts
