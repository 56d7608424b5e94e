"""The `greeting-batch` flow: one flow run for a batch of jobs on the same video.

A sales rep's normal request is one video for many prospects. One flow run per job pays Prefect's
per-run cost (scheduling, claiming, submitting, five flow states) and, on Firebase, a trigger
invocation per job; measured here that capped a 100-name batch at 43 jobs/min. A batch is one
flow run (started by the trigger when the client writes `greetingBatches/{batchId}`) that runs
each job's stages as the single-job flow does, a few jobs at a time, each job still moving its own
document through every status. A failed job is retried on its own (a single-job run of its next
attempt), never by re-running the batch.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from google.cloud import firestore
from prefect import State, flow, get_run_logger
from prefect.states import Completed, Failed

from flows.clients import Clients, worker_clients
from flows.job import BATCHES, COLLECTION, ErrorCode, JobError
from flows.lifecycle import BATCH_ATTEMPT, batch_job_ids, belongs_to_batch
from flows.media import MediaCancelled, MediaInfo, confined_instead_to, for_every_job
from flows.pipeline import current_flow_run_id, run_job
from flows.stages.render import InputAnalysis, analyze_input
from flows.stages.thumbnails import ThumbnailBase, make_thumbnail_base
from flows.stages.validate import load_upload
from flows.transitions import Heartbeat, touch_waiting_heartbeats
from flows.workdir import run_dir, work_root

log = logging.getLogger(__name__)


def batch_too_large(
    duration_s: float, jobs: int, limit_minutes: float, spent_s: float = 0.0
) -> JobError | None:
    """The error for a batch whose `jobs` renders of a `duration_s` video, after `spent_s`
    seconds of its other uploads, come to more than `limit_minutes`; None if they fit (pure)."""
    total_s = spent_s + duration_s * jobs
    if total_s <= limit_minutes * 60:
        return None
    fit = max(0, int((limit_minutes * 60 - spent_s) // duration_s)) if duration_s > 0 else 0
    return JobError(
        ErrorCode.BATCH_TOO_LARGE,
        f"This batch is {total_s / 60:.1f} minutes of video ({jobs} names on a "
        f"{duration_s:.0f} s video), more than the {limit_minutes:g} minutes one batch may "
        f"hold. Send at most {fit} names with this video at once, or a shorter video.",
        retryable=False,
    )


class MediaBudget:
    """A batch's total media minutes: each of its jobs renders its video once, so a batch is
    its video's length times its names, and one user's batch must not hold a worker for hours.

    Checked once per upload, when the batch first probes it; the batch's usual one video fails
    every job or none. An upload that would take the total over the limit fails its jobs.
    """

    def __init__(self, limit_minutes: float, jobs_per_upload: Mapping[str, int]) -> None:
        self._limit_minutes = limit_minutes
        self._jobs = dict(jobs_per_upload)
        self._spent_s = 0.0
        self._guard = threading.Lock()

    @classmethod
    def of(
        cls, limit_minutes: float, jobs: Mapping[str, dict[str, Any] | None], job_ids: list[str]
    ) -> MediaBudget:
        """The budget of the jobs `job_ids` (documents in `jobs`), counted by the upload named."""
        counts: dict[str, int] = {}
        for job_id in job_ids:
            video = (jobs.get(job_id) or {}).get("inputVideo")
            if isinstance(video, str):
                counts[video] = counts.get(video, 0) + 1
        return cls(limit_minutes, counts)

    def admit(self, object_path: str, duration_s: float) -> JobError | None:
        with self._guard:
            jobs = self._jobs.get(object_path, 1)
            error = batch_too_large(duration_s, jobs, self._limit_minutes, self._spent_s)
            if error is None:
                self._spent_s += duration_s * jobs
            return error


class SharedInputs:
    """A batch's uploads, downloaded, probed and analysed for rendering once for all its jobs.

    Every job of a batch is the same user's and usually names the same video: a 500 MB upload
    is fetched once per batch, not once per prospect, and the render's analysis of it (probe,
    decoded greeting slot, copied audio track) is made once per greeting slot, and so are the
    parts of the email thumbnails that every job shows alike. Jobs only read these files. A
    job's own trouble with the upload (not found, not a video) is kept and given to each job
    that asks, so one bad upload costs one download; transient errors are not kept.
    (The pipeline's `Uploads`: each job's run asks it instead of downloading on its own.)
    """

    alone = False  # its jobs run beside each other

    def __init__(
        self,
        root: Path,
        load: Callable[[str, Path], tuple[Path, MediaInfo]],
        budget: MediaBudget | None = None,
        thumbnails: bool = True,
    ) -> None:
        self._root = root
        self._thumbnails_wanted = thumbnails
        self._load = load
        self._budget = budget
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._dest: dict[str, Path] = {}
        self._done: dict[str, tuple[Path, MediaInfo] | JobError] = {}
        self._analyses: dict[str, InputAnalysis | None] = {}
        self._thumbnails: dict[str, ThumbnailBase | None] = {}
        self._early: dict[str, threading.Thread] = {}

    @classmethod
    def from_storage(
        cls, clients: Clients, root: Path, budget: MediaBudget | None = None
    ) -> SharedInputs:
        def load(object_path: str, dest: Path) -> tuple[Path, MediaInfo]:
            return load_upload(clients.bucket, object_path, dest, clients.settings.max_input_bytes)

        return cls(root, load, budget, clients.settings.thumbnails)

    def _place(self, key: str, kind: str) -> tuple[threading.Lock, Path]:
        """The lock that makes `key`'s work happen once, and the folder it works in."""
        with self._guard:
            if key not in self._locks:
                self._locks[key] = threading.Lock()
                self._dest[key] = self._root / f"{kind}-{len(self._dest)}"
            return self._locks[key], self._dest[key]

    def get(self, object_path: str) -> tuple[Path, MediaInfo]:
        lock, dest = self._place(object_path, "input")
        with lock:
            if object_path not in self._done:
                try:
                    self._done[object_path] = self._load(object_path, dest)
                except JobError as error:
                    if error.retryable:
                        raise
                    self._done[object_path] = error
                loaded = self._done[object_path]
                if self._budget and not isinstance(loaded, JobError):
                    # Probed once: now the batch's media minutes are known, kept like a bad upload.
                    over = self._budget.admit(object_path, loaded[1].duration_s)
                    self._done[object_path] = over or loaded
            done = self._done[object_path]
        if isinstance(done, JobError):
            raise done
        return done

    def analysis(
        self, object_path: str, video: Path, greeting_end_s: float
    ) -> InputAnalysis | None:
        """The render's analysis of this upload for this greeting slot, made once per batch.

        None if it cannot be made: each job's render then analyses on its own, and reports the
        trouble as that job's error. Every job asks for it before its render, so the first ask
        also starts the batch's thumbnail frames (`_start_thumbnail_base`).
        """
        key = f"{object_path}\n{greeting_end_s!r}"
        self._start_thumbnail_base(key, object_path, video, greeting_end_s)
        lock, folder = self._place(key, "analysis")
        with lock:
            if key not in self._analyses:
                try:
                    # In the batch's folder, not the asking job's: every job reads the result.
                    with confined_instead_to(folder):
                        self._analyses[key] = analyze_input(video, greeting_end_s, folder)
                except Exception:
                    log.info("no shared analysis of %s", object_path)
                    self._analyses[key] = None
            return self._analyses[key]

    def _start_thumbnail_base(
        self, key: str, object_path: str, video: Path, greeting_end_s: float
    ) -> None:
        """Starts the batch's thumbnail frames on a thread of their own, once, while its first
        jobs render: made after them, every job of the first wave waited for the one making
        them (1.0-1.4 s of one ffmpeg; docs/benchmarks.md). No one job's cancel stops them."""
        if not self._thumbnails_wanted:
            return
        with self._guard:
            if key in self._early:
                return

            def make() -> None:
                with for_every_job():
                    self.thumbnail_base(object_path, video, greeting_end_s)

            early = threading.Thread(
                target=contextvars.copy_context().run, args=(make,), name="batch-thumbnails"
            )
            self._early[key] = early
        early.start()

    def close(self) -> None:
        """Waits for the thumbnail frames started early: nothing outlives the batch's folder."""
        with self._guard:
            started = list(self._early.values())
        for early in started:
            early.join()

    def thumbnail_base(
        self, object_path: str, video: Path, greeting_end_s: float
    ) -> ThumbnailBase | None:
        """The poster and GIF frames every job of this upload and greeting slot shows alike,
        made once per batch (flows/stages/thumbnails.py); None where they cannot be made, and
        each job then makes its own from its video."""
        key = f"{object_path}\n{greeting_end_s!r}"
        lock, folder = self._place(f"thumbnails\n{key}", "thumbnails")
        with lock:
            if key not in self._thumbnails:
                try:
                    with confined_instead_to(folder):
                        self._thumbnails[key] = make_thumbnail_base(video, greeting_end_s, folder)
                except MediaCancelled:
                    raise  # the asking job was cancelled: the next job makes them
                except Exception:
                    log.info("no shared thumbnails of %s", object_path)
                    self._thumbnails[key] = None
            return self._thumbnails[key]


def batch_jobs(
    batch: dict[str, Any],
    batch_id: str,
    jobs: dict[str, dict[str, Any] | None],
    flow_run_id: str | None,
) -> list[str]:
    """The jobs of `batch` this run may take, in the batch's order (pure).

    The ones the trigger would queue for it (flows/lifecycle.py), not yet started, and not given
    to another flow run (the sweep may have started one on its own).
    """
    return [
        job_id
        for job_id in batch_job_ids(batch)
        if belongs_to_batch(jobs.get(job_id), batch_id, batch)
        and (jobs.get(job_id) or {}).get("flowRunId") in (None, flow_run_id)
    ]


def read_batch(db: firestore.Client, batch_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The batch document and its listed jobs' documents (None for a missing one)."""
    snapshot = db.collection(BATCHES).document(batch_id).get()
    batch = (snapshot.to_dict() or {}) if snapshot.exists else {}
    refs = [db.collection(COLLECTION).document(job_id) for job_id in batch_job_ids(batch)]
    jobs = {snap.id: (snap.to_dict() if snap.exists else None) for snap in db.get_all(refs)}
    return batch, jobs


def summarize(states: Sequence[State[Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in states:
        name = state.type.value.lower()
        counts[name] = counts.get(name, 0) + 1
    return counts


@flow(name="greeting-batch", log_prints=True, persist_result=False)
def greeting_batch(batch_id: str) -> State[Any]:
    """Runs a batch's jobs, `batch_concurrency` at a time; each job's document tells its story."""
    logger = get_run_logger()
    clients = worker_clients()
    run_id = current_flow_run_id()
    batch, jobs = read_batch(clients.db, batch_id)
    job_ids = batch_jobs(batch, batch_id, jobs, run_id)
    logger.info("batch %s: %d of %d listed jobs to run", batch_id, len(job_ids), len(jobs))
    budget = MediaBudget.of(clients.settings.max_batch_media_minutes, jobs, job_ids)
    with run_dir(work_root(clients.settings.state_dir), f"batch-{batch_id}") as tmp:
        inputs = SharedInputs.from_storage(clients, Path(tmp), budget)
        try:
            states = run_all(clients, job_ids, run_id, inputs)
        finally:
            inputs.close()
    counts = summarize(states)
    message = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "no jobs"
    return Failed(message=message) if counts.get("failed") else Completed(message=message)


def run_all(
    clients: Clients, job_ids: list[str], run_id: str | None, inputs: SharedInputs
) -> list[State[Any]]:
    """Each job on a thread of a small pool; jobs not started yet keep a heartbeat meanwhile."""
    waiting = set(job_ids)
    lock = threading.Lock()

    def beat() -> bool:
        with lock:
            pending = list(waiting)
        if pending:
            touch_waiting_heartbeats(clients.db, pending, BATCH_ATTEMPT)
        return bool(pending)

    def one(job_id: str) -> State[Any]:
        with lock:
            waiting.discard(job_id)
        return run_job(clients, job_id, BATCH_ATTEMPT, run_id, inputs)

    # Waiting jobs only need to look alive to the sweep: a beat every third of its threshold,
    # not every 15 s (for a 400-job batch that would be more writes than all its transitions).
    waiting_interval = clients.settings.heartbeat_stale_seconds / 3
    with (
        Heartbeat(beat, waiting_interval, "heartbeat-batch-waiting"),
        ThreadPoolExecutor(clients.settings.batch_concurrency, "batch-job") as pool,
    ):
        # Each thread runs in a copy of this flow run's context, so the jobs' task runs and logs
        # belong to the batch's flow run.
        futures = [pool.submit(contextvars.copy_context().run, one, job_id) for job_id in job_ids]
        return [future.result() for future in futures]
