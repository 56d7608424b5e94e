"""Browser recordings: VP8 in WebM, which MP4 cannot hold as it is, renders as H.264.

Chrome's MediaRecorder writes VP8 (with Opus) by default; ffmpeg 5.1's MP4 muxer refuses a
copied VP8 track ("Could not find tag for codec vp8"), while VP9, AV1 and HEVC copy fine. A VP8
input's video is re-encoded (libx264 veryfast, CRF 23) at its size and with every frame at its
own time; its audio takes the whole-track path as any Opus input does, at zero lag and with the
input's sample count.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import pytest

from flows.media import ProcessLimits, limited, probe, probe_upload, run_ffmpeg
from flows.settings import Settings
from flows.stages.render import render_greeting
from flows.stages.render.ffmpeg_args import (
    COPY_VIDEO,
    MP4_VIDEO_CODECS,
    REENCODED_VIDEO,
    MixSpec,
    Upload,
    full_args,
    mux_args,
    video_plan,
)
from flows.stages.render.timing import HeadPlan
from greetings.samples import DEFAULT_NARRATION, make_speech
from tests.support.mediacheck import (
    VP8_ARGS,
    Pcm,
    decode_pcm,
    lagged,
    make_narrated_clip,
    packets,
    rms_db,
)

OPUS = ["-c:a", "libopus", "-b:a", "96k"]
GREETING_END_S = 1.5


def test_only_codecs_mp4_cannot_hold_are_reencoded() -> None:
    for codec in ("h264", "hevc", "vp9", "av1", "mpeg4"):
        assert video_plan(codec, 1920, 1080) == COPY_VIDEO and not COPY_VIDEO.reencoded
    assert "vp8" not in MP4_VIDEO_CODECS
    plan = video_plan("vp8", 1280, 720)
    assert plan.reencoded
    reencode = plan.encode
    assert reencode[: len(REENCODED_VIDEO)] == REENCODED_VIDEO
    assert reencode[reencode.index("-c:v") + 1] == "libx264"
    assert reencode[reencode.index("-preset") + 1] == "veryfast"
    assert reencode[reencode.index("-crf") + 1] == "23"
    assert reencode[reencode.index("-fps_mode") + 1] == "passthrough"  # every frame, its own time
    assert reencode[reencode.index("-enc_time_base:v") + 1] == "-1"  # the input's time base
    # Threads bounded whatever the machine's cores: fewer (and sliced) for 4K frames.
    assert plan.decode == ["-threads", "1"] and reencode[-2:] == ["-threads", "4"]
    large = video_plan("vp8", 4096, 2304)
    assert large.decode == ["-threads", "1"]
    assert large.encode[large.encode.index("-threads") + 1] == "2"
    assert "sliced-threads=1" in large.encode[large.encode.index("-x264-params") + 1]

    spec = MixSpec(
        sample_rate=48000,
        channels=2,
        layout="stereo",
        greeting_samples=40000,
        slot_samples=72000,
        crossfade_samples=1920,
        tempo=1.0,
        gain_db=0.0,
        start=-640,
        original_start=0,
        end=None,
    )
    upload = Upload(Path("/in.webm"), "matroska", 5.0)
    full = full_args(
        upload=upload,
        greeting_audio=Path("/g.wav"),
        spec=spec,
        bitrate=128000,
        output=Path("/o.mp4"),
        video=plan,
    )
    at = full.index("-c:v")
    assert full[at : at + len(reencode)] == reencode
    # The decoder's threads go with the upload's input options.
    assert full[full.index("-i") - 10 : full.index("-i") - 8] == ["-threads", "1"]
    copied = full_args(
        upload=upload,
        greeting_audio=Path("/g.wav"),
        spec=spec,
        bitrate=128000,
        output=Path("/o.mp4"),
        video=video_plan("vp9", 1280, 720),
    )
    assert copied[copied.index("-c:v") + 1] == "copy" and "libx264" not in copied
    assert "-threads" not in copied
    head = HeadPlan(copy_point=75776, lead=0, encode_end=77824, first_packet=-1024)
    mux = mux_args(
        upload=upload,
        work=Path("/w"),
        plan=head,
        sample_rate=48000,
        output=Path("/o.mp4"),
        video=plan,
    )
    # Audio stays copied in the mux; only the video is encoded.
    assert mux[mux.index("-c") : mux.index("-c") + 2] == ["-c", "copy"]
    assert mux.index("libx264") > mux.index("-c")


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("render-browser")


@pytest.fixture(scope="module")
def greeting(media_dir: Path) -> Path:
    return make_speech(media_dir / "greeting.wav", "Hey John,")


@pytest.fixture(scope="module")
def narration(media_dir: Path) -> Path:
    return make_speech(media_dir / "narration.wav", DEFAULT_NARRATION)


def video_stream(path: Path) -> dict[str, str]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,pix_fmt",
            "-of",
            "default=nw=1",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def zero_lag(result: Pcm, original: Pcm, at: float) -> dict[int, float]:
    out, ref = result.window(at, at + 0.3), original.window(at, at + 0.3)
    return {lag: lagged(out, ref, lag, original.channels) for lag in (-1024, -1, 0, 1, 1024)}


@pytest.mark.media
@pytest.mark.parametrize(
    ("size", "frame_times"),
    [("640x360", "cfr"), ("321x241", "cfr"), ("320x240", "vfr")],
)
def test_a_vp8_webm_renders_as_h264_in_sync(
    media_dir: Path, narration: Path, greeting: Path, size: str, frame_times: str
) -> None:
    name = f"vp8-{size}-{frame_times}"
    # A variable frame rate in WebM's millisecond time base, as MediaRecorder writes: frames
    # 30-37 ms apart.
    vfr = ["-vf", "settb=1/1000,setpts='floor(N*1000/30+3*mod(N\\,3))'"]
    source = make_narrated_clip(
        media_dir / f"{name}.webm",
        narration,
        seconds=6,
        sample_rate=48000,
        channels=2,
        audio_args=OPUS,
        noise_dbfs=-60.0,
        size=size,
        video_args=[*VP8_ARGS, *(vfr if frame_times == "vfr" else [])],
    )
    assert video_stream(source)["codec_name"] == "vp8"
    report = render_greeting(source, greeting, GREETING_END_S, media_dir / f"{name}-out.mp4")
    assert report.video_reencoded and report.path_taken == "full-audio-reencode"

    stream = video_stream(report.path)
    width, height = (int(side) for side in size.split("x"))
    assert stream["codec_name"] == "h264" and stream["pix_fmt"] == "yuv420p"
    assert (int(stream["width"]), int(stream["height"])) == (width // 2 * 2, height // 2 * 2)
    # Every frame, at its own time (to the millisecond WebM counts in).
    before, after = packets(source, "v:0"), packets(report.path, "v:0")
    assert len(after) == len(before) > 150
    assert [round(float(p.pts), 3) for p in sorted(after, key=lambda p: p.pts)] == [
        round(float(p.pts), 3) for p in sorted(before, key=lambda p: p.pts)
    ]
    if frame_times == "vfr":
        gaps = {round(float(b.pts - a.pts), 3) for a, b in itertools.pairwise(before)}
        assert len(gaps) > 1  # the input's frame rate really varies
    # The audio: the input's sample count, the greeting in its slot, the rest at zero lag.
    original, result = decode_pcm(source), decode_pcm(report.path)
    assert result.frames == original.frames
    at = zero_lag(result, original, GREETING_END_S + 1.0)
    assert at[0] > 0.99 and at[0] > max(at[-1], at[1]) and max(at[-1024], at[1024]) < 0.5
    info_in, info_out = probe_upload(source), probe(report.path)
    assert abs(info_out.duration_s - info_in.duration_s) <= 0.05
    assert rms_db(result.window(0.1, 0.6)) > -40  # the greeting speaks


@pytest.mark.media
@pytest.mark.parametrize(
    "video",
    [
        ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"],
        ["-c:v", "libaom-av1", "-cpu-used", "8", "-b:v", "300k", "-g", "30"],
    ],
    ids=["vp9", "av1"],
)
def test_vp9_and_av1_webm_video_is_copied(
    media_dir: Path, narration: Path, greeting: Path, video: list[str]
) -> None:
    """ffmpeg 5.1's MP4 muxer holds VP9 and AV1: their packets go through untouched."""
    source = make_narrated_clip(
        media_dir / f"{video[1]}.webm",
        narration,
        seconds=3,
        sample_rate=48000,
        channels=2,
        audio_args=OPUS,
        size="160x90",
        video_args=video,
    )
    report = render_greeting(source, greeting, GREETING_END_S, media_dir / f"{video[1]}-out.mp4")
    assert not report.video_reencoded
    assert [(p.md5, p.pts) for p in packets(report.path)] == [
        (p.md5, p.pts) for p in packets(source)
    ]


@pytest.mark.media
@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
@pytest.mark.parametrize("size", ["1920x1080", "4096x2304"])
def test_vp8_up_to_the_largest_allowed_frame_renders_within_the_memory_limit(
    media_dir: Path, greeting: Path, size: str
) -> None:
    """The worker's default: 1 GiB of address space a process (Settings.media_memory_mb). Left
    to their default threads, decoder and encoder outgrew it at 1080p on a bigger machine."""
    source = media_dir / f"vp8-{size}.webm"
    lavfi = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-f", "lavfi", "-i", "sine"]
    run_ffmpeg([*lavfi, "-t", "1.5", *VP8_ARGS, *OPUS, str(source)])
    with limited(ProcessLimits(memory_bytes=Settings().media_memory_mb << 20)):
        report = render_greeting(source, greeting, 1.0, media_dir / f"vp8-{size}-out.mp4")
    assert report.video_reencoded
    stream = video_stream(report.path)
    assert f"{stream['width']}x{stream['height']}" == size


@pytest.mark.media
def test_a_live_webm_without_a_duration_renders_whole(
    media_dir: Path, narration: Path, greeting: Path
) -> None:
    # MediaRecorder writes WebM as it records: no Duration in the header, no cues at the end.
    source = make_narrated_clip(
        media_dir / "live.webm",
        narration,
        seconds=6,
        sample_rate=48000,
        channels=1,
        audio_args=OPUS,
        noise_dbfs=-60.0,
        video_args=[*VP8_ARGS, "-live", "1"],
    )
    header = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(source)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"duration"' not in header  # what the worker refused as "duration unknown"
    # The packets say how long it is, to a frame.
    assert probe_upload(source).duration_s == pytest.approx(6.0, abs=0.04)
    with limited(ProcessLimits(timeout_s=60, memory_bytes=1 << 30, cpu_s=60)):
        report = render_greeting(source, greeting, GREETING_END_S, media_dir / "live-out.mp4")
    assert probe(report.path).duration_s == pytest.approx(6.0, abs=0.05)
    original, result = decode_pcm(source), decode_pcm(report.path)
    assert result.frames == original.frames
    assert zero_lag(result, original, GREETING_END_S + 1.0)[0] > 0.99
