"""The machine the figures come from, and what the stack's processes use while they are made.

Figures from a shared 2-core machine mean little without the load beside them, so every section
records the load average before and after itself. Memory and CPU are read from /proc.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greetings.stack.manager import Stack
from greetings.stack.procs import Proc, own_images, proc_table, rss_mb, tree

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WORKER_SERVICE = "prefect-worker"


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def memory_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return None


def ffmpeg_version() -> str | None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None
    first = subprocess.run(
        [ffmpeg, "-version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    found = re.match(r"ffmpeg version (\S+)", first[0]) if first else None
    return found.group(1) if found else None


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "memory_mb": memory_mb(),
        "load_start": load(),
        "ffmpeg": ffmpeg_version(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


# --- processes ----------------------------------------------------------------------------------


def service_roots(stack: Stack) -> dict[str, int]:
    """The root pid of every running service of the local stack, by name."""
    roots = {}
    for svc in stack.services():
        pid = stack.pid(svc.name)
        if pid is not None:
            roots[svc.name] = pid
    return roots


def worker_threads(pid: int) -> int | None:
    """The `--threads` the running worker was started with (read when the stack started it)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    for i, arg in enumerate(argv[:-1]):
        if arg == b"--threads":
            return int(argv[i + 1])
    return None


def machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class CpuSnapshot:
    at: float
    machine: tuple[int, int]
    services: dict[str, tuple[int, int]]  # (own, reaped) CPU ticks of each service's tree
    own: float  # this process's CPU seconds (listeners, requests)


def _ticks(pids: Iterable[int], table: Mapping[int, Proc]) -> tuple[int, int]:
    procs = [table[pid] for pid in pids if pid in table]
    return sum(p.own_ticks for p in procs), sum(p.reaped_ticks for p in procs)


def cpu_snapshot(roots: Mapping[str, int]) -> CpuSnapshot:
    table = proc_table()
    times = os.times()
    return CpuSnapshot(
        at=time.monotonic(),
        machine=machine_cpu_ticks(),
        services={name: _ticks(tree(root, table), table) for name, root in roots.items()},
        own=times.user + times.system,
    )


def cpu_used(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, Any]:
    """CPU seconds each service used between two snapshots, and how busy the machine was.

    A process that exits between the snapshots takes its own CPU time with it unless a process of
    the same tree reaped it (ffmpeg under the worker is counted: the worker waits for it).
    """
    wall = after.at - before.at
    busy = after.machine[0] - before.machine[0]
    total = after.machine[1] - before.machine[1]
    own: dict[str, float] = {}
    reaped: dict[str, float] = {}
    for name, (own_after, reaped_after) in after.services.items():
        own_before, reaped_before = before.services.get(name, (0, 0))
        own[name] = round((own_after - own_before) / CLOCK_TICKS, 1)
        reaped[name] = round((reaped_after - reaped_before) / CLOCK_TICKS, 1)
    services = {name: round(own[name] + reaped[name], 1) for name in own}
    ours = sum(services.values()) + (after.own - before.own)
    cores = os.cpu_count() or 1
    return {
        "wall_s": round(wall, 1),
        "machine_busy_pct": round(100 * busy / total, 1) if total else None,
        "machine_cpu_s": round(busy / CLOCK_TICKS, 1),
        "services_cpu_s": services,
        # Of that, what exited child processes used (for the worker: ffmpeg, ffprobe, espeak-ng).
        "services_reaped_children_cpu_s": reaped,
        "bench_client_cpu_s": round(after.own - before.own, 1),
        # What the machine did besides the stack and this command: other people's work.
        "others_cpu_s": round(max(0.0, busy / CLOCK_TICKS - ours), 1),
        "cores_available_cpu_s": round(wall * cores, 1),
    }


def first_at_or_after(samples: Sequence[tuple[float, float]], at: float) -> float | None:
    """The value of the first sample taken at or after `at` (pure)."""
    return next((value for when, value in samples if when >= at), None)


def memory_growth(
    samples: Sequence[tuple[float, float]], ends: Sequence[float]
) -> dict[str, Any] | None:
    """The worker's memory after the first tenth of the jobs had ended (after 100 of 1000) and
    after the last, and the growth between them in percent (pure); None with too few jobs."""
    ends = sorted(ends)
    if len(ends) < 10:
        return None
    early_jobs = len(ends) // 10
    early = first_at_or_after(samples, ends[early_jobs - 1])
    late = first_at_or_after(samples, ends[-1])
    if early is None or late is None or early <= 0:
        return None
    return {
        "after_jobs": early_jobs,
        "early_mb": round(early),
        "after_all_jobs": len(ends),
        "late_mb": round(late),
        "growth_pct": round(100 * (late - early) / early, 1),
    }


def busy_between(
    samples: Sequence[tuple[float, int, int]], start: float, end: float
) -> float | None:
    """Percent of CPU time busy between the samples closest to `start` and `end` (pure)."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return None
    first, last = inside[0], inside[-1]
    total = last[2] - first[2]
    return round(100 * (last[1] - first[1]) / total, 1) if total else None


@dataclass
class MemorySampler:
    """Samples the worker's process group and the whole stack every `every_s` on a thread."""

    roots: Mapping[str, int]
    every_s: float = 0.5
    worker_peak_mb: float = 0.0
    worker_process_peak_mb: float = 0.0  # the worker's own Python process, without ffmpeg
    stack_peak_mb: float = 0.0
    worker_first_mb: float | None = None
    stack_first_mb: float | None = None
    samples: int = 0
    # (epoch seconds, busy jiffies, total jiffies) of the whole machine at each sample
    cpu: list[tuple[float, int, int]] = field(default_factory=list)
    # (epoch seconds, MB) of the worker's own Python process at each sample: what grows, if
    # anything does, run after run (its ffmpeg children come and go)
    worker_process: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        worker = self.roots.get(WORKER_SERVICE)
        table = proc_table()
        worker_mb = rss_mb(own_images(tree(worker, table), table)) if worker else 0.0
        if worker:
            process_mb = rss_mb([worker])
            self.worker_process_peak_mb = max(self.worker_process_peak_mb, process_mb)
            self.worker_process.append((time.time(), process_mb))
        pids: set[int] = set()
        for root in self.roots.values():
            pids |= tree(root, table)
        stack_mb = rss_mb(pids)
        if self.worker_first_mb is None:
            self.worker_first_mb, self.stack_first_mb = worker_mb, stack_mb
        self.worker_peak_mb = max(self.worker_peak_mb, worker_mb)
        self.stack_peak_mb = max(self.stack_peak_mb, stack_mb)
        self.samples += 1
        self.cpu.append((time.time(), *machine_cpu_ticks()))

    def busy_pct(self, start: float, end: float) -> float | None:
        """How busy the machine's CPUs were between two epoch times, from the samples."""
        return busy_between(self.cpu, start, end)

    def _run(self) -> None:
        while not self._stop.is_set():
            # A process that exits mid-read is simply not in the next sample.
            with contextlib.suppress(OSError):
                self.sample()
            self._stop.wait(self.every_s)

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        # One sample after the batch is known to have ended: the thread's last one may come
        # before the last job's end (a memory growth without an "after" once, 2026-12-06).
        with contextlib.suppress(OSError):
            self.sample()

    def report(self) -> dict[str, Any]:
        return {
            "worker_peak_mb": round(self.worker_peak_mb),
            "worker_before_mb": round(self.worker_first_mb or 0),
            "worker_process_peak_mb": round(self.worker_process_peak_mb),
            "stack_peak_mb": round(self.stack_peak_mb),
            "stack_before_mb": round(self.stack_first_mb or 0),
            "memory_samples": self.samples,
        }
