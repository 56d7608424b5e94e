"""Cloud Storage, one of the pipeline's edges (as media.py is ffmpeg's): fetch an upload, store a
result, sign its URL. The stages call these; nothing here knows about jobs' statuses.

Failures to reach Storage become retryable `storage-unavailable` errors; a missing upload is the
user's `input-not-found`. An object appears in Cloud Storage only once its upload completes, so a
failed upload never leaves a half-written result behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import google.auth
import google.auth.transport.requests
import requests
from google.api_core import exceptions as gexc
from google.cloud import storage

from flows.job import ErrorCode, JobError

SIGNED_URL_LIFETIME = timedelta(days=7)
TRANSIENT = (
    gexc.ServerError,
    gexc.TooManyRequests,
    gexc.RequestRangeNotSatisfiable,
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
)
TIMEOUT_S = 60.0


def _unavailable(action: str, exc: BaseException) -> JobError:
    return JobError(ErrorCode.STORAGE_UNAVAILABLE, f"Cloud Storage failed to {action}: {exc}")


def download_input(
    bucket: storage.Bucket, path: str, dest: Path, check_size: Callable[[int], None]
) -> Path:
    """Downloads the user's upload after `check_size` accepted its size from the metadata."""
    try:
        blob = bucket.get_blob(path, timeout=TIMEOUT_S)
        if blob is None:
            raise JobError(
                ErrorCode.INPUT_NOT_FOUND,
                f"No uploaded file at {path}: upload the video again, then create the job.",
            )
        check_size(int(blob.size or 0))
        blob.download_to_filename(str(dest), timeout=TIMEOUT_S)
    except TRANSIENT as exc:
        dest.unlink(missing_ok=True)
        raise _unavailable("read the uploaded video", exc) from exc
    return dest


def upload_result(bucket: storage.Bucket, source: Path, path: str) -> storage.Blob:
    """Stores the rendered video at its final path (the same path on every attempt)."""
    blob = bucket.blob(path)
    blob.cache_control = "private, max-age=3600"
    try:
        blob.upload_from_filename(str(source), content_type="video/mp4", timeout=TIMEOUT_S)
    except TRANSIENT as exc:
        raise _unavailable("store the result", exc) from exc
    return blob


def delete_result(bucket: storage.Bucket, path: str) -> None:
    """Removes a result a cancelled or superseded run stored; nothing there is fine."""
    with contextlib.suppress(gexc.NotFound):
        bucket.blob(path).delete(timeout=TIMEOUT_S)


def download_url(blob: storage.Blob, public_url: str = "") -> str:
    """A URL the owner can fetch the result from.

    Against the Storage emulator that is its plain media URL, at `public_url` when given (the
    stack's proxy, which answers browsers' CORS). In production a V4 signed URL; on Cloud Run or
    GKE the worker has no private key, so the URL is signed through IAM with the service
    account's access token.
    """
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        base = (public_url or emulator).rstrip("/")
        object_path = quote(blob.name, safe="")
        return f"{base}/download/storage/v1/b/{blob.bucket.name}/o/{object_path}?alt=media"
    credentials, _ = google.auth.default()
    credentials.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
    url: str = blob.generate_signed_url(
        version="v4",
        expiration=SIGNED_URL_LIFETIME,
        method="GET",
        service_account_email=getattr(credentials, "service_account_email", None),
        access_token=getattr(credentials, "token", None),
    )
    return url
