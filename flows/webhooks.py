"""Webhooks: a user's endpoints hear about their videos (ready, failed, viewed, watched).

Deliveries follow Standard Webhooks (https://www.standardwebhooks.com): a JSON body
`{"type", "timestamp", "data"}` POSTed with `webhook-id`, `webhook-timestamp` and
`webhook-signature` (HMAC-SHA256 with the endpoint's secret, made by the `standardwebhooks`
package). The `webhook-id` is the event's id, the same on every attempt and every re-run, so a
receiver that saw it already can drop a repeat; a delivery recorded as delivered is not sent again.

Firestore holds, per endpoint:
  webhooks/{endpointId}                         userId, url, events, disabled, disabledReason,
                                                disabledAt, failingSince (owner-readable)
  webhookSecrets/{endpointId}                   secret (server only: shown to the owner once)
  webhooks/{endpointId}/deliveries/{eventId}    eventId, eventType, jobId, status, attempts[],
                                                nextAttemptAt, deliveredAt (owner-readable)

An event is first enqueued: one delivery document per endpoint that wants it, created only if
absent (its id is the event's), so an event announced twice is delivered once. One attempt is
one run of the `deliver-webhook` task, made by the `deliver-webhooks` flow (flows/deliveries.py)
for every delivery whose `nextAttemptAt` has come; a failed attempt sets the next on the schedule
below (about a day). The schedule lives on the document, not in Prefect task retries: a task
retrying for a day would hold a worker's thread and its flow run open for that day. An endpoint
whose deliveries have all failed for a day is disabled, with the reason on its document. One
attempt never takes longer than the sender's timeout, and the video pipeline only enqueues: it
never waits on a receiver.

The sender refuses what a user must not make the server call (SSRF): anything but https, and
hosts that resolve to loopback, private, link-local, multicast or reserved addresses. It checks
every address the host resolves to and then connects only to those addresses (and checks the
peer it reached), so a DNS answer that changes between the check and the connection (DNS
rebinding) cannot take it elsewhere. `allow_loopback` lets the local stack and the tests use
http://127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import logging
import math
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import httpcore
import httpx
from google.api_core import exceptions as google_exceptions
from google.cloud import firestore
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic.alias_generators import to_camel
from standardwebhooks import Webhook

from flows import webhook_queue as queue
from flows.webhook_queue import DELIVERIES, WEBHOOKS

log = logging.getLogger(__name__)

# The secrets live apart from the endpoint documents: Firestore rules grant or refuse whole
# documents, and the owner must be able to read an endpoint (and why it was disabled) but never
# read its secret back.
WEBHOOK_SECRETS = "webhookSecrets"

USER_AGENT = "greetings-webhooks/1"
MAX_URL_CHARS = 2048


class EventType(StrEnum):
    READY = "video.ready"
    FAILED = "video.failed"
    VIEWED = "video.viewed"
    WATCHED = "video.watched"


# --- The schedule ---------------------------------------------------------------------------------

# Seconds to wait before each attempt, the first at once: the schedule Standard Webhooks suggests.
# The attempts span about 27.6 hours, so an endpoint that is down for a day gets its last try
# after being down more than a day, which is what disables it (DISABLE_AFTER).
RETRY_SCHEDULE_S: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_ATTEMPTS = len(RETRY_SCHEDULE_S)
DISABLE_AFTER = timedelta(days=1)
# 4xx answers that say "not now" rather than "never": only these are tried again.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})


def next_attempt_delay(attempt: int) -> float | None:
    """Seconds from failed attempt `attempt` (1-based) to the next; None after the last one."""
    if attempt < 1:
        raise ValueError(f"attempts count from 1, not {attempt}")
    return RETRY_SCHEDULE_S[attempt] if attempt < MAX_ATTEMPTS else None


def attempt_offsets() -> list[float]:
    """When each attempt starts, in seconds after the first (without Prefect's jitter)."""
    return [sum(RETRY_SCHEDULE_S[: n + 1]) for n in range(MAX_ATTEMPTS)]


def is_retryable_status(status_code: int | None) -> bool:
    """Whether a failed attempt may succeed later: no answer, 3xx, 5xx and RETRYABLE_4XX."""
    if status_code is None:
        return True
    return not 400 <= status_code < 500 or status_code in RETRYABLE_4XX


def disable_reason(failing_since: datetime | None, now: datetime) -> str | None:
    """Why an endpoint whose deliveries have all failed since `failing_since` is disabled now."""
    if failing_since is None or now - failing_since < DISABLE_AFTER:
        return None
    return (
        f"Every delivery has failed since {failing_since:%Y-%m-%d %H:%M} UTC, for more than a "
        "day. Fix the endpoint and enable it again."
    )


# --- Events ---------------------------------------------------------------------------------------


class WebhookEvent(BaseModel):
    """One thing that happened, as every endpoint receives it, on every attempt alike."""

    model_config = ConfigDict(frozen=True)

    id: str
    type: EventType
    timestamp: datetime  # when it happened, not when it is sent
    data: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        return queue.payload(self.type.value, self.timestamp, self.data)

    def body(self) -> bytes:
        """The exact bytes that are signed and sent."""
        return json.dumps(self.payload(), separators=(",", ":"), ensure_ascii=False).encode()


def event_id(event_type: EventType, subject: str) -> str:
    """The id of `event_type` about `subject` (flows/webhook_queue.py)."""
    return queue.event_id(event_type.value, subject)


def job_event(
    event_type: EventType,
    job_id: str,
    job: Mapping[str, Any],
    occurred_at: datetime,
    *,
    subject: str | None = None,
) -> WebhookEvent:
    """The event about a `greetingJobs/{jobId}` document (its Firestore fields, camelCase).

    A job is ready or failed once per attempt, so those events are keyed by job and attempt: a
    retried job that fails again is news, a repeated trigger of the same failure is not. A video
    is viewed and watched many times: those events need the view's own id as `subject`.
    """
    if subject is None:
        if event_type in (EventType.VIEWED, EventType.WATCHED):
            raise ValueError(f"{event_type} needs a subject: the view it is about")
        subject = f"{job_id}:{int(job.get('retryCount') or 0)}"
    links: dict[str, str] = {}
    for link, field in (("video", "downloadUrl"), ("poster", "posterUrl"), ("gif", "thumbnailUrl")):
        if isinstance(job.get(field), str):
            links[link] = job[field]
    data: dict[str, Any] = {
        "jobId": job_id,
        "batchId": _text(job.get("batchId")),
        "name": _text(job.get("prospectName")),
        "status": _text(job.get("status")),
        "links": links,
    }
    error = job.get("error")
    if event_type == EventType.FAILED and isinstance(error, Mapping):
        data["error"] = {"code": _text(error.get("code")), "message": _text(error.get("message"))}
    return WebhookEvent(
        id=event_id(event_type, subject), type=event_type, timestamp=occurred_at, data=data
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# --- Signing --------------------------------------------------------------------------------------


def new_secret() -> str:
    """A fresh endpoint secret in Standard Webhooks' form: whsec_ and 32 random bytes, base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_headers(secret: str, event: WebhookEvent, at: datetime) -> dict[str, str]:
    """The headers of one attempt at `at`: the event's id, the attempt's time, the signature."""
    signature = Webhook(secret).sign(event.id, at, event.body())
    return {
        "webhook-id": event.id,
        "webhook-timestamp": str(math.floor(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


# --- Which URLs the server may call (SSRF) --------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[IPAddress]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UrlRefused(ValueError):
    """A URL the server will not call: wrong scheme, or a host on an address it must not reach."""


@dataclass(frozen=True)
class Target:
    """A checked URL's host and port, and the only addresses it may be reached at."""

    scheme: str
    host: str  # as the connection names it (IDNA, IPv6 without brackets)
    port: int
    addresses: tuple[IPAddress, ...]


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4), which is where it leads."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def address_refusal(ip: IPAddress, *, allow_loopback: bool) -> str | None:
    """Why the server must not connect to `ip`, or None when it may."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        reason = address_refusal(embedded, allow_loopback=allow_loopback)
        return None if reason is None else f"{ip} ({reason})"
    if ip.is_loopback:
        return None if allow_loopback else f"{ip} is a loopback address"
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "a site-local address"),
        # What is left and still not global: shared address space (100.64.0.0/10) and the like.
        (not ip.is_global, "not a public address"),
    )
    for refused, what in checks:
        if refused:
            return f"{ip} is {what}"
    return None


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order, each once."""
    found: list[IPAddress] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    return found


def resolve_target(url: str, *, allow_loopback: bool, resolve: Resolver = resolve_host) -> Target:
    """The checked target of `url`; UrlRefused if the server must not call it.

    A host that does not resolve raises OSError, not UrlRefused: DNS may be back on the next try.
    The URL is parsed by httpx, which sends the request, so the check and the request cannot
    read the URL differently.
    """
    if len(url) > MAX_URL_CHARS:
        raise UrlRefused(f"the URL is longer than {MAX_URL_CHARS} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UrlRefused(f"not a URL: {exc}") from None
    if parsed.scheme == "http" and not allow_loopback:
        raise UrlRefused("the URL must use https")
    if parsed.scheme not in ("https", "http"):
        raise UrlRefused("the URL must use https")
    if parsed.userinfo:
        raise UrlRefused("the URL must not hold a user name or password")
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise UrlRefused("the URL has no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = tuple(resolve(host, port))
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    for ip in addresses:
        reason = address_refusal(ip, allow_loopback=allow_loopback)
        if reason is not None:
            raise UrlRefused(f"{host} resolves to {reason}")
    if parsed.scheme == "http" and not all(ip.is_loopback for ip in addresses):
        raise UrlRefused("the URL must use https (http is allowed for loopback only)")
    return Target(parsed.scheme, host, port, addresses)


# --- Sending --------------------------------------------------------------------------------------


class Sender(Protocol):
    def __call__(self, url: str, headers: Mapping[str, str], body: bytes) -> int:
        """POSTs `body` to `url`; the answer's status code. UrlRefused if it may not be called."""
        ...


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by one deadline for the whole attempt.

    httpcore's timeouts are per read: a receiver that drips a byte every few seconds would keep
    an attempt going for ever. Each wait here is cut to what is left of the attempt's time.
    """

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("the attempt's time is up")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = self._left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, left), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects a checked target's host only at the addresses it was checked at.

    TLS still names and verifies the URL's host (httpcore passes it as the server name), so
    pinning the address changes where the bytes go and nothing else.
    """

    def __init__(self, target: Target, deadline: float, *, allow_loopback: bool) -> None:
        self._target = target
        self._deadline = deadline
        self._allow_loopback = allow_loopback
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if (host, port) != (self._target.host, self._target.port):
            # Redirects are not followed, so only the checked origin is ever asked for.
            raise httpcore.ConnectError(f"{host}:{port} is not the checked target")
        last_error: Exception = httpcore.ConnectError(f"{host} has no address")
        for ip in self._target.addresses:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise httpcore.ConnectTimeout("the attempt's time is up")
            try:
                stream = self._inner.connect_tcp(
                    str(ip),
                    port,
                    timeout=left if timeout is None else min(timeout, left),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
                continue
            self._check_peer(stream)
            return _DeadlineStream(stream, self._deadline)
        raise last_error

    def _check_peer(self, stream: httpcore.NetworkStream) -> None:
        """Refuses the connection if what it reached is not an address the server may call."""
        peer = stream.get_extra_info("server_addr")
        try:
            ip = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
        except (TypeError, IndexError, ValueError):
            stream.close()
            raise httpcore.ConnectError(
                f"cannot tell which address was reached: {peer!r}"
            ) from None
        reason = address_refusal(ip, allow_loopback=self._allow_loopback)
        if reason is not None:
            stream.close()
            raise httpcore.ConnectError(f"connected to a refused address: {reason}")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks are never sent to a socket file")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _PinnedTransport(httpx.BaseTransport):
    """httpx over one pinned connection pool; the answer's body is never read (only its status)."""

    def __init__(self, backend: _PinnedBackend, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context, max_connections=1, network_backend=backend
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self._pool.handle_request(
            httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=request.url.raw_scheme,
                    host=request.url.raw_host,
                    port=request.url.port,
                    target=request.url.raw_path,
                ),
                headers=request.headers.raw,
                content=request.stream,
                extensions=request.extensions,
            )
        )
        answer.close()
        return httpx.Response(status_code=answer.status, headers=answer.headers)

    def close(self) -> None:
        self._pool.close()


class HttpSender:
    """POSTs a delivery with httpx: checked and pinned target, no redirects, one deadline.

    Every attempt resolves the host afresh (an endpoint may move) and checks the answer; no
    proxy from the environment is used, since a proxy would make the pinned address moot.
    """

    def __init__(
        self,
        *,
        timeout_seconds: float = 5.0,
        allow_loopback: bool = False,
        resolve: Resolver = resolve_host,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.allow_loopback = allow_loopback
        self._resolve = resolve
        self._ssl_context = ssl_context or httpx.create_ssl_context(trust_env=False)

    def __call__(self, url: str, headers: Mapping[str, str], body: bytes) -> int:
        deadline = time.monotonic() + self.timeout_seconds
        target = resolve_target(url, allow_loopback=self.allow_loopback, resolve=self._resolve)
        backend = _PinnedBackend(target, deadline, allow_loopback=self.allow_loopback)
        with httpx.Client(
            transport=_PinnedTransport(backend, self._ssl_context),
            timeout=self.timeout_seconds,
            follow_redirects=False,
            trust_env=False,
        ) as client:
            return client.post(url, content=body, headers=dict(headers)).status_code


def describe_error(exc: BaseException) -> str:
    """An attempt's failure in words the endpoint's owner can act on."""
    if isinstance(exc, httpx.TimeoutException | httpcore.TimeoutException):
        return f"timed out: {exc}" if str(exc) else "timed out"
    if isinstance(exc, UrlRefused):
        return f"refused: {exc}"
    return f"{type(exc).__name__}: {exc}"[:500]


# --- What is stored -------------------------------------------------------------------------------


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_firestore(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="python")


class Endpoint(_Camel):
    """A `webhooks/{endpointId}` document, with its secret from `webhookSecrets/{endpointId}`."""

    id: str = Field(default="", exclude=True)
    user_id: str
    url: str
    events: list[str] = Field(default_factory=list)
    disabled: bool = False
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    # Set by the first failed attempt after a success, cleared by the next success.
    failing_since: datetime | None = None
    secret: SecretStr = Field(exclude=True)

    def wants(self, event_type: EventType) -> bool:
        return queue.wants({"disabled": self.disabled, "events": self.events}, event_type.value)


class Attempt(_Camel):
    """One try at a delivery, as the owner sees it on the delivery's document."""

    number: int  # 1-based
    at: datetime
    status_code: int | None = None
    error: str | None = None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class DeliveryStatus(StrEnum):
    PENDING = queue.PENDING  # enqueued, not tried yet; due at nextAttemptAt
    RETRYING = "retrying"  # failed so far; nextAttemptAt says when the next try is due
    DELIVERED = "delivered"
    FAILED = "failed"  # given up: refused for good, out of attempts, or the endpoint disabled


class DeliveryOutcome(StrEnum):
    """How one call of `attempt_delivery` (or a whole task run) ended without raising."""

    DELIVERED = "delivered"
    ALREADY_DELIVERED = "already-delivered"
    SKIPPED = "skipped"  # the endpoint is gone, disabled or no longer wants this event
    DISABLED = "disabled"  # this attempt disabled the endpoint
    FAILED = "failed"  # only in `deliver_due`'s summary: the attempt failed


# How long a claimed delivery stays with the deliverer that took it: far past one attempt (the
# sender's 5 s timeout and the write after it). Without a claim, two deliver-webhooks runs of
# adjacent windows sent the same attempt twice when the first one's record was slow to land (seen
# in the stack test: a 500 recorded 4.6 s late, after the second run's 200, turned the delivered
# delivery back to retrying, and a third attempt went out).
CLAIM_LEASE = timedelta(seconds=60)


@dataclass(frozen=True)
class DueDelivery:
    """A delivery whose next attempt has come."""

    endpoint_id: str
    event: WebhookEvent
    attempt_number: int  # 1-based: the attempts made so far, plus one


class WebhookStore(Protocol):
    """The Firestore side of webhooks, as the delivery logic needs it."""

    def enqueue(self, endpoint_id: str, event: WebhookEvent, at: datetime) -> bool:
        """Creates the delivery of `event` to the endpoint, due at `at`, unless it exists;
        whether it was created."""
        ...

    def due(self, now: datetime, limit: int) -> list[DueDelivery]:
        """Up to `limit` deliveries due at `now`, the longest waiting first, each claimed: its
        next attempt moves to `now + CLAIM_LEASE` so that no other deliverer sends it meanwhile
        (one that dies mid-attempt leaves it due again when the lease ends)."""
        ...

    def next_due_at(self) -> datetime | None:
        """When the next delivery that waits is due, if any does."""
        ...

    def endpoints_for(self, user_id: str, event_type: EventType) -> list[Endpoint]:
        """The user's enabled endpoints that want `event_type`."""
        ...

    def endpoint(self, endpoint_id: str) -> Endpoint | None: ...

    def delivery_status(self, endpoint_id: str, event_id: str) -> DeliveryStatus | None: ...

    def record_attempt(
        self,
        endpoint_id: str,
        event: WebhookEvent,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: datetime | None,
    ) -> None:
        """Appends `attempt` to the delivery and sets its status, except that a delivery
        already delivered stays delivered; a failed attempt also sets the endpoint's
        `failingSince` to the attempt's time, unless it is set already."""
        ...

    def mark_delivered(self, endpoint_id: str, event_id: str, at: datetime) -> None:
        """The delivery is done; the endpoint is healthy again (its `failingSince` cleared)."""
        ...

    def disable_endpoint(self, endpoint_id: str, reason: str, at: datetime) -> None: ...

    def end_delivery(self, endpoint_id: str, event_id: str, reason: str, at: datetime) -> None:
        """Gives a delivery up without an attempt (its endpoint is gone, disabled, or no longer
        wants the event), so that it is no longer due."""
        ...


class FirestoreWebhookStore:
    """`webhooks/`, `webhookSecrets/` and the deliveries through the Admin SDK."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def _endpoint_ref(self, endpoint_id: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = self._db.collection(WEBHOOKS).document(endpoint_id)
        return ref

    def _delivery_ref(self, endpoint_id: str, event_id: str) -> firestore.DocumentReference:
        deliveries = self._endpoint_ref(endpoint_id).collection(DELIVERIES)
        ref: firestore.DocumentReference = deliveries.document(event_id)
        return ref

    def _endpoint(self, endpoint_id: str, data: dict[str, Any] | None) -> Endpoint | None:
        if data is None:
            return None
        secret = self._db.collection(WEBHOOK_SECRETS).document(endpoint_id).get()
        value = (secret.to_dict() or {}).get("secret") if secret.exists else None
        if not isinstance(value, str) or not value:
            log.warning("webhook %s has no secret; not delivering to it", endpoint_id)
            return None
        try:
            return Endpoint.model_validate({**data, "id": endpoint_id, "secret": value})
        except ValidationError as exc:
            log.warning("webhook %s is malformed: %s", endpoint_id, exc)
            return None

    def endpoints_for(self, user_id: str, event_type: EventType) -> list[Endpoint]:
        # One equality filter needs no composite index; a user has a handful of endpoints, so the
        # event and disabled filters are cheaper here than an index to deploy.
        query = self._db.collection(WEBHOOKS).where(
            filter=firestore.FieldFilter("userId", "==", user_id)
        )
        found = (self._endpoint(snapshot.id, snapshot.to_dict()) for snapshot in query.stream())
        return [
            endpoint for endpoint in found if endpoint is not None and endpoint.wants(event_type)
        ]

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        snapshot = self._endpoint_ref(endpoint_id).get()
        return self._endpoint(endpoint_id, snapshot.to_dict() if snapshot.exists else None)

    def enqueue(self, endpoint_id: str, event: WebhookEvent, at: datetime) -> bool:
        try:
            self._delivery_ref(endpoint_id, event.id).create(
                queue.delivery_document(event.id, event.payload(), event.data.get("jobId"), at)
            )
        except google_exceptions.AlreadyExists:
            return False  # announced before: the delivery that exists goes on as it was
        return True

    def _waiting(self) -> firestore.Query:
        # Only waiting deliveries have `nextAttemptAt` (it is removed when one ends), so a range
        # on that one field finds them: a single-field index over the collection group.
        query: firestore.Query = self._db.collection_group(DELIVERIES).order_by("nextAttemptAt")
        return query

    def _claim(self, ref: firestore.DocumentReference, now: datetime) -> dict[str, Any] | None:
        """The delivery's document if it is still due at `now`, its next attempt moved past the
        lease; None if another deliverer claimed or ended it first."""

        @firestore.transactional
        def apply(transaction: firestore.Transaction) -> dict[str, Any] | None:
            snapshot = ref.get(transaction=transaction)
            data: dict[str, Any] = snapshot.to_dict() or {}
            at = data.get("nextAttemptAt")
            if not isinstance(at, datetime) or at > now:
                return None
            if data.get("status") in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED):
                return None
            transaction.update(ref, {"nextAttemptAt": now + CLAIM_LEASE})
            return data

        claimed: dict[str, Any] | None = apply(self._db.transaction())
        return claimed

    def due(self, now: datetime, limit: int) -> list[DueDelivery]:
        query = self._waiting().where(filter=firestore.FieldFilter("nextAttemptAt", "<=", now))
        found: list[DueDelivery] = []
        for snapshot in query.limit(limit).stream():
            data = self._claim(snapshot.reference, now)
            if data is None:
                continue
            endpoint_ref = snapshot.reference.parent.parent
            try:
                event = WebhookEvent.model_validate({"id": snapshot.id, **data["event"]})
            except (KeyError, TypeError, ValidationError) as exc:
                log.warning("delivery %s is malformed: %s", snapshot.reference.path, exc)
                continue
            if endpoint_ref is None:
                continue
            attempts = data.get("attempts")
            made = len(attempts) if isinstance(attempts, list) else 0
            found.append(DueDelivery(endpoint_ref.id, event, made + 1))
        return found

    def next_due_at(self) -> datetime | None:
        for snapshot in self._waiting().limit(1).stream():
            at = (snapshot.to_dict() or {}).get("nextAttemptAt")
            return at if isinstance(at, datetime) else None
        return None

    def delivery_status(self, endpoint_id: str, event_id: str) -> DeliveryStatus | None:
        snapshot = self._delivery_ref(endpoint_id, event_id).get()
        status = (snapshot.to_dict() or {}).get("status") if snapshot.exists else None
        try:
            return DeliveryStatus(status) if status else None
        except ValueError:
            return None

    def record_attempt(
        self,
        endpoint_id: str,
        event: WebhookEvent,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: datetime | None,
    ) -> None:
        endpoint_ref = self._endpoint_ref(endpoint_id)
        delivery_ref = self._delivery_ref(endpoint_id, event.id)

        @firestore.transactional
        def apply(transaction: firestore.Transaction) -> None:
            endpoint = endpoint_ref.get(transaction=transaction)
            current = delivery_ref.get(transaction=transaction)
            # An attempt recorded late (its deliverer's lease ran out, another delivered) is
            # history, not the delivery's state: delivered stays delivered.
            done = (current.to_dict() or {}).get("status") == DeliveryStatus.DELIVERED
            transaction.set(
                delivery_ref,
                {
                    "eventId": event.id,
                    "eventType": event.type.value,
                    "jobId": event.data.get("jobId"),
                    "status": DeliveryStatus.DELIVERED.value if done else status.value,
                    # Each attempt differs in its number and time, so the union only appends.
                    "attempts": firestore.ArrayUnion([attempt.to_firestore()]),
                    "nextAttemptAt": (None if done else next_attempt_at) or firestore.DELETE_FIELD,
                    "updatedAt": attempt.at,
                },
                merge=True,
            )
            if (
                not attempt.ok
                and endpoint.exists
                and not (endpoint.to_dict() or {}).get("failingSince")
            ):
                transaction.update(endpoint_ref, {"failingSince": attempt.at})

        apply(self._db.transaction())

    def mark_delivered(self, endpoint_id: str, event_id: str, at: datetime) -> None:
        endpoint_ref = self._endpoint_ref(endpoint_id)
        delivery_ref = self._delivery_ref(endpoint_id, event_id)

        @firestore.transactional
        def apply(transaction: firestore.Transaction) -> None:
            endpoint = endpoint_ref.get(transaction=transaction)
            transaction.set(
                delivery_ref,
                {
                    "status": DeliveryStatus.DELIVERED.value,
                    "deliveredAt": at,
                    "nextAttemptAt": firestore.DELETE_FIELD,
                    "updatedAt": at,
                },
                merge=True,
            )
            if endpoint.exists and (endpoint.to_dict() or {}).get("failingSince"):
                transaction.update(endpoint_ref, {"failingSince": firestore.DELETE_FIELD})

        apply(self._db.transaction())

    def end_delivery(self, endpoint_id: str, event_id: str, reason: str, at: datetime) -> None:
        # Also under an endpoint deleted meanwhile: its deliveries outlive it in Firestore.
        self._delivery_ref(endpoint_id, event_id).set(
            {
                "status": DeliveryStatus.FAILED.value,
                "endedReason": reason,
                "nextAttemptAt": firestore.DELETE_FIELD,
                "updatedAt": at,
            },
            merge=True,
        )

    def disable_endpoint(self, endpoint_id: str, reason: str, at: datetime) -> None:
        # An endpoint deleted meanwhile has nothing left to disable.
        with contextlib.suppress(google_exceptions.NotFound):
            self._endpoint_ref(endpoint_id).update(
                {"disabled": True, "disabledReason": reason, "disabledAt": at}
            )


# --- One attempt ----------------------------------------------------------------------------------


class DeliveryFailed(Exception):
    """An attempt that did not get a 2xx; `retryable` says whether the schedule goes on."""

    def __init__(self, endpoint_id: str, attempt: Attempt, *, retryable: bool) -> None:
        what = attempt.error or f"HTTP {attempt.status_code}"
        super().__init__(f"webhook {endpoint_id}, attempt {attempt.number}: {what}")
        self.endpoint_id = endpoint_id
        self.attempt = attempt
        self.retryable = retryable

    def __reduce__(self) -> tuple[Any, ...]:
        # Prefect may pickle a task's exception into its state; keep the flag across that.
        return (_rebuild_delivery_failed, (self.endpoint_id, self.attempt, self.retryable))


def _rebuild_delivery_failed(endpoint_id: str, attempt: Attempt, retryable: bool) -> DeliveryFailed:
    return DeliveryFailed(endpoint_id, attempt, retryable=retryable)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def attempt_delivery(
    store: WebhookStore,
    send: Sender,
    endpoint_id: str,
    event: WebhookEvent,
    attempt_number: int,
    *,
    now: Callable[[], datetime] = _utcnow,
) -> DeliveryOutcome:
    """One try at delivering `event` to an endpoint, recorded whatever happens.

    Returns how it ended when nothing is left to try; raises DeliveryFailed when the attempt
    failed and the delivery is not over (its `retryable` says whether the schedule goes on).
    """
    endpoint = store.endpoint(endpoint_id)
    if endpoint is None or not endpoint.wants(event.type):
        why = (
            "the endpoint was deleted"
            if endpoint is None
            else "the endpoint is disabled"
            if endpoint.disabled
            else f"the endpoint no longer wants {event.type.value}"
        )
        store.end_delivery(endpoint_id, event.id, why, now())
        return DeliveryOutcome.SKIPPED
    if store.delivery_status(endpoint_id, event.id) == DeliveryStatus.DELIVERED:
        return DeliveryOutcome.ALREADY_DELIVERED

    at = now()
    headers = signed_headers(endpoint.secret.get_secret_value(), event, at)
    started = time.monotonic()
    status_code: int | None = None
    error: str | None = None
    refused: UrlRefused | None = None
    try:
        status_code = send(endpoint.url, headers, event.body())
    except UrlRefused as exc:
        refused = exc
        error = describe_error(exc)
    except Exception as exc:
        error = describe_error(exc)
    attempt = Attempt(
        number=attempt_number,
        at=at,
        status_code=status_code,
        error=error,
        duration_ms=round((time.monotonic() - started) * 1000),
    )

    if attempt.ok:
        store.record_attempt(endpoint_id, event, attempt, DeliveryStatus.DELIVERED, None)
        store.mark_delivered(endpoint_id, event.id, at)
        return DeliveryOutcome.DELIVERED

    # A URL that now resolves somewhere the server must not call will not get better by waiting:
    # the owner has to fix it, and disabling says so where they look.
    reason = (
        f"The URL is not allowed: {refused}"
        if refused is not None
        else disable_reason(endpoint.failing_since or at, at)
    )
    retryable = reason is None and is_retryable_status(status_code)
    delay = next_attempt_delay(attempt_number) if retryable else None
    next_at = None if delay is None else at + timedelta(seconds=delay)
    status = DeliveryStatus.FAILED if next_at is None else DeliveryStatus.RETRYING
    store.record_attempt(endpoint_id, event, attempt, status, next_at)
    if reason is not None:
        store.disable_endpoint(endpoint_id, reason, at)
        log.warning("webhook %s disabled: %s", endpoint_id, reason)
        return DeliveryOutcome.DISABLED
    raise DeliveryFailed(endpoint_id, attempt, retryable=next_at is not None)


# --- The task and the fan-out --------------------------------------------------------------------


# One attempt per task run: the schedule is on the delivery's document (see the module's
# docstring). A failed attempt fails its task run, so the Prefect UI shows it as failed.
@task(name="deliver-webhook", cache_policy=NO_CACHE)
def deliver_webhook(
    store: WebhookStore, send: Sender, endpoint_id: str, event: WebhookEvent, attempt_number: int
) -> DeliveryOutcome:
    """One attempt at delivering `event` to one endpoint; how it ended (raises if it failed)."""
    return attempt_delivery(store, send, endpoint_id, event, attempt_number)


def enqueue_event(
    store: WebhookStore, user_id: str, event: WebhookEvent, at: datetime
) -> list[str]:
    """Enqueues `event` for each of the user's endpoints that want it; the endpoints it was
    newly enqueued for. Never raises: an event that cannot be announced is logged, and the
    video it is about is not held up."""
    try:
        endpoints = store.endpoints_for(user_id, event.type)
    except Exception:
        log.exception("could not load the webhooks of user %s for %s", user_id, event.id)
        return []
    enqueued: list[str] = []
    for endpoint in endpoints:
        try:
            if store.enqueue(endpoint.id, event, at):
                enqueued.append(endpoint.id)
        except Exception:
            log.exception("could not enqueue %s for webhook %s", event.id, endpoint.id)
    return enqueued


def deliver_due(
    store: WebhookStore, send: Sender, now: datetime, limit: int = 100
) -> dict[str, int]:
    """Makes the attempt of every delivery due at `now` (up to `limit`), all at once, each as a
    `deliver-webhook` task run; counts of how they ended. Never raises for an attempt."""
    futures = [
        deliver_webhook.submit(store, send, due.endpoint_id, due.event, due.attempt_number)
        for due in store.due(now, limit)
    ]
    counts: dict[str, int] = {}
    for future in futures:
        result: object
        try:
            result = future.result(raise_on_failure=False)
        except Exception as exc:
            result = exc
        if isinstance(result, DeliveryOutcome):
            outcome = result.value
        elif isinstance(result, DeliveryFailed) and result.retryable:
            outcome = DeliveryStatus.RETRYING.value
        else:
            outcome = DeliveryOutcome.FAILED.value
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
