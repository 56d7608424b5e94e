"""Moving files: the user's video up (once per content), the personalized videos down.

An upload is stored under `user-uploads/{uid}/{sha256 of its bytes}{ext}`, so the same file always
lands at the same path and is uploaded only when that path does not already hold it.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import requests
from google.api_core import exceptions as gexc
from google.cloud.storage import Bucket

from flows.job import upload_prefix

CHUNK = 1024 * 1024
TIMEOUT_S = 120.0
DEFAULT_CONTENT_TYPE = "video/mp4"


@dataclass(frozen=True)
class FileDigest:
    sha256: str
    md5_b64: str  # how Cloud Storage reports an object's MD5 (`md5Hash`)
    size: int


@dataclass(frozen=True)
class StoredObject:
    size: int
    md5_b64: str | None


@dataclass(frozen=True)
class Upload:
    path: str
    size: int
    reused: bool


class UploadStore(Protocol):
    def stat(self, path: str) -> StoredObject | None:
        """The object at `path`, or None when there is none."""

    def put(self, path: str, source: Path, content_type: str) -> None: ...


@dataclass
class EmulatorUploads:
    """The local Storage emulator through google-cloud-storage, with anonymous credentials.

    The emulator cannot evaluate storage.rules: locally nothing checks that the upload stays in
    the user's own folder, is a video and is at most 500 MB. Production goes through
    `FirebaseStorageUploads`, as the user, where the rules apply.
    """

    bucket: Bucket

    def stat(self, path: str) -> StoredObject | None:
        blob = self.bucket.get_blob(path, timeout=TIMEOUT_S)
        if blob is None:
            return None
        return StoredObject(int(blob.size or 0), blob.md5_hash)

    def put(self, path: str, source: Path, content_type: str) -> None:
        self.bucket.blob(path).upload_from_filename(
            str(source), content_type=content_type, timeout=TIMEOUT_S
        )


@dataclass
class FirebaseStorageUploads:
    """Cloud Storage for Firebase's REST API with the user's ID token: storage.rules apply."""

    base_url: str  # https://firebasestorage.googleapis.com/v0
    bucket: str
    id_token: str

    def _object_url(self, path: str) -> str:
        return f"{self.base_url}/b/{self.bucket}/o/{quote(path, safe='')}"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Firebase {self.id_token}"}

    def stat(self, path: str) -> StoredObject | None:
        response = requests.get(self._object_url(path), headers=self._headers(), timeout=30)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        meta = response.json()
        return StoredObject(int(meta.get("size") or 0), meta.get("md5Hash"))

    def put(self, path: str, source: Path, content_type: str) -> None:
        with source.open("rb") as body:
            response = requests.post(
                f"{self.base_url}/b/{self.bucket}/o",
                params={"name": path},
                headers={**self._headers(), "Content-Type": content_type},
                data=body,
                timeout=TIMEOUT_S,
            )
        response.raise_for_status()


def digest_file(path: Path) -> FileDigest:
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return FileDigest(sha256.hexdigest(), base64.b64encode(md5.digest()).decode(), size)


def upload_path(uid: str, digest: FileDigest, filename: str) -> str:
    """`user-uploads/{uid}/{sha256}{ext}`: the same bytes always get the same path."""
    suffix = Path(filename).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,8}", suffix):
        suffix = ""
    return f"{upload_prefix(uid)}{digest.sha256}{suffix}"


def content_type(filename: str) -> str:
    # storage.rules accept only video/* uploads.
    guessed, _ = mimetypes.guess_type(filename)
    return guessed if guessed and guessed.startswith("video/") else DEFAULT_CONTENT_TYPE


def holds(stored: StoredObject | None, digest: FileDigest) -> bool:
    """Whether an existing object already is this file (the path already names its SHA-256)."""
    if stored is None or stored.size != digest.size:
        return False
    return stored.md5_b64 is None or stored.md5_b64 == digest.md5_b64


def upload_once(store: UploadStore, uid: str, source: Path) -> Upload:
    """Uploads `source` unless the user's upload folder already holds the same bytes."""
    digest = digest_file(source)
    path = upload_path(uid, digest, source.name)
    if holds(store.stat(path), digest):
        return Upload(path, digest.size, reused=True)
    store.put(path, source, content_type(source.name))
    return Upload(path, digest.size, reused=False)


def download(url: str, dest: Path) -> Path:
    """Fetches `url` to `dest` through a temporary file, so `dest` is whole or absent."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 mode would make the user's videos unreadable to anyone else.
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with tmp.open("xb") as out, requests.get(url, stream=True, timeout=TIMEOUT_S) as r:
            r.raise_for_status()
            for chunk in r.iter_content(CHUNK):
                out.write(chunk)
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


TRANSFER_ERRORS = (requests.RequestException, gexc.GoogleAPIError, OSError)
