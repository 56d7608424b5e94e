"""The `deliver-webhooks` flow: every webhook delivery whose time has come, one attempt each.

A job that ends (completed or failed) is announced by `announce_job`, called where its status is
written (flows/transitions.py): the event is enqueued for each of the owner's endpoints that
want it (flows/webhooks.py), and a delivery run is started if none is about to. The pipeline
does no more than that: it never waits on a receiver.

Runs are keyed by a 10-second window (`delivery_run_key`): every announcement in a window asks
for the same run, which Prefect's idempotency key makes one. A run delivers what is due, then
keeps looking for `IDLE_SECONDS`, longer than a window, so an announcement made late in its
window is not left behind. Before it ends it schedules the run for the next retry that waits,
under that moment's window key. prefect.yaml also schedules the flow every 5 minutes: a
backstop for a worker that died between an enqueue and its run.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import firestore
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.states import Scheduled

from flows.clients import worker_clients
from flows.job import JobStatus
from flows.webhook_queue import DELIVERY_DEPLOYMENT, WINDOW_SECONDS, delivery_run_key
from flows.webhooks import (
    EventType,
    FirestoreWebhookStore,
    HttpSender,
    WebhookStore,
    deliver_due,
    enqueue_event,
    job_event,
)

log = logging.getLogger(__name__)

# Longer than a window plus a run's start: what was enqueued in this run's window is seen.
IDLE_SECONDS = 15.0
POLL_SECONDS = 1.0
# One run never lasts much longer than this: a steady stream of events is taken over by the
# run of a later window.
MAX_RUN_SECONDS = 120.0
BATCH_LIMIT = 100

# Which event a job's end is: only these two are news to a webhook.
ENDS = {JobStatus.COMPLETED.value: EventType.READY, JobStatus.FAILED.value: EventType.FAILED}


def start_delivery_run(at: datetime) -> str | None:
    """Creates (or finds) the delivery run of `at`'s window, to start at `at`; its id, or None
    when Prefect could not be asked (the 5-minute schedule delivers then)."""
    try:
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(DELIVERY_DEPLOYMENT)
            run = client.create_flow_run_from_deployment(
                deployment.id,
                state=Scheduled(scheduled_time=at),
                idempotency_key=delivery_run_key(at),
            )
            return str(run.id)
    except Exception:
        log.exception("could not start a webhook delivery run for %s", at.isoformat())
        return None


def announce_job(db: firestore.Client, job_id: str, job: dict[str, Any]) -> list[str]:
    """Enqueues the webhook event of a job that just ended (`video.ready` or `video.failed`) for
    its owner's endpoints, and starts their delivery; the endpoints it was enqueued for.

    Never raises: a video is not held up, let alone failed, by its announcement.
    """
    try:
        event_type = ENDS.get(str(job.get("status")))
        user_id = job.get("userId")
        if event_type is None or not isinstance(user_id, str):
            return []
        now = datetime.now(UTC)
        event = job_event(event_type, job_id, job, now)
        enqueued = enqueue_event(FirestoreWebhookStore(db), user_id, event, now)
    except Exception:
        log.exception("job %s: its webhook event was not announced", job_id)
        return []
    if enqueued:
        start_delivery_run(now)
    return enqueued


def drain(
    store: WebhookStore,
    deliver: Any,
    *,
    clock: Any = time.monotonic,
    sleep: Any = time.sleep,
    now: Any = lambda: datetime.now(UTC),
) -> dict[str, int]:
    """Delivers what is due until nothing has been for IDLE_SECONDS (or MAX_RUN_SECONDS have
    passed); counts of how the attempts ended. `deliver(now)` makes one pass."""
    started = last_work = clock()
    counts: dict[str, int] = {}
    while clock() - last_work < IDLE_SECONDS and clock() - started < MAX_RUN_SECONDS:
        done = deliver(now())
        for outcome, count in done.items():
            counts[outcome] = counts.get(outcome, 0) + count
        if done:
            last_work = clock()
        else:
            sleep(POLL_SECONDS)
    return counts


@flow(name="deliver-webhooks", log_prints=True, persist_result=False)
def deliver_webhooks() -> dict[str, int]:
    """Makes every due webhook attempt; schedules the run of the next retry that waits."""
    logger = get_run_logger()
    clients = worker_clients()
    settings = clients.settings
    store = FirestoreWebhookStore(clients.db)
    send = HttpSender(
        timeout_seconds=settings.webhook_timeout_seconds,
        allow_loopback=settings.webhooks_allow_loopback,
    )
    counts = drain(store, lambda at: deliver_due(store, send, at, BATCH_LIMIT))
    following = store.next_due_at()
    if following is not None:
        # Not before this run's window is over: its own key would name this very run.
        start_delivery_run(max(following, datetime.now(UTC) + timedelta(seconds=WINDOW_SECONDS)))
    logger.info(
        "webhook attempts: %s; next retry due %s",
        counts or "none due",
        following.isoformat() if following else "never",
    )
    return counts
