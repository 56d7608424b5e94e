"""The `uploading-result` stage: the finished video to its one path in Storage, and its link.

The path is the same on every attempt (`greeting-results/{userId}/{jobId}.mp4`), and an object
appears in Cloud Storage only once its upload completes, so a retried or failed upload never
leaves a second or half-written result.
"""

from __future__ import annotations

from pathlib import Path

from google.cloud import storage

from flows import storage as object_store
from flows.job import result_path
from flows.retry import transient_task


@transient_task
def store_result(bucket: storage.Bucket, video: Path, path: str, public_url: str) -> str:
    """Uploads the finished video; returns the owner's download URL."""
    return object_store.download_url(object_store.upload_result(bucket, video, path), public_url)


def upload_result(
    bucket: storage.Bucket, video: Path, user_id: str, job_id: str, public_url: str
) -> tuple[str, str]:
    """Stores the job's video; returns its object path and download URL."""
    path = result_path(user_id, job_id)
    return path, store_result(bucket, video, path, public_url)


def withdraw_result(bucket: storage.Bucket, path: str) -> None:
    """Removes a stored result whose job was cancelled or superseded meanwhile."""
    object_store.delete_result(bucket, path)
