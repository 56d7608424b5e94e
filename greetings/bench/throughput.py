"""The throughput benchmark: one batch of prospects, as `greetings submit --names-csv` sends it.

One upload of a 30 s 1280x720 clip and one job document per name (the local espeak-ng voice),
all created at once; the batch runs until every job has ended. Reported: jobs per minute from
the first job's creation to the last job's end (server times), how many completed or failed,
the peak memory of the worker's process group (its flow runs are threads of one process; ffmpeg
runs as its children) and of the whole stack, and where the time and the CPU went: each stage's
duration from the jobs' histories, how many jobs ran at once, the CPU each service used, and what
Prefect records per flow run.
"""

from __future__ import annotations

import contextlib
import io
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests
from google.api_core.exceptions import NotFound

from flows.job import MAX_BATCH_JOBS, JobStatus
from flows.lifecycle import result_paths, upload_prefix
from greetings.bench import clips
from greetings.bench.jobs import JobTimes, JobWatch, fresh_session, prospect_names, reached
from greetings.bench.machine import (
    WORKER_SERVICE,
    MemorySampler,
    cpu_snapshot,
    cpu_used,
    load,
    memory_growth,
    service_roots,
    worker_threads,
)
from greetings.bench.orchestration import (
    ApiProbe,
    LogTail,
    flow_runs_report,
    function_invocations,
    overlap,
)
from greetings.bench.render import remux_cpu_s
from greetings.bench.stats import per_minute, ratio, spread
from greetings.client.session import Session
from greetings.commands.submit import (
    Submission,
    check_video,
    choose_voice,
    create_jobs,
    read_prospects,
)
from greetings.settings import StackSettings
from greetings.stack.manager import Stack

USER_QUOTAS = "userQuotas"  # triggers/quota.py's QUOTAS (the trigger is deployed on its own)

SECONDS_PER_JOB_TIMEOUT = 12.0
MIN_TIMEOUT_S = 300.0
PROGRESS_EVERY_S = 15.0
POLL_S = 5.0  # only detects the end; the figures come from the jobs' history
# A first wave of a batch (6 jobs at a time) by another user before the measured batch: the
# first batch after `stack up` made 127.8 a minute where the next two made 150.8 and 155.2 (the
# Functions emulator starting each trigger's Python, the Firestore emulator's JVM, the worker's
# first imports). `--compare` warms each side's worker this way too.
WARMUP_JOBS = 6
# Each stage's duration: from entering the first status to entering the second.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("trigger (pending -> queued)", JobStatus.PENDING, JobStatus.QUEUED),
    ("waiting for a worker (queued -> validating)", JobStatus.QUEUED, JobStatus.VALIDATING_INPUT),
    ("validating-input", JobStatus.VALIDATING_INPUT, JobStatus.PROCESSING_AUDIO),
    ("processing-audio", JobStatus.PROCESSING_AUDIO, JobStatus.GENERATING_VIDEO),
    ("generating-video", JobStatus.GENERATING_VIDEO, JobStatus.UPLOADING_RESULT),
    ("uploading-result", JobStatus.UPLOADING_RESULT, JobStatus.COMPLETED),
)  # fmt: skip


# --- pure figures of a finished batch -----------------------------------------------------------


def _with_created(job: JobTimes) -> dict[str, float]:
    times = dict(job.written)
    if job.created_at is not None:
        times.setdefault(JobStatus.PENDING, job.created_at)
    return times


def end_time(job: JobTimes) -> float | None:
    """When the job ended, by its history (completed, failed or cancelled)."""
    ends = [job.written[s] for s in ("completed", "failed", "cancelled") if s in job.written]
    return min(ends) if ends else None


def batch_span_s(jobs: Sequence[JobTimes]) -> float | None:
    """From the first job's creation to the last job's end (server times)."""
    starts = [job.created_at for job in jobs if job.created_at is not None]
    ends = [end for job in jobs if (end := end_time(job)) is not None]
    if not starts or not ends:
        return None
    return max(ends) - min(starts)


def rate_of_first(jobs: Sequence[JobTimes], share: float) -> dict[str, Any]:
    """Jobs per minute until the first `share` of the batch had completed (pure).

    A few stragglers (jobs left to the sweep's next round) stretch the end-to-end span; this says
    how fast the rest of the batch went.
    """
    starts = [job.created_at for job in jobs if job.created_at is not None]
    ends = sorted(
        end for job in jobs if job.status == JobStatus.COMPLETED and (end := end_time(job))
    )
    wanted = math.ceil(share * len(jobs))
    if not starts or wanted == 0 or len(ends) < wanted:
        return {"jobs": wanted, "span_s": None, "jobs_per_minute": None, "end": None}
    span = ends[wanted - 1] - min(starts)
    return {
        "jobs": wanted,
        "span_s": round(span, 1),
        "jobs_per_minute": per_minute(wanted, span),
        "end": ends[wanted - 1],
    }


def stage_seconds(jobs: Sequence[JobTimes]) -> dict[str, dict[str, Any]]:
    """Each stage's duration over the completed jobs: p50, p95, max and mean, in seconds."""
    found: dict[str, dict[str, Any]] = {}
    done = [job for job in jobs if job.status == JobStatus.COMPLETED]
    for label, start, end in STAGES:
        values = []
        for job in done:
            times = _with_created(job)
            began, ended = reached(times, start), reached(times, end)
            if began is not None and ended is not None:
                values.append(ended - began)
        figures: dict[str, Any] = spread(values, digits=3)
        figures["mean"] = round(sum(values) / len(values), 3) if values else None
        found[label] = figures
    return found


def running_at_once(jobs: Sequence[JobTimes]) -> dict[str, float | int | None]:
    """How many jobs were in a running stage at once: the peak, and the mean over the batch."""
    intervals = []
    for job in jobs:
        began, ended = reached(job.written, JobStatus.VALIDATING_INPUT), end_time(job)
        if began is not None and ended is not None and ended >= began:
            intervals.append((began, ended))
    return overlap(intervals, batch_span_s(jobs))


def per_job(cpu: Mapping[str, Any], jobs: int) -> dict[str, float]:
    """CPU seconds per job of each service, and of the worker's Python and its subprocesses."""
    if not jobs:
        return {}
    services: Mapping[str, float] = cpu["services_cpu_s"]
    reaped: Mapping[str, float] = cpu["services_reaped_children_cpu_s"]
    found = {name: round(seconds / jobs, 3) for name, seconds in services.items()}
    if WORKER_SERVICE in services:
        worker_children = reaped.get(WORKER_SERVICE, 0.0)
        found["prefect-worker: python (flow engine, clients)"] = round(
            (services[WORKER_SERVICE] - worker_children) / jobs, 3
        )
        found["prefect-worker: subprocesses (ffmpeg, ffprobe, espeak-ng)"] = round(
            worker_children / jobs, 3
        )
    found["all services"] = round(sum(services.values()) / jobs, 3)
    return found


def media_over_remux(cpu_per_job: Mapping[str, float], remux_s: float) -> float | None:
    """A job's media CPU (the worker's subprocesses) as a multiple of a plain remux's."""
    return ratio(
        cpu_per_job.get("prefect-worker: subprocesses (ffmpeg, ffprobe, espeak-ng)"), remux_s
    )


def stack_over_remux(cpu_per_job: Mapping[str, float], remux_s: float) -> float | None:
    """A job's CPU across the stack as a multiple of a plain remux's: the host's speed, which
    moved every figure by 15-50 % within a day here, moves both alike (6.8-7.4x at a remux of
    0.082-0.103 CPU s, 6.3-6.9x at 0.115-0.131, 2026-12-07), so runs hours apart compare."""
    return ratio(cpu_per_job.get("all services"), remux_s)


# --- the run --------------------------------------------------------------------------------------


def warm_up(
    settings: StackSettings, submission: Submission, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Runs `submission` as a user of its own, waits for its end and removes what it stored;
    how long that took. Nothing of it is in the measured batch's figures."""
    session = fresh_session(settings, "warmup")
    watch = JobWatch(session.listener_db, session.user.uid)
    began = time.monotonic()
    ids = list(create_jobs(session, submission, io.StringIO()))
    deadline = began + MIN_TIMEOUT_S
    while len(watch.finished(ids)) < len(ids) and time.monotonic() < deadline:
        time.sleep(1.0)
        watch.refresh()
    ended = len(watch.finished(ids))
    took = time.monotonic() - began
    remove_stored(session, ids)
    progress(f"throughput: warm-up batch of {len(ids)} jobs ended ({ended}) in {took:.1f} s")
    return {"jobs": len(ids), "ended": ended, "seconds": round(took, 1)}


def run_throughput(
    settings: StackSettings,
    count: int,
    progress: Callable[[str], None],
    warmup_jobs: int = WARMUP_JOBS,
) -> dict[str, Any]:
    load_start = load()
    stack = Stack(settings)
    roots = service_roots(stack)
    if WORKER_SERVICE not in roots:
        raise RuntimeError("the local stack's worker is not running: `greetings stack up`")
    session = fresh_session(settings, "throughput")
    clip = clips.clip_30s_720p(settings)

    # Exactly what `greetings submit VIDEO --names-csv FILE` does with its arguments.
    with tempfile.TemporaryDirectory(prefix="names-", dir=clips.bench_dir(settings)) as tmp:
        csv_path = Path(tmp) / "prospects.csv"
        # New names for the warm-up too: none of the measured batch's speech is cached.
        names = prospect_names(count + warmup_jobs, random.Random())
        csv_path.write_text("name\n" + "".join(f"{name}\n" for name in names), encoding="utf-8")
        prospects = read_prospects(None, str(csv_path), sys.stderr)
    check_video(clip, clips.GREETING_END_S, settings)
    submission = Submission(
        clip, prospects.names[warmup_jobs:], choose_voice(None, settings), clips.GREETING_END_S
    )
    warmed = (
        warm_up(settings, replace(submission, names=prospects.names[:warmup_jobs]), progress)
        if warmup_jobs
        else None
    )

    # Followed by reading the jobs every POLL_S: a listener would cost this machine more CPU
    # than the trigger does (see JobWatch.refresh); the times come from the jobs' history.
    watch = JobWatch(session.listener_db, session.user.uid)
    functions_log = LogTail(stack.logs / "firebase-emulators.log")
    timeout_s = max(MIN_TIMEOUT_S, count * SECONDS_PER_JOB_TIMEOUT)
    # Before the batch, so its CPU stays out of the batch's figures.
    remux_s = remux_cpu_s(clip, clips.bench_dir(settings))
    cpu_before = cpu_snapshot(roots)
    # More names than one batch takes go in rounds, each submitted when the last has ended: a
    # user's allowance (triggers/quota.py) takes one full batch at once and refuses the rest.
    rounds = [
        replace(submission, names=submission.names[start : start + MAX_BATCH_JOBS])
        for start in range(0, len(submission.names), MAX_BATCH_JOBS)
    ]
    if len(rounds) > 1:
        allow_rounds(session, count)
    with MemorySampler(roots) as memory, ApiProbe(settings.prefect_api) as probe:
        began = time.time()
        deadline = time.monotonic() + timeout_s
        job_ids: list[str] = []
        created_s = 0.0
        done = 0
        for number, part in enumerate(rounds, 1):
            creating = time.time()
            ids = list(create_jobs(session, part, io.StringIO()))
            took = time.time() - creating
            created_s += took
            job_ids += ids
            which = f" (round {number} of {len(rounds)})" if len(rounds) > 1 else ""
            progress(f"throughput: {len(ids)} jobs created{which} in {took:.1f} s")
            next_progress = time.monotonic() + PROGRESS_EVERY_S
            while time.monotonic() < deadline:
                watch.refresh()
                done = len(watch.finished(job_ids))
                if done == len(job_ids):
                    break
                if time.monotonic() >= next_progress:
                    elapsed = time.time() - began
                    progress(f"throughput: {done}/{count} ended, {elapsed:.0f} s")
                    next_progress += PROGRESS_EVERY_S
                time.sleep(POLL_S)
        client_s = time.time() - began
    cpu_after = cpu_snapshot(roots)
    progress(f"throughput: {done}/{len(job_ids)} ended after {client_s:.0f} s; collecting figures")
    jobs = [watch.times(job_id) for job_id in job_ids]

    completed = sum(job.status == JobStatus.COMPLETED for job in jobs)
    span = batch_span_s(jobs)
    first_90 = rate_of_first(jobs, 0.9)
    cpu = cpu_used(cpu_before, cpu_after)
    threads = worker_threads(roots[WORKER_SERVICE])
    flow_run_ids = [
        str(run_id) for job_id in job_ids if (run_id := watch.docs.get(job_id, {}).get("flowRunId"))
    ]
    try:
        prefect = flow_runs_report(settings.prefect_api, flow_run_ids, threads)
    except (requests.RequestException, ValueError, KeyError) as exc:
        prefect = {"error": f"{type(exc).__name__}: {exc}"}
    removed = remove_stored(session, job_ids)
    orchestrator_refused = sum("orchestrator-unavailable" in job.errors_seen for job in jobs)
    retried = sum(job.attempts > 1 for job in jobs)
    failures: dict[str, int] = {}
    for job in jobs:
        if job.status != JobStatus.COMPLETED:
            key = f"{job.status}:{job.error_code}" if job.error_code else job.status
            failures[key] = failures.get(key, 0) + 1
    cpu_per_job = per_job(cpu, len(jobs))
    return {
        "throughput": {
            "jobs": len(jobs),
            "completed": completed,
            "failed": sum(job.status == JobStatus.FAILED for job in jobs),
            "unfinished": sum(
                job.status not in ("completed", "failed", "cancelled") for job in jobs
            ),
            "outcomes": failures,
            "jobs_per_minute": per_minute(completed, span),
            "span_s": round(span, 1) if span is not None else None,
            "first_90pct": {
                **first_90,
                # Busy while the bulk of the batch ran: near 100 % means CPU-bound.
                "machine_busy_pct": memory.busy_pct(
                    min(j.created_at for j in jobs if j.created_at), first_90["end"]
                )
                if first_90["end"]
                else None,
            },
            # Jobs whose flow run the trigger could not create (Prefect answered 503 after its
            # retries): they wait for the sweep. And jobs that needed a second attempt.
            "left_to_sweep": orchestrator_refused,
            "retried": retried,
            "client_span_s": round(client_s, 1),
            "create_s": round(created_s, 2),
            **memory.report(),
            # The worker's Python process after the first tenth of the jobs and after the last.
            "worker_memory_growth": memory_growth(
                memory.worker_process,
                [
                    end
                    for job in jobs
                    if job.status == JobStatus.COMPLETED and (end := end_time(job))
                ],
            ),
            "rounds": len(rounds),
            "warmup": warmed,
            "worker_threads": threads,
            "clip": clip.name,
            "user": session.user.uid,
            "objects_removed": removed,
            "stage_s": stage_seconds(jobs),
            "running_at_once": running_at_once(jobs),
            "cpu": cpu,
            "cpu_s_per_job": cpu_per_job,
            # The cost issue's floor: a plain remux of the same clip, in CPU seconds.
            "remux_cpu_s": remux_s,
            "media_over_remux": media_over_remux(cpu_per_job, remux_s),
            "stack_over_remux": stack_over_remux(cpu_per_job, remux_s),
            "prefect": prefect,
            "prefect_api": probe.report(),
            # Includes other users' invocations during the batch, if any.
            "trigger_invocations": function_invocations(functions_log.read()),
            "load_start": load_start,
            "load_end": load(),
        }
    }


def allow_rounds(session: Session, count: int) -> None:
    """The bench user's own allowance (`jobsPerMinute` in its userQuotas document, what an
    operator sets for a large customer): at the default 120 a minute, a round of 400 leaves the
    bucket owing 280 and the next round, sent when the first has ended, was refused
    `rate-limited` once a round took under about 3.3 minutes. The bench measures the worker,
    not the quota (whose tests are triggers' own)."""
    quota = session.listener_db.collection(USER_QUOTAS).document(session.user.uid)
    quota.set({"jobsPerMinute": count}, merge=True)


def remove_stored(session: Session, job_ids: Sequence[str]) -> int | None:
    """Deletes what the batch stored (its results, thumbnails and upload) once it is measured;
    how many objects went (None: not the local emulator, nothing removed).

    The Storage emulator rewrites an index of every object it holds on each write (indented
    JSON, 22 ms at 1534 objects): left in place, each run's 300 objects and 2.8 GB made the next
    run's Storage figures worse, and a development stack's disk fill up.
    """
    bucket = getattr(session.uploads, "bucket", None)
    if not session.local or bucket is None:
        return None
    uid = session.user.uid
    paths = [path for job_id in job_ids for path in result_paths(uid, job_id)]
    paths += [blob.name for blob in bucket.list_blobs(prefix=upload_prefix(uid))]
    removed = 0
    for path in paths:
        with contextlib.suppress(NotFound):
            bucket.blob(path).delete()
            removed += 1
    return removed
