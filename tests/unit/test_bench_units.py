"""The pure parts of `greetings bench`: percentiles, ratios, job times, the report's shape."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.stages.validate import clean_name
from greetings.bench import bench_command, parse_sections
from greetings.bench.compare import CompareError, checkout, resolve
from greetings.bench.jobs import (
    JobTimes,
    history_times,
    prospect_names,
    reached,
    since_created_ms,
)
from greetings.bench.latency import latency_figures
from greetings.bench.machine import MemorySampler, busy_between, memory_growth
from greetings.bench.orchestration import function_invocations, overlap, state_steps
from greetings.bench.render import fresh_outputs, interleaved, summarize
from greetings.bench.report import text_report
from greetings.bench.stats import check_goals, per_minute, percentile, ratio, spread
from greetings.bench.throughput import (
    batch_span_s,
    media_over_remux,
    rate_of_first,
    running_at_once,
    stack_over_remux,
    stage_seconds,
)
from greetings.cli import build_parser
from greetings.errors import UsageError

T0 = 1_800_000_000.0


def job(status: str = "completed", created: float = T0, **at: float) -> JobTimes:
    """A job whose history wrote each status at T0 + seconds (`validating_input=2.0`)."""
    written = {name.replace("_", "-"): T0 + seconds for name, seconds in at.items()}
    return JobTimes("j", status, created, seen=dict(written), written=written)


# --- percentiles and ratios ----------------------------------------------------------------------


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20, shuffled order must not matter
    random.Random(3).shuffle(values)
    assert percentile(values, 50) == pytest.approx(10.5)
    assert percentile(values, 95) == pytest.approx(19.05)
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 20
    assert percentile([7.0], 95) == 7.0


def test_percentile_refuses_nothing_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_spread_of_nothing_is_none_not_zero() -> None:
    assert spread([]) == {"p50": None, "p95": None, "max": None, "n": 0}
    assert spread([100.4, 200.6], digits=0) == {"p50": 150.0, "p95": 196.0, "max": 201.0, "n": 2}


def test_ratio_and_rate() -> None:
    assert ratio(0.36, 0.12) == 3.0
    assert ratio(1.0, 0.0) is None
    assert ratio(None, 1.0) is None
    assert per_minute(100, 50.0) == 120.0
    assert per_minute(3, 0) is None


# --- job times -----------------------------------------------------------------------------------


def test_history_times_keep_the_first_entry_of_the_first_attempt() -> None:
    at = datetime.fromtimestamp(T0, UTC)
    history = [
        {"status": "queued", "at": at + timedelta(seconds=0.2), "attempt": 0},
        {"status": "failed", "at": at + timedelta(seconds=3), "attempt": 0},
        {"status": "pending", "at": at + timedelta(seconds=9), "attempt": 1},
        {"status": "queued", "at": at + timedelta(seconds=9.1), "attempt": 1},
    ]
    found = history_times(history)
    assert found == {"queued": pytest.approx(T0 + 0.2), "failed": pytest.approx(T0 + 3)}


def test_a_status_the_listener_missed_counts_as_reached_when_a_later_one_is_seen() -> None:
    # The listener saw queued, then processing-audio: validating-input was over by then.
    seen = {"pending": T0, "queued": T0 + 0.1, "processing-audio": T0 + 2.5, "completed": T0 + 4}
    assert reached(seen, "validating-input") == T0 + 2.5
    assert reached(seen, "queued") == T0 + 0.1
    assert reached({"pending": T0}, "queued") is None
    # `failed` is not on the way to `completed`: it proves nothing about the stages.
    assert reached({"failed": T0 + 1}, "validating-input") is None


def test_milliseconds_since_creation() -> None:
    finished = job(queued=0.25, validating_input=1.5, completed=4.0)
    assert since_created_ms(finished, "queued", "written") == pytest.approx(250)
    assert since_created_ms(finished, "completed", "seen") == pytest.approx(4000)
    assert since_created_ms(job(created=None, queued=1), "queued", "seen") is None  # type: ignore[arg-type]


def test_latency_figures_have_every_milestone_and_skip_failed_jobs() -> None:
    jobs = [
        job(queued=0.1 * i, validating_input=1 + i * 0.1, completed=3 + i * 0.1)
        for i in range(1, 5)
    ]
    jobs.append(job("failed", queued=9, failed=10))
    figures = latency_figures(jobs, "written")
    assert set(figures) == {"queued", "started", "completed"}
    assert figures["queued"]["n"] == 4
    assert figures["queued"]["p50"] == 250
    assert figures["completed"]["max"] == 3400


def test_prospect_names_are_distinct_and_valid() -> None:
    names = prospect_names(100, random.Random(1))
    assert len(names) == len(set(names)) == 100
    assert all(clean_name(name) == name for name in names)
    assert all(len(name) <= 12 for name in names)  # "Hey <name>," must fit a 1.5 s slot


# --- throughput figures --------------------------------------------------------------------------


def test_batch_span_runs_from_the_first_creation_to_the_last_end() -> None:
    jobs = [
        job(created=T0, validating_input=1, completed=3),
        job(created=T0 + 0.5, validating_input=2, completed=5),
        job("failed", created=T0 + 1, failed=6),
    ]
    assert batch_span_s(jobs) == pytest.approx(6)
    assert running_at_once(jobs) == {"peak": 2, "mean": round((2 + 3) / 6, 2)}


def test_rate_of_the_first_part_of_a_batch_ignores_stragglers() -> None:
    jobs = [job(created=T0, completed=float(i)) for i in range(1, 10)]
    jobs.append(job(created=T0, completed=300.0))  # left to the sweep
    assert rate_of_first(jobs, 0.9) == {
        "jobs": 9,
        "span_s": 9.0,
        "jobs_per_minute": 60.0,
        "end": T0 + 9,
    }
    assert rate_of_first(jobs[:3], 0.9)["jobs_per_minute"] == 60.0
    unfinished = [*jobs[:8], job("pending"), job("pending")]
    assert rate_of_first(unfinished, 0.9)["jobs_per_minute"] is None


def test_stage_seconds_take_pending_from_creation() -> None:
    jobs = [
        job(
            queued=0.2,
            validating_input=3.2,
            processing_audio=3.5,
            generating_video=3.6,
            uploading_result=4.2,
            completed=4.5,
        )
    ]
    stages = stage_seconds(jobs)
    assert stages["trigger (pending -> queued)"]["p50"] == pytest.approx(0.2)
    assert stages["waiting for a worker (queued -> validating)"]["mean"] == pytest.approx(3.0)
    assert stages["generating-video"]["p95"] == pytest.approx(0.6)


def test_state_steps_between_prefect_states() -> None:
    states = [
        {"name": "Scheduled", "timestamp": "2026-11-25T21:11:16.000000Z"},
        {"name": "Pending", "timestamp": "2026-11-25T21:11:17.000000Z"},
        {"name": "Submitting", "timestamp": "2026-11-25T21:11:19.500000Z"},
        {"name": "Running", "timestamp": "2026-11-25T21:11:19.700000Z"},
        {"name": "Completed", "timestamp": "2026-11-25T21:11:21.200000Z"},
    ]
    steps = state_steps(states)
    assert list(steps.values()) == pytest.approx([1.0, 2.5, 0.2, 1.5])
    assert state_steps(states[:2]) == {
        "claimed by the worker (Scheduled -> Pending)": pytest.approx(1.0)
    }


def test_busy_share_between_two_times() -> None:
    samples = [(T0, 100, 1000), (T0 + 1, 250, 1200), (T0 + 2, 350, 1400), (T0 + 3, 350, 1600)]
    assert busy_between(samples, T0, T0 + 2) == 62.5
    assert busy_between(samples, T0 + 2.5, T0 + 3) is None


def test_overlap_counts_open_intervals() -> None:
    assert overlap([(0, 4), (1, 2), (3, 6)], 6) == {"peak": 2, "mean": round(8 / 6, 2)}
    assert overlap([], 6) == {"peak": None, "mean": None}


def test_function_invocations_from_the_emulator_log() -> None:
    log = """
i  functions: Beginning execution of "us-central1-on_job_created"
i  functions: Finished "us-central1-on_job_created" in 120.5ms
i  functions: Beginning execution of "us-central1-on_job_updated"
i  functions: Beginning execution of "us-central1-on_job_created"
i  functions: Finished "us-central1-on_job_updated" in 3.5ms
>  job x: Prefect unavailable, left pending for the sweep
i  functions: Finished "us-central1-on_job_created" in 1879.5ms
"""
    found = function_invocations(log)
    assert found["max_in_flight"] == 2
    assert found["on_job_created"]["n"] == 2
    assert found["on_job_created"]["total_s"] == 2.0
    assert found["on_job_updated"]["max"] == 4.0  # rounded to whole milliseconds
    assert function_invocations("") == {"max_in_flight": 0}


# --- the report ----------------------------------------------------------------------------------


def test_render_summary_shape_and_ratios() -> None:
    short = summarize({"remux": 0.12, "render": 0.36, "reencode": 22.9, "whole_audio": 1.2})
    assert short["render_over_remux"] == 3.0
    assert short["reencode_over_render"] == pytest.approx(63.61)
    ten = summarize({"remux": 0.6, "render": 1.9})
    assert {
        "remux_s",
        "render_s",
        "reencode_s",
        "render_over_remux",
        "reencode_over_render",
    } <= set(ten)
    assert ten["reencode_s"] is None and ten["reencode_over_render"] is None


def sample_report() -> dict[str, Any]:
    render = summarize({"remux": 0.12, "render": 0.5, "reencode": 22.0})
    render["render_10min"] = summarize({"remux": 0.6, "render": 2.4})
    return {
        "machine": {
            "cpu_count": 2,
            "memory_mb": 24000,
            "load_start": [1.0, 1.0, 1.0],
            "load_end": [2.0, 1.5, 1.0],
            "ffmpeg": "5.1",
        },
        "render": render,
        "latency_ms": {
            k: {"p50": 250.0, "p95": 900.0, "max": 1000.0, "n": 20}
            for k in ("queued", "started", "completed")
        },
        "throughput": {
            "jobs": 100,
            "completed": 100,
            "failed": 0,
            "jobs_per_minute": 60.0,
            "worker_peak_mb": 400,
            "cpu_s_per_job": {"prefect-worker: subprocesses (ffmpeg, ffprobe, espeak-ng)": 0.25},
            "remux_cpu_s": 0.08,
            "media_over_remux": media_over_remux(
                {"prefect-worker: subprocesses (ffmpeg, ffprobe, espeak-ng)": 0.25}, 0.08
            ),
            "stack_over_remux": stack_over_remux({"all services": 0.6}, 0.08),
        },
    }


def test_goals_are_checked_where_the_report_has_the_figure() -> None:
    report = sample_report()
    report["latency_ms"]["completed"]["p50"] = 3000.0  # the goal is under 3 s
    goals = {g["key"]: g["met"] for g in check_goals(report)}
    assert goals == {
        "render.render_over_remux": False,  # 0.5 / 0.12 = 4.17x
        "render.render_10min.render_over_remux": False,  # 2.4 / 0.6 = 4x
        "latency_ms.queued.p50": True,
        "latency_ms.started.p50": True,
        "latency_ms.completed.p50": False,
        "throughput.jobs_per_minute": False,
        "throughput.worker_peak_mb": True,
        "throughput.media_over_remux": False,  # 0.25 / 0.08 = 3.12x
    }
    assert check_goals({"machine": {}}) == []


def test_a_jobs_media_is_held_against_a_plain_remux_of_its_clip() -> None:
    media = "prefect-worker: subprocesses (ffmpeg, ffprobe, espeak-ng)"
    assert media_over_remux({media: 0.25}, 0.09) == 2.78
    assert media_over_remux({media: 0.25}, 0.0) is None  # no floor measured: no ratio
    assert media_over_remux({}, 0.09) is None
    table = text_report(sample_report())
    line = next(line for line in table.splitlines() if "a plain remux of the clip" in line)
    assert line.split()[-8:] == [
        "0.080",
        "(media",
        "per",
        "job:",
        "3.12x,",
        "all",
        "services:",
        "7.5x)",
    ]
    older = sample_report()
    del older["throughput"]["stack_over_remux"]  # a report from before the figure existed
    line = next(line for line in text_report(older).splitlines() if "a plain remux" in line)
    assert line.split()[-5:] == ["0.080", "(media", "per", "job:", "3.12x)"]
    assert "media CPU per job / remux" in table


def test_report_is_json_with_the_documented_keys_and_prints_as_a_table() -> None:
    report = sample_report()
    decoded = json.loads(json.dumps(report))
    for key in ("remux_s", "render_s", "reencode_s", "render_over_remux", "reencode_over_render"):
        assert key in decoded["render"] and key in decoded["render"]["render_10min"]
    assert set(decoded["latency_ms"]["queued"]) >= {"p50", "p95"}
    assert {"jobs", "jobs_per_minute", "worker_peak_mb"} <= set(decoded["throughput"])
    table = text_report(report)
    assert "render / remux" in table and "NOT MET" in table


def test_sections_and_the_command_line() -> None:
    assert parse_sections(None) == ["render", "names", "latency", "throughput"]
    assert parse_sections("throughput, render") == ["render", "throughput"]
    with pytest.raises(ValueError):
        parse_sections("render,speed")
    args = build_parser().parse_args(
        ["bench", "--json", "--only", "latency", "--latency-jobs", "5"]
    )
    assert (args.json, args.only, args.latency_jobs, args.jobs, args.runs) == (
        True,
        "latency",
        5,
        100,
        5,
    )


# --- --compare REF ------------------------------------------------------------------------------


def batch_figures(jobs_per_minute: float, worker: float, media: float) -> dict[str, Any]:
    return {
        "jobs": 100,
        "completed": 100,
        "jobs_per_minute": jobs_per_minute,
        "worker_peak_mb": 900,
        "cpu_s_per_job": {
            "prefect-worker": worker,
            "prefect-worker: python (flow engine, clients)": round(worker - media, 3),
            "prefect-worker: subprocesses (ffmpeg, ffprobe, espeak-ng)": media,
            "all services": worker + 0.6,
        },
        "stage_s": {"generating-video": {"p50": 2.6}},
    }


def test_compare_prints_both_batches_and_this_one_as_a_share_of_refs() -> None:
    report = {
        "machine": {},
        "compare": {
            "ref": "main~3",
            "commit": "e9a48e0" + "0" * 33,
            **{"throughput": batch_figures(55.4, 1.258, 1.110)},
        },
        "throughput": batch_figures(79.2, 0.704, 0.511),
    }
    table = text_report(report)
    assert "throughput (worker of main~3): 100 jobs" in table
    row = next(line for line in table.splitlines() if line.strip().startswith("worker CPU s"))
    assert row.split()[-3:] == ["1.258", "0.704", "0.56"]
    media = next(line for line in table.splitlines() if "its subprocesses" in line)
    assert media.split()[-1] == "0.46"
    # A figure one side lacks is a dash, not a made-up ratio.
    assert next(line for line in table.splitlines() if "uploading-result" in line).split()[-3:] == [
        "-",
        "-",
        "-",
    ]


def test_compare_checks_out_a_commit_once_and_refuses_what_git_does_not_know(
    tmp_path: Path,
) -> None:
    commit = resolve("HEAD")
    assert len(commit) == 40
    tree = checkout(commit, tmp_path)
    assert (tree / "flows" / "worker.py").is_file() and (tree / "prefect.yaml").is_file()
    marker = tree / "flows" / "marker"
    marker.write_text("kept")
    assert checkout(commit, tmp_path) == tree and marker.read_text() == "kept"
    assert not list(tmp_path.glob(".ref-*"))
    with pytest.raises(CompareError, match="not a commit"):
        resolve("no-such-ref-anywhere")


def test_compare_needs_the_throughput_section() -> None:
    args = build_parser().parse_args(["bench", "--only", "render", "--compare", "HEAD~1"])
    assert args.compare == "HEAD~1"
    with pytest.raises(UsageError, match="--compare runs the throughput section"):
        bench_command(args)


def test_the_warm_up_is_bounded_and_said_in_the_report() -> None:
    args = build_parser().parse_args(["bench", "--only", "throughput", "--warmup", "101"])
    with pytest.raises(UsageError, match="--warmup must be 0 to 100"):
        bench_command(args)
    assert build_parser().parse_args(["bench"]).warmup is None  # the bench's default, 6
    report = sample_report()
    report["throughput"]["warmup"] = {"jobs": 6, "ended": 6, "seconds": 9.4}
    assert "6 jobs of another user, 6 ended in 9.4 s (not in these figures)" in text_report(report)
    report["throughput"]["warmup"] = None
    assert "none (--warmup 0)" in text_report(report)


def test_memory_growth_from_the_first_tenth_of_the_jobs_to_the_last() -> None:
    # The worker's Python process sampled every second: 400 MB until t=20, then 430 MB.
    samples = [(T0 + s, 400.0 if s < 20 else 430.0) for s in range(0, 60)]
    ends = [T0 + 1 + 0.5 * i for i in range(100)]  # job 10 ends at T0 + 5.5, job 100 at + 50.5
    growth = memory_growth(samples, ends)
    assert growth == {
        "after_jobs": 10,
        "early_mb": 400,
        "after_all_jobs": 100,
        "late_mb": 430,
        "growth_pct": 7.5,
    }
    report = {"machine": {}, "throughput": {"worker_memory_growth": growth}}
    assert {g["goal"]: g["met"] for g in check_goals(report)} == {"worker memory growth": True}
    assert "+7.5 % (its Python process: 400 MB after 10 jobs" in text_report(report)
    # Too few jobs, or no sample after the last end: no figure rather than a wrong one.
    assert memory_growth(samples, ends[:9]) is None
    assert memory_growth(samples[:30], ends) is None


def test_the_memory_sampler_samples_once_more_as_the_batch_ends() -> None:
    """The thread samples every few seconds; the last job may end after its last sample. The
    sample taken on leaving makes one after every job's end."""
    worker = os.getpid()  # this process stands in for the worker
    with MemorySampler({"prefect-worker": worker}, every_s=60.0) as sampler:
        while not sampler.worker_process:
            time.sleep(0.01)
        ended = time.time()
    assert len(sampler.worker_process) == 2
    assert sampler.worker_process[-1][0] >= ended and sampler.worker_process[-1][1] > 0
    ends = [sampler.worker_process[0][0] - 1.0] * 9 + [ended]
    assert memory_growth(sampler.worker_process, ends) is not None


def test_the_latency_table_says_where_a_lone_jobs_time_goes() -> None:
    lone = [
        job(queued=0.2, validating_input=1.1, processing_audio=1.2, generating_video=1.4,
            uploading_result=2.1, completed=2.6)
        for _ in range(3)
    ]  # fmt: skip
    report = {
        "machine": {},
        "latency_ms": latency_figures(lone, "seen"),
        "latency": {"jobs": 3, "completed": 3, "stage_s": stage_seconds(lone)},
    }
    table = text_report(report)
    rows = {line.split()[0]: line.split()[-3:] for line in table.splitlines() if line.strip()}
    assert rows["generating-video"] == ["0.70", "0.70", "0.70"]
    assert rows["uploading-result"] == ["0.50", "0.50", "0.50"]
    assert "waiting for a worker (queued -> validating)" in table


def test_a_fork_that_has_not_exec_d_is_not_counted_again() -> None:
    """A child between fork and exec shows its parent's pages in its own VmRSS."""
    from greetings.stack.procs import own_images, proc_table, rss_mb, tree

    spawned = subprocess.Popen(["sleep", "30"])
    child = os.fork()
    if child == 0:  # pragma: no cover - the forked copy of this test process only waits
        time.sleep(30)
        os._exit(0)
    try:
        table = proc_table()
        me = os.getpid()
        family = {me, child, spawned.pid}
        assert family <= tree(me, table)
        counted = own_images(family, table)
        assert counted == {me, spawned.pid}
        assert rss_mb(family) - rss_mb(counted) >= 0.5 * rss_mb([me])
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        spawned.kill()
        spawned.wait()


def test_interleaved_settles_before_every_action_outside_its_time() -> None:
    calls: list[str] = []

    def settle() -> None:
        calls.append("settle")
        time.sleep(0.05)  # far longer than appending to a list: counted, it would show

    figures = interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        runs=3,
        settle=settle,
    )
    assert calls == ["settle", "a", "settle", "b"] * 3
    assert set(figures) == {"a", "b"} and all(seconds < 0.05 for seconds in figures.values())


def test_fresh_outputs_removes_what_the_last_action_wrote(tmp_path: Path) -> None:
    written, never = tmp_path / "render.mp4", tmp_path / "other.mp4"
    written.write_bytes(b"x" * 1024)
    fresh_outputs([written, never])
    assert not written.exists() and not never.exists()


def test_the_stacks_cpu_is_held_against_the_same_remux_as_the_media() -> None:
    per_job = {
        "prefect-worker: subprocesses (ffmpeg, ffprobe, espeak-ng)": 0.12,
        "all services": 0.6,
    }
    assert stack_over_remux(per_job, 0.08) == pytest.approx(7.5)
    assert media_over_remux(per_job, 0.08) == pytest.approx(1.5)
    assert stack_over_remux({}, 0.08) is None
    assert stack_over_remux(per_job, 0.0) is None
