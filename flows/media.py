"""What is inside a media file (ffprobe) and how we run ffmpeg.

Parsing ffprobe's JSON is a pure function (`media_info_from_ffprobe`); `probe` only adds the
subprocess call, so the parsing is unit-tested without media files.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
# Enough of ffmpeg's stderr to see why it failed without flooding a job's error message.
STDERR_TAIL_LINES = 12


class ProbeError(Exception):
    """ffprobe could not read the file as media (empty, text, truncated, ...)."""


class FfmpegError(Exception):
    """ffmpeg exited non-zero; the message ends with the last lines of its stderr."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.args_list = list(args)
        self.returncode = returncode
        self.stderr_tail = stderr_tail(stderr)
        super().__init__(f"ffmpeg exited with {returncode}: {self.stderr_tail}")


@dataclass(frozen=True)
class VideoStream:
    index: int
    codec: str
    width: int
    height: int
    fps: float
    rotation: int  # degrees, 0-359, as the display matrix (or the old `rotate` tag) says


@dataclass(frozen=True)
class AudioStream:
    index: int
    codec: str
    profile: str | None
    sample_rate: int
    channels: int
    channel_layout: str | None
    bit_rate: int | None
    frame_size: int | None  # samples per packet, when the codec fixes it
    time_base: Fraction
    start_s: float = 0.0  # presentation time of the stream's first sample


@dataclass(frozen=True)
class MediaInfo:
    size_bytes: int
    duration_s: float
    format_name: str
    video: VideoStream | None
    audio: AudioStream | None


def stderr_tail(stderr: str, lines: int = STDERR_TAIL_LINES) -> str:
    kept = [line for line in stderr.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def run_ffmpeg(args: Sequence[str], *, stdin: bytes | None = None) -> bytes:
    """Run `ffmpeg <args>` (quiet, never prompting) and return its stdout."""
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    if stdin is not None:
        # -nostdin would stop ffmpeg reading the data we pipe in.
        cmd.remove("-nostdin")
    proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        raise FfmpegError(cmd, proc.returncode, proc.stderr.decode(errors="replace"))
    return proc.stdout


def run_ffmpeg_piped(producer: Sequence[str], consumer: Sequence[str]) -> None:
    """Run two ffmpeg processes at once, the producer writing a FIFO the consumer reads.

    Overlapping them saves a whole process start-up on the critical path. A process opening a
    FIFO waits for its peer, so when either fails the other is killed rather than left waiting.
    The producer's failure is the one reported: the consumer's would only be its consequence.
    """
    procs = [
        subprocess.Popen(
            [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for args in (producer, consumer)
    ]
    stderr: list[bytes] = [b"", b""]
    killed: set[int] = set()
    lock = threading.Lock()

    def watch(i: int) -> None:
        _, stderr[i] = procs[i].communicate()
        with lock:
            if procs[i].returncode != 0 and i not in killed and procs[1 - i].poll() is None:
                killed.add(1 - i)
                procs[1 - i].kill()

    watchers = [threading.Thread(target=watch, args=(i,), daemon=True) for i in (0, 1)]
    try:
        for thread in watchers:
            thread.start()
        for thread in watchers:
            thread.join()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for i in (0, 1):
        if procs[i].returncode != 0 and i not in killed:
            args = [str(a) for a in (producer, consumer)[i]]
            raise FfmpegError(args, procs[i].returncode, stderr[i].decode(errors="replace"))


def run_ffprobe(args: Sequence[str]) -> dict[str, Any]:
    cmd = [FFPROBE, "-v", "error", "-print_format", "json", *args]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise ProbeError(stderr_tail(proc.stderr.decode(errors="replace")) or "ffprobe failed")
    try:
        data = json.loads(proc.stdout or b"{}")
    except json.JSONDecodeError as exc:
        raise ProbeError(f"ffprobe printed no JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProbeError("ffprobe printed no JSON object")
    return data


def probe(path: Path) -> MediaInfo:
    """Streams, duration and size of a media file; `ProbeError` if it is not readable media."""
    if not path.is_file():
        raise ProbeError(f"{path} is not a file")
    data = run_ffprobe(["-show_format", "-show_streams", str(path)])
    info = media_info_from_ffprobe(data, size_bytes=path.stat().st_size)
    if "mov" in info.format_name.split(",") and isobmff_truncated(path):
        raise ProbeError(f"{path.name} is truncated: it ends inside its last MP4 box")
    return info


def isobmff_truncated(path: Path) -> bool:
    """Whether an MP4/MOV file ends inside one of its top-level boxes (a cut-off file).

    With its index (`moov`) first, ffprobe reads such a file as whole and ffmpeg copies what
    media there is without an error, so half a video would render as a shorter, broken one.
    """
    size = path.stat().st_size
    at = 0
    with path.open("rb") as file:
        while at + 8 <= size:
            file.seek(at)
            header = file.read(16)
            box_size = int.from_bytes(header[:4], "big")
            if box_size == 1 and len(header) == 16:  # a 64-bit size follows the type
                box_size = int.from_bytes(header[8:16], "big")
            if box_size < 8:
                return False  # 0: the box runs to the end of the file; else not ours to judge
            if at + box_size > size:
                # A real box type (`mdat`, `moov`...) cut short, not trailing bytes of padding.
                return header[4:8].isascii() and header[4:8].decode().isprintable()
            at += box_size
    return False


def mp4_duration_s(path: Path) -> float:
    """The movie's duration from its `moov/mvhd` box, without starting ffprobe.

    For a file our own mux wrote (MP4, index first) this is what ffprobe reports as the format's
    duration, read in microseconds instead of ~70 ms of a process start. `ProbeError` if the file
    has no readable movie header.
    """
    with path.open("rb") as file:
        moov = _find_box(file, b"moov", 0, path.stat().st_size)
        if moov is None:
            raise ProbeError(f"{path.name} has no moov box")
        mvhd = _find_box(file, b"mvhd", *moov)
        if mvhd is None:
            raise ProbeError(f"{path.name} has no mvhd box")
        file.seek(mvhd[0])
        body = file.read(32)
    version = body[0] if body else -1
    if version == 0 and len(body) >= 20:
        timescale, duration = int.from_bytes(body[12:16], "big"), int.from_bytes(body[16:20], "big")
    elif version == 1 and len(body) >= 32:
        timescale, duration = int.from_bytes(body[20:24], "big"), int.from_bytes(body[24:32], "big")
    else:
        raise ProbeError(f"{path.name}: unreadable mvhd box (version {version})")
    if timescale <= 0:
        raise ProbeError(f"{path.name}: mvhd timescale is {timescale}")
    return duration / timescale


def _find_box(file: BinaryIO, kind: bytes, start: int, end: int) -> tuple[int, int] | None:
    """The (body start, body end) of the first `kind` box between `start` and `end`."""
    at = start
    while at + 8 <= end:
        file.seek(at)
        header = file.read(16)
        box_size, header_size = int.from_bytes(header[:4], "big"), 8
        if box_size == 1 and len(header) == 16:
            box_size, header_size = int.from_bytes(header[8:16], "big"), 16
        elif box_size == 0:
            box_size = end - at
        if box_size < header_size or at + box_size > end:
            return None
        if header[4:8] == kind:
            return at + header_size, at + box_size
        at += box_size
    return None


def probe_with_first_packets(
    path: Path, *, seconds: float = 0.5
) -> tuple[MediaInfo, dict[int, int]]:
    """`probe`, plus the pts of each stream's first packet within the first `seconds`.

    One ffprobe run instead of two: start-up is most of what a probe costs.
    """
    if not path.is_file():
        raise ProbeError(f"{path} is not a file")
    data = run_ffprobe(
        [
            "-show_format",
            "-show_streams",
            "-show_entries",
            "packet=stream_index,pts",
            "-read_intervals",
            f"%+{seconds:g}",
            str(path),
        ]
    )
    return media_info_from_ffprobe(data, size_bytes=path.stat().st_size), first_packets(data)


def first_packets(data: Mapping[str, Any]) -> dict[int, int]:
    """Stream index -> pts of its first packet, from ffprobe's `packets` (before any edit list)."""
    found: dict[int, int] = {}
    for packet in data.get("packets") or []:
        index, pts = _int(packet.get("stream_index")), _int(packet.get("pts"))
        if index is not None and pts is not None:
            found.setdefault(index, pts)
    return found


# --- parsing (pure) ---------------------------------------------------------------------------


def media_info_from_ffprobe(data: Mapping[str, Any], *, size_bytes: int) -> MediaInfo:
    fmt = data.get("format")
    streams = data.get("streams") or []
    if not isinstance(fmt, Mapping) or not streams:
        raise ProbeError("no media streams found")
    video = next(
        (
            _video_stream(s)
            for s in streams
            if s.get("codec_type") == "video"
            and not (s.get("disposition") or {}).get("attached_pic")
        ),
        None,
    )
    audio = next((_audio_stream(s) for s in streams if s.get("codec_type") == "audio"), None)
    if video is None and audio is None:
        raise ProbeError("no audio or video stream found")
    duration = _float(fmt.get("duration"))
    if duration is None:
        durations = [d for d in (_float(s.get("duration")) for s in streams) if d is not None]
        duration = max(durations, default=None)
    if duration is None:
        raise ProbeError("duration unknown")
    return MediaInfo(
        size_bytes=size_bytes,
        duration_s=duration,
        format_name=str(fmt.get("format_name", "")),
        video=video,
        audio=audio,
    )


def _video_stream(s: Mapping[str, Any]) -> VideoStream:
    return VideoStream(
        index=int(s.get("index", 0)),
        codec=str(s.get("codec_name", "")),
        width=int(s.get("width") or 0),
        height=int(s.get("height") or 0),
        fps=_rate(s.get("avg_frame_rate")) or _rate(s.get("r_frame_rate")) or 0.0,
        rotation=_rotation(s),
    )


def _audio_stream(s: Mapping[str, Any]) -> AudioStream:
    codec = str(s.get("codec_name", ""))
    profile = s.get("profile")
    return AudioStream(
        index=int(s.get("index", 0)),
        codec=codec,
        profile=str(profile) if profile is not None else None,
        sample_rate=_int(s.get("sample_rate")) or 0,
        channels=_int(s.get("channels")) or 0,
        channel_layout=s.get("channel_layout"),
        bit_rate=_int(s.get("bit_rate")),
        frame_size=codec_frame_size(codec, profile),
        time_base=_fraction(s.get("time_base")) or Fraction(1, 1),
        start_s=_float(s.get("start_time")) or 0.0,
    )


def codec_frame_size(codec: str, profile: object = None) -> int | None:
    """Samples per packet for codecs that fix it (ffprobe does not print it)."""
    if codec == "aac":
        # HE-AAC packets carry 2048 output samples (SBR doubles the core's 1024).
        return 2048 if isinstance(profile, str) and profile.startswith("HE") else 1024
    return {"mp3": 1152, "opus": 960, "ac3": 1536, "eac3": 1536}.get(codec)


def _rotation(s: Mapping[str, Any]) -> int:
    for side in s.get("side_data_list") or []:
        if "rotation" in side:
            return round(float(side["rotation"])) % 360
    tag = (s.get("tags") or {}).get("rotate")
    return round(float(tag)) % 360 if tag is not None else 0


def _rate(value: object) -> float | None:
    frac = _fraction(value)
    return float(frac) if frac else None


def _fraction(value: object) -> Fraction | None:
    if not isinstance(value, str) or "/" not in value:
        return None
    num, _, den = value.partition("/")
    try:
        return Fraction(int(num), int(den)) if int(den) else None
    except ValueError:
        return None


def _float(value: object) -> float | None:
    try:
        return float(value) if value not in (None, "", "N/A") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _int(value: object) -> int | None:
    try:
        return int(value) if value not in (None, "", "N/A") else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
