"""Webhooks against the running stack: registered through the callable, announced by the
worker when a job ends, delivered by the `deliver-webhooks` flow on the Prefect worker to local
receivers that verify every signature with `standardwebhooks`.

Nothing is faked: the Functions emulator runs `create_webhook`, the rules guard the documents,
the Prefect worker runs the delivery runs that the jobs' ends start.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from flows.deliveries import announce_job
from flows.webhooks import (
    CLAIM_LEASE,
    DELIVERIES,
    WEBHOOK_SECRETS,
    WEBHOOKS,
    Attempt,
    DeliveryStatus,
    EventType,
    FirestoreWebhookStore,
    job_event,
)
from greetings.client.enduser import Denied
from tests.conftest import User, wait_for
from tests.support.stackkit import as_user, read_job, submit, upload, wait_finished

pytestmark = pytest.mark.stack

HANG_S = 180.0  # far past the sender's 5 s timeout


@dataclass
class Got:
    path: str
    event_id: str
    payload: dict[str, Any] | None  # None: the signature did not verify


@dataclass
class Receivers:
    """One local HTTP server, three endpoints: /ok answers 200, /flaky 500 to the first try of
    each event and 200 after, /hang holds every request for HANG_S."""

    secrets: dict[str, str] = field(default_factory=dict)  # path -> the endpoint's secret
    got: list[Got] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def of(self, path: str) -> list[Got]:
        return [g for g in self.got if g.path == path]


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    state = Receivers()
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            payload = None  # stays None when the signature does not verify
            with contextlib.suppress(KeyError, WebhookVerificationError):
                payload = Webhook(state.secrets[self.path]).verify(body, headers)
            event_id = headers.get("webhook-id", "")
            earlier = [g for g in state.of(self.path) if g.event_id == event_id]
            state.got.append(Got(self.path, event_id, payload))
            if self.path == "/hang":
                release.wait(HANG_S)
                return
            status = 500 if self.path == "/flaky" and not earlier else 200
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def create_webhook(stack: Any, user: User | None, data: dict[str, Any]) -> requests.Response:
    s = stack.s
    headers = {"Authorization": f"Bearer {user.id_token}"} if user else {}
    return requests.post(
        f"http://{s.host}:{s.functions_port}/{s.project_id}/us-central1/create_webhook",
        json={"data": data},
        headers=headers,
        timeout=60,
    )


def test_a_jobs_end_reaches_every_endpoint_signed_once_and_a_hanging_one_slows_nothing(
    stack: Any,
    clients: Any,
    make_user: Callable[[], User],
    sample_video: Path,
    tmp_path: Path,
    receivers: Receivers,
) -> None:
    user, other = make_user(), make_user()

    # Registration: refused in words where it can never work, else the secret, shown once.
    refused = create_webhook(stack, user, {"url": "https://10.0.0.1/in"})
    assert refused.status_code == 400 and "internal address" in refused.text
    assert create_webhook(stack, None, {"url": receivers.url("/ok")}).status_code == 401
    endpoints: dict[str, str] = {}
    for path in ("/ok", "/flaky", "/hang"):
        answer = create_webhook(stack, user, {"url": receivers.url(path)})
        assert answer.status_code == 200, answer.text
        result = answer.json()["result"]
        assert result["secret"].startswith("whsec_")
        assert result["events"] == ["video.ready", "video.failed", "video.viewed", "video.watched"]
        receivers.secrets[path] = result["secret"]
        endpoints[path] = result["id"]

    # The owner reads an endpoint but never its secret; another user reads neither.
    mine = as_user(stack, user)
    assert mine.get(WEBHOOKS, endpoints["/ok"])["url"] == receivers.url("/ok")
    assert "secret" not in mine.get(WEBHOOKS, endpoints["/ok"])
    for who, collection in ((user, WEBHOOK_SECRETS), (other, WEBHOOKS)):
        with pytest.raises(Denied):
            as_user(stack, who).get(collection, endpoints["/ok"])

    # Two jobs end: one completes, one fails on a text file named .mp4.
    started = time.monotonic()
    done_id = submit(stack, user, upload(clients, user, sample_video), prospect_name="Ada Lovelace")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    failed_id = submit(stack, user, upload(clients, user, text))
    done, failed = wait_finished(clients, done_id, 120), wait_finished(clients, failed_id, 120)
    took = time.monotonic() - started
    assert (done["status"], failed["status"]) == ("completed", "failed")
    print(f"\nboth jobs finished {took:.1f} s after creation, a receiver hanging {HANG_S:.0f} s")

    expected = {"video.ready": done_id, "video.failed": failed_id}

    def delivered(path: str) -> dict[str, Got]:
        return {g.payload["type"]: g for g in receivers.of(path) if g.payload}

    # /ok hears each once, at once; /flaky on its second attempt (5 s after the first 500).
    wait_for(lambda: delivered("/ok"), lambda d: len(d) == 2, 60)
    first = time.monotonic() - started
    wait_for(lambda: [g for g in receivers.of("/flaky") if g.payload], lambda g: len(g) == 4, 90)
    print(f"delivered to /ok {first:.1f} s and to /flaky {time.monotonic() - started:.1f} s in")
    for path in ("/ok", "/flaky"):
        assert all(g.payload is not None for g in receivers.of(path)), "a signature failed"
        heard = delivered(path)
        assert {kind: g.payload["data"]["jobId"] for kind, g in heard.items()} == expected
    ready = delivered("/ok")["video.ready"].payload
    assert ready["data"]["name"] == "Ada Lovelace"
    assert set(ready["data"]["links"]) == {"video", "poster", "gif"}
    assert delivered("/ok")["video.failed"].payload["data"]["error"]["code"] == "input-not-video"

    # Announced again (a second delivery of the same end): nothing new is enqueued, and no
    # endpoint hears it twice.
    assert announce_job(clients.db, done_id, read_job(clients, done_id)) == []
    assert len(receivers.of("/ok")) == 2
    assert len(receivers.of("/flaky")) == 4  # 500 then 200, for each of the two events

    # Every attempt is on the delivery, for the owner to read, and for no one else.
    ready_id = delivered("/flaky")["video.ready"].event_id
    # The receiver's 200 is heard before the sender writes it down: wait for the write.
    flaky = wait_for(
        lambda: mine.get(f"{WEBHOOKS}/{endpoints['/flaky']}/{DELIVERIES}", ready_id),
        lambda d: d.get("status") == "delivered",
        30,
    )
    assert [a["statusCode"] for a in flaky["attempts"]] == [500, 200]
    with pytest.raises(Denied):
        as_user(stack, other).get(f"{WEBHOOKS}/{endpoints['/flaky']}/{DELIVERIES}", ready_id)
    hang = wait_for(
        lambda: mine.get(f"{WEBHOOKS}/{endpoints['/hang']}/{DELIVERIES}", ready_id),
        lambda d: bool(d.get("attempts")),
        60,
    )
    assert hang["status"] == "retrying" and "timed out" in hang["attempts"][0]["error"]
    # The pipeline only enqueues: the job was completed before the hanging receiver's attempt
    # gave up (a pipeline that waited for its webhooks would complete after it).
    first_try = hang["attempts"][0]  # as the owner reads it: the time is RFC 3339 text
    tried_at = datetime.fromisoformat(first_try["at"].replace("Z", "+00:00"))
    gave_up = tried_at + timedelta(milliseconds=first_try["durationMs"])
    completed_at = next(e["at"] for e in done["history"] if e["status"] == "completed")
    assert completed_at < gave_up, (completed_at, first_try)

    # A viewer of the share page: each view and watch mark reaches the endpoints, signed.
    s = stack.s
    events_url = f"http://{s.host}:{s.functions_port}/{s.project_id}/us-central1/share_event"
    share_id = read_job(clients, done_id)["shareId"]
    for report in ({"type": "viewed"}, {"type": "played"}, {"type": "watched", "percent": 50}):
        body = {"s": share_id, "client": "viewer-0001", **report}
        assert requests.post(events_url, json=body, timeout=30).status_code == 204
    views = wait_for(
        lambda: [
            g.payload for g in receivers.of("/ok") if g.payload and "view" in g.payload["data"]
        ],
        lambda got: len(got) == 2,
        60,
    )
    assert sorted(v["type"] for v in views) == ["video.viewed", "video.watched"]
    watched = next(v for v in views if v["type"] == "video.watched")
    assert watched["data"]["jobId"] == done_id and watched["data"]["view"]["percent"] == 50
    assert watched["data"]["links"]["share"] == read_job(clients, done_id)["shareUrl"]


def test_a_disabled_endpoint_is_enabled_by_its_owner_and_deleting_it_takes_everything(
    stack: Any, clients: Any, make_user: Callable[[], User], receivers: Receivers
) -> None:
    owner, other = make_user(), make_user()
    answer = create_webhook(stack, owner, {"url": receivers.url("/ok")})
    assert answer.status_code == 200, answer.text
    endpoint_id = answer.json()["result"]["id"]
    endpoint = clients.db.collection(WEBHOOKS).document(endpoint_id)
    # As the worker leaves an endpoint that failed for a day, with a delivery it gave up.
    endpoint.update(
        {
            "disabled": True,
            "disabledReason": "Every delivery failed for a day (HTTP 500).",
            "disabledAt": time.time(),
            "failingSince": time.time() - 90_000,
        }
    )
    endpoint.collection(DELIVERIES).document("evt_1").set({"status": "failed", "attempts": []})

    enable = {"disabled": False}
    cleared = ("disabledReason", "disabledAt", "failingSince")
    mine, theirs = as_user(stack, owner), as_user(stack, other)
    refusals = [
        lambda: theirs.update_with_deletes(WEBHOOKS, endpoint_id, enable, cleared),
        # Only enabling, and only with the failure record gone: nothing else is the owner's.
        lambda: mine.update_with_deletes(WEBHOOKS, endpoint_id, enable, ("disabledReason",)),
        lambda: mine.update_with_deletes(
            WEBHOOKS, endpoint_id, {**enable, "url": receivers.url("/hang")}, cleared
        ),
        lambda: mine.update_with_deletes(WEBHOOKS, endpoint_id, {"disabled": True}, cleared),
        lambda: mine.update(WEBHOOKS, endpoint_id, {"userId": other.uid}),
    ]
    for refused in refusals:
        with pytest.raises(Denied) as denied:
            refused()
        assert denied.value.status == 403
    mine.update_with_deletes(WEBHOOKS, endpoint_id, enable, cleared)
    enabled = mine.get(WEBHOOKS, endpoint_id)
    assert enabled["disabled"] is False
    assert not set(cleared) & set(enabled)

    with pytest.raises(Denied):
        theirs.delete(WEBHOOKS, endpoint_id)
    mine.delete(WEBHOOKS, endpoint_id)
    secret = clients.db.collection(WEBHOOK_SECRETS).document(endpoint_id)
    wait_for(
        lambda: (secret.get().exists, len(list(endpoint.collection(DELIVERIES).stream()))),
        lambda left: left == (False, 0),
        30,
    )


def test_two_deliverers_claim_a_delivery_once_and_a_late_record_keeps_it_delivered(
    stack: Any, clients: Any
) -> None:
    """Against the Firestore emulator: the store's claim is a transaction two deliverers race for,
    and an attempt recorded after the delivery succeeded is kept as history only."""
    store = FirestoreWebhookStore(clients.db)
    endpoint_id = f"claims-{uuid.uuid4().hex[:12]}"
    # Due a day from now, so that the stack's own deliverer leaves it to this test.
    due_at = datetime.now(UTC) + timedelta(days=1)
    event = job_event(EventType.READY, f"job-{endpoint_id}", {"userId": "u1"}, due_at)
    assert store.enqueue(endpoint_id, event, due_at)
    ref = clients.db.collection(WEBHOOKS).document(endpoint_id).collection(DELIVERIES)
    ref = ref.document(event.id)
    try:
        now = due_at + timedelta(seconds=1)
        start = threading.Barrier(4)

        def claim(_: int) -> bool:
            start.wait()
            return store._claim(ref, now) is not None

        with ThreadPoolExecutor(4) as pool:
            won = list(pool.map(claim, range(4)))
        assert won.count(True) == 1, won
        assert ref.get().to_dict()["nextAttemptAt"] == now + CLAIM_LEASE

        ok = Attempt(number=1, at=now, status_code=200, duration_ms=30)
        store.record_attempt(endpoint_id, event, ok, DeliveryStatus.DELIVERED, None)
        store.mark_delivered(endpoint_id, event.id, now)
        late = Attempt(number=1, at=now - timedelta(seconds=4), status_code=500, duration_ms=40)
        store.record_attempt(
            endpoint_id, event, late, DeliveryStatus.RETRYING, now + timedelta(seconds=5)
        )
        delivery = ref.get().to_dict()
        assert delivery["status"] == "delivered"
        assert "nextAttemptAt" not in delivery
        assert [a["statusCode"] for a in delivery["attempts"]] == [200, 500]
        assert store._claim(ref, now + timedelta(days=2)) is None
    finally:
        ref.delete()
