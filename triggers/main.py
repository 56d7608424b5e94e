"""Cloud Functions for Firebase: start and steer the greeting pipeline from job document writes.

Handlers are thin: guard clauses, then the plain functions of jobs.py.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from functools import cache
from typing import Any

import firebase_admin
import fit_checks
import jobs
import shares
import uploads
import webhook_queue
import webhooks
from firebase_admin import firestore as admin_firestore
from firebase_functions import firestore_fn, https_fn, options, params
from flask import Request, Response
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore, storage
from google.cloud.firestore_v1 import DocumentSnapshot
from google.oauth2 import service_account
from prefect_api import PrefectApi, PrefectUnavailable
from service_token import service_token

PREFECT_API_URL = params.StringParam(
    "PREFECT_API_URL", description="Prefect API, e.g. https://api.prefect.cloud/api/accounts/…"
)
PREFECT_API_KEY = params.SecretParam("PREFECT_API_KEY")
GREETING_DEPLOYMENT = params.StringParam(
    "GREETING_DEPLOYMENT", default="greeting-pipeline/greeting-pipeline"
)
BATCH_DEPLOYMENT = params.StringParam("BATCH_DEPLOYMENT", default="greeting-batch/greeting-batch")
FIT_CHECK_DEPLOYMENT = params.StringParam("FIT_CHECK_DEPLOYMENT", default="fit-check/fit-check")
MAX_RETRIES = params.IntParam("GREETINGS_MAX_RETRIES", default=3)
# New jobs (a batch's count, retries too) one user may start a minute; quota.py says how.
JOBS_PER_MINUTE = params.IntParam(
    "GREETINGS_JOBS_PER_MINUTE",
    default=120,
    description="new jobs one user may start a minute (a batch of up to 400 fits an unused one)",
)
STORAGE_BUCKET = params.StringParam(
    "STORAGE_BUCKET", default="", description="empty: the project's default bucket"
)
# Production signs upload URLs through IAM as the function's service account; the local stack
# gives a key file of its own instead, and the address of its Storage proxy.
UPLOAD_SIGNER_KEY_FILE = params.StringParam("UPLOAD_SIGNER_KEY_FILE", default="")
UPLOAD_URL_BASE = params.StringParam("UPLOAD_URL_BASE", default="https://storage.googleapis.com")


class _EmulatorCredential(firebase_admin.credentials.Base):  # type: ignore[misc]
    """Inside the Functions emulator there are no Google default credentials to find."""

    def get_credential(self) -> AnonymousCredentials:
        return AnonymousCredentials()  # type: ignore[no-untyped-call]


@cache
def _app() -> firebase_admin.App:
    """The default app, made before the SDK would make it with Google default credentials.

    firestore_fn and on_call's token check both use the default app; inside the Functions
    emulator there are no default credentials to find (and the emulator's tokens need none).
    """
    emulated = os.environ.get("FUNCTIONS_EMULATOR") == "true"
    return firebase_admin.initialize_app(_EmulatorCredential() if emulated else None)


@cache
def _db() -> firestore.Client:
    client: firestore.Client = admin_firestore.client(_app())
    return client


@cache
def _bucket() -> storage.Bucket:
    project = os.environ.get("GCLOUD_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT") or ""
    if os.environ.get("FUNCTIONS_EMULATOR") == "true":
        client = storage.Client(project=project, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    else:
        client = storage.Client(project=project)
    # The runtime's FIREBASE_CONFIG names the default bucket: `<project>.firebasestorage.app` for
    # projects created since 2024-10-30, `<project>.appspot.com` before.
    default = _app().options.get("storageBucket") or f"{project}.appspot.com"
    return client.bucket(STORAGE_BUCKET.value or default)


def _signing() -> dict[str, Any]:
    """generate_signed_url's credential arguments: a local key file, or IAM signBlob."""
    endpoint = {"api_access_endpoint": UPLOAD_URL_BASE.value}
    if UPLOAD_SIGNER_KEY_FILE.value:
        key = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            UPLOAD_SIGNER_KEY_FILE.value
        )
        return {**endpoint, "credentials": key}
    account, token = service_token()
    return {**endpoint, "service_account_email": account, "access_token": token}


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
    if data.get("batchId"):
        return  # its greetingBatches document starts it (or, without one, the sweep)
    jobs.start_job(
        _db(),
        _prefect(),
        PrefectUnavailable,
        GREETING_DEPLOYMENT.value,
        event.params["jobId"],
        int(data.get("retryCount") or 0),
        JOBS_PER_MINUTE.value,
    )


@firestore_fn.on_document_created(document="greetingBatches/{batchId}", secrets=[PREFECT_API_KEY])
def on_batch_created(event: firestore_fn.Event[DocumentSnapshot[Any] | None]) -> None:
    """A batch of jobs on one video: one flow run for all of them (once per batch)."""
    if event.data is None:
        return
    jobs.start_batch(
        _db(),
        _prefect(),
        PrefectUnavailable,
        BATCH_DEPLOYMENT.value,
        event.params["batchId"],
        event.data.to_dict() or {},
        JOBS_PER_MINUTE.value,
    )


@firestore_fn.on_document_created(document="fitChecks/{checkId}", secrets=[PREFECT_API_KEY])
def on_fit_check_created(event: firestore_fn.Event[DocumentSnapshot[Any] | None]) -> None:
    """Before a batch: which names fit the video's greeting slot (flows/fit_check.py answers)."""
    if event.data is None:
        return
    fit_checks.start_fit_check(
        _db(),
        _prefect(),
        PrefectUnavailable,
        FIT_CHECK_DEPLOYMENT.value,
        event.params["checkId"],
        JOBS_PER_MINUTE.value,
    )


@firestore_fn.on_document_created(
    document="greetingJobs/{jobId}/requests/{requestId}", secrets=[PREFECT_API_KEY]
)
def on_request_created(event: firestore_fn.Event[DocumentSnapshot[Any] | None]) -> None:
    """A user's cancel, retry (or edit and retry) or revoke-share request (firestore.rules
    checked who, when and what)."""
    if event.data is None:
        return
    data: dict[str, Any] = event.data.to_dict() or {}
    if "outcome" in data:  # a duplicate delivery of a request already handled
        return
    job_id, request_id = event.params["jobId"], event.params["requestId"]
    if data.get("action") == jobs.CANCEL:
        done = jobs.cancel(_db(), _prefect(), job_id)
        outcome, message = (
            ("cancelled", "The job was cancelled.")
            if done
            else ("refused", "The job had already finished.")
        )
    elif data.get("action") == jobs.REVOKE_SHARE:
        outcome, message = shares.revoke(_db(), job_id)
    elif data.get("action") == jobs.RETRY:
        outcome, message = jobs.retry(
            _db(),
            _prefect(),
            PrefectUnavailable,
            GREETING_DEPLOYMENT.value,
            job_id,
            str(data.get("userId")),
            MAX_RETRIES.value,
            JOBS_PER_MINUTE.value,
            data.get("changes"),
        )
    else:
        outcome, message = "refused", "Unknown action."
    jobs.mark_request_handled(_db(), job_id, request_id, outcome, message)


@firestore_fn.on_document_deleted(document="webhooks/{endpointId}")
def on_webhook_deleted(event: firestore_fn.Event[DocumentSnapshot[Any] | None]) -> None:
    """An endpoint its owner deleted (firestore.rules) takes its secret and deliveries along."""
    webhooks.forget_endpoint(_db(), event.params["endpointId"])


@firestore_fn.on_document_deleted(document="greetingJobs/{jobId}")
def on_job_deleted(event: firestore_fn.Event[DocumentSnapshot[Any] | None]) -> None:
    """A deleted job (firestore.rules: its owner, once finished) takes its objects with it."""
    if event.data is None:
        return
    jobs.forget_job(_db(), _bucket(), event.params["jobId"], event.data.to_dict() or {})


_app()  # at import: before on_call's token check or firestore_fn reach for the default app


@https_fn.on_call()
def create_upload_url(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    """A signed PUT URL for the signed-in user's video (the web page's one upload path)."""
    if req.auth is None:
        raise https_fn.HttpsError(https_fn.FunctionsErrorCode.UNAUTHENTICATED, "sign in first")
    try:
        request = uploads.parse_request(req.data)
    except uploads.UploadRefused as exc:
        raise https_fn.HttpsError(https_fn.FunctionsErrorCode.INVALID_ARGUMENT, str(exc)) from exc
    blob = _bucket().blob(uploads.object_path(req.auth.uid, request))
    answer: dict[str, Any] = uploads.upload_answer(blob, request, _signing())
    return answer


@https_fn.on_call()
def create_webhook(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    """Registers a webhook endpoint of the signed-in user; its secret is in the answer only."""
    if req.auth is None:
        raise https_fn.HttpsError(https_fn.FunctionsErrorCode.UNAUTHENTICATED, "sign in first")
    # In the emulator only, a receiver on this machine (http://127.0.0.1) may be registered.
    local = os.environ.get("FUNCTIONS_EMULATOR") == "true"
    try:
        registration = webhooks.parse_registration(req.data, allow_loopback=local)
        answer: dict[str, Any] = webhooks.create_endpoint(_db(), req.auth.uid, registration)
        return answer
    except webhooks.WebhookRefused as exc:
        raise https_fn.HttpsError(https_fn.FunctionsErrorCode.INVALID_ARGUMENT, str(exc)) from exc


# The share page is served to anyone with its link, from the Hosting origin; these two answer it.
_SHARE_CORS = options.CorsOptions(cors_origins="*", cors_methods=["get", "post"])


def _answer(status: int, body: Any) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


@https_fn.on_request(cors=_SHARE_CORS)
def share(req: Request) -> Response:
    """A share page's content (JSON), or a short-lived link to its video, poster or GIF."""
    share_id, media = req.args.get("s"), req.args.get("media")
    try:
        if media is None:
            return _answer(200, shares.describe(_db(), share_id))
        link = shares.media_link(_db(), _bucket(), _signing(), share_id, media)
    except shares.ShareError as exc:
        return _answer(exc.status, {"error": str(exc)})
    return Response(status=302, headers={"Location": link, "Cache-Control": "no-store"})


def _start_delivery_run(at: datetime) -> None:
    """Asks Prefect for the delivery run of `at`'s window (flows/deliveries.py); if Prefect
    cannot be reached, the flow's 5-minute schedule delivers instead."""
    try:
        _prefect().create_flow_run(
            webhook_queue.DELIVERY_DEPLOYMENT,
            {},
            webhook_queue.delivery_run_key(at),
            webhook_queue.delivery_run_key(at),
        )
    except PrefectUnavailable as exc:
        logging.getLogger("greetings.trigger").warning("no delivery run started: %s", exc)


@https_fn.on_request(cors=_SHARE_CORS, secrets=[PREFECT_API_KEY])
def share_event(req: Request) -> Response:
    """A share page's viewer viewed, played or watched part of the video."""
    if req.method != "POST":
        return _answer(405, {"error": "POST an event"})
    # Behind Google's front end the first forwarded address is the client's.
    address = (req.headers.get("X-Forwarded-For") or req.remote_addr or "").split(",")[0].strip()
    try:
        event = shares.parse_event(req.get_json(silent=True))
        recorded = shares.record_event(_db(), event, address)
    except shares.ShareError as exc:
        return _answer(exc.status, {"error": str(exc)})
    # The owner's webhooks hear of it (video.viewed, video.watched); never the viewer's problem.
    try:
        now = datetime.now(UTC)
        shares.announce_view(_db(), _start_delivery_run, recorded, event.share_id, event, now)
    except Exception:
        logging.getLogger("greetings.trigger").exception("a view's webhook was not enqueued")
    return Response(status=204)
