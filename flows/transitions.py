"""The one place on the worker side that writes a job's `status`.

Every write is a Firestore transaction that re-reads the job and refuses to move it backwards, out
of a terminal status, or on behalf of an attempt that is no longer current: a late or duplicate
flow run can never regress a job, and a user's cancel request stops the run at its next stage.
(The trigger, deployed on its own, has its twin in triggers/jobs.py.)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from flows.deliveries import announce_job
from flows.job import (
    COLLECTION,
    PROGRESS,
    RUNNING_STAGES,
    STAGE_ORDER,
    TERMINAL_STATUSES,
    ErrorInfo,
    JobStatus,
)


class TransitionRefused(Exception):
    """This run may not move the job: it is finished, cancelled, gone or on another attempt."""

    def __init__(self, job_id: str, reason: str, current: JobStatus | None = None) -> None:
        super().__init__(f"job {job_id}: {reason}")
        self.reason = reason
        self.current = current

    @property
    def cancelled(self) -> bool:
        return self.current == JobStatus.CANCELLED


@dataclass(frozen=True)
class Transition:
    to: JobStatus
    attempt: int
    flow_run_id: str | None = None
    error: ErrorInfo | None = None
    fields: dict[str, Any] | None = None  # extra server fields, e.g. outputPath


def plan_update(
    job_id: str, current: dict[str, Any] | None, change: Transition, now: datetime
) -> dict[str, Any]:
    """The fields to write for `change` on a job whose document is `current`, or a refusal."""
    if current is None:
        raise TransitionRefused(job_id, "the job document no longer exists")
    try:
        status = JobStatus(current.get("status", JobStatus.PENDING))
    except ValueError:
        raise TransitionRefused(job_id, f"unknown status {current.get('status')!r}") from None
    attempt = int(current.get("retryCount") or 0)
    if attempt != change.attempt:
        raise TransitionRefused(
            job_id, f"attempt {change.attempt} is stale (the job is on attempt {attempt})", status
        )
    if status in TERMINAL_STATUSES:
        raise TransitionRefused(job_id, f"the job is already {status}", status)
    if change.to != JobStatus.FAILED and STAGE_ORDER[change.to] <= STAGE_ORDER[status]:
        raise TransitionRefused(job_id, f"{status} -> {change.to} would move backwards", status)

    entry: dict[str, Any] = {"status": change.to.value, "at": now, "attempt": change.attempt}
    if change.flow_run_id:
        entry["flowRunId"] = change.flow_run_id
    update: dict[str, Any] = {
        "status": change.to.value,
        "history": [*current.get("history", []), entry],
        "heartbeatAt": now,
        "updatedAt": now,
    }
    if change.to in PROGRESS:
        update["progress"] = PROGRESS[change.to]
    if change.flow_run_id and not current.get("flowRunId"):
        update["flowRunId"] = change.flow_run_id
    if change.error is not None:
        update["error"] = change.error.to_firestore()
        entry["errorCode"] = change.error.code
    elif status == JobStatus.PENDING and "error" in current:
        # The note that the run could not be created yet (Prefect was down): it has been now.
        update["error"] = firestore.DELETE_FIELD
    if change.to in TERMINAL_STATUSES:
        update["completedAt"] = now
    update.update(change.fields or {})
    return update


@dataclass(frozen=True)
class Written:
    """The job document as a transition left it, and the time Firestore gave that write."""

    doc: dict[str, Any]
    update_time: Any  # a protobuf Timestamp, as WriteResult and the precondition carry it


def _merged(current: dict[str, Any] | None, update: dict[str, Any]) -> dict[str, Any]:
    after = {**(current or {}), **update}
    return {k: v for k, v in after.items() if v is not firestore.DELETE_FIELD}


def transition(db: firestore.Client, job_id: str, change: Transition) -> dict[str, Any]:
    """Applies `change` atomically; returns the job document as it is after the write."""
    return write_transition(db, job_id, change).doc


def write_transition(
    db: firestore.Client, job_id: str, change: Transition, last: Written | None = None
) -> Written:
    """Applies `change` atomically; the document after the write, and the write's time.

    `last` is what this run's previous transition wrote. If nothing has written the document
    since (the write's precondition), the change is planned from it and written in one call;
    a transaction costs three (begin, read, commit), and a run makes six transitions a job.
    Anything else that wrote meanwhile (the user's cancel, a heartbeat, a sweep) fails the
    precondition, and the change is decided again in a transaction on the current document.
    """
    ref = db.collection(COLLECTION).document(job_id)
    written = _write_unchanged_since(db, ref, job_id, change, last) if last else None
    if written is None:
        transaction = db.transaction()

        @firestore.transactional
        def apply(transaction: firestore.Transaction) -> dict[str, Any]:
            snapshot = ref.get(transaction=transaction)
            current = snapshot.to_dict() if snapshot.exists else None
            update = plan_update(job_id, current, change, datetime.now(UTC))
            transaction.update(ref, update)
            return _merged(current, update)

        doc: dict[str, Any] = apply(transaction)
        results = transaction.write_results or []
        written = Written(doc, results[0].update_time if results else None)
    if change.to in (JobStatus.COMPLETED, JobStatus.FAILED):
        # The owner's webhooks hear of it; only enqueued here, never waited on (and a second
        # announcement of the same end is dropped: its event id is the same).
        announce_job(db, job_id, written.doc)
    return written


def _write_unchanged_since(
    db: firestore.Client,
    ref: firestore.DocumentReference,
    job_id: str,
    change: Transition,
    last: Written,
) -> Written | None:
    """`change` written over `last` if the document is still exactly that; None otherwise (or
    if `last` refuses the change: a refusal is only ever decided on the current document)."""
    if last.update_time is None:
        return None
    try:
        update = plan_update(job_id, last.doc, change, datetime.now(UTC))
    except TransitionRefused:
        return None
    try:
        result = ref.update(update, option=db.write_option(last_update_time=last.update_time))
    except (gexc.FailedPrecondition, gexc.NotFound, gexc.Aborted):
        # Aborted: the write lost to a transaction holding the document (the emulator says
        # "Transaction lock timeout" while a batch's waiting heartbeat reads hundreds of jobs);
        # nothing was written, and the transaction path retries such aborts.
        return None
    return Written(_merged(last.doc, update), result.update_time)


def touch_heartbeat(db: firestore.Client, job_id: str, attempt: int) -> bool:
    """Refreshes `heartbeatAt` while this attempt is still running; False once it is not."""
    ref = db.collection(COLLECTION).document(job_id)

    @firestore.transactional
    def apply(transaction: firestore.Transaction) -> bool:
        snapshot = ref.get(transaction=transaction)
        data = snapshot.to_dict() if snapshot.exists else None
        if not data or int(data.get("retryCount") or 0) != attempt:
            return False
        if JobStatus(data.get("status", "pending")) not in (JobStatus.QUEUED, *RUNNING_STAGES):
            return False
        transaction.update(ref, {"heartbeatAt": datetime.now(UTC)})
        return True

    return bool(apply(db.transaction()))


def touch_waiting_heartbeats(db: firestore.Client, job_ids: Collection[str], attempt: int) -> int:
    """Refreshes `heartbeatAt` of a batch's jobs still waiting for their turn, in one commit.

    Only jobs still pending or queued on `attempt` are touched: a job that started beats for
    itself, and one that ended, was cancelled or moved to another attempt must go quiet.
    Returns how many were touched.
    """
    refs = [db.collection(COLLECTION).document(job_id) for job_id in job_ids]

    @firestore.transactional
    def apply(transaction: firestore.Transaction) -> int:
        waiting = [
            snapshot.reference
            for snapshot in transaction.get_all(refs)
            if snapshot.exists
            and int((snapshot.to_dict() or {}).get("retryCount") or 0) == attempt
            and (snapshot.to_dict() or {}).get("status") in (JobStatus.PENDING, JobStatus.QUEUED)
        ]
        now = datetime.now(UTC)
        for ref in waiting:
            transaction.update(ref, {"heartbeatAt": now})
        return len(waiting)

    return int(apply(db.transaction())) if refs else 0


class Heartbeat:
    """Calls `beat` every `interval_s` from a thread, for the length of a run, until it says stop.

    The sweep reaps jobs whose heartbeat goes stale, so a long download or render must keep it
    fresh; a killed worker stops beating, which is exactly what the sweep looks for.
    """

    def __init__(self, beat: Callable[[], bool], interval_s: float, name: str) -> None:
        self._beat = beat
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @classmethod
    def for_job(
        cls, db: firestore.Client, job_id: str, attempt: int, interval_s: float
    ) -> Heartbeat:
        return cls(lambda: touch_heartbeat(db, job_id, attempt), interval_s, f"heartbeat-{job_id}")

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self._beat():
                    return
            except Exception:
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def cancel_watch(db: firestore.Client, job_id: str, attempt: int) -> Iterator[threading.Event]:
    """An event set as soon as this attempt stops being current (cancelled, retried, deleted).

    A snapshot listener, not a poll: Firestore pushes the user's cancel to the worker within
    tens of milliseconds, and the job's media processes are killed on it (flows/media.py), so a
    cancelled job stops costing at once, not at its next stage.
    """
    stopped = threading.Event()

    def on_change(snapshots: list[Any], *_: object) -> None:
        for snapshot in snapshots:
            data = snapshot.to_dict() if snapshot.exists else None
            if (
                not data
                or data.get("status") == JobStatus.CANCELLED
                or int(data.get("retryCount") or 0) != attempt
            ):
                stopped.set()

    watch = db.collection(COLLECTION).document(job_id).on_snapshot(on_change)
    try:
        yield stopped
    finally:
        watch.unsubscribe()  # type: ignore[no-untyped-call]


def start_new_attempt(db: firestore.Client, job_id: str, attempt: int) -> int | None:
    """failed (attempt n) -> pending (attempt n + 1), for the sweep's retries; the new attempt.

    The attempt number is the fence: once it moves on, every write of the old run is refused.
    """
    ref = db.collection(COLLECTION).document(job_id)

    @firestore.transactional
    def apply(transaction: firestore.Transaction) -> int | None:
        snapshot = ref.get(transaction=transaction)
        data = snapshot.to_dict() if snapshot.exists else None
        if not data or data.get("status") != JobStatus.FAILED:
            return None
        if int(data.get("retryCount") or 0) != attempt:
            return None
        now = datetime.now(UTC)
        entry = {"status": JobStatus.PENDING.value, "at": now, "attempt": attempt + 1}
        transaction.update(
            ref,
            {
                "status": JobStatus.PENDING.value,
                "progress": 0,
                "retryCount": attempt + 1,
                "error": firestore.DELETE_FIELD,
                "flowRunId": firestore.DELETE_FIELD,
                "completedAt": firestore.DELETE_FIELD,
                "history": [*data.get("history", []), entry],
                "updatedAt": now,
            },
        )
        return attempt + 1

    result = apply(db.transaction())
    return None if result is None else int(result)
