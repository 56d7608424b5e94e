"""Probing media and running ffmpeg: ffprobe's JSON parsed (pure), then real files."""

from __future__ import annotations

import subprocess
from array import array
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from flows.media import (
    FfmpegError,
    ProbeError,
    decode_speech,
    first_packets,
    media_info_from_ffprobe,
    probe,
    probe_with_first_packets,
    run_ffmpeg,
)
from flows.stages.render.ffmpeg_args import ANALYSIS_RATE
from flows.stages.render.loudness import (
    block_powers,
    gated_level_db,
    peak_db,
    speech_end_s,
    speech_start_s,
)
from greetings.samples import make_sample_video

VIDEO: dict[str, Any] = {
    "index": 0,
    "codec_type": "video",
    "codec_name": "h264",
    "width": 1920,
    "height": 1080,
    "avg_frame_rate": "30000/1001",
    "r_frame_rate": "30000/1001",
    "duration": "10.010000",
}
AUDIO: dict[str, Any] = {
    "index": 1,
    "codec_type": "audio",
    "codec_name": "aac",
    "profile": "LC",
    "sample_rate": "44100",
    "channels": 1,
    "channel_layout": "mono",
    "bit_rate": "96000",
    "time_base": "1/44100",
    "start_time": "0.000000",
    "duration": "10.000000",
}


def test_parses_streams_and_format() -> None:
    info = media_info_from_ffprobe(
        {
            "streams": [VIDEO, AUDIO],
            "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "10.010000"},
        },
        size_bytes=1234,
    )
    assert info.size_bytes == 1234 and info.duration_s == pytest.approx(10.01)
    assert info.video is not None and info.audio is not None
    assert (info.video.width, info.video.height, info.video.rotation) == (1920, 1080, 0)
    assert info.video.fps == pytest.approx(29.97, abs=0.01)
    assert info.audio.sample_rate == 44100 and info.audio.channels == 1
    assert info.audio.frame_size == 1024 and info.audio.bit_rate == 96000
    assert info.audio.time_base == Fraction(1, 44100)


def test_duration_falls_back_to_the_streams() -> None:
    info = media_info_from_ffprobe(
        {"streams": [VIDEO, AUDIO], "format": {"format_name": "matroska,webm"}}, size_bytes=1
    )
    assert info.duration_s == pytest.approx(10.01)


def test_rotation_from_side_data_or_the_old_tag() -> None:
    side = {**VIDEO, "side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}]}
    tagged = {**VIDEO, "tags": {"rotate": "180"}}
    fmt = {"format_name": "mov", "duration": "1"}
    rotated = media_info_from_ffprobe({"streams": [side], "format": fmt}, size_bytes=1).video
    assert rotated is not None and rotated.rotation == 270
    flipped = media_info_from_ffprobe({"streams": [tagged], "format": fmt}, size_bytes=1).video
    assert flipped is not None and flipped.rotation == 180


def test_cover_art_is_not_the_video() -> None:
    cover = {**VIDEO, "codec_name": "mjpeg", "disposition": {"attached_pic": 1}}
    info = media_info_from_ffprobe(
        {"streams": [cover, AUDIO], "format": {"format_name": "mp3", "duration": "3"}}, size_bytes=1
    )
    assert info.video is None and info.audio is not None


def test_frame_sizes_and_missing_fields() -> None:
    he = {**AUDIO, "profile": "HE-AAC", "bit_rate": "N/A", "channel_layout": None}
    opus = {**AUDIO, "codec_name": "opus", "profile": None}
    fmt = {"format_name": "x", "duration": "1"}
    he_info = media_info_from_ffprobe({"streams": [he], "format": fmt}, size_bytes=1).audio
    assert he_info is not None and he_info.frame_size == 2048 and he_info.bit_rate is None
    opus_info = media_info_from_ffprobe({"streams": [opus], "format": fmt}, size_bytes=1).audio
    assert opus_info is not None and opus_info.frame_size == 960


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"streams": [], "format": {"duration": "1"}},
        {"streams": [{"codec_type": "data"}], "format": {"duration": "1"}},
        {"streams": [AUDIO | {"duration": "N/A"}], "format": {}},
    ],
)
def test_not_media(data: dict[str, Any]) -> None:
    with pytest.raises(ProbeError):
        media_info_from_ffprobe(data, size_bytes=1)


def test_first_packets_per_stream() -> None:
    data = {
        "packets": [
            {"stream_index": 1, "pts": -1024},
            {"stream_index": 0, "pts": 0},
            {"stream_index": 1, "pts": 0},
            {"stream_index": 2},
        ]
    }
    assert first_packets(data) == {1: -1024, 0: 0}


# --- real files -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sample_video(
        tmp_path_factory.mktemp("media") / "clip.mov", seconds=3, width=320, height=180, rotation=90
    )


@pytest.mark.media
def test_probe_a_generated_clip(clip: Path) -> None:
    info, first = probe_with_first_packets(clip)
    assert info == probe(clip)
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert info.video is not None and info.video.rotation == 90 and info.video.fps == 30
    assert info.audio is not None and info.audio.codec == "aac" and info.audio.channels == 2
    assert first[info.audio.index] == -1024  # the AAC encoder's priming packet


@pytest.mark.media
@pytest.mark.parametrize("content", ["empty", "text", "truncated"])
def test_probe_refuses_what_is_not_media(clip: Path, tmp_path: Path, content: str) -> None:
    bad = tmp_path / "bad.mp4"
    if content == "text":
        bad.write_text("hello, not a video\n" * 20)
    elif content == "truncated":
        bad.write_bytes(clip.read_bytes()[:4000])
    else:
        bad.touch()
    with pytest.raises(ProbeError):
        probe(bad)
    with pytest.raises(ProbeError):
        probe(tmp_path / "missing.mp4")


@pytest.mark.media
def test_ffmpeg_failure_says_why(tmp_path: Path) -> None:
    with pytest.raises(FfmpegError) as caught:
        run_ffmpeg(["-i", str(tmp_path / "missing.wav"), str(tmp_path / "out.wav")])
    assert "missing.wav" in str(caught.value)
    assert caught.value.returncode != 0


# --- the voice's speech, decoded in the worker's process (decode_speech) ---------------------

SPEECH_RATES = (16000, 22050, 24000, 44100, 48000)


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real voice saying a greeting with a long name: espeak-ng's 22.05 kHz mono WAV."""
    wav = tmp_path_factory.mktemp("speech") / "espeak.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(wav), "Hey Dr. Anna-Lena Müller-Lüdenscheidt,"], check=True
    )
    return wav


def measured(raw: bytes) -> tuple[int, float, float, float | None, float]:
    """What the render reads off a greeting's samples: their count, where speech starts and
    ends, its gated level and its peak (flows/stages/render/loudness.py)."""
    samples = array("f", raw)
    powers = block_powers(samples, channels=1, sample_rate=ANALYSIS_RATE)
    level = gated_level_db(powers)
    return (
        len(samples),
        speech_start_s(powers),
        speech_end_s(powers),
        None if level is None else round(level, 2),
        round(peak_db(samples), 1),
    )


@pytest.mark.parametrize("container", ["wav", "mp3"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", SPEECH_RATES)
def test_speech_decodes_in_process_as_ffmpeg_decodes_it(
    spoken: Path, tmp_path: Path, container: str, channels: int, rate: int
) -> None:
    # As the voices deliver it: ElevenLabs' mp3_* and wav_* formats at their rates, Piper's and
    # espeak-ng's WAV; stereo too, which the decode mixes down as `-ac 1` does.
    speech = tmp_path / f"greeting.{container}"
    codec = ["-c:a", "libmp3lame", "-b:a", "128k"] if container == "mp3" else []
    run_ffmpeg(["-i", str(spoken), "-ar", str(rate), "-ac", str(channels), *codec, str(speech)])
    pcm = ["-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"]
    cli = run_ffmpeg(
        ["-copyts", "-i", str(speech), "-map", "0:a:0", "-ac", "1", "-ar", str(ANALYSIS_RATE), *pcm]
    )
    decoded = decode_speech(speech, ANALYSIS_RATE, 60.0)
    assert len(cli) > ANALYSIS_RATE * 4  # over a second of speech
    if container == "wav" or rate != 24000:
        assert decoded == cli  # bit for bit
    else:
        # MPEG-2 Layer III (MP3 at 24 kHz): PyAV's FFmpeg 8 decodes it a little differently
        # from Debian's FFmpeg 5.1 (seen: up to 0.004, -48 dBFS); what is measured is the same.
        pairs = zip(array("f", decoded), array("f", cli), strict=True)
        assert max(abs(a - b) for a, b in pairs) < 0.01
    assert measured(decoded) == measured(cli)


def test_speech_decode_stops_at_its_limit_and_refuses_what_is_not_speech(
    spoken: Path, tmp_path: Path
) -> None:
    whole = decode_speech(spoken, ANALYSIS_RATE, 60.0)
    assert decode_speech(spoken, ANALYSIS_RATE, 0.5) == whole[: ANALYSIS_RATE // 2 * 4]
    # A voice that answered with something else: an error the render turns into the job's.
    fake = tmp_path / "greeting.mp3"
    fake.write_text("<html>503 Service Unavailable</html>\n" * 50)
    with pytest.raises(FfmpegError):
        decode_speech(fake, ANALYSIS_RATE, 60.0)
    empty = tmp_path / "greeting.wav"
    empty.write_bytes(b"")
    with pytest.raises(FfmpegError):
        decode_speech(empty, ANALYSIS_RATE, 60.0)
    # Only the containers the voices write: nothing else picks a demuxer by guessing.
    playlist = tmp_path / "greeting.m3u8"
    playlist.write_text(f"#EXTM3U\n{spoken}\n")
    with pytest.raises(ValueError, match="not a speech file"):
        decode_speech(playlist, ANALYSIS_RATE, 60.0)
