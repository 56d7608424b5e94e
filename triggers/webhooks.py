"""Registering a webhook endpoint (`create_webhook`, a callable): the owner's URL and events in,
the endpoint's id and its secret out, shown this once.

The worker (flows/webhooks.py) signs every delivery with the secret and checks the URL again at
every attempt, against every address its host resolves to then (a host may move after it was
registered). The check here answers the owner at once, in words, for the URLs that can never
work: not https, credentials in the URL, a host that is or resolves to an internal address.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from google.cloud import firestore
from webhook_queue import DELIVERIES, WEBHOOKS

WEBHOOK_SECRETS = "webhookSecrets"
EVENTS = ("video.ready", "video.failed", "video.viewed", "video.watched")
MAX_URL_CHARS = 2048
MAX_ENDPOINTS = 10  # per user: each event is sent to each, and each is retried for a day
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

Resolver = Callable[[str], Sequence[str]]


class WebhookRefused(ValueError):
    """What the owner is told when an endpoint cannot be registered."""


@dataclass(frozen=True)
class Registration:
    url: str
    events: list[str]
    description: str


def _resolve(host: str) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)]


def check_url(url: Any, *, allow_loopback: bool, resolve: Resolver = _resolve) -> str:
    """`url` if the server may call it; WebhookRefused in words otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise WebhookRefused("give the endpoint's URL (https://...)")
    text: str = url.strip()
    if len(text) > MAX_URL_CHARS:
        raise WebhookRefused(f"the URL is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError as exc:
        raise WebhookRefused(f"not a URL: {exc}") from None
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused("the URL must not hold a user name or password")
    if not host:
        raise WebhookRefused("the URL has no host")
    loopback_ok = allow_loopback and host in LOOPBACK_HOSTS
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback_ok):
        raise WebhookRefused("the URL must use https")
    if loopback_ok:
        return text
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolve(host)]
        except OSError:
            raise WebhookRefused(f"{host} does not resolve: check the host name") from None
    for address in addresses:
        if not address.is_global:
            raise WebhookRefused(
                f"{host} is an internal address ({address}): webhooks go to public https URLs"
            )
    return text


def parse_registration(
    data: Any, *, allow_loopback: bool, resolve: Resolver = _resolve
) -> Registration:
    """The callable's data: `url`, `events` (a subset of EVENTS; all of them when left out) and
    an optional `description`."""
    if not isinstance(data, dict):
        raise WebhookRefused("send {url, events}")
    url = check_url(data.get("url"), allow_loopback=allow_loopback, resolve=resolve)
    events = data.get("events", list(EVENTS))
    if not isinstance(events, list) or not events or not all(e in EVENTS for e in events):
        raise WebhookRefused(f"events must be a list of: {', '.join(EVENTS)}")
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > 200:
        raise WebhookRefused("the description is text of at most 200 characters")
    return Registration(url, sorted(set(events), key=EVENTS.index), description)


def new_secret() -> str:
    """Standard Webhooks' form: whsec_ and 32 random bytes, base64 (as flows/webhooks.py)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create_endpoint(
    db: firestore.Client, user_id: str, registration: Registration
) -> dict[str, Any]:
    """Stores the endpoint and its secret, in one commit; the answer the owner gets once."""
    owned = db.collection(WEBHOOKS).where(filter=firestore.FieldFilter("userId", "==", user_id))
    if len(list(owned.limit(MAX_ENDPOINTS).stream())) >= MAX_ENDPOINTS:
        raise WebhookRefused(f"you have {MAX_ENDPOINTS} webhooks already: delete one first")
    endpoint_id = uuid.uuid4().hex
    secret = new_secret()
    now = datetime.now(UTC)
    batch = db.batch()
    batch.create(
        db.collection(WEBHOOKS).document(endpoint_id),
        {
            "userId": user_id,
            "url": registration.url,
            "events": registration.events,
            "description": registration.description,
            "disabled": False,
            "createdAt": now,
        },
    )
    batch.create(db.collection(WEBHOOK_SECRETS).document(endpoint_id), {"secret": secret})
    batch.commit()
    return {
        "id": endpoint_id,
        "secret": secret,
        "url": registration.url,
        "events": registration.events,
    }


DELETE_PAGE = 400  # deliveries removed per commit (Firestore allows 500 writes in one)


def forget_endpoint(db: firestore.Client, endpoint_id: str) -> int:
    """After its owner deleted an endpoint: its secret and its deliveries go too (nothing could
    read them any more: the deliveries' rule looks up the endpoint). The count of deliveries."""
    db.collection(WEBHOOK_SECRETS).document(endpoint_id).delete()
    deliveries = db.collection(WEBHOOKS).document(endpoint_id).collection(DELIVERIES)
    removed = 0
    while True:
        page = list(deliveries.limit(DELETE_PAGE).stream())
        if not page:
            return removed
        batch = db.batch()
        for snapshot in page:
            batch.delete(snapshot.reference)
        batch.commit()
        removed += len(page)
