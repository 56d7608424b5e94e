"""Webhook delivery: signed per Standard Webhooks, once per event, retried, bounded, SSRF-safe.

Deliveries go to a real HTTP receiver on 127.0.0.1 (the sender allows loopback, as the local
stack's setting does) that checks every signature with `standardwebhooks`. The store is an
in-memory stand-in for Firestore (tests/stack/test_webhooks_stack.py runs the real one); the retry
schedule is walked by calling one attempt at a time with a clock that jumps, never by waiting.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from flows import webhooks
from flows.webhooks import (
    CLAIM_LEASE,
    DISABLE_AFTER,
    MAX_ATTEMPTS,
    Attempt,
    DeliveryFailed,
    DeliveryOutcome,
    DeliveryStatus,
    DueDelivery,
    Endpoint,
    EventType,
    HttpSender,
    IPAddress,
    Target,
    UrlRefused,
    WebhookEvent,
    attempt_delivery,
    attempt_offsets,
    deliver_due,
    deliver_webhook,
    enqueue_event,
    is_retryable_status,
    job_event,
    new_secret,
    next_attempt_delay,
    resolve_target,
)

SECRET = new_secret()
AT = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
JOB: dict[str, Any] = {
    "userId": "user-1",
    "prospectName": "Anna-Lena Smith",
    "status": "completed",
    "batchId": "batch-1",
    "downloadUrl": "https://videos.example.com/job-1.mp4",
    "retryCount": 0,
}


# --- A receiver on 127.0.0.1 ----------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    payload: Any = None  # what Webhook.verify returned; None if it refused
    refusal: str | None = None


class Receiver:
    """An HTTP server that verifies each delivery, then answers as the test scripts it.

    `statuses` are answered in order (200 once they run out); `mode` "hang" never answers and
    "drip" sends its status line a byte at a time, each well within a per-read timeout.
    """

    def __init__(self, secret: str, tls: ssl.SSLContext | None = None) -> None:
        self.secret = secret
        self.statuses: list[int] = []
        self.mode = "answer"
        self.received: list[Received] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {key.lower(): value for key, value in self.headers.items()}
                got = Received(headers, body)
                try:
                    got.payload = Webhook(receiver.secret).verify(body, headers)
                except WebhookVerificationError as exc:
                    got.refusal = str(exc)
                receiver.received.append(got)
                if receiver.mode == "hang":
                    receiver.release.wait(30)
                    return
                if receiver.mode == "drip":
                    try:
                        for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n":
                            if receiver.release.wait(0.2):
                                return
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                    except OSError:
                        pass  # the sender hung up, as it should
                    return
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/greetings"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(SECRET)
    server.thread.start()
    try:
        yield server
    finally:
        server.close()


# --- An in-memory store ---------------------------------------------------------------------------


@dataclass
class Delivery:
    event: WebhookEvent | None = None
    status: DeliveryStatus | None = None
    attempts: list[Attempt] = field(default_factory=list)
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None


class MemoryStore:
    """WebhookStore's contract, in dictionaries."""

    def __init__(self, *endpoints: Endpoint) -> None:
        self.endpoints = {endpoint.id: endpoint for endpoint in endpoints}
        self.deliveries: dict[tuple[str, str], Delivery] = {}

    def _update(self, endpoint_id: str, **fields: Any) -> None:
        if endpoint_id in self.endpoints:
            self.endpoints[endpoint_id] = self.endpoints[endpoint_id].model_copy(update=fields)

    def endpoints_for(self, user_id: str, event_type: EventType) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.user_id == user_id and e.wants(event_type)]

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        return self.endpoints.get(endpoint_id)

    def delivery_status(self, endpoint_id: str, event_id: str) -> DeliveryStatus | None:
        delivery = self.deliveries.get((endpoint_id, event_id))
        return None if delivery is None else delivery.status

    def record_attempt(
        self,
        endpoint_id: str,
        event: WebhookEvent,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: datetime | None,
    ) -> None:
        delivery = self.deliveries.setdefault((endpoint_id, event.id), Delivery())
        delivery.attempts.append(attempt)
        if delivery.status != DeliveryStatus.DELIVERED:
            delivery.status = status
            delivery.next_attempt_at = next_attempt_at
        endpoint = self.endpoints.get(endpoint_id)
        if not attempt.ok and endpoint is not None and endpoint.failing_since is None:
            self._update(endpoint_id, failing_since=attempt.at)

    def mark_delivered(self, endpoint_id: str, event_id: str, at: datetime) -> None:
        delivery = self.deliveries.setdefault((endpoint_id, event_id), Delivery())
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = at
        delivery.next_attempt_at = None
        self._update(endpoint_id, failing_since=None)

    def disable_endpoint(self, endpoint_id: str, reason: str, at: datetime) -> None:
        self._update(endpoint_id, disabled=True, disabled_reason=reason, disabled_at=at)

    def end_delivery(self, endpoint_id: str, event_id: str, reason: str, at: datetime) -> None:
        delivery = self.deliveries.setdefault((endpoint_id, event_id), Delivery())
        delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None

    def enqueue(self, endpoint_id: str, event: WebhookEvent, at: datetime) -> bool:
        if (endpoint_id, event.id) in self.deliveries:
            return False
        self.deliveries[(endpoint_id, event.id)] = Delivery(
            event, DeliveryStatus.PENDING, next_attempt_at=at
        )
        return True

    def due(self, now: datetime, limit: int) -> list[DueDelivery]:
        waiting = sorted(
            (d.next_attempt_at, key)
            for key, d in self.deliveries.items()
            if d.next_attempt_at is not None and d.next_attempt_at <= now
        )
        for _, key in waiting[:limit]:
            self.deliveries[key].next_attempt_at = now + CLAIM_LEASE  # claimed
        return [
            DueDelivery(key[0], self.deliveries[key].event, len(self.deliveries[key].attempts) + 1)  # type: ignore[arg-type]
            for _, key in waiting[:limit]
        ]

    def next_due_at(self) -> datetime | None:
        return min(
            (d.next_attempt_at for d in self.deliveries.values() if d.next_attempt_at), default=None
        )


def endpoint(url: str, endpoint_id: str = "hook-1", **fields: Any) -> Endpoint:
    return Endpoint.model_validate(
        {
            "id": endpoint_id,
            "userId": "user-1",
            "url": url,
            "events": [e.value for e in EventType],
            "secret": SECRET,
            **fields,
        }
    )


def ready_event(job: Mapping[str, Any] = JOB) -> WebhookEvent:
    return job_event(EventType.READY, "job-1", job, AT)


def local_sender(timeout_seconds: float = 2.0) -> HttpSender:
    return HttpSender(timeout_seconds=timeout_seconds, allow_loopback=True)


class Clock:
    def __init__(self, start: datetime = AT) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


class Answering:
    """A sender that answers every POST with one status code, and counts them."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.calls = 0

    def __call__(self, url: str, headers: Mapping[str, str], body: bytes) -> int:
        self.calls += 1
        return self.status


# --- Events and signatures ------------------------------------------------------------------------


def test_job_event_carries_the_job_in_standard_webhooks_shape() -> None:
    event = ready_event()
    payload = json.loads(event.body())
    assert payload == {
        "type": "video.ready",
        "timestamp": "2026-11-25T09:30:00Z",
        "data": {
            "jobId": "job-1",
            "batchId": "batch-1",
            "name": "Anna-Lena Smith",
            "status": "completed",
            "links": {"video": "https://videos.example.com/job-1.mp4"},
        },
    }
    failed = job_event(
        EventType.FAILED,
        "job-1",
        {**JOB, "status": "failed", "error": {"code": "tts-auth", "message": "bad key"}},
        AT,
    )
    assert failed.data["error"] == {"code": "tts-auth", "message": "bad key"}
    assert "error" not in event.data


def test_event_ids_are_stable_per_event_and_differ_between_events() -> None:
    assert ready_event().id == ready_event().id
    assert ready_event().body() == ready_event().body()
    assert ready_event({**JOB, "retryCount": 1}).id != ready_event().id  # a new attempt: new news
    assert job_event(EventType.FAILED, "job-1", JOB, AT).id != ready_event().id
    viewed = job_event(EventType.VIEWED, "job-1", JOB, AT, subject="view-1")
    assert viewed.id != job_event(EventType.VIEWED, "job-1", JOB, AT, subject="view-2").id
    with pytest.raises(ValueError, match="subject"):
        job_event(EventType.WATCHED, "job-1", JOB, AT)


def test_signed_delivery_verifies_at_the_receiver(receiver: Receiver) -> None:
    store = MemoryStore(endpoint(receiver.url))
    event = ready_event()

    outcome = attempt_delivery(store, local_sender(), "hook-1", event, 1)

    assert outcome == DeliveryOutcome.DELIVERED
    [got] = receiver.received
    assert got.refusal is None
    assert got.payload == event.payload()
    assert got.headers["webhook-id"] == event.id
    assert got.headers["content-type"] == "application/json"
    # The signature is over exactly these bytes with this secret: anything else fails.
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(got.body, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(got.body.replace(b"Anna", b"Anne"), got.headers)
    delivery = store.deliveries[("hook-1", event.id)]
    assert delivery.status == DeliveryStatus.DELIVERED
    [attempt] = delivery.attempts
    assert (attempt.number, attempt.status_code, attempt.error) == (1, 200, None)
    assert 0 <= attempt.duration_ms < 2000
    assert attempt.to_firestore().keys() == {"number", "at", "statusCode", "durationMs"}


def test_the_same_event_twice_has_one_id_and_is_delivered_once(receiver: Receiver) -> None:
    store = MemoryStore(endpoint(receiver.url))
    sender = local_sender()

    first = attempt_delivery(store, sender, "hook-1", ready_event(), 1)
    again = attempt_delivery(store, sender, "hook-1", ready_event(), 1)  # a repeated trigger

    assert (first, again) == (DeliveryOutcome.DELIVERED, DeliveryOutcome.ALREADY_DELIVERED)
    assert len(receiver.received) == 1
    assert receiver.received[0].headers["webhook-id"] == ready_event().id
    assert len(store.deliveries[("hook-1", ready_event().id)].attempts) == 1


def test_the_task_without_prefect_delivers_as_attempt_one(receiver: Receiver) -> None:
    store = MemoryStore(endpoint(receiver.url))
    assert deliver_webhook.fn(store, local_sender(), "hook-1", ready_event(), 1) == "delivered"
    assert store.deliveries[("hook-1", ready_event().id)].attempts[0].number == 1


# --- Retries --------------------------------------------------------------------------------------


def test_the_schedule_spans_about_a_day() -> None:
    assert [next_attempt_delay(n) for n in range(1, MAX_ATTEMPTS + 1)] == [
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        36000,
        None,
    ]
    offsets = attempt_offsets()
    assert offsets[0] == 0
    assert offsets == sorted(offsets)
    # The last try comes after an outage of a day (so it can disable), but not much later.
    assert DISABLE_AFTER.total_seconds() < offsets[-1] < 1.25 * DISABLE_AFTER.total_seconds()
    with pytest.raises(ValueError):
        next_attempt_delay(0)


def test_the_task_makes_one_attempt_and_leaves_the_schedule_to_the_delivery() -> None:
    # A task retrying for a day would hold a worker thread and its flow run open that long.
    assert deliver_webhook.name == "deliver-webhook"
    assert deliver_webhook.retries == 0


@pytest.mark.parametrize(
    ("status_code", "retried"),
    [
        (None, True),  # no answer at all: a timeout, a refused connection
        (500, True),
        (503, True),
        (302, True),
        (408, True),
        (409, True),
        (425, True),
        (429, True),
        (400, False),
        (401, False),
        (404, False),
        (410, False),
    ],
)
def test_4xx_other_than_408_409_425_429_end_the_delivery(
    status_code: int | None, retried: bool
) -> None:
    assert is_retryable_status(status_code) is retried
    store = MemoryStore(endpoint("https://hooks.example.com/"))

    def answer(url: str, headers: Mapping[str, str], body: bytes) -> int:
        if status_code is None:
            raise ConnectionRefusedError("nobody listens")
        return status_code

    with pytest.raises(DeliveryFailed) as failed:
        attempt_delivery(store, answer, "hook-1", ready_event(), 1, now=Clock())
    assert failed.value.retryable is retried
    delivery = store.deliveries[("hook-1", ready_event().id)]
    assert delivery.status == (DeliveryStatus.RETRYING if retried else DeliveryStatus.FAILED)
    assert delivery.next_attempt_at == (AT + timedelta(seconds=5) if retried else None)


def test_three_500s_then_200_delivers_on_the_fourth_attempt(receiver: Receiver) -> None:
    receiver.statuses = [500, 500, 500, 200]
    store = MemoryStore(endpoint(receiver.url))
    event = ready_event()
    sender = local_sender()

    outcomes: list[DeliveryOutcome | DeliveryFailed] = []
    for number in range(1, MAX_ATTEMPTS + 1):  # as Prefect runs the task, without the waits
        try:
            outcomes.append(attempt_delivery(store, sender, "hook-1", event, number))
            break
        except DeliveryFailed as failed:
            assert failed.retryable
            outcomes.append(failed)

    assert outcomes[-1] == DeliveryOutcome.DELIVERED
    assert len(outcomes) == 4
    assert [got.headers["webhook-id"] for got in receiver.received] == [event.id] * 4
    assert all(got.refusal is None for got in receiver.received)
    delivery = store.deliveries[("hook-1", event.id)]
    assert [a.status_code for a in delivery.attempts] == [500, 500, 500, 200]
    assert [a.number for a in delivery.attempts] == [1, 2, 3, 4]
    assert delivery.status == DeliveryStatus.DELIVERED
    assert store.endpoints["hook-1"].failing_since is None  # healthy again


def test_a_failed_attempt_records_when_the_next_is_due() -> None:
    store = MemoryStore(endpoint("https://hooks.example.com/"))
    clock = Clock()
    with pytest.raises(DeliveryFailed):
        attempt_delivery(store, Answering(503), "hook-1", ready_event(), 3, now=clock)
    delivery = store.deliveries[("hook-1", ready_event().id)]
    assert delivery.status == DeliveryStatus.RETRYING
    assert delivery.next_attempt_at == AT + timedelta(seconds=1800)
    assert store.endpoints["hook-1"].failing_since == AT


def test_a_4xx_ends_the_delivery_at_once() -> None:
    store = MemoryStore(endpoint("https://hooks.example.com/"))
    with pytest.raises(DeliveryFailed) as failed:
        attempt_delivery(store, Answering(410), "hook-1", ready_event(), 1)
    assert failed.value.retryable is False
    delivery = store.deliveries[("hook-1", ready_event().id)]
    assert (delivery.status, delivery.next_attempt_at) == (DeliveryStatus.FAILED, None)


def test_the_last_attempt_ends_the_delivery_failed() -> None:
    store = MemoryStore(endpoint("https://hooks.example.com/"))
    with pytest.raises(DeliveryFailed) as failed:
        attempt_delivery(store, Answering(500), "hook-1", ready_event(), MAX_ATTEMPTS)
    assert failed.value.retryable is False
    assert store.deliveries[("hook-1", ready_event().id)].status == DeliveryStatus.FAILED


# --- A receiver that does not answer --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hang", "drip"])
def test_a_stalling_receiver_fails_the_attempt_within_the_timeout(
    receiver: Receiver, mode: str
) -> None:
    receiver.mode = mode
    store = MemoryStore(endpoint(receiver.url))

    started = time.monotonic()
    with pytest.raises(DeliveryFailed) as failed:
        attempt_delivery(store, local_sender(timeout_seconds=1.0), "hook-1", ready_event(), 1)
    took = time.monotonic() - started

    # "drip" answers a byte every 0.2 s: only a deadline for the whole attempt stops it at 1 s.
    assert took < 2.0
    assert failed.value.retryable
    [attempt] = store.deliveries[("hook-1", ready_event().id)].attempts
    assert attempt.status_code is None
    assert attempt.error is not None and attempt.error.startswith("timed out")
    assert 900 <= attempt.duration_ms < 2000


# --- Which URLs may be called ---------------------------------------------------------------------


def resolving_to(*addresses: str) -> Callable[[str, int], Sequence[IPAddress]]:
    def resolve(host: str, port: int) -> Sequence[IPAddress]:
        return [ipaddress.ip_address(address) for address in addresses]

    return resolve


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",  # carrier-grade NAT
        "169.254.169.254",  # link-local: the cloud metadata server
        "fe80::1",
        "fd12:3456::1",  # IPv6 unique local (ULA)
        "fec0::1",  # IPv6 site-local
        "::ffff:127.0.0.1",  # IPv4-mapped IPv6
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:a00:1::",  # 6to4 of 10.0.0.1
        "224.0.0.1",
        "ff02::1",
        "240.0.0.1",  # reserved
        "0.0.0.0",
        "::",
    ],
)
def test_hosts_on_internal_addresses_are_refused_in_production(address: str) -> None:
    with pytest.raises(UrlRefused):
        resolve_target(
            "https://hooks.example.com/x", allow_loopback=False, resolve=resolving_to(address)
        )


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hooks",
        "https://[::1]:8443/hooks",
        "https://10.1.2.3/hooks",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fe80::1]/hooks",
        "https://[fd00::1]/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "https://[::ffff:a9fe:a9fe]/hooks",  # 169.254.169.254, mapped
        "https://0.0.0.0/hooks",
        "https://2130706433/hooks",  # 127.0.0.1 as one number: the resolver reads it so
    ],
)
def test_internal_ip_literals_are_refused_in_production(url: str) -> None:
    with pytest.raises(UrlRefused):
        resolve_target(url, allow_loopback=False)


def test_every_address_of_a_host_is_checked() -> None:
    with pytest.raises(UrlRefused, match=r"10\.0\.0\.7"):
        resolve_target(
            "https://hooks.example.com/",
            allow_loopback=False,
            resolve=resolving_to("93.184.216.34", "10.0.0.7"),
        )


def test_a_public_https_host_is_allowed_with_all_its_addresses() -> None:
    target = resolve_target(
        "https://Hooks.Example.com:8443/in?x=1",
        allow_loopback=False,
        resolve=resolving_to("93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"),
    )
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 8443)
    assert [str(ip) for ip in target.addresses] == [
        "93.184.216.34",
        "2606:4700::1111",
        "::ffff:808:808",
    ]


@pytest.mark.parametrize(
    ("url", "allow_loopback"),
    [
        ("http://hooks.example.com/", False),  # not https
        ("http://hooks.example.com/", True),  # http only for loopback, even locally
        ("ftp://hooks.example.com/", False),
        ("https://user:secret@hooks.example.com/", False),
        ("https:///nohost", False),
        ("https://hooks.example.com/" + "x" * 3000, False),
    ],
)
def test_urls_of_the_wrong_form_are_refused(url: str, allow_loopback: bool) -> None:
    with pytest.raises(UrlRefused):
        resolve_target(url, allow_loopback=allow_loopback, resolve=resolving_to("93.184.216.34"))


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hooks", "http://[::1]:8080/hooks", "http://localhost:8080/"]
)
def test_loopback_http_is_allowed_with_the_setting_only(url: str) -> None:
    target = resolve_target(url, allow_loopback=True)
    assert all(ip.is_loopback for ip in target.addresses)
    with pytest.raises(UrlRefused):
        resolve_target(url, allow_loopback=False)


@pytest.mark.parametrize("url", ["https://10.0.0.1/", "http://[fd00::1]/", "https://[fe80::1]/"])
def test_the_loopback_setting_allows_nothing_else_internal(url: str) -> None:
    with pytest.raises(UrlRefused):
        resolve_target(url, allow_loopback=True)


def test_a_host_that_does_not_resolve_is_a_failed_attempt_not_a_refusal() -> None:
    def unresolvable(host: str, port: int) -> Sequence[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(OSError) as raised:
        resolve_target("https://gone.example.com/", allow_loopback=False, resolve=unresolvable)
    assert not isinstance(raised.value, UrlRefused)


def test_the_connection_goes_to_the_checked_address_only(receiver: Receiver) -> None:
    """DNS rebinding: the host is resolved once, checked, and connected at that address."""
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])  # a second lookup would say somewhere else
    lookups: list[str] = []

    def rebinding(host: str, port: int) -> Sequence[IPAddress]:
        lookups.append(host)
        return [ipaddress.ip_address(a) for a in next(answers)]

    sender = HttpSender(timeout_seconds=2.0, allow_loopback=True, resolve=rebinding)
    url = f"http://rebind.invalid:{receiver.port}/hooks"  # .invalid never resolves for real

    assert sender(url, {"content-type": "application/json"}, b"{}") == 200
    assert lookups == ["rebind.invalid"]
    assert receiver.received[0].headers["host"] == f"rebind.invalid:{receiver.port}"


def test_a_connection_that_reaches_a_refused_address_is_dropped(receiver: Receiver) -> None:
    target = Target(
        "https", "hooks.example.com", receiver.port, (ipaddress.ip_address("127.0.0.1"),)
    )
    backend = webhooks._PinnedBackend(target, time.monotonic() + 2, allow_loopback=False)
    with pytest.raises(httpcore.ConnectError, match="refused address"):
        backend.connect_tcp("hooks.example.com", receiver.port)
    with pytest.raises(httpcore.ConnectError, match="not the checked target"):
        backend.connect_tcp("elsewhere.example.com", receiver.port)


def certificate_for(name: str, folder: Path) -> tuple[Path, Path, str]:
    """A CA and a server certificate for `name` signed by it: (cert file, key file, CA PEM)."""
    now = datetime.now(UTC)

    def build(
        subject: str, issuer: str, key: ec.EllipticCurvePrivateKey, signer: Any, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("test CA", "test CA", ca_key, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(name, "test CA", key, ca_key, False)
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file, ca_cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(("certified", "delivered"), [("hooks.test", True), ("other.test", False)])
def test_https_is_verified_for_the_url_host_while_pinned(
    tmp_path: Path, certified: str, delivered: bool
) -> None:
    """TLS names and verifies the URL's host, though the connection goes to the pinned address."""
    cert_file, key_file, ca_pem = certificate_for(certified, tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    server = Receiver(SECRET, tls=server_tls)
    server.thread.start()
    try:
        client_tls = ssl.create_default_context(cadata=ca_pem)
        sender = HttpSender(
            allow_loopback=True, resolve=resolving_to("127.0.0.1"), ssl_context=client_tls
        )
        url = f"https://hooks.test:{server.port}/hooks"
        if delivered:
            assert sender(url, {"content-type": "application/json"}, b"{}") == 200
            assert server.received[0].headers["host"] == f"hooks.test:{server.port}"
        else:
            with pytest.raises(httpcore.ConnectError, match="certificate"):
                sender(url, {"content-type": "application/json"}, b"{}")
            assert server.received == []
    finally:
        server.close()


# --- Disabling ------------------------------------------------------------------------------------


def test_an_endpoint_failing_for_more_than_a_day_is_disabled() -> None:
    store = MemoryStore(endpoint("https://hooks.example.com/"))
    sender = Answering(500)
    clock = Clock()
    event = ready_event()

    for number in range(1, MAX_ATTEMPTS):
        with pytest.raises(DeliveryFailed) as failed:
            attempt_delivery(store, sender, "hook-1", event, number, now=clock)
        assert failed.value.retryable
        assert not store.endpoints["hook-1"].disabled
        clock.advance(next_attempt_delay(number) or 0)

    assert clock.at - AT > DISABLE_AFTER
    outcome = attempt_delivery(store, sender, "hook-1", event, MAX_ATTEMPTS, now=clock)

    assert outcome == DeliveryOutcome.DISABLED
    hook = store.endpoints["hook-1"]
    assert hook.disabled
    assert hook.disabled_reason is not None and "more than a day" in hook.disabled_reason
    assert hook.disabled_at == clock.at
    assert hook.to_firestore()["disabledReason"] == hook.disabled_reason  # what the owner reads
    assert store.deliveries[("hook-1", event.id)].status == DeliveryStatus.FAILED
    # Nothing more goes to a disabled endpoint, this event or any other.
    other = job_event(EventType.FAILED, "job-2", JOB, clock.at)
    assert attempt_delivery(store, sender, "hook-1", other, 1, now=clock) == "skipped"
    assert sender.calls == MAX_ATTEMPTS
    assert store.endpoints_for("user-1", EventType.READY) == []


def test_a_success_between_failures_restarts_the_day() -> None:
    store = MemoryStore(endpoint("https://hooks.example.com/"))
    clock = Clock()
    with pytest.raises(DeliveryFailed):
        attempt_delivery(store, Answering(500), "hook-1", ready_event(), 1, now=clock)
    clock.advance(20 * 3600)
    viewed = job_event(EventType.VIEWED, "job-1", JOB, clock.at, subject="view-1")
    assert attempt_delivery(store, Answering(204), "hook-1", viewed, 1, now=clock) == "delivered"
    clock.advance(10 * 3600)  # 30 h after the first failure, 10 h after the success

    watched = job_event(EventType.WATCHED, "job-1", JOB, clock.at, subject="view-1")
    with pytest.raises(DeliveryFailed):
        attempt_delivery(store, Answering(500), "hook-1", watched, 1, now=clock)

    assert not store.endpoints["hook-1"].disabled
    assert store.endpoints["hook-1"].failing_since == clock.at


def test_a_url_that_now_resolves_inside_disables_the_endpoint_at_once() -> None:
    store = MemoryStore(endpoint("https://hooks.example.com/"))
    sender = HttpSender(allow_loopback=False, resolve=resolving_to("10.0.0.5"))

    outcome = attempt_delivery(store, sender, "hook-1", ready_event(), 1)

    assert outcome == DeliveryOutcome.DISABLED
    reason = store.endpoints["hook-1"].disabled_reason
    assert reason is not None and "10.0.0.5 is a private address" in reason
    [attempt] = store.deliveries[("hook-1", ready_event().id)].attempts
    assert attempt.error is not None and attempt.error.startswith("refused")


# --- Fanning out, never raising -------------------------------------------------------------------


class _Future:
    def __init__(self, result: object) -> None:
        self._result = result

    def result(self, raise_on_failure: bool = True) -> object:
        if isinstance(self._result, BaseException) and raise_on_failure:
            raise self._result
        return self._result


def test_an_event_is_enqueued_once_for_each_endpoint_that_wants_it() -> None:
    store = MemoryStore(
        endpoint("https://a.example.com/", "hook-a"),
        endpoint("https://b.example.com/", "hook-b"),
        endpoint("https://c.example.com/", "hook-c", events=["video.failed"]),
        endpoint("https://d.example.com/", "hook-d", userId="someone-else"),
        endpoint("https://e.example.com/", "hook-e", disabled=True),
    )
    assert enqueue_event(store, "user-1", ready_event(), AT) == ["hook-a", "hook-b"]
    # Announced again (a job's end written twice, a trigger delivered twice): nothing new.
    assert enqueue_event(store, "user-1", ready_event(), AT) == []
    assert [d.endpoint_id for d in store.due(AT, 10)] == ["hook-a", "hook-b"]
    assert all(d.attempt_number == 1 and d.event == ready_event() for d in store.due(AT, 10))

    class Broken(MemoryStore):
        def endpoints_for(self, user_id: str, event_type: EventType) -> list[Endpoint]:
            raise ConnectionError("firestore is down")

    assert enqueue_event(Broken(), "user-1", ready_event(), AT) == []  # logged, never raised


def test_deliver_due_attempts_each_due_delivery_and_counts_how_they_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore(
        endpoint("https://a.example.com/", "hook-a"),
        endpoint("https://b.example.com/", "hook-b"),
        endpoint("https://c.example.com/", "hook-c"),
    )
    enqueue_event(store, "user-1", ready_event(), AT)
    later = job_event(EventType.FAILED, "job-2", JOB, AT)
    enqueue_event(store, "user-1", later, AT + timedelta(minutes=5))  # not due yet
    results: dict[str, object] = {
        "hook-a": DeliveryOutcome.DELIVERED,
        "hook-b": DeliveryFailed("hook-b", Attempt(number=1, at=AT, duration_ms=5), retryable=True),
        "hook-c": DeliveryFailed(
            "hook-c", Attempt(number=8, at=AT, duration_ms=5), retryable=False
        ),
    }
    asked: list[tuple[str, str, int]] = []

    class Stub:
        @staticmethod
        def submit(
            store: object, send: object, endpoint_id: str, event: WebhookEvent, number: int
        ) -> _Future:
            asked.append((endpoint_id, event.id, number))
            return _Future(results[endpoint_id])

    monkeypatch.setattr(webhooks, "deliver_webhook", Stub)
    counts = deliver_due(store, Answering(200), AT + timedelta(seconds=1))
    assert counts == {"delivered": 1, "retrying": 1, "failed": 1}
    assert asked == [(hook, ready_event().id, 1) for hook in ("hook-a", "hook-b", "hook-c")]
    # The stub recorded nothing: all three wait out their claim, then are due again.
    assert store.next_due_at() == AT + timedelta(seconds=1) + CLAIM_LEASE


def test_a_due_delivery_is_claimed_by_one_deliverer_until_its_lease_ends() -> None:
    store = MemoryStore(endpoint("https://hooks.example.com/"))
    event = ready_event()
    store.enqueue("hook-1", event, AT)
    [due] = store.due(AT, 10)
    assert (due.event.id, due.attempt_number) == (event.id, 1)
    # A second deliverer at the same moment finds nothing to send.
    assert store.due(AT + timedelta(seconds=5), 10) == []
    # The first one died without recording: after the lease, it is due again, still attempt 1.
    [again] = store.due(AT + CLAIM_LEASE, 10)
    assert (again.event.id, again.attempt_number) == (event.id, 1)


def test_an_attempt_recorded_late_leaves_a_delivered_delivery_delivered() -> None:
    store = MemoryStore(endpoint("https://hooks.example.com/"))
    event = ready_event()
    store.enqueue("hook-1", event, AT)
    late = Attempt(number=1, at=AT, status_code=500, duration_ms=40)
    won = Attempt(number=2, at=AT + timedelta(seconds=4), status_code=200, duration_ms=30)
    store.record_attempt("hook-1", event, won, DeliveryStatus.DELIVERED, None)
    store.mark_delivered("hook-1", event.id, won.at)
    store.record_attempt("hook-1", event, late, DeliveryStatus.RETRYING, AT + timedelta(seconds=5))
    delivery = store.deliveries[("hook-1", event.id)]
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.next_attempt_at is None
    assert [a.status_code for a in delivery.attempts] == [200, 500]
    assert store.due(AT + timedelta(days=2), 10) == []
