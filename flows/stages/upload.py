"""The `uploading-result` stage: the finished video to its one path in Storage, and its link.

The path is the same on every attempt (`greeting-results/{userId}/{jobId}.mp4`), and an object
appears in Cloud Storage only once its upload completes, so a retried or failed upload never
leaves a second or half-written result. The video's thumbnails go beside it, on the same terms,
except that a thumbnail Storage will not take is left out rather than failing a stored video.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from google.cloud import storage

from flows import lifecycle
from flows import storage as object_store
from flows.job import JobError, result_path
from flows.retry import transient_task
from flows.stages.thumbnails import Thumbnails

log = logging.getLogger(__name__)


@transient_task
def store_result(
    bucket: storage.Bucket,
    video: Path,
    path: str,
    public_url: str,
    content_type: str = "video/mp4",
) -> str:
    """Uploads the finished video (or a thumbnail); returns the owner's download URL."""
    blob = object_store.upload_result(bucket, video, path, content_type)
    return object_store.download_url(blob, public_url)


def upload_result(
    bucket: storage.Bucket, video: Path, user_id: str, job_id: str, public_url: str
) -> tuple[str, str]:
    """Stores the job's video; returns its object path and download URL."""
    path = result_path(user_id, job_id)
    return path, store_result(bucket, video, path, public_url)


def upload_thumbnails(
    bucket: storage.Bucket, thumbnails: Thumbnails, user_id: str, job_id: str, public_url: str
) -> dict[str, Any]:
    """Stores the thumbnails that were made; returns the job's fields for them (`posterPath`,
    `posterUrl`, `thumbnailPath`, `thumbnailUrl`), without those Storage did not take."""
    fields: dict[str, Any] = {}
    made = (
        ("poster", thumbnails.poster, lifecycle.poster_path(user_id, job_id), "image/jpeg"),
        ("thumbnail", thumbnails.gif, lifecycle.thumbnail_path(user_id, job_id), "image/gif"),
    )
    for name, local, path, content_type in made:
        if local is None:
            continue
        try:
            url = store_result(bucket, local, path, public_url, content_type)
        except JobError as exc:
            log.warning("job %s: its %s was not stored: %s", job_id, name, exc)
            continue
        fields |= {f"{name}Path": path, f"{name}Url": url}
    return fields


def withdraw_result(bucket: storage.Bucket, user_id: str, job_id: str) -> None:
    """Removes what a job cancelled or superseded meanwhile stored: its video and thumbnails."""
    for path in lifecycle.result_paths(user_id, job_id):
        object_store.delete_result(bucket, path)
