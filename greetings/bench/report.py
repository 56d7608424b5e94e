"""The benchmark's figures as a table for people (the JSON report is the same figures, whole)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from greetings.bench.stats import check_goals


def _s(value: Any) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _x(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.0f}"


def _load(values: Any) -> str:
    return " ".join(f"{v:.2f}" for v in values) if values else "?"


def render_lines(render: Mapping[str, Any]) -> list[str]:
    ten = render.get("render_10min", {})
    rows = [
        ("remux, -c copy (the floor)", "remux_s", _s),
        ("remux + faststart", "remux_faststart_s", _s),
        ("render (render_greeting)", "render_s", _s),
        ("whole audio re-encoded, video copied", "whole_audio_s", _s),
        ("naive re-encode (libx264 veryfast)", "reencode_s", _s),
        ("render / remux", "render_over_remux", _x),
        ("render / (remux + faststart)", "render_over_remux_faststart", _x),
        ("re-encode / render", "reencode_over_render", _x),
    ]
    lines = [
        f"render: median of {render.get('runs')} runs "
        f"(load {_load(render.get('load_start'))} -> {_load(render.get('load_end'))})",
        f"  {'':<40}{'60 s 1080p':>14}{'10 min 1080p':>14}",
    ]
    for label, key, fmt in rows:
        lines.append(f"  {label:<40}{fmt(render.get(key)):>14}{fmt(ten.get(key)):>14}")
    lines.append(f"  render path taken: {', '.join(render.get('render_paths', []))}")
    return lines


def names_lines(n: Mapping[str, Any]) -> list[str]:
    failed = n.get("failed") or {}
    return [
        f"names: {n.get('names')} real names, default greeting, on a 44.1 kHz recording with "
        f"room tone at {n.get('room_floor_dbfs')} dBFS; slot found at {n.get('greeting_end_s')} s",
        f"  completed                       {n.get('completed')} of {n.get('names')}",
        "  failed                          "
        + (", ".join(f"{k} ({v})" for k, v in failed.items()) or "none"),
        "  digital silence in the slot     "
        + (", ".join(n.get("digital_silence_in_slot") or []) or "none"),
        "  not sample-exact after the slot "
        + (", ".join(n.get("not_exact_after_slot") or []) or "none"),
        f"  spoken faster by the voice      {n.get('spoken_faster')}",
        f"  highest tempo used              {n.get('max_tempo_used')}",
    ]


def stage_lines(stage_s: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = [f"  {'stage (s)':<52}{'p50':>7}{'p95':>7}{'mean':>7}"]
    for label, figures in stage_s.items():
        lines.append(
            f"    {label:<50}{figures.get('p50') or 0:>7.2f}{figures.get('p95') or 0:>7.2f}"
            f"{figures.get('mean') or 0:>7.2f}"
        )
    return lines


def latency_lines(report: Mapping[str, Any]) -> list[str]:
    seen, written = report["latency_ms"], report.get("latency_server_ms", {})
    info = report.get("latency", {})
    lines = [
        f"latency: {info.get('completed')}/{info.get('jobs')} jobs completed, one at a time; "
        f"ms from createdAt (load {_load(info.get('load_start'))} -> "
        f"{_load(info.get('load_end'))})",
        f"  {'':<28}{'client p50':>11}{'p95':>7}{'max':>7}{'server p50':>12}{'p95':>7}{'max':>7}",
    ]
    for key, label in (
        ("queued", "queued"),
        ("started", "started (validating-input)"),
        ("completed", "completed"),
    ):
        a, b = seen.get(key, {}), written.get(key, {})
        lines.append(
            f"  {label:<28}{_ms(a.get('p50')):>11}{_ms(a.get('p95')):>7}{_ms(a.get('max')):>7}"
            f"{_ms(b.get('p50')):>12}{_ms(b.get('p95')):>7}{_ms(b.get('max')):>7}"
        )
    if info.get("stage_s"):
        # Where a lone job's time goes, creation to completed, from the jobs' history.
        lines += stage_lines(info["stage_s"])
    return lines


def _growth_line(growth: Mapping[str, Any] | None) -> str:
    if not growth:
        return (
            "  worker memory growth            - (fewer than 10 jobs ended, or no sample after "
            "them)"
        )
    return (
        f"  worker memory growth            {growth['growth_pct']:+.1f} % (its Python process: "
        f"{growth['early_mb']} MB after {growth['after_jobs']} jobs had ended, "
        f"{growth['late_mb']} MB after all {growth['after_all_jobs']})"
    )


def _rounds(rounds: Any) -> str:
    if not rounds or rounds < 2:
        return ""
    return f" in {rounds} batches, each sent when the last had ended"


def _warmup(warmup: Any) -> str:
    if not isinstance(warmup, Mapping):
        return "none (--warmup 0): a first batch after `stack up` pays the stack's warm-up"
    return (
        f"{warmup.get('jobs')} jobs of another user, {warmup.get('ended')} ended in "
        f"{warmup.get('seconds')} s (not in these figures)"
    )


def throughput_lines(t: Mapping[str, Any]) -> list[str]:
    running = t.get("running_at_once", {})
    first = t.get("first_90pct", {})
    cpu = t.get("cpu", {})
    lines = [
        f"throughput: {t.get('jobs')} jobs{_rounds(t.get('rounds'))}, one upload "
        f"({t.get('clip')}), espeak-ng voice "
        f"(load {_load(t.get('load_start'))} -> {_load(t.get('load_end'))})",
        f"  jobs per minute                 {t.get('jobs_per_minute')}"
        f"   ({t.get('completed')} completed in {t.get('span_s')} s, first create -> last end)",
        f"  first 90% of the batch          {first.get('jobs_per_minute')} per minute "
        f"({first.get('jobs')} completed in {first.get('span_s')} s; machine CPU "
        f"{first.get('machine_busy_pct')} % busy meanwhile)",
        f"  completed / failed / unfinished {t.get('completed')} / {t.get('failed')} / "
        f"{t.get('unfinished')}  {t.get('outcomes') or ''}",
        f"  left to the sweep / retried     {t.get('left_to_sweep')} / {t.get('retried')} "
        "(flow run not created: Prefect answered 503; second attempt)",
        f"  stored objects removed after    {t.get('objects_removed')} (results, thumbnails "
        "and the upload: the Storage emulator slows as it fills)",
        f"  warm-up before it               {_warmup(t.get('warmup'))}",
        f"  worker peak RSS                 {t.get('worker_peak_mb')} MB, its process group "
        f"(the Python process alone: {t.get('worker_process_peak_mb')} MB; "
        f"before the batch {t.get('worker_before_mb')} MB)",
        _growth_line(t.get("worker_memory_growth")),
        f"  whole stack peak RSS            {t.get('stack_peak_mb')} MB "
        f"(before the batch {t.get('stack_before_mb')} MB)",
        f"  worker threads                  {t.get('worker_threads')}; jobs running at once: "
        f"peak {running.get('peak')}, mean {running.get('mean')}",
        f"  machine CPU busy                {cpu.get('machine_busy_pct')} % of "
        f"{cpu.get('wall_s')} s; CPU s outside the stack: this command "
        f"{cpu.get('bench_client_cpu_s')}, other processes {cpu.get('others_cpu_s')}",
        *stage_lines(t.get("stage_s", {})),
    ]
    lines.append("  CPU seconds per job")
    for label, seconds in t.get("cpu_s_per_job", {}).items():
        lines.append(f"    {label:<60}{seconds:>7.3f}")
    if t.get("remux_cpu_s") is not None:
        # Reports from before 2026-12-07 have no stack_over_remux.
        stack = t.get("stack_over_remux")
        lines.append(
            f"    {'a plain remux of the clip (-c copy), once':<60}{t['remux_cpu_s']:>7.3f}"
            f"   (media per job: {t.get('media_over_remux')}x"
            + (f", all services: {stack}x)" if stack is not None else ")")
        )
    prefect = t.get("prefect", {})
    if prefect and "error" not in prefect:
        slots, waiting = prefect.get("worker_slots", {}), prefect.get("waiting_to_be_taken", {})
        lines += [
            f"  worker slots taken (of {slots.get('limit')})    peak {slots.get('peak')}, mean "
            f"{slots.get('mean')}; runs waiting to be taken: peak {waiting.get('peak')}, "
            f"mean {waiting.get('mean')}",
            f"  Prefect per flow run            {prefect.get('flow_states_per_run')} flow states, "
            f"{prefect.get('task_runs_per_run')} task runs with "
            f"{prefect.get('task_states_per_run')} states, {prefect.get('logs_per_run')} logs; "
            f"final states {prefect.get('final_states')}; other users' flow runs "
            f"meanwhile: {prefect.get('other_runs_meanwhile')}",
            f"  {'flow run step (s)':<52}{'p50':>7}{'p95':>7}{'max':>7}",
        ]
        for label, figures in prefect.get("steps_s", {}).items():
            lines.append(
                f"    {label:<50}{figures.get('p50') or 0:>7.2f}{figures.get('p95') or 0:>7.2f}"
                f"{figures.get('max') or 0:>7.2f}"
            )
    elif prefect:
        lines.append(f"  Prefect figures unavailable: {prefect['error']}")
    api = t.get("prefect_api", {})
    if api:
        health, read = api.get("health_ms", {}), api.get("flow_runs_count_ms", {})
        lines.append(
            f"  Prefect API during the batch    /health p50 {_ms(health.get('p50'))} ms, p95 "
            f"{_ms(health.get('p95'))} ms; /flow_runs/count p50 {_ms(read.get('p50'))} ms, p95 "
            f"{_ms(read.get('p95'))} ms, max {_ms(read.get('max'))} ms; errors {api.get('errors')}"
        )
    trigger = t.get("trigger_invocations", {})
    functions = {
        name: stats
        for name, stats in trigger.items()
        if name.startswith("on_") and isinstance(stats, Mapping) and stats.get("n")
    }
    if functions:
        calls = "; ".join(
            f"{name} x{stats.get('n')}: p50 {_ms(stats.get('p50'))} ms, total "
            f"{stats.get('total_s')} s"
            for name, stats in sorted(functions.items())
        )
        lines.append(
            f"  trigger (Functions emulator)    {calls}; at most "
            f"{trigger.get('max_in_flight')} invocation(s) at once"
        )
    return lines


def _per_job(t: Mapping[str, Any], key: str) -> Any:
    return (t.get("cpu_s_per_job") or {}).get(key)


def _p50(t: Mapping[str, Any], stage: str) -> Any:
    return ((t.get("stage_s") or {}).get(stage) or {}).get("p50")


COMPARED: list[tuple[str, Callable[[Mapping[str, Any]], Any]]] = [
    ("jobs per minute", lambda t: t.get("jobs_per_minute")),
    ("worker CPU s per job", lambda t: _per_job(t, "prefect-worker")),
    ("  its python", lambda t: _per_job(t, "prefect-worker: python (flow engine, clients)")),
    (
        "  its subprocesses (media)",
        lambda t: _per_job(t, "prefect-worker: subprocesses (ffmpeg, ffprobe, espeak-ng)"),
    ),
    ("  media / a plain remux (x)", lambda t: t.get("media_over_remux")),
    ("all services CPU s per job", lambda t: _per_job(t, "all services")),
    ("  all services / a plain remux (x)", lambda t: t.get("stack_over_remux")),
    ("worker peak RSS (MB)", lambda t: t.get("worker_peak_mb")),
    ("generating-video p50 (s)", lambda t: _p50(t, "generating-video")),
    ("uploading-result p50 (s)", lambda t: _p50(t, "uploading-result")),
    ("completed", lambda t: t.get("completed")),
]


def compare_lines(compare: Mapping[str, Any], this: Mapping[str, Any] | None) -> list[str]:
    """REF's batch and this checkout's, figure by figure, with this one's as a share of REF's."""
    ref = compare.get("throughput") or {}
    this = this or {}
    name = f"{compare.get('ref')} ({str(compare.get('commit', ''))[:12]})"
    lines = [
        f"compare: the same {ref.get('jobs')}-job batch through the worker of {name}, "
        "then through this checkout's",
        f"  {'':<34}{'REF':>10}{'this':>10}{'this/REF':>10}",
    ]
    for label, pick in COMPARED:
        a, b = pick(ref), pick(this)
        share = (
            f"{b / a:.2f}"
            if isinstance(a, int | float) and isinstance(b, int | float) and a
            else "-"
        )
        lines.append(f"  {label:<34}{_v(a):>10}{_v(b):>10}{share:>10}")
    return lines


def _v(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def text_report(report: Mapping[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"greetings bench: {machine.get('cpu_count')} cores, {machine.get('memory_mb')} MB RAM, "
        f"ffmpeg {machine.get('ffmpeg')}, load {_load(machine.get('load_start'))} at start, "
        f"{_load(machine.get('load_end'))} at end ({report.get('elapsed_s')} s)",
    ]
    if "render" in report:
        lines += ["", *render_lines(report["render"])]
    if "names" in report:
        lines += ["", *names_lines(report["names"])]
    if "latency_ms" in report:
        lines += ["", *latency_lines(report)]
    if "compare" in report:
        ref = throughput_lines(report["compare"].get("throughput") or {})
        ref[0] = ref[0].replace(
            "throughput:", f"throughput (worker of {report['compare']['ref']}):", 1
        )
        lines += ["", *ref]
    if "throughput" in report:
        lines += ["", *throughput_lines(report["throughput"])]
    if "compare" in report:
        lines += ["", *compare_lines(report["compare"], report.get("throughput"))]
    goals = check_goals(report)
    if goals:
        lines += ["", "goals"]
        for goal in goals:
            verdict = "met" if goal["met"] else "NOT MET"
            lines.append(
                f"  {goal['goal']:<34}{goal['value']!s:>10}  goal {goal['target']:<10} {verdict}"
            )
    for section, error in report.get("errors", {}).items():
        lines.append(f"\n{section}: FAILED: {error}")
    return "\n".join(lines)
