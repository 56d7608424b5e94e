"""The `greeting-pipeline` flow: one job document in, one personalized video out.

validate input -> synthesize the greeting -> render the video -> upload the result, with every
stage transition written to the job document (flows/transitions.py) so the user sees it live.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from google.cloud import storage
from prefect import State, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Cancelled, Completed, Failed

from flows.clients import Clients, default_clients
from flows.job import ErrorCode, ErrorInfo, JobError, JobStatus, result_path
from flows.media import MediaInfo, ProbeError, mp4_duration_s, probe
from flows.retry import RETRY_DELAYS_S, retry_if_retryable
from flows.settings import Settings
from flows.stages import storage as object_store
from flows.stages.render import InputAnalysis, RenderReport, analyze_input, render_greeting
from flows.stages.synthesize import (
    EspeakVoice,
    Speech,
    Voice,
    build_voice,
    synthesize_greeting_task,
    voice_for,
)
from flows.stages.validate import (
    ValidRequest,
    check_media,
    check_output_duration,
    validate_request,
)
from flows.transitions import Heartbeat, Transition, TransitionRefused, transition
from flows.workdir import run_dir, work_root

HEARTBEAT_INTERVAL_S = 15.0
log = logging.getLogger(__name__)


@task(
    retries=3,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_if_retryable,
    cache_policy=NO_CACHE,
)
def fetch_input(bucket: storage.Bucket, path: str, dest: Path, max_bytes: int) -> Path:
    """Downloads the user's upload; returns its local path."""
    return object_store.download_input(bucket, path, dest, max_bytes)


@task(cache_policy=NO_CACHE)
def inspect_video(video: Path) -> MediaInfo:
    """Probes the upload; returns what it holds, or fails the job if it is no readable video."""
    try:
        return probe(video)
    except ProbeError as exc:
        raise JobError(
            ErrorCode.INPUT_NOT_VIDEO,
            "The uploaded file is not a video we can read (empty, truncated or another format).",
        ) from exc


class SharedInputs:
    """A batch's uploads, downloaded, probed and analysed for rendering once for all its jobs.

    Every job of a batch is the same user's and usually names the same video: a 500 MB upload
    is fetched once per batch, not once per prospect, and the render's analysis of it (probe,
    decoded greeting slot, copied audio track) is made once per greeting slot. Jobs only read
    these files. A job's own trouble with the upload (not found, not a video) is kept and given
    to each job that asks, so one bad upload costs one download; transient errors are not kept.
    """

    def __init__(
        self,
        root: Path,
        load: Callable[[Clients, str, Path], tuple[Path, MediaInfo]] | None = None,
    ) -> None:
        self._root = root
        self._load = load or fetch_and_inspect
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._dest: dict[str, Path] = {}
        self._done: dict[str, tuple[Path, MediaInfo] | JobError] = {}
        self._analyses: dict[str, InputAnalysis | None] = {}

    def _place(self, key: str, kind: str) -> tuple[threading.Lock, Path]:
        """The lock that makes `key`'s work happen once, and the folder it works in."""
        with self._guard:
            if key not in self._locks:
                self._locks[key] = threading.Lock()
                self._dest[key] = self._root / f"{kind}-{len(self._dest)}"
            return self._locks[key], self._dest[key]

    def get(self, clients: Clients, object_path: str) -> tuple[Path, MediaInfo]:
        lock, dest = self._place(object_path, "input")
        with lock:
            if object_path not in self._done:
                try:
                    self._done[object_path] = self._load(clients, object_path, dest)
                except JobError as error:
                    if error.retryable:
                        raise
                    self._done[object_path] = error
            done = self._done[object_path]
        if isinstance(done, JobError):
            raise done
        return done

    def analysis(
        self, object_path: str, video: Path, greeting_end_s: float
    ) -> InputAnalysis | None:
        """The render's analysis of this upload for this greeting slot, made once per batch.

        None if it cannot be made: each job's render then analyses on its own, and reports the
        trouble as that job's error.
        """
        key = f"{object_path}\n{greeting_end_s!r}"
        lock, folder = self._place(key, "analysis")
        with lock:
            if key not in self._analyses:
                try:
                    self._analyses[key] = analyze_input(video, greeting_end_s, folder)
                except Exception:
                    log.info("no shared analysis of %s", object_path)
                    self._analyses[key] = None
            return self._analyses[key]


def fetch_and_inspect(clients: Clients, object_path: str, dest: Path) -> tuple[Path, MediaInfo]:
    settings = clients.settings
    video = fetch_input(clients.bucket, object_path, dest, settings.max_input_bytes)
    return video, inspect_video(video)


@task(cache_policy=NO_CACHE)
def render_video(
    video: Path,
    speech_file: Path,
    greeting_end_s: float,
    output: Path,
    settings: Settings,
    expected_s: float,
    shared: InputAnalysis | None = None,
) -> RenderReport:
    """Replaces the greeting; returns the render's report."""
    report = render_greeting(
        video,
        speech_file,
        greeting_end_s,
        output,
        max_tempo=settings.max_tempo,
        crossfade_ms=settings.crossfade_ms,
        work_dir=output.parent,  # the run's scratch folder: gone with the run, whatever happens
        shared=shared,
    )
    try:
        output_s = mp4_duration_s(output)
    except ProbeError as exc:
        raise JobError(ErrorCode.RENDER_FAILED, f"The rendered video is unreadable: {exc}") from exc
    check_output_duration(output_s, expected_s)
    return report


@task(
    retries=3,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_if_retryable,
    cache_policy=NO_CACHE,
)
def store_result(bucket: storage.Bucket, video: Path, path: str) -> str:
    """Uploads the finished video; returns the owner's download URL."""
    public_url = default_clients().settings.storage_public_url
    return object_store.download_url(object_store.upload_result(bucket, video, path), public_url)


@cache
def default_voice() -> Voice:
    return build_voice(default_clients().settings)


@cache
def local_voice() -> Voice:
    return EspeakVoice(default_clients().settings.espeak_voice)


@cache
def speech_task() -> Any:
    """The synthesis task bound to the configured speech cache (built once per process)."""
    return synthesize_greeting_task(default_clients().settings)


@dataclass
class JobRun:
    """One attempt of one job, moving it through its stages."""

    clients: Clients
    job_id: str
    attempt: int
    flow_run_id: str | None
    inputs: SharedInputs | None = None  # a batch's; a lone job fetches its own

    def move(self, to: JobStatus, **fields: Any) -> dict[str, Any]:
        return transition(
            self.clients.db,
            self.job_id,
            Transition(to, self.attempt, self.flow_run_id, fields=fields or None),
        )

    def fail(self, error: JobError) -> None:
        info = ErrorInfo(code=error.code, message=error.message, retryable=error.retryable)
        transition(
            self.clients.db,
            self.job_id,
            Transition(JobStatus.FAILED, self.attempt, self.flow_run_id, error=info),
        )

    def run(self, voice: Voice, work_dir: Path) -> str:
        """Runs every stage; returns the result's object path."""
        settings, bucket = self.clients.settings, self.clients.bucket
        job = self.move(JobStatus.VALIDATING_INPUT)
        request: ValidRequest = validate_request(job)
        if self.inputs is None:
            video, info = fetch_and_inspect(self.clients, request.input_video, work_dir / "input")
        else:
            video, info = self.inputs.get(self.clients, request.input_video)
        check_media(info, request.greeting_end_s, settings.max_input_seconds)

        self.move(JobStatus.PROCESSING_AUDIO)
        voice = voice_for(request.voice_id, voice, local_voice())
        speech: Speech = speech_task()(voice, request.greeting_text, request.voice_id)
        speech_file = work_dir / f"greeting.{speech.extension}"
        speech_file.write_bytes(speech.audio)

        self.move(JobStatus.GENERATING_VIDEO)
        output = work_dir / "output.mp4"
        shared = (
            self.inputs.analysis(request.input_video, video, request.greeting_end_s)
            if self.inputs is not None
            else None
        )
        render_video(
            video, speech_file, request.greeting_end_s, output, settings, info.duration_s, shared
        )

        self.move(JobStatus.UPLOADING_RESULT)
        path = result_path(request.user_id, self.job_id)
        url = store_result(bucket, output, path)
        try:
            self.move(JobStatus.COMPLETED, outputPath=path, downloadUrl=url)
        except TransitionRefused:
            # Cancelled (or superseded) while uploading: the result must not outlive the job.
            object_store.delete_result(bucket, path)
            raise
        return path


@flow(name="greeting-pipeline", log_prints=True, persist_result=False)
def greeting_pipeline(job_id: str, attempt: int = 0) -> State[Any]:
    """Renders one job's personalized video; the job document tells the user how it went."""
    return run_job(default_clients(), job_id, attempt, str(flow_run.id) if flow_run.id else None)


def run_job(
    clients: Clients,
    job_id: str,
    attempt: int,
    flow_run_id: str | None,
    inputs: SharedInputs | None = None,
) -> State[Any]:
    """One attempt of one job, inside a flow run (its own, or its batch's); its final state.

    Never raises for the job's own trouble: a bad input, a provider's refusal or a bug in one
    job ends that job `failed` and leaves the worker (and the rest of a batch) running.
    """
    logger = get_run_logger()
    run = JobRun(clients, job_id, attempt, flow_run_id, inputs)
    with (
        run_dir(work_root(clients.settings.state_dir), job_id) as tmp,
        Heartbeat.for_job(clients.db, job_id, attempt, HEARTBEAT_INTERVAL_S),
    ):
        try:
            path = run.run(default_voice(), Path(tmp))
        except TransitionRefused as refused:
            logger.info("job %s: stopping: %s", job_id, refused)
            if refused.cancelled:
                return Cancelled(message=str(refused))
            return Completed(message=f"nothing to do: {refused}")
        except JobError as error:
            logger.warning("job %s failed: %s", job_id, error)
            _record_failure(run, error)
            return Failed(message=f"{error.code}: {error.message}")
        except Exception as exc:
            logger.exception("job %s: unexpected failure", job_id)
            unexpected = JobError(ErrorCode.INTERNAL, f"Unexpected error: {type(exc).__name__}")
            _record_failure(run, unexpected)
            return Failed(message=str(exc))
    return Completed(message=f"wrote {path}")


def _record_failure(run: JobRun, error: JobError) -> None:
    # Cancelled or superseded meanwhile: then there is nothing to record.
    with contextlib.suppress(TransitionRefused):
        run.fail(error)
