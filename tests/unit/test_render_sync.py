"""Sync sweep of the render: every copied sample at its original time, for many clips and slots.

Each clip (sample rate x channels x content x container) is made once per module, then rendered
for many greeting ends: on an AAC packet boundary (k * 1024 / rate), a sample either side of
one, half a packet either side, and the usual 1.5 s, each with another greeting (text and format
decide where the greeting's frames fall in the mix graph). For every render the audio after the
cut must decode sample for sample as the input's does (zero lag by cross-correlation, exact
equality for the stream-copied packets, which keep their data and timestamps), every audio
packet must sit on the 1024-sample grid, and the track must hold as many samples as the input's.
Renders of one clip run two at a time: ffmpeg processes, not Python, do the work.
"""

from __future__ import annotations

import itertools
import os
from array import array
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from flows.stages.render import RenderReport, render_greeting
from flows.stages.render.ffmpeg_args import (
    COPY_VIDEO,
    RESTAMP,
    MixSpec,
    Upload,
    full_args,
    mix_graph,
)
from flows.stages.render.timing import full_lead
from flows.stages.synthesize import EspeakVoice
from greetings.samples import DEFAULT_NARRATION, make_speech
from tests.support.mediacheck import (
    VP8_ARGS,
    Packet,
    Pcm,
    decode_pcm,
    lagged,
    make_narrated_clip,
    max_abs_diff,
    packets,
    rms_db,
)

CLIP_S = 5.0
FRAME = 1024  # AAC samples per packet
NOISE_DBFS = -60.0
# PNS off: with it the decoder fills bands with its own random noise, so the same packets decode
# differently after a different head, and copied audio could not be compared sample for sample.
AAC = ["-c:a", "aac", "-aac_pns", "0", "-b:a", "128k"]
LAGS = (-FRAME, -2, -1, 0, 1, 2, FRAME)
GREETINGS = ("Hey John,", "Hey Sam Lee,", "Hi Anna-Lena,", "Hello Priya,")


@dataclass(frozen=True)
class Clip:
    suffix: str
    sample_rate: int
    channels: int
    audio_args: list[str] = field(default_factory=lambda: AAC)
    noise_dbfs: float | None = None
    copies: bool = True  # AAC in MP4/MOV: the head is re-encoded, the rest stream-copied
    video_args: list[str] | None = None  # None: make_narrated_clip's choice for the container


def _clips() -> dict[str, Clip]:
    clips = {
        f"mp4-{rate}-{'stereo' if channels == 2 else 'mono'}-{content}": Clip(
            ".mp4", rate, channels, noise_dbfs=NOISE_DBFS if content == "noise" else None
        )
        for rate in (22050, 32000, 44100, 48000)
        for channels in (1, 2)
        for content in ("speech", "noise")
    }
    clips["mov-44100-stereo-speech"] = Clip(".mov", 44100, 2)
    clips["mov-48000-mono-noise"] = Clip(".mov", 48000, 1, noise_dbfs=NOISE_DBFS)
    # Not AAC in MP4: the whole track is re-encoded (lossy, so near-equal), still at zero lag and
    # exactly as long as the input's.
    opus = ["-c:a", "libopus", "-b:a", "96k"]
    clips["webm-opus-48000-stereo-speech"] = Clip(".webm", 48000, 2, opus, copies=False)
    mp3 = ["-c:a", "libmp3lame", "-b:a", "128k"]
    clips["mkv-mp3-44100-stereo-noise"] = Clip(".mkv", 44100, 2, mp3, NOISE_DBFS, copies=False)
    # Browser recordings: VP8 (re-encoded to H.264, MP4 cannot hold it) with Opus.
    clips["webm-vp8-opus-48000-stereo-speech"] = Clip(
        ".webm", 48000, 2, opus, copies=False, video_args=VP8_ARGS
    )
    clips["webm-vp8-opus-48000-mono-noise"] = Clip(
        ".webm", 48000, 1, opus, NOISE_DBFS, copies=False, video_args=VP8_ARGS
    )
    return clips


CLIPS = _clips()


def greeting_ends(rate: int) -> list[int]:
    """Slot ends in samples: on packet boundaries, a sample and half a packet off them."""
    near = round(1.2 * rate / FRAME) * FRAME
    far = round(2.0 * rate / FRAME) * FRAME
    half = FRAME // 2
    return [round(1.5 * rate), near, near - 1, near + 1, near - half, near + half, far, far + 1]


@dataclass(frozen=True)
class Case:
    end: int  # greeting slot end, samples
    greeting: str
    report: RenderReport
    result: Pcm
    packets: list[Packet]  # the output's audio packets, as stored


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("render-sync")


@pytest.fixture(scope="module")
def greetings(media_dir: Path) -> list[Path]:
    """Greetings of different lengths and formats (espeak's 22.05 kHz WAV, a 44.1 kHz MP3 as
    ElevenLabs sends): where the greeting's frames fall in the mix graph is part of the sweep."""
    made = []
    for i, text in enumerate(GREETINGS):
        for suffix, rate in ((".wav", None), (".mp3", 44100)):
            made.append(make_speech(media_dir / f"greeting-{i}{suffix}", text, sample_rate=rate))
    return made


@pytest.fixture(scope="module")
def narration(media_dir: Path) -> Path:
    return make_speech(media_dir / "narration.wav", DEFAULT_NARRATION)


def render_all(
    source: Path, greetings: list[Path], ends: list[int], rate: int, out_dir: Path
) -> Iterator[Case]:
    """Render each greeting end, the i-th with the i-th greeting (round robin)."""

    def render(i: int) -> Case:
        end, greeting = ends[i], greetings[i % len(greetings)]
        output = out_dir / f"{source.stem}-{end}.mp4"
        report = render_greeting(source, greeting, end / rate, output)
        return Case(end, greeting.name, report, decode_pcm(report.path), packets(output, "a:0"))

    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        yield from pool.map(render, range(len(ends)))


def lag_profile(result: Pcm, original: Pcm, start_s: float) -> dict[int, float]:
    """Correlation of output and input at a few lags over the first 0.3 s from `start_s` that
    holds sound (espeak's pauses are digital silence)."""
    at, last = start_s, original.frames / original.sample_rate - 0.6
    while rms_db(original.window(at, at + 0.3)) < -50 and at < last:
        at += 0.1
    out, ref = result.window(at, at + 0.3), original.window(at, at + 0.3)
    return {lag: lagged(out, ref, lag, original.channels) for lag in LAGS}


def relative_error_db(out: array[float], ref: array[float]) -> float:
    error = array("f", (a - b for a, b in zip(out, ref, strict=True)))
    return rms_db(error) - rms_db(ref)


def sync_problems(
    case: Case, original: Pcm, original_packets: list[Packet], copies: bool
) -> list[str]:
    """What is wrong with one render (empty: nothing)."""
    rate, problems = original.sample_rate, []
    stamps = [p.pts * rate for p in case.packets]
    if any(b - a != FRAME for a, b in itertools.pairwise(stamps)):
        problems.append("audio packets off the 1024-sample grid")
    if copies and case.report.copy_point_s is not None:
        cut = round(case.report.copy_point_s * rate)
        kept = [p for p in case.packets if p.pts * rate >= cut]
        if kept != [p for p in original_packets if p.pts * rate >= cut]:
            problems.append("packets from the copy point on are not the input's, at its times")
    path = "head-reencode" if copies else "full-audio-reencode"
    if case.report.path_taken != path:
        problems.append(f"took {case.report.path_taken}")
    if case.result.frames != original.frames:
        problems.append(f"{case.result.frames - original.frames:+d} samples in the track")
    if copies and case.report.copy_point_s is not None:
        # The first copied packet overlaps the head's last one; every later sample is copied.
        copied_from = case.report.copy_point_s + FRAME / rate
    else:
        copied_from = case.end / rate + 0.1
    at = lag_profile(case.result, original, copied_from + 0.2)
    best = max(at, key=lambda lag: at[lag])
    if best != 0 or at[0] < 0.99:
        problems.append(
            f"best lag {best} (correlation at 0: {at[0]:.4f}, at {best}: {at[best]:.4f})"
        )
    out, ref = case.result.window(copied_from), original.window(copied_from)
    if len(out) != len(ref):
        problems.append(f"{len(out) - len(ref):+d} samples after {copied_from:.4f} s")
    elif copies and max_abs_diff(out, ref) != 0.0:
        problems.append(f"copied audio differs (max {max_abs_diff(out, ref):.4f})")
    elif not copies and relative_error_db(out, ref) > -25:
        problems.append(f"re-encoded audio off by {relative_error_db(out, ref):.1f} dB")
    return problems


@pytest.mark.media
@pytest.mark.parametrize("name", CLIPS)
def test_every_copied_sample_keeps_its_time(
    media_dir: Path, greetings: list[Path], narration: Path, name: str
) -> None:
    clip = CLIPS[name]
    source = make_narrated_clip(
        media_dir / f"{name}{clip.suffix}",
        narration,
        seconds=CLIP_S,
        sample_rate=clip.sample_rate,
        channels=clip.channels,
        audio_args=clip.audio_args,
        noise_dbfs=clip.noise_dbfs,
        video_args=clip.video_args,
    )
    original, original_packets = decode_pcm(source), packets(source, "a:0")
    assert original.sample_rate == clip.sample_rate and original.channels == clip.channels
    ends = greeting_ends(clip.sample_rate)
    failures = {
        f"{case.end} ({case.greeting})": problems
        for case in render_all(source, greetings, ends, clip.sample_rate, media_dir)
        if (problems := sync_problems(case, original, original_packets, clip.copies))
    }
    assert not failures, f"greeting ends (samples at {clip.sample_rate} Hz) that failed: {failures}"


# --- the report: 23.2 ms late on 44.1 kHz AAC -----------------------------------------------


@pytest.fixture(scope="module")
def sam_lee(media_dir: Path) -> Path:
    """The greeting `greetings render --name "Sam Lee"` spoke: espeak-ng's "Hey Sam Lee,"."""
    speech = EspeakVoice("en-us").synthesize("Hey Sam Lee,", "espeak:en-us")
    path = media_dir / "sam-lee.wav"
    path.write_bytes(speech.audio)
    return path


@pytest.mark.media
@pytest.mark.parametrize("channels", [2, 1])
def test_the_reported_44k_render_is_not_a_frame_late(
    media_dir: Path, narration: Path, sam_lee: Path, channels: int
) -> None:
    """Looped narration under testsrc2 640x360, 8 s of `-c:a aac -ar 44100` (PNS on, as ffmpeg's
    default), greeting end 1.5 s: the old render put a whole extra AAC frame at the cut, so
    everything after it decoded 1024 samples (23.2 ms) late and the track was 1024 longer."""
    source = make_narrated_clip(
        media_dir / f"report-{channels}.mp4",
        narration,
        seconds=8,
        sample_rate=44100,
        channels=channels,
        audio_args=["-c:a", "aac"],
        size="640x360",
    )
    report = render_greeting(source, sam_lee, 1.5, media_dir / f"report-{channels}-out.mp4")
    assert report.path_taken == "head-reencode"
    original, result = decode_pcm(source), decode_pcm(report.path)
    assert result.frames == original.frames
    # 3 s after the greeting, decoded from the first sample (no seeking).
    at = lag_profile(result, original, 1.5 + 3.0)
    assert at[0] > 0.999
    assert at[0] > max(at[-1], at[1]) and max(at[-FRAME], at[FRAME]) < 0.5
    # PNS noise comes from the decoder's own generator, so near-equal rather than equal.
    out, ref = result.window(4.5, 7.5), original.window(4.5, 7.5)
    assert relative_error_db(out, ref) < -40


# --- the arithmetic behind it (pure) ------------------------------------------------------------


def test_restamping_by_sample_count_is_exact() -> None:
    """asetpts truncates; N/SR/TB in doubles falls a hair under N for many N at 44.1 kHz."""
    truncated = [n for n in range(0, 200_000, 32) if int(n / 44100 / (1 / 44100)) != n]
    assert 8160 in truncated and len(truncated) > 500  # 8159.999... -> 8159: a sample early
    for rate in (8000, 22050, 32000, 44100, 48000, 96000):
        assert all(round(n / rate / (1 / rate)) == n for n in range(0, 2_000_000, 7))
    spec = MixSpec(
        sample_rate=44100,
        channels=2,
        layout="stereo",
        greeting_samples=40000,
        slot_samples=66150,
        crossfade_samples=1764,
        tempo=1.0,
        gain_db=0.0,
        start=-64,
        original_start=0,
        end=82944,
    )
    graph = mix_graph(spec)
    assert "N/SR/TB," not in graph.replace(RESTAMP, "")
    assert graph.count(RESTAMP) == 4  # both branches, and after each delay


def test_full_reencode_puts_the_padding_before_time_zero() -> None:
    # 5 s of 48 kHz Opus: 240000 samples, 384 into the 235th AAC frame; the 640 samples that
    # used to pad the end now go before 0, where the edit list skips them with the priming.
    assert full_lead(240000, 72000) == 640
    assert (640 + 240000) % 1024 == 0
    assert full_lead(240000 + 1024, 72000) == 640  # a leading gap of a frame changes nothing
    assert full_lead(3 * 1024, 72000) == (-72000) % 1024  # the greeting outlasts the original
    assert full_lead(4096, 0) == 0
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
    args = full_args(
        upload=Upload(Path("/in.webm"), "matroska", 5.0),
        greeting_audio=Path("/g.wav"),
        spec=spec,
        bitrate=128000,
        output=Path("/o.mp4"),
        video=COPY_VIDEO,
    )
    assert args[args.index("-bsf:a") + 1] == "setts=ts=TS-640"
    assert "adelay=delays=640S:all=1" in mix_graph(spec)
    unshifted = full_args(
        upload=Upload(Path("/in.webm"), "matroska", 5.0),
        greeting_audio=Path("/g.wav"),
        spec=replace(spec, start=0),
        bitrate=128000,
        output=Path("/o.mp4"),
        video=COPY_VIDEO,
    )
    assert "-bsf:a" not in unshifted


def test_greeting_ends_cover_packet_boundaries() -> None:
    for rate in (22050, 32000, 44100, 48000):
        offsets = {end % FRAME for end in greeting_ends(rate)}
        assert {0, 1, FRAME - 1, FRAME // 2} <= offsets
        assert len(set(greeting_ends(rate))) == 8
