"""A completed video's share page: an unguessable id, and what the page may show.

Each completed job gets `shares/{shareId}`, written here by the worker (Admin SDK) before the
job says completed: 128 random bits (`secrets.token_urlsafe(16)`), derived from nothing a
viewer could know. The document holds what the `share` function (triggers/shares.py) serves to
anyone with the link, the video's and thumbnails' object paths (never sent to a viewer: the
function answers with short-lived signed links) and the job's and owner's ids, for counters.
No client reads it (firestore.rules): a viewer sees only what the function answers.
"""

from __future__ import annotations

import secrets
import unicodedata
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from google.cloud import firestore

from flows.lifecycle import SHARES

SHARE_ID_BYTES = 16  # 128 bits
MAX_CTA_TEXT = 40
MAX_SENDER_NAME = 80
MAX_URL_CHARS = 2048


def new_share_id() -> str:
    return secrets.token_urlsafe(SHARE_ID_BYTES)


def share_url(base: str, share_id: str) -> str:
    return f"{base.rstrip('/')}/v/{share_id}"


def _plain(value: Any, max_chars: int) -> str | None:
    """Text a page may show as it is: trimmed, without control characters, bounded."""
    if not isinstance(value, str):
        return None
    text = " ".join(unicodedata.normalize("NFC", value).split())
    if not text or len(text) > max_chars:
        return None
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        return None
    return text


def cta_url(value: Any) -> str | None:
    """An https link with a host, or None: nothing else becomes a button on a viewer's page."""
    if not isinstance(value, str) or len(value) > MAX_URL_CHARS:
        return None
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return None
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        return None
    return value.strip()


def share_document(
    job_id: str, job: dict[str, Any], paths: dict[str, str], at: datetime
) -> dict[str, Any]:
    """What `shares/{shareId}` holds for a completed job (pure). The firestore rules checked
    the job's CTA and sender name at creation; they are checked again here, and left off (not
    failing a finished video) where they would not be safe on the page."""
    link, text = cta_url(job.get("ctaUrl")), _plain(job.get("ctaText"), MAX_CTA_TEXT)
    page = {
        "senderName": _plain(job.get("senderName"), MAX_SENDER_NAME),
        "ctaText": (text or "Learn more") if link else None,
        "ctaUrl": link,
    }
    return {
        "jobId": job_id,
        "userId": job["userId"],
        **{key: value for key, value in page.items() if value is not None},
        **paths,  # videoPath, posterPath, gifPath: served through signed links only
        "revoked": False,
        "createdAt": at,
    }


def create_share(
    db: firestore.Client, job_id: str, job: dict[str, Any], paths: dict[str, str]
) -> str:
    """Writes the job's share document; its id."""
    share_id = new_share_id()
    document = share_document(job_id, job, paths, datetime.now(UTC))
    db.collection(SHARES).document(share_id).create(document)
    return share_id


def withdraw_share(db: firestore.Client, share_id: str) -> None:
    """Removes a share whose job was cancelled or superseded before it completed."""
    db.collection(SHARES).document(share_id).delete()
