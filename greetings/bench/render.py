"""The render benchmark: our render against the floor (a plain remux) and the naive way.

On one 60 s 1920x1080 30 fps H.264/AAC clip, each action runs `runs` times, taking turns so each
sees the same machine load, and its median wall time is kept (whole processes, start-up
included, as a worker pays it):

- remux: `ffmpeg -c copy`, every stream copied: no render can be faster;
- remux + faststart: the same with the moov atom moved to the front, as our output is;
- render: `render_greeting` as the `generating-video` stage runs it, handed the probe that
  validating-input made;
- whole audio re-encoded, video copied: our fallback for audio that cannot be head-spliced;
- naive: everything re-encoded (libx264 veryfast) with the greeting mixed in.

Then remux and render again on a 10-minute clip (the 60 s one ten times, joined by stream copy),
where the copying part of the work dominates.
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from flows.media import probe_upload, run_ffmpeg
from flows.stages.render import RenderReport, render_greeting
from greetings.bench import clips
from greetings.bench.machine import load
from greetings.bench.stats import ratio
from greetings.settings import StackSettings

# Where "Hey there," of the sample narration ends, with a little room after it.
GREETING_END_S = 1.6


def interleaved(
    actions: dict[str, Callable[[], object]],
    runs: int,
    settle: Callable[[], object] = lambda: None,
) -> dict[str, float]:
    """Median wall time of each action, taking turns so each sees the same machine load;
    `settle` runs, untimed, before each action."""
    times: dict[str, list[float]] = {label: [] for label in actions}
    for _ in range(runs):
        for label, action in actions.items():
            settle()
            began = time.perf_counter()
            action()
            times[label].append(time.perf_counter() - began)
    return {label: round(statistics.median(seconds), 3) for label, seconds in times.items()}


def fresh_outputs(outputs: Collection[Path]) -> None:
    """No action inherits another's disk writes: the outputs removed and the disk synced.

    A render writes a new file in its job's folder. Here the actions wrote over the same files:
    ext4 flushes a file that is truncated and written again when it is closed, and an action
    started while the last one's 1.2 GB were still being written back was throttled. On the
    10-minute clip that made the render 2.6-5.3 s (and a remux 0.65-1.44 s) by its place in the
    turn; with this, 1.36-1.52 s and 0.64-0.66 s (2026-12-07)."""
    for path in outputs:
        path.unlink(missing_ok=True)
    os.sync()


def remux(src: Path, out: Path, *, faststart: bool = False) -> None:
    """Every stream copied: the floor of any render."""
    movflags = ["-movflags", "+faststart"] if faststart else []
    run_ffmpeg(["-i", str(src), "-map", "0", "-c", "copy", *movflags, str(out)])


def remux_cpu_s(src: Path, work: Path, runs: int = 3) -> float:
    """CPU seconds (user + system) of one plain remux of `src`, the median of `runs`: the floor
    a job's media CPU is held against, counted as the worker's subprocesses are."""
    spent = []
    out = work / "remux-floor.mp4"
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        remux(src, out)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    out.unlink(missing_ok=True)
    return round(statistics.median(spent), 3)


def _mixed_audio_graph() -> str:
    # The original muted under the greeting, then the greeting mixed in: audio-wise what the
    # render does, without its care for levels and seams.
    return (
        f"[0:a]volume=enable='lt(t,{GREETING_END_S})':volume=0[orig];"
        "[1:a]aresample=48000[greet];"
        "[orig][greet]amix=inputs=2:duration=first:normalize=0[a]"
    )


def naive_full(src: Path, greeting: Path, out: Path) -> None:
    """Everything re-encoded with the greeting mixed in: what the render avoids."""
    run_ffmpeg(
        [
            *("-i", str(src), "-i", str(greeting)),
            *("-filter_complex", _mixed_audio_graph(), "-map", "0:v", "-map", "[a]"),
            *("-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac"),
            *("-movflags", "+faststart", str(out)),
        ]
    )


def whole_audio(src: Path, greeting: Path, out: Path) -> None:
    """Video copied, the whole audio track re-encoded with the greeting mixed in."""
    run_ffmpeg(
        [
            *("-i", str(src), "-i", str(greeting)),
            *("-filter_complex", _mixed_audio_graph(), "-map", "0:v", "-map", "[a]"),
            *("-c:v", "copy", "-c:a", "aac"),
            *("-movflags", "+faststart", str(out)),
        ]
    )


def summarize(found: dict[str, float]) -> dict[str, Any]:
    """The JSON figures of one clip from the medians of its actions (pure)."""
    remux_s = found["remux"]
    render_s = found["render"]
    reencode_s = found.get("reencode")
    summary: dict[str, Any] = {
        "remux_s": remux_s,
        "render_s": render_s,
        "reencode_s": reencode_s,
        "render_over_remux": ratio(render_s, remux_s),
        "reencode_over_render": ratio(reencode_s, render_s),
    }
    for extra in ("remux_faststart", "whole_audio"):
        if extra in found:
            summary[f"{extra}_s"] = found[extra]
    if "remux_faststart" in found:
        summary["render_over_remux_faststart"] = ratio(render_s, found["remux_faststart"])
    return summary


def run_render(
    settings: StackSettings, runs: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Both clips, every action `runs` times; the figures for the JSON report."""
    load_start = load()
    one = clips.clip_60s_1080p(settings)
    ten = clips.clip_10min_1080p(settings)
    greeting = clips.greeting_audio(settings)
    reports: list[RenderReport] = []
    with tempfile.TemporaryDirectory(prefix="render-", dir=clips.bench_dir(settings)) as tmp:
        work = Path(tmp)
        out = {name: work / f"{name}.mp4" for name in ("remux", "render", "other")}

        def render(src: Path) -> Callable[[], None]:
            # The stage is handed the probe validating-input made, so its own probe runs beside
            # the input's analysis instead of before it: the same here, probed once, untimed.
            info = probe_upload(src)

            def action() -> None:
                reports.append(
                    render_greeting(
                        src, greeting, GREETING_END_S, out["render"], work_dir=work, upload=info
                    )
                )

            return action

        progress(f"render: 60 s clip, {runs} runs of 5 actions (the naive re-encode is slow)")
        short = interleaved(
            {
                "remux": lambda: remux(one, out["remux"]),
                "remux_faststart": lambda: remux(one, out["other"], faststart=True),
                "render": render(one),
                "whole_audio": lambda: whole_audio(one, greeting, out["other"]),
                "reencode": lambda: naive_full(one, greeting, out["other"]),
            },
            runs,
            settle=lambda: fresh_outputs(out.values()),
        )
        progress(f"render: 10-minute clip, {runs} runs of 3 actions")
        long = interleaved(
            {
                "remux": lambda: remux(ten, out["remux"]),
                "remux_faststart": lambda: remux(ten, out["other"], faststart=True),
                "render": render(ten),
            },
            runs,
            settle=lambda: fresh_outputs(out.values()),
        )
    figures = summarize(short)
    figures["render_10min"] = summarize(long)
    figures.update(
        runs=runs,
        clip="60 s 1920x1080 30 fps H.264 + AAC 48 kHz stereo (testsrc2, x264 ultrafast)",
        clip_mb=round(one.stat().st_size / 1e6, 1),
        clip_10min_mb=round(ten.stat().st_size / 1e6, 1),
        render_paths=sorted({r.path_taken for r in reports}),
        load_start=load_start,
        load_end=load(),
    )
    return figures
