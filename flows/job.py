"""The contract of a `greetingJobs/{jobId}` document, used by the flows, the CLI and the tests.

Field names are camelCase in Firestore (as the client writes them) and snake_case in Python.
The client writes only the fields of `JobRequest`; everything in `GreetingJob` beyond them is
written by the server (the trigger and the flows).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from flows import lifecycle
from flows.lifecycle import (
    BATCHES,
    COLLECTION,
    MAX_BATCH_JOBS,
    REQUESTS,
    result_path,
    upload_prefix,
)

# Re-exported: the job's contract names them too.
__all__ = [
    "BATCHES",
    "COLLECTION",
    "MAX_BATCH_JOBS",
    "REQUESTS",
    "result_path",
    "upload_prefix",
]  # and the names defined below

# Prospects are greeted by first name ("Hey Anna-Lena,"), as people greet people; a name with
# nothing to call the person by gets the fallback word ("Hey there,").
DEFAULT_GREETING_TEXT = "Hey {firstName},"
DEFAULT_GREETING_FALLBACK = "there"


class JobStatus(StrEnum):
    """The statuses of flows/lifecycle.py (which the trigger shares), as an enum."""

    PENDING = lifecycle.PENDING
    QUEUED = lifecycle.QUEUED
    VALIDATING_INPUT = lifecycle.VALIDATING_INPUT
    PROCESSING_AUDIO = lifecycle.PROCESSING_AUDIO
    GENERATING_VIDEO = lifecycle.GENERATING_VIDEO
    UPLOADING_RESULT = lifecycle.UPLOADING_RESULT
    COMPLETED = lifecycle.COMPLETED
    FAILED = lifecycle.FAILED
    CANCELLED = lifecycle.CANCELLED

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_running(self) -> bool:
        return self in RUNNING_STAGES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
RUNNING_STAGES = (
    JobStatus.VALIDATING_INPUT,
    JobStatus.PROCESSING_AUDIO,
    JobStatus.GENERATING_VIDEO,
    JobStatus.UPLOADING_RESULT,
)
# Where each status sits on the way to `completed`; a transition may only move forward.
STAGE_ORDER: dict[JobStatus, int] = {
    JobStatus.PENDING: 0,
    JobStatus.QUEUED: 1,
    JobStatus.VALIDATING_INPUT: 2,
    JobStatus.PROCESSING_AUDIO: 3,
    JobStatus.GENERATING_VIDEO: 4,
    JobStatus.UPLOADING_RESULT: 5,
    JobStatus.COMPLETED: 7,
    JobStatus.FAILED: 7,
    JobStatus.CANCELLED: 7,
}
PROGRESS: dict[JobStatus, int] = {
    JobStatus.PENDING: 0,
    JobStatus.QUEUED: lifecycle.QUEUED_PROGRESS,
    JobStatus.VALIDATING_INPUT: 10,
    JobStatus.PROCESSING_AUDIO: 30,
    JobStatus.GENERATING_VIDEO: 55,
    JobStatus.UPLOADING_RESULT: 85,
    JobStatus.COMPLETED: 100,
}


class ErrorCode(StrEnum):
    """What went wrong, in words a client can switch on. Retryable codes are marked below."""

    INVALID_NAME = "invalid-name"
    INVALID_GREETING_END = "invalid-greeting-end"
    INVALID_GREETING_TEXT = "invalid-greeting-text"
    INVALID_VOICE = "invalid-voice"
    INPUT_PATH_FORBIDDEN = "input-path-forbidden"
    INPUT_NOT_FOUND = "input-not-found"
    INPUT_TOO_LARGE = "input-too-large"
    INPUT_TOO_LONG = "input-too-long"
    INPUT_TOO_SHORT = "input-too-short"
    INPUT_NOT_VIDEO = "input-not-video"
    INPUT_NO_VIDEO_STREAM = "input-no-video-stream"
    INPUT_NO_AUDIO_STREAM = "input-no-audio-stream"
    INPUT_MISMATCH = "input-mismatch"  # the upload's bytes are not the SHA-256 its name says
    GREETING_TOO_LONG = "greeting-too-long"
    VOICE_CLONE_TOO_SHORT = "voice-clone-too-short"  # too little speech to clone the voice
    # A batch whose video, once per job, is more media than a batch may hold (flows/batch.py).
    BATCH_TOO_LARGE = "batch-too-large"
    # Over the owner's new jobs per minute; written by the trigger only (flows/lifecycle.py).
    RATE_LIMITED = lifecycle.RATE_LIMITED
    TTS_AUTH = "tts-auth"
    TTS_REJECTED = "tts-rejected"
    TTS_UNAVAILABLE = "tts-unavailable"
    RENDER_FAILED = "render-failed"
    RENDER_TIMEOUT = "render-timeout"
    STORAGE_UNAVAILABLE = "storage-unavailable"
    ORCHESTRATOR_UNAVAILABLE = "orchestrator-unavailable"
    WORKER_LOST = "worker-lost"
    INTERNAL = "internal"


RETRYABLE_CODES = frozenset(
    {
        ErrorCode.TTS_UNAVAILABLE,
        ErrorCode.STORAGE_UNAVAILABLE,
        ErrorCode.ORCHESTRATOR_UNAVAILABLE,
        ErrorCode.WORKER_LOST,
        ErrorCode.INTERNAL,
    }
)


class JobError(Exception):
    """A failure that ends a job `failed` with a code and a message a user can act on."""

    def __init__(self, code: ErrorCode, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = code in RETRYABLE_CODES if retryable is None else retryable

    def __reduce__(self) -> tuple[Any, ...]:
        # Prefect pickles task exceptions into states; keep the code and flag across that.
        return (_rebuild_job_error, (self.code, self.message, self.retryable))


def _rebuild_job_error(code: ErrorCode, message: str, retryable: bool) -> JobError:
    return JobError(code, message, retryable=retryable)


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_firestore(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="python")


class ErrorInfo(_Camel):
    code: str
    message: str
    retryable: bool


class HistoryEntry(_Camel):
    status: JobStatus
    at: datetime
    attempt: int = 0
    flow_run_id: str | None = None
    error_code: str | None = None


class JobRequest(_Camel):
    """The fields a client writes when it creates a job (and nothing else, per firestore.rules)."""

    user_id: str
    input_video: str
    prospect_name: str
    voice_id: str
    greeting_end_second: float | None = None  # None: found from the recording
    greeting_text: str | None = None
    first_name: str | None = None  # what to call the prospect; derived from prospectName if unset
    greeting_fallback: str | None = None  # spoken when there is no first name (default "there")
    # How to say the name ("Sheh-VAWN" for Siobhan): spoken for {firstName} and {name}, and
    # nowhere else (the job's name, its file name and the page show prospectName).
    pronunciation: str | None = None
    # The video's words right after the greeting: the voice leads into them, never says them.
    following_text: str | None = None
    # A one-job preview (`greetings preview`) made before sending a batch: rendered like any
    # job; the batch's jobs with the same voice and text then reuse its speech from the cache.
    preview: bool | None = None
    batch_id: str | None = None
    # The prospect's row in the rep's list (0-based, among the CSV's data rows): the batch is
    # shown and exported in the list's own order.
    batch_index: int | None = None
    # The share page's call to action (an https link and its button's words) and the rep's name
    # as the viewer sees it.
    cta_text: str | None = None
    cta_url: str | None = None
    sender_name: str | None = None


class GreetingFit(_Camel):
    """What fitting the greeting to its slot took, so a user can see why a video sounds faster:
    the voice asked to speak faster (`providerSpeed`), the original's pause after the slot used,
    the greeting's own leading silence cut, and the time-stretch applied last (`tempo`)."""

    tempo: float = 1.0
    provider_speed: float = 1.0
    pause_used_second: float = 0.0
    lead_trimmed_second: float = 0.0

    @classmethod
    def of(cls, report: _FitReport) -> GreetingFit:
        return cls(
            tempo=report.tempo,
            provider_speed=report.provider_speed,
            pause_used_second=report.pause_used_s,
            lead_trimmed_second=report.lead_trimmed_s,
        )


class _FitReport(Protocol):
    """The parts of a render's report (flows.stages.render.RenderReport) a GreetingFit shows."""

    @property
    def tempo(self) -> float: ...
    @property
    def provider_speed(self) -> float: ...
    @property
    def pause_used_s(self) -> float: ...
    @property
    def lead_trimmed_s(self) -> float: ...


class GreetingJob(JobRequest):
    """A whole job document as read back from Firestore."""

    job_id: str = Field(default="", exclude=True)
    status: JobStatus = JobStatus.PENDING
    created_at: datetime | None = None
    progress: int = 0
    history: list[HistoryEntry] = Field(default_factory=list)
    error: ErrorInfo | None = None
    retry_count: int = 0
    flow_run_id: str | None = None
    output_path: str | None = None
    download_url: str | None = None
    # The email thumbnails beside the video (when made): a poster JPEG and an animated GIF with
    # the first name, and the owner's signed links to them.
    poster_path: str | None = None
    poster_url: str | None = None
    thumbnail_path: str | None = None
    thumbnail_url: str | None = None
    # The video's share page (/v/{shareId}, no sign-in) and what its viewers did, live.
    share_id: str | None = None
    share_url: str | None = None
    share_revoked: bool | None = None
    views: int = 0
    plays: int = 0
    max_watched_percent: int = 0
    last_viewed_at: datetime | None = None
    voice_used: str | None = None  # the voice that spoke: a cloned voice's id, piper:joe, espeak:…
    fit: GreetingFit | None = None  # how the greeting was fitted to its slot (when completed)
    heartbeat_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None

    @classmethod
    def from_firestore(cls, job_id: str, data: dict[str, Any]) -> GreetingJob:
        return cls.model_validate({**data, "job_id": job_id})

    @property
    def greeting_template(self) -> str:
        return self.greeting_text or DEFAULT_GREETING_TEXT


class RequestAction(StrEnum):
    CANCEL = lifecycle.CANCEL  # allowed while the job is unfinished
    RETRY = lifecycle.RETRY  # allowed once it failed
    REVOKE_SHARE = lifecycle.REVOKE_SHARE  # allowed once it completed: its share page goes


class BatchRequest(_Camel):
    """A `greetingBatches/{batchId}` document: the jobs (already created, each with this batchId)
    that run as one flow run. Jobs that carry a batchId wait for their batch document; without
    one, the sweep starts them one by one after `pending_grace_seconds`."""

    user_id: str
    job_ids: list[str] = Field(min_length=1, max_length=MAX_BATCH_JOBS)
