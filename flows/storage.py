"""Cloud Storage, one of the pipeline's edges (as media.py is ffmpeg's): fetch an upload, store a
result, sign its URL. The stages call these; nothing here knows about jobs' statuses.

Failures to reach Storage become retryable `storage-unavailable` errors; a missing upload is the
user's `input-not-found`, one whose bytes are not the SHA-256 its name says `input-mismatch`. An
object appears in Cloud Storage only once its upload completes, so a failed upload never leaves a
half-written result behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Callable
from datetime import timedelta
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import google.auth
import google.auth.transport.requests
import requests
from google.api_core import exceptions as gexc
from google.cloud import storage
from google.oauth2 import service_account

from flows.job import ErrorCode, JobError
from flows.settings import get_settings

SIGNED_URL_LIFETIME = timedelta(days=7)  # the longest a V4 signature may live
HASH_CHUNK = 1024 * 1024
_SHA256_NAME = re.compile(r"[0-9a-f]{64}")
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
    """Downloads the user's upload after `check_size` accepted its size from the metadata, and
    keeps it only when its bytes are what its name says (`verify_download`)."""
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
    verify_download(path, dest)
    return dest


def expected_sha256(object_path: str) -> str | None:
    """The SHA-256 an upload's name promises: its stem, when that is 64 lowercase hex digits.

    The web page and the command store uploads as `user-uploads/{uid}/{sha256}{ext}`; other names
    (tests, demos, older uploads) promise nothing and are not checked.
    """
    stem = PurePosixPath(object_path).stem
    return stem if _SHA256_NAME.fullmatch(stem) else None


def check_sha256(object_path: str, actual: str) -> None:
    """Refuses bytes whose SHA-256 (`actual`) is not the one the upload's name promises.

    A signed upload URL fixes the object's path, type and size but not its bytes, and everything
    keyed by the path (one upload per content, the voice clone made from it) trusts the name.
    """
    expected = expected_sha256(object_path)
    if expected is not None and actual != expected:
        raise JobError(
            ErrorCode.INPUT_MISMATCH,
            "The uploaded file is not the video it was uploaded as: its contents do not match "
            "the SHA-256 in its name, so it changed during or after the upload. Delete the jobs "
            "that use this upload (which removes it), then upload the video again.",
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_download(object_path: str, local: Path) -> None:
    """`check_sha256` on a downloaded upload; on a mismatch the local copy goes too.

    Hashed after the download rather than while it streams: the client rewinds its stream on some
    retries, and the file just written reads back from the page cache (~1 s per GB).
    """
    if expected_sha256(object_path) is None:
        return
    try:
        check_sha256(object_path, file_sha256(local))
    except JobError:
        local.unlink(missing_ok=True)
        raise


def upload_result(
    bucket: storage.Bucket, source: Path, path: str, content_type: str = "video/mp4"
) -> storage.Blob:
    """Stores a job's rendered video (or a thumbnail of it) at its final path, the same path on
    every attempt."""
    blob = bucket.blob(path)
    blob.cache_control = "private, max-age=3600"
    try:
        blob.upload_from_filename(str(source), content_type=content_type, timeout=TIMEOUT_S)
    except TRANSIENT as exc:
        raise _unavailable("store the result", exc) from exc
    return blob


def delete_result(bucket: storage.Bucket, path: str) -> None:
    """Removes a result a cancelled or superseded run stored; nothing there is fine."""
    with contextlib.suppress(gexc.NotFound):
        bucket.blob(path).delete(timeout=TIMEOUT_S)


def download_url(blob: storage.Blob, public_url: str = "") -> str:
    """A URL the owner can fetch the result from: V4 signed, for GET, for 7 days.

    In production, on Cloud Run or GKE the worker has no private key, so the URL is signed through
    IAM with the service account's access token. Against the Storage emulator it is signed with
    the local key (`storage_signer_key_file`) for `public_url`, the stack's Storage proxy, which
    answers browsers' CORS and serves nothing unsigned, as Cloud Storage serves a private bucket.
    """
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        return emulator_download_url(
            blob, public_url, emulator, get_settings().storage_signer_key_file
        )
    account, token = signing_access()
    url: str = blob.generate_signed_url(
        version="v4",
        expiration=SIGNED_URL_LIFETIME,
        method="GET",
        service_account_email=account,
        access_token=token,
    )
    return url


_access_guard = threading.Lock()


@cache
def _default_credentials() -> Any:
    credentials, _ = google.auth.default()
    return credentials


def signing_access() -> tuple[str | None, str | None]:
    """The worker's service account and a current access token, for IAM-signed URLs.

    A token lives an hour, and `refresh` fetches one from the metadata server: it is refreshed
    when it is about to expire (google.auth's `valid`), not once per video as before.
    """
    with _access_guard:
        credentials = _default_credentials()
        if not credentials.valid:
            credentials.refresh(google.auth.transport.requests.Request())
        return getattr(credentials, "service_account_email", None), credentials.token


def emulator_download_url(
    blob: storage.Blob, public_url: str, emulator: str, key_file: Path | None
) -> str:
    """`download_url` against the Storage emulator.

    With a key: a V4 signed GET URL for `public_url` (or the emulator) that the stack's proxy
    checks as Cloud Storage would. Without one, the emulator's plain media URL, which only the
    emulator itself serves: behind the stack's proxy (`public_url` set) that URL would be refused,
    so a worker there without the key is a broken setup, said at once rather than in every link.
    """
    base = (public_url or emulator).rstrip("/")
    if key_file is not None:
        url: str = blob.generate_signed_url(
            version="v4",
            expiration=SIGNED_URL_LIFETIME,
            method="GET",
            credentials=_local_signer(str(key_file)),
            api_access_endpoint=base,
        )
        return url
    if public_url:
        raise JobError(
            ErrorCode.INTERNAL,
            "The worker has no key to sign download URLs for the local Storage proxy: set "
            "GREETINGS_STORAGE_SIGNER_KEY_FILE (`greetings stack up` does) and restart the worker.",
            retryable=False,
        )
    object_path = quote(blob.name, safe="")
    return f"{base}/download/storage/v1/b/{blob.bucket.name}/o/{object_path}?alt=media"


@cache
def _local_signer(key_file: str) -> service_account.Credentials:
    try:
        credentials: service_account.Credentials = (
            service_account.Credentials.from_service_account_file(key_file)  # type: ignore[no-untyped-call]
        )
    except (OSError, ValueError) as exc:
        raise JobError(
            ErrorCode.INTERNAL,
            f"The download URL signing key {key_file} cannot be read ({exc}): run "
            "`greetings stack up` again.",
            retryable=False,
        ) from exc
    return credentials
