"""How fast the greeting render is against the floor (a plain remux) and the naive way.

    uv run python benchmarks/render_bench.py [--runs 3] [--naive-runs 3] [--skip-10min]

Clips are generated once and cached under /tmp/greetings-bench (a 60 s 1920x1080 30 fps
H.264/AAC clip, and a 10-minute clip made of it by stream copy). Each figure is the median wall
time of whole runs, subprocess start-up included, as a worker would pay it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from flows.media import run_ffmpeg
from flows.samples import make_sample_video, make_speech
from flows.stages.render import render_greeting

CACHE = Path("/tmp/greetings-bench")
GREETING_END_S = 1.6


def clip_60s() -> Path:
    path = CACHE / "sales-60s-1080p.mp4"
    if not path.exists():
        print("generating the 60 s 1080p clip (once)...", flush=True)
        make_sample_video(path.with_suffix(".tmp.mp4"), seconds=60, width=1920, height=1080)
        path.with_suffix(".tmp.mp4").rename(path)
    return path


def clip_10min(one_minute: Path) -> Path:
    path = CACHE / "sales-10min-1080p.mp4"
    if not path.exists():
        print("concatenating the 10-minute clip (once)...", flush=True)
        listing = CACHE / "ten.ffconcat"
        listing.write_text("ffconcat version 1.0\n" + f"file {one_minute.name}\n" * 10)
        tmp = path.with_suffix(".tmp.mp4")
        run_ffmpeg(["-f", "concat", "-i", str(listing), "-c", "copy", str(tmp)])
        tmp.rename(path)
    return path


def interleaved(actions: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median wall time of each action, taking turns so each sees the same machine load."""
    times: dict[str, list[float]] = {label: [] for label in actions}
    for _ in range(runs):
        for label, action in actions.items():
            began = time.perf_counter()
            action()
            times[label].append(time.perf_counter() - began)
    return {label: statistics.median(seconds) for label, seconds in times.items()}


def remux(src: Path, out: Path) -> None:
    run_ffmpeg(["-i", str(src), "-c", "copy", str(out)])


def naive_full(src: Path, greeting: Path, out: Path) -> None:
    """Everything re-encoded, the greeting mixed over a ducked original: what we avoid."""
    graph = (
        f"[0:a]volume=enable='lt(t,{GREETING_END_S})':volume=0[orig];"
        "[1:a]aresample=48000[greet];"
        "[orig][greet]amix=inputs=2:duration=first:normalize=0[a]"
    )
    run_ffmpeg(
        [
            "-i",
            str(src),
            "-i",
            str(greeting),
            "-filter_complex",
            graph,
            "-map",
            "0:v",
            "-map",
            "[a]",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-c:a",
            "aac",
            "-movflags",
            "+faststart",
            str(out),
        ]
    )


def whole_audio(src: Path, greeting: Path, out: Path) -> None:
    """Video copied, whole audio track re-encoded (our fallback path for non-AAC audio)."""
    graph = (
        f"[0:a]volume=enable='lt(t,{GREETING_END_S})':volume=0[orig];"
        "[1:a]aresample=48000[greet];"
        "[orig][greet]amix=inputs=2:duration=first:normalize=0[a]"
    )
    run_ffmpeg(
        [
            "-i",
            str(src),
            "-i",
            str(greeting),
            "-filter_complex",
            graph,
            "-map",
            "0:v",
            "-map",
            "[a]",
            "-c:v",
            "copy",
            "-c:a",
            "aac",
            "-movflags",
            "+faststart",
            str(out),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--naive-runs", type=int, default=3)
    parser.add_argument("--skip-10min", action="store_true")
    args = parser.parse_args()

    CACHE.mkdir(parents=True, exist_ok=True)
    one = clip_60s()
    greeting = make_speech(CACHE / "greeting.wav", "Hey John,")
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="render-bench-", dir=CACHE) as tmp:
        out = Path(tmp) / "out.mp4"

        def table(clip: str, found: dict[str, float]) -> None:
            floor = found["remux (floor)"]
            for label, seconds in found.items():
                rows.append((f"{clip}: {label}", seconds, seconds / floor))
                print(f"  {clip}: {label}: {seconds:.3f} s", flush=True)

        table(
            "60 s",
            interleaved(
                {
                    "remux (floor)": lambda: remux(one, out),
                    "render (ours)": lambda: render_greeting(one, greeting, GREETING_END_S, out),
                    "whole audio re-encoded, video copied": lambda: whole_audio(one, greeting, out),
                },
                args.runs,
            ),
        )
        naive = interleaved({"naive": lambda: naive_full(one, greeting, out)}, args.naive_runs)
        floor = next(seconds for label, seconds, _ in rows if label == "60 s: remux (floor)")
        rows.append(
            ("60 s: naive full re-encode (x264 veryfast)", naive["naive"], naive["naive"] / floor)
        )
        if not args.skip_10min:
            ten = clip_10min(one)
            table(
                "10 min",
                interleaved(
                    {
                        "remux (floor)": lambda: remux(ten, out),
                        "render (ours)": lambda: render_greeting(
                            ten, greeting, GREETING_END_S, out
                        ),
                    },
                    args.runs,
                ),
            )
            whole = interleaved({"w": lambda: whole_audio(ten, greeting, out)}, 1)["w"]
            floor10 = next(
                seconds for label, seconds, _ in rows if label == "10 min: remux (floor)"
            )
            rows.append(
                ("10 min: whole audio re-encoded, video copied (1 run)", whole, whole / floor10)
            )

    width = max(len(label) for label, _, _ in rows)
    print(f"\n{'what':<{width}}  {'median s':>9}  {'x floor':>8}")
    for label, seconds, ratio in rows:
        print(f"{label:<{width}}  {seconds:>9.3f}  {ratio:>8.2f}")
    load = os.getloadavg()[0]
    print(
        f"\n({os.cpu_count()} cores, load average {load:.1f}; "
        f"medians of {args.runs} runs, naive {args.naive_runs})"
    )


if __name__ == "__main__":
    main()
