"""Cloud Functions for Firebase: start and steer the greeting pipeline from job document writes.

Handlers are thin: guard clauses, then the plain functions of jobs.py.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import firebase_admin
import jobs
from firebase_admin import firestore as admin_firestore
from firebase_functions import firestore_fn, params
from firebase_functions.core import Change
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1 import DocumentSnapshot
from prefect_api import PrefectApi, PrefectUnavailable

PREFECT_API_URL = params.StringParam(
    "PREFECT_API_URL", description="Prefect API, e.g. https://api.prefect.cloud/api/accounts/…"
)
PREFECT_API_KEY = params.SecretParam("PREFECT_API_KEY")
GREETING_DEPLOYMENT = params.StringParam(
    "GREETING_DEPLOYMENT", default="greeting-pipeline/greeting-pipeline"
)
MAX_RETRIES = params.IntParam("GREETINGS_MAX_RETRIES", default=3)


class _EmulatorCredential(firebase_admin.credentials.Base):  # type: ignore[misc]
    """Inside the Functions emulator there are no Google default credentials to find."""

    def get_credential(self) -> AnonymousCredentials:
        return AnonymousCredentials()  # type: ignore[no-untyped-call]


@cache
def _db() -> firestore.Client:
    # An app of our own: firestore_fn initialises the default app with default credentials,
    # which the emulator cannot provide.
    emulated = os.environ.get("FUNCTIONS_EMULATOR") == "true"
    app = firebase_admin.initialize_app(
        _EmulatorCredential() if emulated else None, name="greetings-trigger"
    )
    client: firestore.Client = admin_firestore.client(app)
    return client


@cache
def _prefect() -> PrefectApi:
    return PrefectApi(PREFECT_API_URL.value, PREFECT_API_KEY.value or "")


@firestore_fn.on_document_created(document="greetingJobs/{jobId}", secrets=[PREFECT_API_KEY])
def on_job_created(event: firestore_fn.Event[DocumentSnapshot[Any] | None]) -> None:
    """A new job: create its flow run (once, however often the event is delivered)."""
    if event.data is None:
        return
    data: dict[str, Any] = event.data.to_dict() or {}
    if data.get("status") != jobs.PENDING:
        return
    jobs.start_attempt(
        _db(),
        _prefect(),
        PrefectUnavailable,
        GREETING_DEPLOYMENT.value,
        event.params["jobId"],
        int(data.get("retryCount") or 0),
    )


@firestore_fn.on_document_updated(document="greetingJobs/{jobId}", secrets=[PREFECT_API_KEY])
def on_job_updated(
    event: firestore_fn.Event[Change[DocumentSnapshot[Any] | None]],
) -> None:
    """A user's cancel or retry request (the only updates firestore.rules lets a user make)."""
    if event.data.before is None or event.data.after is None:
        return
    before = event.data.before.to_dict() or {}
    after = event.data.after.to_dict() or {}
    status = after.get("status")
    if status == before.get("status"):
        return
    job_id = event.params["jobId"]
    if status == jobs.CANCEL_REQUESTED:
        jobs.cancel(_db(), _prefect(), job_id)
    elif status == jobs.RETRY_REQUESTED:
        attempt = jobs.begin_retry(_db(), job_id, MAX_RETRIES.value)
        if attempt is not None:
            jobs.start_attempt(
                _db(), _prefect(), PrefectUnavailable, GREETING_DEPLOYMENT.value, job_id, attempt
            )
