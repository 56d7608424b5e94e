"""Measuring rendered media in tests: decoded samples, packet hashes, MP4 box order."""

from __future__ import annotations

import itertools
import math
import struct
import subprocess
import sys
from array import array
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from flows.media import AudioStream, MediaInfo, VideoStream
from flows.stages.render import RenderReport


@dataclass(frozen=True)
class Pcm:
    samples: array[float]  # interleaved
    channels: int
    sample_rate: int

    @property
    def frames(self) -> int:
        return len(self.samples) // self.channels

    def window(self, start_s: float, end_s: float | None = None) -> array[float]:
        first = round(start_s * self.sample_rate) * self.channels
        last = (
            len(self.samples) if end_s is None else round(end_s * self.sample_rate) * self.channels
        )
        return self.samples[first:last]


def decode_pcm(path: Path, *, sample_rate: int | None = None, channels: int | None = None) -> Pcm:
    """The first audio stream as float samples, as a player would present them (edit lists,
    priming and padding applied by ffmpeg's decoder)."""
    args = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0"]
    if sample_rate:
        args += ["-ar", str(sample_rate)]
    if channels:
        args += ["-ac", str(channels)]
    args += ["-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"]
    raw = subprocess.run(args, capture_output=True, check=True).stdout
    samples = array("f")
    samples.frombytes(raw)
    if sys.byteorder == "big":
        samples.byteswap()
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=sample_rate,channels",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    native_rate, native_channels = (int(x) for x in probe.split(","))
    return Pcm(samples, channels or native_channels, sample_rate or native_rate)


@dataclass(frozen=True)
class Packet:
    pts: Fraction  # seconds
    size: int
    md5: str


def packets(path: Path, stream: str = "v:0") -> list[Packet]:
    """Every packet of `stream`, stream-copied, with its presentation time and data hash."""
    # -copyts: the file's own timestamps, not ffmpeg's shifted to start at 0.
    args = ["ffmpeg", "-v", "error", "-nostdin", "-copyts", "-i", str(path), "-map", f"0:{stream}"]
    out = subprocess.run(
        [*args, "-c", "copy", "-f", "framemd5", "pipe:1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    time_base = Fraction(1)
    found = []
    for line in out.splitlines():
        if line.startswith("#tb 0:"):
            time_base = Fraction(line.split(":", 1)[1].strip())
        elif line and not line.startswith("#"):
            # Side data (an audio packet's skip samples, ...) follows the six fields.
            _, _, pts, _, size, md5 = (field.strip() for field in line.split(",")[:6])
            found.append(Packet(int(pts) * time_base, int(size), md5))
    return found


def top_level_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types in file order (to see whether moov precedes mdat)."""
    boxes = []
    with path.open("rb") as f:
        while header := f.read(8):
            if len(header) < 8:
                break
            size, kind = struct.unpack(">I4s", header)
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0]
                f.seek(size - 16, 1)
            else:
                f.seek(size - 8, 1)
            boxes.append(kind.decode("latin-1"))
            if size == 0:
                break
    return boxes


def max_abs_diff(a: array[float], b: array[float]) -> float:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return 0.0
    return max(abs(x - y) for x, y in zip(a[:n], b[:n], strict=True))


def shifted(a: array[float], frames: int, channels: int) -> array[float]:
    """`a` delayed by `frames` sample frames (silence in front), same length."""
    pad = array("f", [0.0]) * (frames * channels)
    return (pad + a)[: len(a)]


def rms_db(a: array[float]) -> float:
    power = sum(x * x for x in a) / len(a) if a else 0.0
    return 10 * math.log10(power) if power > 0 else -math.inf


def correlation(a: array[float], b: array[float]) -> float:
    """Normalized correlation at zero lag (1.0: same shape whatever the gain)."""
    n = min(len(a), len(b))
    dot = sum(x * y for x, y in zip(a[:n], b[:n], strict=True))
    norm = math.sqrt(sum(x * x for x in a[:n]) * sum(y * y for y in b[:n]))
    return dot / norm if norm else 0.0


def lagged(a: array[float], b: array[float], lag: int, channels: int) -> float:
    """Correlation of `a` with `b` moved `lag` frames later (negative: earlier)."""
    step = lag * channels
    if step >= 0:
        return correlation(a[step:], b)
    return correlation(a, b[-step:])


def media_info(video: bool = True, audio: bool = True, duration: float = 20.0) -> MediaInfo:
    """A probe of an H.264/AAC upload as ffprobe would describe it (no file needed)."""
    return MediaInfo(
        size_bytes=1000,
        duration_s=duration,
        format_name="mov,mp4",
        video=VideoStream(index=0, codec="h264", width=640, height=360, fps=30.0, rotation=0)
        if video
        else None,
        audio=AudioStream(
            index=1,
            codec="aac",
            profile="LC",
            sample_rate=48000,
            channels=2,
            channel_layout="stereo",
            bit_rate=128000,
            frame_size=1024,
            time_base=Fraction(1, 48000),
        )
        if audio
        else None,
    )


def make_narrated_clip(
    path: Path,
    narration: Path,
    *,
    seconds: float,
    sample_rate: int,
    channels: int,
    audio_args: list[str],
    noise_dbfs: float | None = None,
    size: str = "320x180",
    video_args: list[str] | None = None,
) -> Path:
    """`narration` looped without a break under `testsrc2` (30 fps), optionally over white noise
    whose RMS is `noise_dbfs`; the audio encoded with `audio_args`, the container chosen by
    `path`'s suffix (H.264 for MP4/MOV/MKV, VP9 for WebM) unless `video_args` says otherwise.
    The report's clips are made this way.
    """
    inputs = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30"]
    inputs += ["-stream_loop", "-1", "-i", str(narration)]
    speech = f"[1:a]aresample={sample_rate:d}"
    if noise_dbfs is None:
        audio = ["-filter_complex", f"{speech}[a]"]
    else:
        # Uniform white noise of peak A has an RMS of A / sqrt(3).
        peak = 10 ** (noise_dbfs / 20) * math.sqrt(3)
        noise = f"anoisesrc=color=white:amplitude={peak:.6f}:seed=11:sample_rate={sample_rate:d}"
        audio = [
            "-filter_complex",
            f"{speech}[s];{noise}[n];[s][n]amix=inputs=2:duration=first:normalize=0[a]",
        ]
    if video_args is not None:
        video = video_args
    elif path.suffix == ".webm":
        video = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"]
    else:
        video = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "60"]
    args = [
        "ffmpeg", "-v", "error", "-nostdin", "-y", *inputs, *audio,
        "-map", "0:v", "-map", "[a]", "-t", f"{seconds:g}", *video,
        "-ar", str(sample_rate), "-ac", str(channels), *audio_args, "-shortest", str(path),
    ]  # fmt: skip
    subprocess.run(args, capture_output=True, check=True)
    return path


def input_groups(args: list[str]) -> list[tuple[list[str], str]]:
    """An ffmpeg command line's inputs: (the options given since the previous input, its path)."""
    groups, options = [], []
    i = 0
    while i < len(args):
        if args[i] == "-i" and i + 1 < len(args):
            groups.append((options, args[i + 1]))
            options = []
            i += 2
            continue
        options.append(args[i])
        i += 1
    return groups


def opened_as(options: list[str]) -> dict[str, str]:
    """The value of each `-name value` option among `options` (the last one wins)."""
    return {name: value for name, value in itertools.pairwise(options) if name.startswith("-")}


def claim_duration(source: Path, dest: Path, seconds: float) -> Path:
    """A copy of `source` whose header claims it lasts `seconds`, its media left whole.

    Matroska/WebM: the Segment Duration float (in ms, the TimecodeScale ffmpeg writes). MP4: the
    movie header's duration. ffprobe's format duration follows either claim.
    """
    data = bytearray(source.read_bytes())
    if data[:4] == b"\x1a\x45\xdf\xa3":
        assert b"\x2a\xd7\xb1\x83\x0f\x42\x40" in data[:4096]  # TimecodeScale 1 ms
        at = data.find(b"\x44\x89\x88", 0, 4096)  # Duration, an 8-byte float
        assert at > 0, "no 8-byte Duration element in the Segment Info"
        data[at + 3 : at + 11] = struct.pack(">d", seconds * 1000)
    else:
        at = data.find(b"mvhd")
        assert at > 0 and data[at + 4] == 0, "no version-0 mvhd box"
        timescale = int.from_bytes(data[at + 16 : at + 20], "big")
        data[at + 20 : at + 24] = round(seconds * timescale).to_bytes(4, "big")
    dest.write_bytes(bytes(data))
    return dest


# What Chrome's MediaRecorder writes by default: VP8 (with Opus) in WebM.
VP8_ARGS = ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"]


def rendered(path: Path, *, tempo: float = 1.0, provider_speed: float = 1.0) -> RenderReport:
    """A render's report, for tests whose render is a stand-in that only names its output."""
    return RenderReport(
        path=path,
        duration_s=20.0,
        tempo=tempo,
        gain_db=0.0,
        path_taken="head-reencode",
        seconds=0.1,
        provider_speed=provider_speed,
    )
