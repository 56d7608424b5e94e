"""The latency benchmark: how soon a new job is queued, started and finished, one job at a time.

`jobs` jobs are created one by one as an end user (a short clip uploaded once, then one job
document each, as `greetings submit` writes them); each waits for the previous one to finish, so
nothing queues behind anything else. For each job, from its server `createdAt`:

- seen: when a client's snapshot listener first showed the job queued, started
  (`validating-input`) and completed: what a user watching the page waits, listener delay
  included;
- written: the job's `history[].at` for the same statuses: the server side alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.job import JobRequest, JobStatus
from flows.stages.synthesize import ESPEAK_VOICE_PREFIX
from greetings.bench import clips
from greetings.bench.jobs import (
    JobTimes,
    JobWatch,
    fresh_session,
    new_job_id,
    prospect_names,
    since_created_ms,
)
from greetings.bench.machine import load
from greetings.bench.stats import spread
from greetings.bench.throughput import stage_seconds
from greetings.client.transfer import upload_once
from greetings.settings import StackSettings

JOB_TIMEOUT_S = 180.0
# Keys of the JSON report, and the status each one waits for.
MILESTONES = {
    "queued": JobStatus.QUEUED,
    "started": JobStatus.VALIDATING_INPUT,
    "completed": JobStatus.COMPLETED,
}


def latency_figures(jobs: list[JobTimes], source: str) -> dict[str, Any]:
    """p50/p95 (ms) of each milestone over the completed jobs, from `seen` or `written` (pure)."""
    done = [job for job in jobs if job.status == JobStatus.COMPLETED]
    figures: dict[str, Any] = {}
    for key, status in MILESTONES.items():
        values = [ms for job in done if (ms := since_created_ms(job, status, source)) is not None]
        figures[key] = spread(values)
    return figures


def samples_ms(jobs: list[JobTimes], source: str) -> dict[str, list[int | None]]:
    """Every job's milestones in creation order, for a look at outliers (the first job...)."""
    return {
        key: [
            None if (ms := since_created_ms(job, status, source)) is None else round(ms)
            for job in jobs
        ]
        for key, status in MILESTONES.items()
    }


def run_latency(
    settings: StackSettings, count: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    load_start = load()
    session = fresh_session(settings, "latency")
    clip: Path = clips.clip_short(settings)
    upload = upload_once(session.uploads, session.user.uid, clip)
    voice = ESPEAK_VOICE_PREFIX + settings.espeak_voice
    watch = JobWatch(session.listener_db, session.user.uid).start()
    jobs: list[JobTimes] = []
    timed_out: list[str] = []
    try:
        for i, name in enumerate(prospect_names(count, random.Random())):
            job_id = new_job_id()
            session.firestore.create_job(
                job_id,
                JobRequest(
                    user_id=session.user.uid,
                    input_video=upload.path,
                    prospect_name=name,
                    voice_id=voice,
                    greeting_end_second=clips.GREETING_END_S,
                ),
            )
            if not watch.wait([job_id], JOB_TIMEOUT_S):
                timed_out.append(job_id)
                progress(f"latency: job {job_id} not finished after {JOB_TIMEOUT_S:.0f} s: stop")
                jobs.append(watch.times(job_id))
                break
            jobs.append(watch.times(job_id))
            job = jobs[-1]
            took = since_created_ms(job, JobStatus.COMPLETED, "seen")
            shown = f"{took:.0f} ms" if took is not None else job.status
            progress(f"latency: job {i + 1}/{count} {job.status} ({shown})")
    finally:
        watch.stop()
    return {
        "latency_ms": latency_figures(jobs, "seen"),
        "latency_server_ms": latency_figures(jobs, "written"),
        "latency": {
            "jobs": len(jobs),
            "completed": sum(job.status == JobStatus.COMPLETED for job in jobs),
            "failed": [
                {"job_id": job.job_id, "status": job.status, "error": job.error_code}
                for job in jobs
                if job.status != JobStatus.COMPLETED
            ],
            "timed_out": timed_out,
            "user": session.user.uid,
            "clip": clip.name,
            "stage_s": stage_seconds(jobs),
            "samples_seen_ms": samples_ms(jobs, "seen"),
            "samples_written_ms": samples_ms(jobs, "written"),
            "load_start": load_start,
            "load_end": load(),
        },
    }
