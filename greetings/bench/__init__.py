"""`greetings bench`: how fast the product is on this machine, as figures (nothing asserts them).

- render (greetings/bench/render.py): our render against a plain remux and a full re-encode;
- names (greetings/bench/names.py): 40 real names on a phone-like recording with room tone: how
  many fit, dead air in the slot, sync after it;
- latency (greetings/bench/latency.py): one job at a time through the local stack, from its
  creation to queued, started and completed;
- throughput (greetings/bench/throughput.py): a batch of jobs at once, jobs per minute and memory,
  with where the time went (greetings/bench/orchestration.py: the trigger, Prefect, the worker);
  with `--compare REF`, first the same batch through the worker of commit REF
  (greetings/bench/compare.py), the two side by side.

The rest: clips.py (cached media), jobs.py (a fresh end user and the jobs' times), machine.py
(load, memory and CPU from /proc), stats.py (percentiles, ratios, goals), report.py (the table).
Figures and how to read them: docs/benchmarks.md.

Progress goes to stderr; stdout gets the table, or with `--json` one JSON object. The job
sections need the local stack (`greetings stack up`); each uses a fresh Auth-emulator user.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from greetings.settings import get_settings

SECTIONS = ("render", "names", "latency", "throughput")
# A warm-up batch is one user's: within the default allowance of new jobs a minute.
MAX_WARMUP_JOBS = 100


def parse_sections(text: str | None) -> list[str]:
    """`--only render,latency` as section names, in the order they run."""
    if not text:
        return list(SECTIONS)
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    unknown = wanted - set(SECTIONS)
    if unknown or not wanted:
        raise ValueError(
            f"unknown section(s) {', '.join(sorted(unknown)) or '(none)'}: "
            f"choose from {', '.join(SECTIONS)}"
        )
    return [s for s in SECTIONS if s in wanted]


def progress(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def run_bench(
    sections: list[str],
    *,
    runs: int,
    latency_jobs: int,
    jobs: int,
    compare: str | None = None,
    warmup: int | None = None,
) -> dict[str, Any]:
    from greetings.bench.machine import load, machine_info

    settings = get_settings()
    started = time.monotonic()
    report: dict[str, Any] = {"machine": machine_info(), "sections": sections}
    errors: dict[str, str] = {}
    if {"latency", "throughput"} & set(sections):
        from greetings.stack.manager import Stack, StackError

        if not Stack(settings).status(echo=lambda _: None):
            raise StackError(
                "the local stack is not (entirely) healthy: run `uv run greetings stack up`, "
                "or bench only the render with --only render"
            )

    def section(name: str, run: Callable[[], dict[str, Any]]) -> None:
        progress(f"{name}: start (load {' '.join(f'{x:.2f}' for x in load())})")
        try:
            found = run()
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            errors[name] = f"{type(exc).__name__}: {exc}"
            return
        report.update(found)

    if "render" in sections:
        from greetings.bench.render import run_render

        section("render", lambda: {"render": run_render(settings, runs, progress)})
    if "names" in sections:
        from greetings.bench.names import run_names

        section("names", lambda: run_names(settings, progress))
    if "latency" in sections:
        from greetings.bench.latency import run_latency

        section("latency", lambda: run_latency(settings, latency_jobs, progress))
    if "throughput" in sections:
        from greetings.bench.throughput import WARMUP_JOBS, run_throughput

        warm = WARMUP_JOBS if warmup is None else warmup

        if compare:
            from greetings.bench.compare import run_with_worker_of

            section(
                "compare",
                lambda: run_with_worker_of(
                    settings,
                    compare,
                    lambda: run_throughput(settings, jobs, progress, warm),
                    progress,
                ),
            )
        section("throughput", lambda: run_throughput(settings, jobs, progress, warm))
    report["machine"]["load_end"] = load()
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    if errors:
        report["errors"] = errors
    from greetings.bench.stats import check_goals

    report["goals"] = check_goals(report)
    return report


def bench_command(args: argparse.Namespace) -> int:
    from greetings.bench.report import text_report
    from greetings.errors import UsageError

    try:
        sections = parse_sections(args.only)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    for option in ("runs", "latency_jobs", "jobs"):
        if getattr(args, option) < 1:
            raise UsageError(f"--{option.replace('_', '-')} must be at least 1")
    warmup = getattr(args, "warmup", None)
    if warmup is not None and not 0 <= warmup <= MAX_WARMUP_JOBS:
        raise UsageError(f"--warmup must be 0 to {MAX_WARMUP_JOBS}")
    compare = getattr(args, "compare", None)
    if compare and "throughput" not in sections:
        raise UsageError("--compare runs the throughput section: leave it in --only")
    report = run_bench(
        sections,
        runs=args.runs,
        latency_jobs=args.latency_jobs,
        jobs=args.jobs,
        compare=compare,
        warmup=warmup,
    )
    if args.json:
        print(json.dumps(report, default=str))
    else:
        print(text_report(report))
    return 1 if report.get("errors") else 0
