"""A user's allowance of new jobs per minute: a token bucket in `userQuotas/{userId}`.

Rules cannot count, so the trigger does: before it starts a job, a batch or a retry it takes one
token per job from the owner's bucket, in a transaction. The bucket holds one minute's allowance
and refills continuously at `per_minute` tokens a minute. A request larger than the bucket (a
batch of up to 400 jobs, firestore.rules' maximum, against the default 120 a minute) is let in
when the bucket is full and leaves it owing the rest: a batch always fits an unused allowance,
and the user's average stays within it.

A token bucket rather than a fixed 60 s window, for the same two fields of state: a refused
user is told exactly when their request fits (a fixed window sends everyone it refused back at
the same window edge, at once), and a batch over the limit can be let in and repaid, where a
window must either refuse it forever or forget it at the next edge.

The document is the server's alone (firestore.rules close it to clients): `tokens`, `refilledAt`
and, written by an operator only, `jobsPerMinute`, one user's own allowance in place of the
function's parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore

QUOTAS = "userQuotas"
# Many of one user's jobs created at once all take from one document: wait out more conflicts
# than the client's default of 5 before giving up (the sweep then starts the job).
TRANSACTION_ATTEMPTS = 20


@dataclass(frozen=True)
class Allowance:
    """What the bucket answered to a request for `count` tokens."""

    granted: bool
    count: int
    per_minute: int
    tokens: float  # in the bucket after the request (as refilled now, when refused)
    wait_seconds: int  # until the request would fit; 0 when granted


def jobs_per_minute(state: Mapping[str, Any] | None, default: int) -> int:
    """The user's allowance: an operator's `jobsPerMinute` on their document, else the default.

    At least 1: a bucket that never refills would refuse forever with no time to give.
    """
    own = (state or {}).get("jobsPerMinute")
    chosen = own if isinstance(own, int) and not isinstance(own, bool) and own > 0 else default
    return max(1, int(chosen))


def tokens_now(state: Mapping[str, Any] | None, per_minute: int, now: datetime) -> float:
    """The bucket's tokens at `now`: what was left, refilled since, at most one minute's worth.

    A user never seen before has a full bucket.
    """
    data = state or {}
    tokens, since = data.get("tokens"), data.get("refilledAt")
    if not isinstance(tokens, int | float) or not isinstance(since, datetime):
        return float(per_minute)
    # Clocks of two function instances may disagree a little: never refill backwards.
    elapsed = max(0.0, (now - since).total_seconds())
    return min(float(per_minute), float(tokens) + elapsed * per_minute / 60)


def plan_take(
    state: Mapping[str, Any] | None, count: int, default_per_minute: int, now: datetime
) -> Allowance:
    """Whether `count` jobs may start now, and the bucket after them (pure)."""
    per_minute = jobs_per_minute(state, default_per_minute)
    tokens = tokens_now(state, per_minute, now)
    if count <= 0:  # nothing to start (all charged before): nothing to take, even in debt
        return Allowance(True, 0, per_minute, tokens, 0)
    # More than a full bucket needs a full bucket, and then owes the rest (tokens below zero).
    need = min(count, per_minute)
    if tokens >= need:
        return Allowance(True, count, per_minute, tokens - count, 0)
    wait = max(1, math.ceil((need - tokens) * 60 / per_minute))
    return Allowance(False, count, per_minute, tokens, wait)


def refusal_message(allowance: Allowance) -> str:
    """What a refused user reads: the limit, and when trying again will work."""
    one = allowance.count == 1
    what, them = ("this job", "it") if one else (f"these {allowance.count} jobs", "them")
    return (
        f"You may start {allowance.per_minute} new jobs a minute, and {what} would go over that. "
        f"Retry {them} in {allowance.wait_seconds} s."
    )


def take(db: firestore.Client, user_id: str, count: int, default_per_minute: int) -> Allowance:
    """Takes `count` tokens from the user's bucket if they are there, in one transaction."""
    ref = db.collection(QUOTAS).document(user_id)

    @firestore.transactional
    def apply(transaction: firestore.Transaction) -> Allowance:
        snapshot = ref.get(transaction=transaction)
        state = snapshot.to_dict() if snapshot.exists else None
        now = datetime.now(UTC)
        allowance = plan_take(state, count, default_per_minute, now)
        if allowance.granted and count:
            # merge: an operator's jobsPerMinute stays.
            transaction.set(ref, {"tokens": allowance.tokens, "refilledAt": now}, merge=True)
        return allowance

    result: Allowance = apply(db.transaction(max_attempts=TRANSACTION_ATTEMPTS))
    return result
