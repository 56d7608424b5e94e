"""The benchmark's media, generated once and kept in the stack's state folder (`.greetings/bench`).

Generating the 60 s 1080p clip costs about a minute of this machine; every later run reuses it.
A file only appears under its final name once whole, so an interrupted run leaves nothing half
written to be mistaken for a clip.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from flows.media import run_ffmpeg
from greetings.samples import make_sample_video, make_speech
from greetings.settings import StackSettings

# Where the sample narration's "Hey there," ends: the greeting slot a render re-voices.
GREETING_END_S = 1.5


def bench_dir(settings: StackSettings) -> Path:
    return settings.state_dir / "bench"


def _cached(path: Path, what: str, make: Callable[[Path], object]) -> Path:
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"making {what} (once): {path}", file=sys.stderr, flush=True)
    partial = path.with_name(f".{path.stem}.part{path.suffix}")
    make(partial)
    partial.replace(path)
    return path


def clip_60s_1080p(settings: StackSettings) -> Path:
    """60 s, 1920x1080, 30 fps, H.264 + AAC: the render benchmark's clip."""
    return _cached(
        bench_dir(settings) / "sales-60s-1080p.mp4",
        "the 60 s 1920x1080 clip",
        lambda p: make_sample_video(p, seconds=60, width=1920, height=1080, fps=30),
    )


def clip_10min_1080p(settings: StackSettings) -> Path:
    """Ten copies of the 60 s clip joined by stream copy (no re-encode): 10 minutes of 1080p."""
    one = clip_60s_1080p(settings)

    def join(dest: Path) -> None:
        listing = dest.with_suffix(".ffconcat")
        listing.write_text("ffconcat version 1.0\n" + f"file '{one.name}'\n" * 10)
        try:
            run_ffmpeg(["-f", "concat", "-i", str(listing), "-c", "copy", str(dest)])
        finally:
            listing.unlink(missing_ok=True)

    return _cached(bench_dir(settings) / "sales-10min-1080p.mp4", "the 10-minute clip", join)


def clip_short(settings: StackSettings) -> Path:
    """8 s, 640x360: the latency benchmark's upload (small, so transfer time stays out of it)."""
    return _cached(
        bench_dir(settings) / "sales-8s-360p.mp4",
        "the 8 s 640x360 clip",
        lambda p: make_sample_video(p, seconds=8, width=640, height=360),
    )


def clip_30s_720p(settings: StackSettings) -> Path:
    """30 s, 1280x720: the throughput benchmark's upload."""
    return _cached(
        bench_dir(settings) / "sales-30s-720p.mp4",
        "the 30 s 1280x720 clip",
        lambda p: make_sample_video(p, seconds=30, width=1280, height=720),
    )


def greeting_audio(settings: StackSettings) -> Path:
    """A spoken "Hey John," (espeak-ng) for the render benchmark."""
    return _cached(
        bench_dir(settings) / "greeting-hey-john.wav",
        "the greeting",
        lambda p: make_speech(p, "Hey John,"),
    )
