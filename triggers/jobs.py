"""What the trigger does with a job document: plain functions taking their clients as arguments.

This is the only place in triggers/ that writes a job's `status`: pending -> queued when it starts
a run, pending -> failed (`rate-limited`) when its owner is over their allowance of new jobs per
minute (quota.py), any unfinished status -> cancelled, failed -> pending for a user's retry. The
worker writes
every later status (flows/transitions.py). Both follow the same rule: a write is conditional on
the job's current status and attempt, inside a transaction, so a duplicate or late event never
moves a job backwards. What both must agree on (statuses, the idempotency key, which jobs a batch
takes) is lifecycle.py, the worker's own file (a symbolic link to flows/lifecycle.py).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Protocol

import lifecycle
import quota
from google.cloud import firestore
from lifecycle import (
    BATCH_ATTEMPT,
    CANCEL,
    CANCELLED,
    COLLECTION,
    FAILED,
    PENDING,
    QUEUED,
    QUEUED_PROGRESS,
    RATE_LIMITED,
    REQUESTS,
    RETRY,
    REVOKE_SHARE,
    SHARES,
    TERMINAL,
    attempt_of,
    batch_job_ids,
    belongs_to_batch,
    flow_run_name,
    idempotency_key,
)

__all__ = ["CANCEL", "PENDING", "RETRY", "REVOKE_SHARE", "flow_run_name", "idempotency_key"]

log = logging.getLogger("greetings.trigger")


class Orchestrator(Protocol):
    def create_flow_run(
        self, deployment: str, parameters: dict[str, Any], idempotency_key: str, name: str
    ) -> str: ...

    def cancel_flow_run_if_not_started(self, flow_run_id: str) -> bool: ...


def _entry(status: str, attempt: int, **extra: Any) -> dict[str, Any]:
    return {"status": status, "at": datetime.now(UTC), "attempt": attempt, **extra}


def start_job(
    db: firestore.Client,
    orchestrator: Orchestrator,
    unavailable: type[Exception],
    deployment: str,
    job_id: str,
    attempt: int,
    jobs_per_minute: int,
) -> str | None:
    """A new job (on_job_created): takes a token from its owner's allowance, then starts the
    attempt; over the allowance the job ends `failed` (`rate-limited`). None if not started.

    A job found already started or finished is left alone (a duplicate delivery; the run's key
    makes it one run anyway). One found pending with a note was charged by the delivery that
    wrote the note (Prefect was down): it is started without a second charge.
    """
    snapshot = db.collection(COLLECTION).document(job_id).get()
    job = (snapshot.to_dict() or {}) if snapshot.exists else {}
    if job.get("status") != PENDING or attempt_of(job) != attempt:
        return None
    user_id = job.get("userId")
    if isinstance(user_id, str) and user_id and not job.get("error"):
        allowance = quota.take(db, user_id, 1, jobs_per_minute)
        if not allowance.granted:
            log.info("job %s: user %s over %d/min", job_id, user_id, allowance.per_minute)
            mark_failed(db, [job_id], attempt, rate_limited(allowance))
            return None
    return start_attempt(db, orchestrator, unavailable, deployment, job_id, attempt)


def start_attempt(
    db: firestore.Client,
    orchestrator: Orchestrator,
    unavailable: type[Exception],
    deployment: str,
    job_id: str,
    attempt: int,
) -> str | None:
    """Creates the flow run of a job's attempt and marks the job queued; None if Prefect is down.

    When Prefect cannot be reached the job stays `pending` with a retryable error recorded, and
    the scheduled sweep starts it later (Python Firestore triggers cannot ask for redelivery).
    """
    try:
        flow_run_id = orchestrator.create_flow_run(
            deployment,
            {"job_id": job_id, "attempt": attempt},
            idempotency_key(job_id, attempt),
            flow_run_name(job_id, attempt),
        )
    except unavailable as exc:
        log.warning("job %s: Prefect unavailable, left pending for the sweep: %s", job_id, exc)
        mark_unscheduled(db, job_id, attempt)
        return None
    mark_queued(db, job_id, attempt, flow_run_id)
    return flow_run_id


def mark_unscheduled(db: firestore.Client, job_id: str, attempt: int) -> bool:
    """Records on a still-pending attempt that its run could not be created. True if written.

    A duplicate or late delivery may meet an outage after another delivery already started the
    attempt: a job that is queued, running or finished must not be told it was never scheduled.
    """
    ref = db.collection(COLLECTION).document(job_id)

    @firestore.transactional
    def apply(transaction: firestore.Transaction) -> bool:
        snapshot = ref.get(transaction=transaction)
        data = (snapshot.to_dict() or {}) if snapshot.exists else {}
        if data.get("status") != PENDING or data.get("flowRunId"):
            return False
        if attempt_of(data) != attempt:
            return False
        transaction.update(
            ref,
            {
                "error": {
                    "code": "orchestrator-unavailable",
                    "message": "The job could not be scheduled yet; it will start automatically.",
                    "retryable": True,
                },
                "updatedAt": firestore.SERVER_TIMESTAMP,
            },
        )
        return True

    return bool(apply(db.transaction()))


def _queued_fields(data: dict[str, Any], attempt: int, flow_run_id: str) -> dict[str, Any] | None:
    """The write that makes a pending attempt queued on `flow_run_id`; None if nothing to write.

    A later status may have been written first (the worker is fast): then only the run id is
    recorded, if missing. Never over a later status, never on another attempt.
    """
    if attempt_of(data) != attempt:
        return None
    if data.get("status") != PENDING:
        return None if data.get("flowRunId") else {"flowRunId": flow_run_id}
    return {
        "status": QUEUED,
        "progress": QUEUED_PROGRESS,
        "flowRunId": flow_run_id,
        "history": [*data.get("history", []), _entry(QUEUED, attempt, flowRunId=flow_run_id)],
        "error": firestore.DELETE_FIELD,
        "updatedAt": firestore.SERVER_TIMESTAMP,
        "heartbeatAt": firestore.SERVER_TIMESTAMP,
    }


def mark_queued(db: firestore.Client, job_id: str, attempt: int, flow_run_id: str) -> bool:
    """pending -> queued for this attempt; never over a later status. True if it moved."""
    ref = db.collection(COLLECTION).document(job_id)

    @firestore.transactional
    def apply(transaction: firestore.Transaction) -> bool:
        snapshot = ref.get(transaction=transaction)
        if not snapshot.exists:
            return False
        fields = _queued_fields(snapshot.to_dict() or {}, attempt, flow_run_id)
        if fields:
            transaction.update(ref, fields)
        return bool(fields and fields.get("status") == QUEUED)

    return bool(apply(db.transaction()))


def rate_limited(allowance: quota.Allowance) -> dict[str, Any]:
    """The error of a job its owner's allowance refused: retryable, by its owner's request."""
    return {"code": RATE_LIMITED, "message": quota.refusal_message(allowance), "retryable": True}


def _failed_fields(
    data: dict[str, Any], attempt: int, error: dict[str, Any], now: datetime
) -> dict[str, Any] | None:
    """The write that ends a still-pending attempt `failed`; None if nothing to write.

    The fields flows/transitions.py writes for a failure (its plan_update): status, the history
    entry with the error's code, error, heartbeatAt, updatedAt, completedAt. Only from pending:
    a job the worker or a user moved on meanwhile is theirs.
    """
    if data.get("status") != PENDING or attempt_of(data) != attempt:
        return None
    entry = {"status": FAILED, "at": now, "attempt": attempt, "errorCode": error["code"]}
    return {
        "status": FAILED,
        "history": [*data.get("history", []), entry],
        "error": error,
        "heartbeatAt": now,
        "updatedAt": now,
        "completedAt": now,
    }


def mark_failed(
    db: firestore.Client, job_ids: list[str], attempt: int, error: dict[str, Any]
) -> int:
    """pending -> failed with `error` for these jobs' `attempt`, in one commit; how many moved."""
    refs = [db.collection(COLLECTION).document(job_id) for job_id in job_ids]

    @firestore.transactional
    def apply(transaction: firestore.Transaction) -> int:
        now = datetime.now(UTC)
        moved = 0
        for snapshot in transaction.get_all(refs):
            fields = _failed_fields(snapshot.to_dict() or {}, attempt, error, now)
            if snapshot.exists and fields:
                transaction.update(snapshot.reference, fields)
                moved += 1
        return moved

    return int(apply(db.transaction())) if refs else 0


# --- batches: greetingBatches/{batchId}, one flow run for many jobs ------------------------------


def start_batch(
    db: firestore.Client,
    orchestrator: Orchestrator,
    unavailable: type[Exception],
    deployment: str,
    batch_id: str,
    batch: dict[str, Any],
    jobs_per_minute: int,
) -> str | None:
    """Creates the batch's one flow run and marks its jobs queued; None if Prefect is down,
    the owner is over their allowance of new jobs per minute, or no listed job is the owner's
    and waiting.

    The idempotency key is the batch id, so a duplicate delivery reuses the run. When Prefect
    cannot be reached the jobs stay pending with a retryable note, and the sweep starts them
    one by one. A batch takes one token per job, all or none: over the allowance every waiting
    job of it ends `failed` (`rate-limited`), and its owner retries them.
    """
    waiting = [
        snapshot
        for snapshot in db.get_all(
            [db.collection(COLLECTION).document(j) for j in batch_job_ids(batch)]
        )
        if belongs_to_batch(snapshot.to_dict(), batch_id, batch, frozenset({PENDING}))
    ]
    refs = [snapshot.reference for snapshot in waiting]
    if not refs:
        log.info("batch %s: none of its listed jobs is the owner's and waiting", batch_id)
        return None
    # Jobs with a note were charged by the delivery that wrote it (Prefect was down then).
    fresh = sum(1 for snapshot in waiting if not (snapshot.to_dict() or {}).get("error"))
    allowance = quota.take(db, str(batch["userId"]), fresh, jobs_per_minute)
    if not allowance.granted:
        moved = mark_failed(db, [ref.id for ref in refs], BATCH_ATTEMPT, rate_limited(allowance))
        log.info("batch %s: over %d/min, %d jobs refused", batch_id, allowance.per_minute, moved)
        return None
    try:
        flow_run_id = orchestrator.create_flow_run(
            deployment,
            {"batch_id": batch_id},
            lifecycle.batch_idempotency_key(batch_id),
            lifecycle.batch_flow_run_name(batch_id),
        )
    except unavailable as exc:
        log.warning("batch %s: Prefect unavailable, left pending for the sweep: %s", batch_id, exc)
        for ref in refs:
            mark_unscheduled(db, ref.id, BATCH_ATTEMPT)
        return None

    @firestore.transactional
    def apply(transaction: firestore.Transaction) -> int:
        # One transaction (one commit) for the whole batch: up to 400 writes.
        queued = 0
        for snapshot in transaction.get_all(refs):
            data = snapshot.to_dict() if snapshot.exists else None
            if not belongs_to_batch(data, batch_id, batch, statuses=None):
                continue
            fields = _queued_fields(data or {}, BATCH_ATTEMPT, flow_run_id)
            if fields:
                transaction.update(snapshot.reference, fields)
                queued += fields.get("status") == QUEUED
        return queued

    queued = apply(db.transaction())
    log.info(
        "batch %s: flow run %s, %s of %d jobs queued", batch_id, flow_run_id, queued, len(refs)
    )
    return flow_run_id


def retry(
    db: firestore.Client,
    orchestrator: Orchestrator,
    unavailable: type[Exception],
    deployment: str,
    job_id: str,
    user_id: str,
    max_retries: int,
    jobs_per_minute: int,
    changes: Any = None,
) -> tuple[str, str]:
    """A user's retry request: the request's (outcome, message).

    With `changes` ("Edit and retry": lifecycle.RETRY_EDITS), the new attempt runs with those
    fields changed, written in the same transaction that moves the job to pending.
    A retry starts a job as creating one does, so it takes a token from the same allowance,
    first: a refused retry leaves the job as it was, its attempts unspent (a retry refused for
    another reason has still cost its token, as asking does).
    """
    edits: dict[str, Any] = {}
    if changes is not None:
        try:
            edits = lifecycle.edit_fields(changes)
        except lifecycle.EditRefused as exc:
            return "refused", f"The retry was refused: {exc}."
    allowance = quota.take(db, user_id, 1, jobs_per_minute)
    if not allowance.granted:
        return "refused", quota.refusal_message(allowance)
    attempt = begin_retry(db, job_id, max_retries, edits)
    if attempt is None:
        return "refused", "The job is not failed, or its retries are used up."
    start_attempt(db, orchestrator, unavailable, deployment, job_id, attempt)
    if edits:
        return "retrying", f"Attempt {attempt} started with {lifecycle.describe_edits(edits)}."
    return "retrying", f"Attempt {attempt} started."


def begin_retry(
    db: firestore.Client, job_id: str, max_retries: int, edits: dict[str, Any] | None = None
) -> int | None:
    """failed -> pending with retryCount + 1 (and `edits` applied); the new attempt, or None.

    Over the limit the job stays `failed`, its message saying so.
    """
    ref = db.collection(COLLECTION).document(job_id)

    @firestore.transactional
    def apply(transaction: firestore.Transaction) -> int | None:
        snapshot = ref.get(transaction=transaction)
        data = (snapshot.to_dict() or {}) if snapshot.exists else {}
        if data.get("status") != FAILED:
            return None
        retries: int = attempt_of(data)
        if retries >= max_retries:
            error = dict(data.get("error") or {})
            error.update(
                retryable=False,
                message=f"This job was already retried {retries} times, the limit. "
                "Create a new job to try again.",
            )
            transaction.update(ref, {"error": error, "updatedAt": firestore.SERVER_TIMESTAMP})
            return None
        attempt = retries + 1
        transaction.update(
            ref,
            {
                "status": PENDING,
                "progress": 0,
                "retryCount": attempt,
                "error": firestore.DELETE_FIELD,
                "flowRunId": firestore.DELETE_FIELD,
                "completedAt": firestore.DELETE_FIELD,
                "history": [*data.get("history", []), _entry(PENDING, attempt)],
                "updatedAt": firestore.SERVER_TIMESTAMP,
                **{
                    field: firestore.DELETE_FIELD if value is None else value
                    for field, value in (edits or {}).items()
                },
            },
        )
        return attempt

    result = apply(db.transaction())
    return None if result is None else int(result)


def cancel(db: firestore.Client, orchestrator: Orchestrator, job_id: str) -> bool:
    """Any unfinished status -> cancelled; True if it moved.

    A run of its own not yet started is cancelled in Prefect too; a running one (or its batch's
    run) sees `cancelled` at the job's next transition and stops it there (flows/transitions.py).
    """
    ref = db.collection(COLLECTION).document(job_id)

    @firestore.transactional
    def apply(transaction: firestore.Transaction) -> tuple[bool, str | None]:
        snapshot = ref.get(transaction=transaction)
        data = (snapshot.to_dict() or {}) if snapshot.exists else {}
        if not data or data.get("status") in TERMINAL:
            return False, None
        attempt = attempt_of(data)
        transaction.update(
            ref,
            {
                "status": CANCELLED,
                "history": [*data.get("history", []), _entry(CANCELLED, attempt)],
                "updatedAt": firestore.SERVER_TIMESTAMP,
                "completedAt": firestore.SERVER_TIMESTAMP,
            },
        )
        if data.get("batchId") and attempt == BATCH_ATTEMPT:
            return True, None  # its batch's run: shared with the batch's other jobs
        return True, data.get("flowRunId")

    cancelled, flow_run_id = apply(db.transaction())
    if cancelled and flow_run_id:
        try:
            orchestrator.cancel_flow_run_if_not_started(flow_run_id)
        except Exception:
            log.exception("job %s: could not cancel flow run %s in Prefect", job_id, flow_run_id)
    return bool(cancelled)


def mark_request_handled(
    db: firestore.Client, job_id: str, request_id: str, outcome: str, message: str
) -> None:
    """Tells the user what became of a request (the rules let nobody else write it)."""
    db.collection(COLLECTION).document(job_id).collection(REQUESTS).document(request_id).update(
        {"outcome": outcome, "message": message, "handledAt": firestore.SERVER_TIMESTAMP}
    )


# --- deletion: a deleted job takes its result, and its upload once no job names it ----------------


def forget_job(db: firestore.Client, bucket: Any, job_id: str, job: dict[str, Any]) -> list[str]:
    """Removes what a deleted job leaves in Storage; returns the object paths removed.

    Its result and thumbnails go (a signed link stops working: nothing is left to serve), and its
    upload goes when no other job of the same user names it. A prospect who asks to be forgotten
    is. Objects already gone are fine: deletions are delivered at least once.
    """
    user_id = job.get("userId")
    if not isinstance(user_id, str) or not user_id:
        return []
    paths = lifecycle.result_paths(user_id, job_id)
    share_id = job.get("shareId")
    if isinstance(share_id, str) and share_id:
        # The share page, its events and its rate limits go too: the link answers 404.
        db.recursive_delete(db.collection(SHARES).document(share_id))
    upload = job.get("inputVideo")
    if isinstance(upload, str) and upload.startswith(lifecycle.upload_prefix(user_id)):
        others = (
            db.collection(COLLECTION)
            .where(filter=firestore.FieldFilter("userId", "==", user_id))
            .where(filter=firestore.FieldFilter("inputVideo", "==", upload))
            .limit(1)
            .get()
        )
        if not others:
            paths.append(upload)
    removed = []
    for path in paths:
        blob = bucket.blob(path)
        if blob.exists():
            blob.delete()
            removed.append(path)
    log.info("job %s deleted: removed %s", job_id, removed or "nothing")
    return removed
