"""A video's share page, server side: what `/v/{shareId}` may show, its media, its view events.

`shares/{shareId}` (written by the worker, flows/shares.py) is closed to clients; the page asks
the `share` function, which answers only for a share that exists and is not revoked:
  GET  share?s=ID                 -> {senderName, ctaText, ctaUrl, hasPoster, hasGif} as JSON
  GET  share?s=ID&media=video     -> 302 to a signed link to the video, valid SIGNED_LINK_S
       (media=poster, media=gif alike)
  POST share_event {s, type, percent, client} -> 204, the event appended to
       shares/{ID}/events and the job's counters (views, plays, maxWatchedPercent,
       lastViewedAt) updated in the same transaction
A revoked share answers 410 to all of them, so an old link stops working within SIGNED_LINK_S.
An unknown id answers 404, the same as a malformed one: ids cannot be probed.

Events are rate-limited per share and per client address with the token bucket of quota.py:
a page reports at most 6 events per view (viewed, played, 25/50/75/100 %).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import quota
import webhook_queue as queue
from google.api_core import exceptions as google_exceptions
from google.cloud import firestore

SHARES = "shares"
EVENTS = "events"
LIMITS = "limits"
COLLECTION = "greetingJobs"
SHARE_ID = re.compile(r"[A-Za-z0-9_-]{22,64}")
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
EVENT_TYPES = ("viewed", "played", "watched")
PERCENTS = (25, 50, 75, 100)
SIGNED_LINK_S = 300  # the media links a page gets: short, since a revoke must end them soon
MEDIA = {"video": "videoPath", "poster": "posterPath", "gif": "gifPath"}
EVENTS_PER_MINUTE_PER_SHARE = 120
EVENTS_PER_MINUTE_PER_CLIENT = 30


class ShareError(Exception):
    """An answer other than success: its HTTP status and words."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


NOT_FOUND = ShareError(404, "No video is shared at this link.")
REVOKED = ShareError(410, "This video is no longer shared.")


def _share(db: firestore.Client, share_id: Any) -> tuple[Any, dict[str, Any]]:
    if not isinstance(share_id, str) or not SHARE_ID.fullmatch(share_id):
        raise NOT_FOUND
    ref = db.collection(SHARES).document(share_id)
    snapshot = ref.get()
    if not snapshot.exists:
        raise NOT_FOUND
    data: dict[str, Any] = snapshot.to_dict() or {}
    if data.get("revoked"):
        raise REVOKED
    return ref, data


def page_view(share: Mapping[str, Any]) -> dict[str, Any]:
    """What the page shows: nothing of the job, the owner or the object paths (pure)."""
    return {
        "senderName": share.get("senderName"),
        "ctaText": share.get("ctaText"),
        "ctaUrl": share.get("ctaUrl"),
        "hasPoster": bool(share.get("posterPath")),
        "hasGif": bool(share.get("gifPath")),
    }


def describe(db: firestore.Client, share_id: Any) -> dict[str, Any]:
    return page_view(_share(db, share_id)[1])


class Blob(Protocol):
    def generate_signed_url(self, **kwargs: Any) -> str: ...


class Bucket(Protocol):
    def blob(self, name: str) -> Blob: ...


def media_link(
    db: firestore.Client, bucket: Bucket, sign: dict[str, Any], share_id: Any, media: Any
) -> str:
    """A short-lived signed GET link to the share's video, poster or GIF."""
    field = MEDIA.get(media) if isinstance(media, str) else None
    if field is None:
        raise ShareError(400, f"media must be one of {', '.join(MEDIA)}")
    _, share = _share(db, share_id)
    path = share.get(field)
    if not isinstance(path, str):
        raise ShareError(404, f"This video has no {media}.")
    return bucket.blob(path).generate_signed_url(
        version="v4", method="GET", expiration=timedelta(seconds=SIGNED_LINK_S), **sign
    )


@dataclass(frozen=True)
class ViewEvent:
    share_id: str
    type: str
    percent: int | None
    client: str


def parse_event(body: Any) -> ViewEvent:
    """The page's report, checked (pure)."""
    if not isinstance(body, dict):
        raise ShareError(400, "send {s, type, client}")
    share_id, kind, client = body.get("s"), body.get("type"), body.get("client")
    if not isinstance(share_id, str) or not SHARE_ID.fullmatch(share_id):
        raise NOT_FOUND
    if kind not in EVENT_TYPES:
        raise ShareError(400, f"type must be one of {', '.join(EVENT_TYPES)}")
    if not isinstance(client, str) or not CLIENT_ID.fullmatch(client):
        raise ShareError(400, "client must be 8-64 letters, digits, - or _")
    percent = body.get("percent")
    if kind == "watched":
        if percent not in PERCENTS or isinstance(percent, bool):
            raise ShareError(400, f"percent must be one of {PERCENTS}")
    else:
        percent = None
    return ViewEvent(share_id, str(kind), percent, client)


def counter_update(job: Mapping[str, Any], event: ViewEvent, now: datetime) -> dict[str, Any]:
    """The job's counters after `event` (pure)."""
    update: dict[str, Any] = {"lastViewedAt": now}
    if event.type == "viewed":
        update["views"] = int(job.get("views") or 0) + 1
    elif event.type == "played":
        update["plays"] = int(job.get("plays") or 0) + 1
    elif event.percent is not None and event.percent > int(job.get("maxWatchedPercent") or 0):
        update["maxWatchedPercent"] = event.percent
    return update


def client_key(address: str) -> str:
    """The rate limit's key for a client address: hashed, so no address is stored."""
    return "ip-" + hashlib.sha256(address.encode()).hexdigest()[:24]


# Which webhook event a viewer's report is (a play is counted on the job, not sent).
WEBHOOK_EVENTS = {"viewed": "video.viewed", "watched": "video.watched"}


@dataclass(frozen=True)
class Recorded:
    """What `record_event` stored: the view's id, and the job it is about."""

    view_id: str
    job_id: str
    job: dict[str, Any]


def view_webhook(recorded: Recorded, share_id: str, event: ViewEvent, now: datetime) -> Any:
    """The webhook event of a view (its id and body), or None for a report that is not one
    (pure). Each report is its own event: its id comes from the view's own id."""
    kind = WEBHOOK_EVENTS.get(event.type)
    if kind is None:
        return None
    job = recorded.job
    view: dict[str, Any] = {"id": recorded.view_id, "client": event.client}
    if event.percent is not None:
        view["percent"] = event.percent
    data = {
        "jobId": recorded.job_id,
        "batchId": job.get("batchId") if isinstance(job.get("batchId"), str) else None,
        "name": job.get("prospectName") if isinstance(job.get("prospectName"), str) else None,
        "status": job.get("status"),
        "links": {"share": job["shareUrl"]} if isinstance(job.get("shareUrl"), str) else {},
        "view": view,
    }
    return queue.event_id(kind, f"{share_id}:{recorded.view_id}"), queue.payload(kind, now, data)


def announce_view(
    db: firestore.Client,
    start_run: Any,
    recorded: Recorded,
    share_id: str,
    event: ViewEvent,
    now: datetime,
) -> list[str]:
    """Enqueues the view's webhook event for the owner's endpoints that want it and asks for
    a delivery run (`start_run(now)`); the endpoints it was enqueued for."""
    made = view_webhook(recorded, share_id, event, now)
    user_id = recorded.job.get("userId")
    if made is None or not isinstance(user_id, str):
        return []
    event_id, body = made
    owned = db.collection(queue.WEBHOOKS).where(
        filter=firestore.FieldFilter("userId", "==", user_id)
    )
    enqueued: list[str] = []
    for endpoint in owned.stream():
        if not queue.wants(endpoint.to_dict() or {}, body["type"]):
            continue
        try:
            endpoint.reference.collection(queue.DELIVERIES).document(event_id).create(
                queue.delivery_document(event_id, body, recorded.job_id, now)
            )
        except google_exceptions.AlreadyExists:
            continue
        enqueued.append(endpoint.id)
    if enqueued:
        start_run(now)
    return enqueued


def record_event(
    db: firestore.Client, event: ViewEvent, address: str, now: datetime | None = None
) -> Recorded:
    """Appends the event and updates the job's counters, within both rate limits."""
    now = now or datetime.now(UTC)
    share_ref = db.collection(SHARES).document(event.share_id)
    limits = share_ref.collection(LIMITS)
    share_limit, client_limit = limits.document("share"), limits.document(client_key(address))

    @firestore.transactional
    def apply(transaction: firestore.Transaction) -> Recorded:
        share = share_ref.get(transaction=transaction)
        if not share.exists:
            raise NOT_FOUND
        data = share.to_dict() or {}
        if data.get("revoked"):
            raise REVOKED
        job_ref = db.collection(COLLECTION).document(str(data.get("jobId")))
        job = job_ref.get(transaction=transaction)
        states = [
            (share_limit, EVENTS_PER_MINUTE_PER_SHARE),
            (client_limit, EVENTS_PER_MINUTE_PER_CLIENT),
        ]
        plans = []
        for ref, per_minute in states:
            state = ref.get(transaction=transaction)
            plan = quota.plan_take(state.to_dict() if state.exists else None, 1, per_minute, now)
            if not plan.granted:
                raise ShareError(429, f"Too many events: retry in {plan.wait_seconds} s.")
            plans.append((ref, plan))
        for ref, plan in plans:
            transaction.set(ref, {"tokens": plan.tokens, "refilledAt": now})
        view = share_ref.collection(EVENTS).document()
        transaction.create(
            view,
            {
                "type": event.type,
                "percent": event.percent,
                "client": event.client,
                "at": now,
            },
        )
        job_data = (job.to_dict() or {}) if job.exists else {}
        if job.exists:
            transaction.update(job_ref, counter_update(job_data, event, now))
        return Recorded(view.id, job_ref.id, job_data)

    recorded: Recorded = apply(db.transaction())
    return recorded


def revoke(db: firestore.Client, job_id: str) -> tuple[str, str]:
    """The owner's revoke request (firestore.rules checked who and when): the share stops
    answering and the job says so. Returns the request's outcome and message."""
    job = db.collection(COLLECTION).document(job_id).get()
    share_id = (job.to_dict() or {}).get("shareId") if job.exists else None
    if not isinstance(share_id, str):
        return "refused", "This video has no share link."
    db.collection(SHARES).document(share_id).set(
        {"revoked": True, "revokedAt": datetime.now(UTC)}, merge=True
    )
    db.collection(COLLECTION).document(job_id).update({"shareRevoked": True})
    return "revoked", "The share link no longer works."
