"""The webhook queue's shape, in plain Python: what the worker and the functions both write.

A delivery is enqueued by creating `webhooks/{endpointId}/deliveries/{eventId}`; the worker
enqueues a job's end (flows/deliveries.py), the `share_event` function a viewer's view or watch
(triggers/shares.py), and the `deliver-webhooks` flow delivers both. So the event's id, its body
and the delivery document are made here, once, with the standard library only: Firebase deploys
triggers/ alone, and triggers/webhook_queue.py is a symbolic link to this file (as
triggers/lifecycle.py is to flows/lifecycle.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

WEBHOOKS = "webhooks"
DELIVERIES = "deliveries"  # webhooks/{endpointId}/deliveries/{eventId}
PENDING = "pending"
DELIVERY_DEPLOYMENT = "deliver-webhooks/deliver-webhooks"
WINDOW_SECONDS = 10


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_id(event_type: str, subject: str) -> str:
    """The id of `event_type` about `subject`: the same inputs give the same id, always.

    A hash keeps it short and free of characters a header or a Firestore document id refuses,
    whatever the job ids look like.
    """
    digest = hashlib.sha256(f"{event_type}\n{subject}".encode()).hexdigest()
    return f"evt_{digest[:32]}"


def payload(event_type: str, occurred_at: datetime, data: Mapping[str, Any]) -> dict[str, Any]:
    """The body every attempt sends (Standard Webhooks: type, timestamp, data)."""
    return {"type": event_type, "timestamp": iso(occurred_at), "data": dict(data)}


def delivery_document(
    event_id: str, body: Mapping[str, Any], job_id: Any, at: datetime
) -> dict[str, Any]:
    """A new delivery of the event `body`, due at `at`."""
    return {
        "eventId": event_id,
        "eventType": body["type"],
        "jobId": job_id,
        "event": dict(body),  # what every attempt sends, as it was then
        "status": PENDING,
        "attempts": [],
        "nextAttemptAt": at,
        "createdAt": at,
        "updatedAt": at,
    }


def wants(endpoint: Mapping[str, Any], event_type: str) -> bool:
    """Whether an endpoint document takes this event now."""
    events = endpoint.get("events")
    return not endpoint.get("disabled") and isinstance(events, list) and event_type in events


def delivery_run_key(at: datetime) -> str:
    """The idempotency key of the delivery run for the 10-second window holding `at`: every
    announcement in a window asks for the same run."""
    window = int(at.timestamp()) // WINDOW_SECONDS * WINDOW_SECONDS
    return f"deliver-webhooks@{datetime.fromtimestamp(window, UTC):%Y-%m-%dT%H:%M:%SZ}"
