"""The `uploading-result` stage: the finished video to its one path in Storage, and its link.

The path is the same on every attempt (`greeting-results/{userId}/{jobId}.mp4`), and an object
appears in Cloud Storage only once its upload completes, so a retried or failed upload never
leaves a second or half-written result. The video's thumbnails go beside it, on the same terms,
except that a thumbnail Storage will not take is left out rather than failing a stored video.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.cloud import storage

from flows import lifecycle
from flows import storage as object_store
from flows.job import JobError, result_path
from flows.retry import last_attempt, transient_task
from flows.stages.thumbnails import Thumbnails

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredResult:
    """What `upload_result` stored: the video's path and link, and the job's fields for the
    thumbnails Storage took (`posterPath`, `posterUrl`, `thumbnailPath`, `thumbnailUrl`)."""

    path: str
    url: str
    images: dict[str, Any] = field(default_factory=dict)


@transient_task
def upload_result(
    bucket: storage.Bucket,
    video: Path,
    thumbnails: Thumbnails,
    user_id: str,
    job_id: str,
    public_url: str,
) -> StoredResult:
    """Stores the job's video, then its thumbnails, in one task run (each task run and its
    three states cost the Prefect server CPU per job: docs/benchmarks.md).

    A transient failure retries the whole task; the paths are the same on every attempt, so
    nothing is stored twice. A thumbnail Storage refuses for good, or still fails on the last
    attempt, is left out rather than failing a stored video."""
    path = result_path(user_id, job_id)
    url = store_file(bucket, video, path, public_url)
    images: dict[str, Any] = {}
    made = (
        ("poster", thumbnails.poster, lifecycle.poster_path(user_id, job_id), "image/jpeg"),
        ("thumbnail", thumbnails.gif, lifecycle.thumbnail_path(user_id, job_id), "image/gif"),
    )
    for name, local, image_path, content_type in made:
        if local is None:
            continue
        try:
            image_url = store_file(bucket, local, image_path, public_url, content_type)
        except JobError as exc:
            if exc.retryable and not last_attempt():
                raise
            log.warning("job %s: its %s was not stored: %s", job_id, name, exc)
            continue
        images |= {f"{name}Path": image_path, f"{name}Url": image_url}
    return StoredResult(path, url, images)


def store_file(
    bucket: storage.Bucket,
    local: Path,
    path: str,
    public_url: str,
    content_type: str = "video/mp4",
) -> str:
    """Uploads the finished video (or a thumbnail); returns the owner's download URL."""
    blob = object_store.upload_result(bucket, local, path, content_type)
    return object_store.download_url(blob, public_url)


def withdraw_result(bucket: storage.Bucket, user_id: str, job_id: str) -> None:
    """Removes what a job cancelled or superseded meanwhile stored: its video and thumbnails."""
    for path in lifecycle.result_paths(user_id, job_id):
        object_store.delete_result(bucket, path)
