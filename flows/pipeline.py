"""The `greeting-pipeline` flow: one job document in, one personalized video out.

validate input -> synthesize the greeting -> render the video -> upload the result, with every
stage transition written to the job document (flows/transitions.py) so the user sees it live.
Each stage is a module of flows/stages/ that owns its tasks; this module only composes them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from google.cloud import storage
from prefect import State, flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Cancelled, Completed, Failed

from flows.clients import Clients, worker_clients
from flows.job import ErrorCode, ErrorInfo, GreetingFit, JobError, JobStatus
from flows.logs import quiet_task_ends
from flows.media import (
    MediaCancelled,
    MediaInfo,
    MediaTimeout,
    ProcessLimits,
    allowing,
    confined_to,
    for_user,
    limited,
    meanwhile,
)
from flows.shares import create_share, share_url, withdraw_share
from flows.stages.clone import CLONE_VOICE_ID, CloneSource, voice_to_speak
from flows.stages.render import InputAnalysis, RenderReport, render_video
from flows.stages.synthesize import SpeechFile, speak_greeting
from flows.stages.thumbnails import ThumbnailBase, Thumbnails, make_thumbnails
from flows.stages.upload import upload_result, withdraw_result
from flows.stages.validate import (
    ValidRequest,
    load_upload,
    settle_greeting_end,
    validate_request,
)
from flows.transitions import (
    Heartbeat,
    Transition,
    TransitionRefused,
    Written,
    cancel_watch,
    write_transition,
)
from flows.workdir import run_dir, work_root

HEARTBEAT_INTERVAL_S = 15.0
log = logging.getLogger(__name__)


class Uploads(Protocol):
    """Where a run gets a job's upload: its own download, or its batch's shared one."""

    @property
    def alone(self) -> bool:
        """The job runs on its own, not beside the other jobs of its batch."""
        ...

    def get(self, object_path: str) -> tuple[Path, MediaInfo]: ...

    def analysis(
        self, object_path: str, video: Path, greeting_end_s: float
    ) -> InputAnalysis | None: ...

    def thumbnail_base(
        self, object_path: str, video: Path, greeting_end_s: float
    ) -> ThumbnailBase | None: ...


@dataclass(frozen=True)
class OwnUpload:
    """A lone job's upload: downloaded into its run's folder, analysed by its own render."""

    bucket: storage.Bucket
    folder: Path
    max_bytes: int
    alone: bool = True

    def get(self, object_path: str) -> tuple[Path, MediaInfo]:
        return load_upload(self.bucket, object_path, self.folder / "input", self.max_bytes)

    def analysis(
        self, object_path: str, video: Path, greeting_end_s: float
    ) -> InputAnalysis | None:
        return None

    def thumbnail_base(
        self, object_path: str, video: Path, greeting_end_s: float
    ) -> ThumbnailBase | None:
        # One job: its thumbnails cost the same made from its own video.
        return None


@dataclass
class JobRun:
    """One attempt of one job, moving it through its stages.

    `write` applies a status transition (Firestore's `transition` unless a test gives another),
    so the run's cancel and failure paths do not need the stack to be exercised.
    """

    clients: Clients
    job_id: str
    attempt: int
    flow_run_id: str | None
    write: Callable[[str, Transition], dict[str, Any]] | None = field(default=None)
    # The job document as this attempt found it (its share page's CTA and sender name).
    job: dict[str, Any] = field(default_factory=dict, init=False)
    # What this run's last transition wrote: the next one is written over it in one call.
    written: Written | None = field(default=None, init=False)

    def _write(self, change: Transition) -> dict[str, Any]:
        if self.write is not None:
            return self.write(self.job_id, change)
        self.written = write_transition(self.clients.db, self.job_id, change, self.written)
        return self.written.doc

    def move(self, to: JobStatus, **fields: Any) -> dict[str, Any]:
        return self._write(Transition(to, self.attempt, self.flow_run_id, fields=fields or None))

    def fail(self, error: JobError) -> None:
        info = ErrorInfo(code=error.code, message=error.message, retryable=error.retryable)
        self._write(Transition(JobStatus.FAILED, self.attempt, self.flow_run_id, error=info))

    def run(self, uploads: Uploads, work_dir: Path) -> str:
        """Runs every stage; returns the result's object path."""
        self.job = self.move(JobStatus.VALIDATING_INPUT)
        request = validate_request(self.job)
        # From here on every ffmpeg/ffprobe of the job takes one of its user's media slots.
        with for_user(self.clients.user_slots.of(request.user_id)):
            return self._run_stages(request, uploads, work_dir)

    def _run_stages(self, request: ValidRequest, uploads: Uploads, work_dir: Path) -> str:
        settings = self.clients.settings
        video, info = uploads.get(request.input_video)
        # The probe said how long the input is (and the render reads no more than that): later
        # media processes may take time in proportion.
        budget = settings.media_timeout_seconds
        budget += settings.media_seconds_per_input_second * info.duration_s
        with allowing(budget):
            return self._process(request, uploads, video, info, work_dir)

    def _process(
        self, request: ValidRequest, uploads: Uploads, video: Path, info: MediaInfo, work_dir: Path
    ) -> str:
        settings, bucket = self.clients.settings, self.clients.bucket
        settled = settle_greeting_end(request, video, info, settings.max_input_seconds)
        assert settled.greeting_end_s is not None
        greeting_end_s = settled.greeting_end_s
        # An end found from the recording is written on the job: the user sees what was used.
        found = {"greetingEndSecond": greeting_end_s} if request.greeting_end_s is None else {}

        # A lone job's thumbnails are made from the upload while the voice speaks and the render
        # runs: they took 0.7 s after its render. A batch's jobs make theirs after their render:
        # its other jobs keep the cores busy, and beside the render they only contended (the
        # worker's Python took 5-10 % more CPU a job; docs/benchmarks.md).
        with meanwhile(
            lambda: self._thumbnails(request, uploads, video, greeting_end_s, work_dir),
            beside=uploads.alone,
        ) as making_thumbnails:
            self.move(JobStatus.PROCESSING_AUDIO, **found)
            report = self._speak_and_render(request, uploads, video, info, greeting_end_s, work_dir)
            thumbnails = making_thumbnails.result()

        self.move(JobStatus.UPLOADING_RESULT)
        public_url = settings.storage_public_url
        stored = upload_result(
            bucket, report.path, thumbnails, request.user_id, self.job_id, public_url
        )
        path, url, images = stored.path, stored.url, stored.images
        fit = GreetingFit.of(report).to_firestore()
        share = self._share(request.user_id, path, images)
        try:
            self.move(
                JobStatus.COMPLETED, outputPath=path, downloadUrl=url, fit=fit, **images, **share
            )
        except TransitionRefused:
            # Cancelled (or superseded) while uploading: the result must not outlive the job.
            withdraw_result(bucket, request.user_id, self.job_id)
            if "shareId" in share:
                withdraw_share(self.clients.db, share["shareId"])
            raise
        return path

    def _speak_and_render(
        self,
        request: ValidRequest,
        uploads: Uploads,
        video: Path,
        info: MediaInfo,
        greeting_end_s: float,
        work_dir: Path,
    ) -> RenderReport:
        settings = self.clients.settings
        voices, voice_id = self.clients.voices, request.voice_id
        if voice_id == CLONE_VOICE_ID:
            # The rep's own voice, cloned once per upload (the local voice without ElevenLabs).
            source = CloneSource(
                request.user_id, request.input_video, video, info.container, work_dir
            )
            voice_id = voice_to_speak(voices, voice_id, source)
        # The video's own words after the slot: the greeting's intonation leads into them.
        text, following = request.greeting_text, request.following_text
        speech = speak_greeting(voices, voice_id, text, work_dir, next_text=following)

        # Which voice spoke: the cloned voice, or espeak-ng where piper:joe is not installed.
        self.move(JobStatus.GENERATING_VIDEO, voiceUsed=speech.voice_id or voice_id)
        shared = uploads.analysis(request.input_video, video, greeting_end_s)

        def respeak(speed: float) -> SpeechFile:
            # A greeting too long for its slot: the voice speaks faster before any time-stretch.
            return speak_greeting(voices, voice_id, text, work_dir, speed, next_text=following)

        return render_video(
            video, info, speech, greeting_end_s, work_dir, settings, shared, respeak
        )

    def _thumbnails(
        self,
        request: ValidRequest,
        uploads: Uploads,
        video: Path,
        greeting_end_s: float,
        work_dir: Path,
    ) -> Thumbnails:
        """For the rep's emails: never fails the job (a thumbnail that cannot be made is left
        out). From the upload: the result shows the same frames, and is not made yet."""
        if not self.clients.settings.thumbnails:
            return Thumbnails()
        base = uploads.thumbnail_base(request.input_video, video, greeting_end_s)
        return make_thumbnails(video, request.first_name, greeting_end_s, work_dir, base)

    def _share(self, user_id: str, path: str, images: dict[str, Any]) -> dict[str, Any]:
        """The video's share page, made before the job says completed (the link it then shows
        works at once); its fields on the job. A page that cannot be made is logged and left
        out: the video is finished and stays so."""
        paths = {"videoPath": path}
        for kind in ("poster", "thumbnail"):
            if f"{kind}Path" in images:
                paths["gifPath" if kind == "thumbnail" else "posterPath"] = images[f"{kind}Path"]
        try:
            share_id = create_share(
                self.clients.db, self.job_id, {**self.job, "userId": user_id}, paths
            )
        except Exception:
            log.exception("job %s: no share page was made", self.job_id)
            return {}
        return {
            "shareId": share_id,
            "shareUrl": share_url(self.clients.settings.share_base, share_id),
        }


def current_flow_run_id() -> str | None:
    return str(flow_run.id) if flow_run.id else None


@flow(name="greeting-pipeline", log_prints=True, persist_result=False)
def greeting_pipeline(job_id: str, attempt: int = 0) -> State[Any]:
    """Renders one job's personalized video; the job document tells the user how it went."""
    return run_job(worker_clients(), job_id, attempt, current_flow_run_id())


def run_job(
    clients: Clients,
    job_id: str,
    attempt: int,
    flow_run_id: str | None,
    uploads: Uploads | None = None,
    write: Callable[[str, Transition], dict[str, Any]] | None = None,
) -> State[Any]:
    """One attempt of one job, inside a flow run (its own, or its batch's); its final state.

    Never raises for the job's own trouble: a bad input, a provider's refusal or a bug in one
    job ends that job `failed` and leaves the worker (and the rest of a batch) running.
    """
    logger = get_run_logger()
    quiet_task_ends()
    run = JobRun(clients, job_id, attempt, flow_run_id, write)
    settings = clients.settings
    limits = ProcessLimits(
        timeout_s=settings.media_timeout_seconds,
        memory_bytes=settings.media_memory_mb << 20,
        cpu_s=int(settings.media_timeout_seconds),
    )
    with (
        run_dir(work_root(settings.state_dir), job_id) as tmp,
        Heartbeat.for_job(clients.db, job_id, attempt, HEARTBEAT_INTERVAL_S),
        cancel_watch(clients.db, job_id, attempt) as cancelled,
        limited(limits, cancelled),
        confined_to(Path(tmp), settings.sandbox),
    ):
        work_dir = Path(tmp)
        own = OwnUpload(clients.bucket, work_dir, settings.max_input_bytes)
        try:
            path = run.run(uploads or own, work_dir)
        except TransitionRefused as refused:
            logger.info("job %s: stopping: %s", job_id, refused)
            if refused.cancelled:
                return Cancelled(message=str(refused))
            return Completed(message=f"nothing to do: {refused}")
        except MediaCancelled:
            # Killed mid-process: the job document says cancelled (or moved on) already.
            logger.info("job %s: cancelled; its media processes were stopped", job_id)
            return Cancelled(message="cancelled while processing")
        except (JobError, MediaTimeout) as failure:
            error = failure if isinstance(failure, JobError) else _timed_out(failure)
            logger.warning("job %s failed: %s", job_id, error)
            _record_failure(run, error)
            return Failed(message=f"{error.code}: {error.message}")
        except Exception as exc:
            logger.exception("job %s: unexpected failure", job_id)
            unexpected = JobError(ErrorCode.INTERNAL, f"Unexpected error: {type(exc).__name__}")
            _record_failure(run, unexpected)
            return Failed(message=str(exc))
    return Completed(message=f"wrote {path}")


def _timed_out(timeout: MediaTimeout) -> JobError:
    # Not retryable: the same input takes as long again. Allowed inputs finish far sooner.
    return JobError(
        ErrorCode.RENDER_TIMEOUT,
        f"Processing the video took longer than {timeout.seconds:g} s and was stopped: "
        "upload a shorter or simpler recording (an MP4 from a phone or a browser).",
    )


def _record_failure(run: JobRun, error: JobError) -> None:
    # Cancelled or superseded meanwhile: then there is nothing to record.
    with contextlib.suppress(TransitionRefused):
        run.fail(error)
