"""What the trigger does with a fit check (`fitChecks/{checkId}`, flows/fit_check.py): start it.

pending -> queued with its flow run (one run per check, however often the event is delivered:
the run's idempotency key is the check's id), or -> failed when its owner is over their
allowance or Prefect cannot be reached. A fit check is not retried by the sweep: its page asks
again, and the names already spoken come from the speech cache.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol

import quota
from google.cloud import firestore

FIT_CHECKS = "fitChecks"
PENDING, QUEUED, FAILED = "pending", "queued", "failed"
# A check speaks every name once (then the speech cache has it for the jobs) and renders
# nothing: one job's token of the owner's allowance covers this many of its names.
NAMES_PER_TOKEN = 10

log = logging.getLogger("greetings.trigger")


class Orchestrator(Protocol):
    def create_flow_run(
        self, deployment: str, parameters: dict[str, Any], idempotency_key: str, name: str
    ) -> str: ...


def tokens_for(check: dict[str, Any]) -> int:
    """What a check costs its owner's allowance of new jobs per minute (pure)."""
    names = check.get("prospects")
    return max(1, math.ceil(len(names) / NAMES_PER_TOKEN)) if isinstance(names, list) else 1


def _move(
    db: firestore.Client, check_id: str, fields: dict[str, Any], expected: str = PENDING
) -> bool:
    """Writes `fields` if the check is still `expected`; whether it was."""
    ref = db.collection(FIT_CHECKS).document(check_id)

    @firestore.transactional
    def apply(transaction: firestore.Transaction) -> bool:
        snapshot = ref.get(transaction=transaction)
        if not snapshot.exists or (snapshot.to_dict() or {}).get("status") != expected:
            return False
        transaction.update(ref, fields)
        return True

    return bool(apply(db.transaction()))


def _fail(db: firestore.Client, check_id: str, code: str, message: str, retryable: bool) -> None:
    error = {"code": code, "message": message, "retryable": retryable}
    fields = {"status": FAILED, "error": error, "finishedAt": firestore.SERVER_TIMESTAMP}
    _move(db, check_id, fields)


def start_fit_check(
    db: firestore.Client,
    orchestrator: Orchestrator,
    unavailable: type[Exception],
    deployment: str,
    check_id: str,
    jobs_per_minute: int,
) -> str | None:
    """Starts a pending check's flow run and marks it queued; None if it was not started."""
    snapshot = db.collection(FIT_CHECKS).document(check_id).get()
    check = (snapshot.to_dict() or {}) if snapshot.exists else {}
    if check.get("status") != PENDING:
        return None  # a duplicate delivery: the first one started (or refused) it
    user_id = check.get("userId")
    if isinstance(user_id, str) and user_id:
        allowance = quota.take(db, user_id, tokens_for(check), jobs_per_minute)
        if not allowance.granted:
            _fail(db, check_id, "rate-limited", quota.refusal_message(allowance), True)
            return None
    try:
        flow_run_id = orchestrator.create_flow_run(
            deployment, {"check_id": check_id}, f"fit-check-{check_id}", f"fit-{check_id}"
        )
    except unavailable as exc:
        log.warning("fit check %s: Prefect unavailable: %s", check_id, exc)
        message = "The service that runs checks could not be reached: check again in a minute."
        _fail(db, check_id, "orchestrator-unavailable", message, True)
        return None
    _move(db, check_id, {"status": QUEUED, "flowRunId": flow_run_id})
    return flow_run_id
