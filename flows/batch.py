"""The `greeting-batch` flow: one flow run for a batch of jobs on the same video.

A sales rep's normal request is one video for many prospects. One flow run per job pays Prefect's
per-run cost (scheduling, claiming, submitting, five flow states) and, on Firebase, a trigger
invocation per job; measured here that capped a 100-name batch at 43 jobs/min. A batch is one
flow run (started by the trigger when the client writes `greetingBatches/{batchId}`) that runs
each job's stages as the single-job flow does, a few jobs at a time, each job still moving its own
document through every status. A failed job is retried on its own (a single-job run of its next
attempt), never by re-running the batch.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from google.cloud import firestore
from prefect import State, flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from flows.clients import Clients, default_clients
from flows.job import BATCHES, COLLECTION, JobStatus
from flows.pipeline import SharedInputs, run_job
from flows.transitions import Heartbeat, touch_waiting_heartbeats
from flows.workdir import run_dir, work_root

BATCH_ATTEMPT = 0  # a batch runs its jobs' first attempts; later ones run alone


def batch_jobs(
    batch: dict[str, Any],
    batch_id: str,
    jobs: dict[str, dict[str, Any] | None],
    flow_run_id: str | None,
) -> list[str]:
    """The jobs of `batch` this run may take, in the batch's order (pure).

    Only the batch owner's jobs that name this batch, on their first attempt, not yet started,
    and not given to another flow run: the batch document's list is the client's word, which the
    rules cannot check.
    """
    taken: list[str] = []
    for job_id in batch.get("jobIds") or []:
        data = jobs.get(job_id) if isinstance(job_id, str) else None
        if (
            data is None
            or job_id in taken
            or data.get("userId") != batch.get("userId")
            or data.get("batchId") != batch_id
            or int(data.get("retryCount") or 0) != BATCH_ATTEMPT
            or data.get("status") not in (JobStatus.PENDING, JobStatus.QUEUED)
            or data.get("flowRunId") not in (None, flow_run_id)
        ):
            continue
        taken.append(job_id)
    return taken


def read_batch(db: firestore.Client, batch_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The batch document and its listed jobs' documents (None for a missing one)."""
    snapshot = db.collection(BATCHES).document(batch_id).get()
    batch = (snapshot.to_dict() or {}) if snapshot.exists else {}
    ids = [j for j in batch.get("jobIds") or [] if isinstance(j, str) and 0 < len(j) <= 200]
    refs = [db.collection(COLLECTION).document(job_id) for job_id in dict.fromkeys(ids)]
    jobs = {snap.id: (snap.to_dict() if snap.exists else None) for snap in db.get_all(refs)}
    return batch, jobs


def summarize(states: Sequence[State[Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in states:
        name = state.type.value.lower()
        counts[name] = counts.get(name, 0) + 1
    return counts


@flow(name="greeting-batch", log_prints=True, persist_result=False)
def greeting_batch(batch_id: str) -> State[Any]:
    """Runs a batch's jobs, `batch_concurrency` at a time; each job's document tells its story."""
    logger = get_run_logger()
    clients = default_clients()
    run_id = str(flow_run.id) if flow_run.id else None
    batch, jobs = read_batch(clients.db, batch_id)
    job_ids = batch_jobs(batch, batch_id, jobs, run_id)
    logger.info("batch %s: %d of %d listed jobs to run", batch_id, len(job_ids), len(jobs))
    with run_dir(work_root(clients.settings.state_dir), f"batch-{batch_id}") as tmp:
        states = run_all(clients, job_ids, run_id, SharedInputs(Path(tmp)))
    counts = summarize(states)
    message = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "no jobs"
    return Failed(message=message) if counts.get("failed") else Completed(message=message)


def run_all(
    clients: Clients, job_ids: list[str], run_id: str | None, inputs: SharedInputs
) -> list[State[Any]]:
    """Each job on a thread of a small pool; jobs not started yet keep a heartbeat meanwhile."""
    waiting = set(job_ids)
    lock = threading.Lock()

    def beat() -> bool:
        with lock:
            pending = list(waiting)
        if pending:
            touch_waiting_heartbeats(clients.db, pending, BATCH_ATTEMPT)
        return bool(pending)

    def one(job_id: str) -> State[Any]:
        with lock:
            waiting.discard(job_id)
        return run_job(clients, job_id, BATCH_ATTEMPT, run_id, inputs)

    # Waiting jobs only need to look alive to the sweep: a beat every third of its threshold,
    # not every 15 s (for a 400-job batch that would be more writes than all its transitions).
    waiting_interval = clients.settings.heartbeat_stale_seconds / 3
    with (
        Heartbeat(beat, waiting_interval, "heartbeat-batch-waiting"),
        ThreadPoolExecutor(clients.settings.batch_concurrency, "batch-job") as pool,
    ):
        # Each thread runs in a copy of this flow run's context, so the jobs' task runs and logs
        # belong to the batch's flow run.
        futures = [pool.submit(contextvars.copy_context().run, one, job_id) for job_id in job_ids]
        return [future.result() for future in futures]
