"""Generated media: the demo's sample "sales video", test clips and benchmark clips.

Everything is synthesized locally (lavfi test sources, espeak-ng speech), so no fixture files are
committed and any size, codec or container can be made on demand.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Literal

from flows.media import run_ffmpeg

Container = Literal["mp4", "webm", "mov"]
VideoCodec = Literal["libx264", "libvpx-vp9"]
AudioCodec = Literal["aac", "libopus"]

DEFAULT_NARRATION = (
    "Hey there, thanks for taking a minute to watch this. "
    "I recorded this video to show you how our product saves your team hours every week."
)
ESPEAK = "espeak-ng"

_CONTAINER_FORMAT: dict[str, str] = {"mp4": "mp4", "webm": "webm", "mov": "mov"}
_ALLOWED_CODECS: dict[str, tuple[set[str], set[str]]] = {
    "mp4": ({"libx264", "libvpx-vp9"}, {"aac", "libopus"}),
    "mov": ({"libx264"}, {"aac"}),
    "webm": ({"libvpx-vp9"}, {"libopus"}),
}


def speech_wav(text: str, *, voice: str = "en-us", words_per_minute: int = 165) -> bytes:
    """espeak-ng's WAV for `text`; the text goes through stdin, never through a command line."""
    proc = subprocess.run(
        [ESPEAK, "-v", voice, "-s", str(words_per_minute), "--stdin", "--stdout"],
        input=text.encode(),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def make_speech(
    path: Path, text: str, *, voice: str = "en-us", sample_rate: int | None = None
) -> Path:
    """Write `text` spoken by espeak-ng to `path` (any format ffmpeg writes, by extension)."""
    args = ["-f", "wav", "-i", "pipe:0"]
    if sample_rate:
        args += ["-ar", str(sample_rate)]
    run_ffmpeg([*args, str(path)], stdin=speech_wav(text, voice=voice))
    return path


def make_recording(
    path: Path,
    text: str,
    *,
    noise_dbfs: float | None = -60.0,
    sample_rate: int = 44100,
    size: str = "320x180",
) -> Path:
    """What a rep records on a phone: `text` spoken, as 44.1 kHz AAC in MP4, over pink room tone
    of `noise_dbfs` RMS (None: digital silence between words, as no real room has)."""
    with tempfile.TemporaryDirectory(prefix="recording-") as folder:
        speech = Path(folder) / "speech.wav"
        speech.write_bytes(speech_wav(text))
        sources = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-i", str(speech)]
        codecs = ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-ar", str(sample_rate)]
        if noise_dbfs is None:
            run_ffmpeg([*sources, "-shortest", *codecs, str(path)])
            return path
        # Pink noise's peak amplitude is about twice its RMS.
        tone = f"anoisesrc=color=pink:amplitude={2 * 10 ** (noise_dbfs / 20):.6f}"
        mix = "[1:a][2:a]amix=inputs=2:duration=first:normalize=0[a]"
        graph = ["-f", "lavfi", "-i", tone, "-filter_complex", mix, "-map", "0:v", "-map", "[a]"]
        run_ffmpeg([*sources, *graph, "-shortest", *codecs, str(path)])
    return path


def make_tone(
    path: Path,
    seconds: float,
    *,
    frequency: float = 440.0,
    sample_rate: int = 48000,
    channels: int = 1,
    amplitude: float = 0.25,
) -> Path:
    """A sine tone of the given peak amplitude (codec chosen by ffmpeg from the extension)."""
    source = (
        f"aevalsrc={amplitude:.6f}*sin(2*PI*{frequency:.6f}*t):s={sample_rate:d}:d={seconds:.6f}"
    )
    run_ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            source,
            "-ac",
            str(channels),
            *_audio_codec_args(path.suffix),
            str(path),
        ]
    )
    return path


def make_sample_video(
    path: Path,
    *,
    seconds: float,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    container: Container = "mp4",
    video_codec: VideoCodec = "libx264",
    audio_codec: AudioCodec = "aac",
    sample_rate: int = 48000,
    channels: int = 2,
    narration: str | None = DEFAULT_NARRATION,
    rotation: int = 0,
    audio: bool = True,
    video: bool = True,
) -> Path:
    """A moving test pattern with spoken narration over a quiet noise-and-tone bed.

    The bed keeps signal in every audio frame, so a test comparing audio can never pass on
    silence alone.
    """
    videos, audios = _ALLOWED_CODECS[container]
    if video and video_codec not in videos:
        raise ValueError(f"{video_codec} does not go in {container}")
    if audio and audio_codec not in audios:
        raise ValueError(f"{audio_codec} does not go in {container}")
    if not (audio or video):
        raise ValueError("a sample needs audio, video or both")

    args: list[str] = []
    maps: list[str] = []
    stdin: bytes | None = None
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc2=size={width:d}x{height:d}:rate={fps:d}"]
        maps += ["-map", "0:v"]
    if audio:
        first = len(maps) // 2
        bed = (
            f"anoisesrc=color=pink:amplitude=0.02:seed=7:sample_rate={sample_rate:d},"
            f"volume=1[noise];"
            f"sine=frequency=170:sample_rate={sample_rate:d},volume=0.02[tone];"
        )
        if narration:
            stdin = speech_wav(narration)
            args += ["-f", "wav", "-i", "pipe:0"]
            graph = (
                bed + f"[{first}:a]aresample={sample_rate:d},volume=0.8,apad[speech];"
                "[speech][noise][tone]amix=inputs=3:duration=shortest:normalize=0[mix]"
            )
        else:
            graph = bed + "[noise][tone]amix=inputs=2:duration=shortest:normalize=0[mix]"
        args += ["-filter_complex", graph]
        maps += ["-map", "[mix]"]
    args += [*maps, "-t", f"{seconds:g}"]
    if video:
        args += _video_codec_args(video_codec, fps)
    if audio:
        args += ["-ar", str(sample_rate), "-ac", str(channels)]
        args += ["-c:a", "aac", "-aac_pns", "0", "-b:a", "128k"] if audio_codec == "aac" else []
        args += ["-c:a", "libopus", "-b:a", "96k"] if audio_codec == "libopus" else []
    args += ["-f", _CONTAINER_FORMAT[container]]

    path.parent.mkdir(parents=True, exist_ok=True)
    if not rotation:
        run_ffmpeg([*args, str(path)], stdin=stdin)
        return path
    # ffmpeg 5.1 drops a `rotate` tag when it encodes but turns it into a display matrix when it
    # stream-copies, so rotated samples take a second, copying pass.
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        plain = Path(tmp) / f"plain.{container}"
        run_ffmpeg([*args, str(plain)], stdin=stdin)
        run_ffmpeg(
            [
                "-i",
                str(plain),
                "-map",
                "0",
                "-c",
                "copy",
                "-metadata:s:v:0",
                f"rotate={rotation:d}",
                "-f",
                _CONTAINER_FORMAT[container],
                str(path),
            ]
        )
    return path


def _video_codec_args(codec: VideoCodec, fps: int) -> list[str]:
    gop = str(max(1, fps * 2))
    if codec == "libx264":
        return ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", gop]
    return [
        "-c:v",
        "libvpx-vp9",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-row-mt",
        "1",
        "-b:v",
        "1M",
        "-pix_fmt",
        "yuv420p",
        "-g",
        gop,
    ]


def _audio_codec_args(suffix: str) -> list[str]:
    # PNS makes decoded AAC depend on the decoder's noise generator, so two files holding the
    # same packets could decode differently; off, test media compares sample for sample.
    if suffix.lower() in (".m4a", ".mp4", ".aac"):
        return ["-c:a", "aac", "-aac_pns", "0", "-b:a", "128k"]
    return []
