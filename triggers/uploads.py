"""Signed upload URLs for the web page: plain functions, the callable in main.py is their edge.

A browser cannot use the Admin SDK, and firebase/storage cannot talk to the local Storage
emulator; a V4 signed PUT URL works against both. The function decides the object's path (the
user's own folder, named by the content's SHA-256 so the same video is stored once), its content
type and its size range, and signs exactly those: the upload cannot go anywhere else, and it can
only create that object, never overwrite it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Any, Protocol

MAX_UPLOAD_BYTES = 500 * 1024 * 1024  # storage.rules and the worker's max_input_bytes agree
URL_LIFETIME = timedelta(minutes=30)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_EXTENSION = re.compile(r"^\.[a-z0-9]{1,8}$")


class UploadRefused(ValueError):
    """The request cannot get an upload URL; the message is for the user."""


@dataclass(frozen=True)
class UploadRequest:
    file_name: str
    content_type: str
    size: int
    sha256: str


def parse_request(data: Any) -> UploadRequest:
    """The callable's payload, checked: a video, not empty, not over the limit, a real digest."""
    if not isinstance(data, dict):
        raise UploadRefused("expected {fileName, contentType, size, sha256}")
    file_name, content_type = data.get("fileName"), data.get("contentType")
    size, sha256 = data.get("size"), data.get("sha256")
    if not isinstance(file_name, str) or not 1 <= len(file_name) <= 255:
        raise UploadRefused("fileName must be 1-255 characters")
    if not isinstance(content_type, str) or not re.fullmatch(r"video/[\w.+-]{1,60}", content_type):
        raise UploadRefused(f"only videos can be uploaded (got {content_type!r})")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise UploadRefused("size must be a positive number of bytes")
    if size > MAX_UPLOAD_BYTES:
        raise UploadRefused(f"the video is {size / 2**20:.0f} MB; the limit is 500 MB")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise UploadRefused("sha256 must be the file's SHA-256 as 64 lowercase hex digits")
    return UploadRequest(file_name, content_type, size, sha256)


def object_path(uid: str, request: UploadRequest) -> str:
    """`user-uploads/{uid}/{sha256}{ext}`: the user's folder, one object per distinct content."""
    suffix = PurePosixPath(request.file_name).suffix.lower()
    return f"user-uploads/{uid}/{request.sha256}{suffix if _EXTENSION.fullmatch(suffix) else ''}"


def upload_headers(request: UploadRequest) -> dict[str, str]:
    """The headers the PUT must carry, each covered by the signature."""
    return {
        "Content-Type": request.content_type,
        # Storage's XML API rejects a body outside this range: the size declared is the size sent.
        "x-goog-content-length-range": f"{request.size},{request.size}",
        # Only if no object is there yet (else 412 PreconditionFailed): a URL can create the
        # upload but never replace one that jobs and voice clones may already have read.
        "x-goog-if-generation-match": "0",
    }


class Blob(Protocol):
    def exists(self) -> bool: ...

    def generate_signed_url(self, **kwargs: Any) -> str: ...


def upload_answer(blob: Blob, request: UploadRequest, sign: dict[str, Any]) -> dict[str, Any]:
    """What the page gets back; `sign` holds the signing credentials and endpoint."""
    headers = upload_headers(request)
    if blob.exists():
        return {"path": _name(blob), "exists": True, "uploadUrl": None, "headers": {}}
    url = blob.generate_signed_url(
        version="v4",
        method="PUT",
        expiration=URL_LIFETIME,
        headers=dict(headers),  # a copy: the signer adds Host to it, which a browser cannot set
        **sign,
    )
    return {
        "path": _name(blob),
        "exists": False,
        "uploadUrl": url,
        "method": "PUT",
        "headers": headers,
        "expiresInSeconds": int(URL_LIFETIME.total_seconds()),
    }


def _name(blob: Blob) -> str:
    return str(getattr(blob, "name", ""))
