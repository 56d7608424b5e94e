"""Room tone under the greeting: the slot never drops to digital silence on a real recording.

A recording's pauses carry its room (-50 to -63 dBFS); a synthesized greeting's pauses are digital
silence. Where the greeting is shorter than its slot, the old render left the rest of the slot at
-inf dBFS: a drop-out a listener hears. The render now loops the original's quietest stretch
(forwards, then backwards: no jump) under the whole slot at the floor's level, and fades it out
with the greeting where the original fades in. A recording without a floor keeps silence.
"""

from __future__ import annotations

import math
import random
import subprocess
from array import array
from pathlib import Path

import pytest

from flows.stages.render import render_greeting
from flows.stages.render.ffmpeg_args import (
    RESTAMP,
    MixSpec,
    RoomTone,
    mix_graph,
)
from flows.stages.render.loudness import (
    ROOM_TONE_MAX_GAIN_DB,
    QuietStretch,
    quietest_stretch,
)
from flows.stages.render.stage import head_samples_needed
from flows.stages.render.timing import HeadPlan
from greetings.samples import make_speech
from tests.support.mediacheck import Pcm, decode_pcm, max_abs_diff, rms_db

RATE = 24000


def noise(level_db: float, seconds: float, *, seed: int = 1, channels: int = 1) -> array[float]:
    """Uniform white noise of RMS `level_db`."""
    peak = 10 ** (level_db / 20) * math.sqrt(3)
    rng = random.Random(seed)
    return array("f", (rng.uniform(-peak, peak) for _ in range(round(seconds * RATE) * channels)))


def burst(level_db: float, seconds: float, hz: float = 220.0) -> array[float]:
    """A steady tone of RMS `level_db`: a vowel, for the level finder."""
    amplitude = 10 ** (level_db / 20) * math.sqrt(2)
    n = round(seconds * RATE)
    return array("f", (amplitude * math.sin(2 * math.pi * hz * i / RATE) for i in range(n)))


def added(a: array[float], b: array[float]) -> array[float]:
    return array("f", (x + y for x, y in zip(a, b, strict=True)))


def silence(seconds: float) -> array[float]:
    return array("f", bytes(4 * round(seconds * RATE)))


def speech_over(floor: array[float], spans: list[tuple[float, float]]) -> array[float]:
    out = array("f", floor)
    for start, end in spans:
        first = round(start * RATE)
        words = burst(-20.0, end - start)
        out[first : first + len(words)] = added(out[first : first + len(words)], words)
    return out


# --- finding the room tone (pure) ---------------------------------------------------------------


def test_the_quietest_stretch_is_the_floor_between_words() -> None:
    samples = speech_over(noise(-60.0, 3.5), [(0.1, 0.8), (1.9, 2.6), (3.0, 3.5)])
    found = quietest_stretch(samples, channels=1, sample_rate=RATE)
    assert found is not None
    assert found.length_s == pytest.approx(0.4)
    # Inside the pause from 0.8 to 1.9 s, not touching a word.
    assert found.start_s >= 0.8 and found.start_s + found.length_s <= 1.9
    assert found.level_db == pytest.approx(-60.0, abs=0.5)
    assert found.floor_db == pytest.approx(-60.0, abs=0.5)
    assert 0.0 <= found.gain_db <= ROOM_TONE_MAX_GAIN_DB


def test_stereo_samples_are_measured_over_both_channels() -> None:
    floor = noise(-58.0, 2.0, channels=2)
    found = quietest_stretch(floor, channels=2, sample_rate=RATE)
    assert found is not None and found.level_db == pytest.approx(-58.0, abs=0.5)


def test_short_pauses_give_a_shorter_loop() -> None:
    spans = [(t / 10, t / 10 + 0.3) for t in range(0, 30, 5)]  # 0.2 s pauses only
    found = quietest_stretch(speech_over(noise(-55.0, 3.0), spans), channels=1, sample_rate=RATE)
    assert found is not None and found.length_s in (0.2, 0.15)


def test_digital_silence_has_no_room_tone() -> None:
    samples = speech_over(silence(3.0), [(0.1, 0.8), (1.9, 2.6)])
    assert quietest_stretch(samples, channels=1, sample_rate=RATE) is None
    assert quietest_stretch(silence(1.0), channels=1, sample_rate=RATE) is None
    assert quietest_stretch(array("f"), channels=1, sample_rate=RATE) is None


def test_a_muted_start_is_skipped_for_the_real_floor() -> None:
    """A camera that starts muted: digital silence first, then the room."""
    samples = silence(0.6) + speech_over(noise(-62.0, 2.4), [(0.2, 0.9)])
    found = quietest_stretch(samples, channels=1, sample_rate=RATE)
    assert found is not None and found.start_s >= 0.6
    assert found.level_db == pytest.approx(-62.0, abs=0.5)


def test_a_loud_bed_is_not_looped() -> None:
    # Music or a loud room at -35 dBFS: a loop of it would be heard as a loop.
    samples = speech_over(noise(-35.0, 3.0), [(0.1, 0.8)])
    assert quietest_stretch(samples, channels=1, sample_rate=RATE) is None


def test_the_loop_is_brought_up_to_the_floor_around_it() -> None:
    # One stretch a few dB under the rest of the floor: it plays at the floor's level.
    floor = noise(-58.0, 3.0, seed=2)
    dip = noise(-61.0, 0.4, seed=3)
    floor[round(1.0 * RATE) : round(1.4 * RATE)] = dip
    found = quietest_stretch(floor, channels=1, sample_rate=RATE)
    assert found is not None and found.level_db == pytest.approx(-61.0, abs=0.6)
    assert found.gain_db == pytest.approx(3.0, abs=0.6)
    assert QuietStretch(0.0, 0.4, -70.0, -60.0).gain_db == ROOM_TONE_MAX_GAIN_DB  # at most


# --- the graph (pure) ---------------------------------------------------------------------------


def spec(**overrides: object) -> MixSpec:
    fields: dict[str, object] = {
        "sample_rate": 48000,
        "channels": 2,
        "layout": "stereo",
        "greeting_samples": 40000,
        "slot_samples": 72000,
        "crossfade_samples": 1920,
        "tempo": 1.0,
        "gain_db": -3.5,
        "start": -64,
        "original_start": 0,
        "end": 77824,
        "room": RoomTone(start=48000, length=19200, gain_db=0.5),
    }
    return MixSpec(**{**fields, **overrides})  # type: ignore[arg-type]


def test_the_room_tone_loops_forwards_and_backwards_under_the_slot() -> None:
    graph = mix_graph(spec())
    assert graph.startswith("[0:a:0]asplit=2[original_in][room_in];")
    assert "atrim=start_sample=48000:end_sample=67200" in graph  # the stretch
    assert "[room_back]areverse[room_rev]" in graph
    assert "concat=n=2:v=0:a=1,aloop=loop=-1:size=38400" in graph  # there and back: 2 x length
    assert "atrim=end_sample=72000,volume=0.50dB,adelay=delays=64S:all=1" in graph
    # Fades out with the greeting, over the same samples the original fades in.
    fade = "afade=t=out:start_sample=70144:nb_samples=1920:curve=qsin"
    assert graph.count(fade) == 2 and "afade=t=in:start_sample=70144:nb_samples=1920" in graph
    assert "[original_in]aformat" in graph
    assert "[greeting][original][room]amix=inputs=3:duration=longest:normalize=0" in graph
    assert graph.count(RESTAMP) == 8
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789_=:,;|[]().-/NSRTB")
    assert set(graph) <= allowed
    # Without room tone, the graph is as before.
    plain = mix_graph(spec(room=None))
    assert "asplit" not in plain and "amix=inputs=2" in plain


def test_the_head_reads_as_far_as_the_room_tone_lies() -> None:
    plan = HeadPlan(copy_point=75776, lead=0, encode_end=77824, first_packet=-1024)
    assert head_samples_needed(plan, 0, None) == 77824
    assert head_samples_needed(plan, 1024, None) == 76800  # the original starts later
    early = RoomTone(start=48000, length=19200, gain_db=0.0)
    assert head_samples_needed(plan, 0, early) == 77824
    late = RoomTone(start=120000, length=19200, gain_db=0.0)
    assert head_samples_needed(plan, 0, late) == 139200


# --- real renders -------------------------------------------------------------------------------

GREETING_END_S = 1.8
FLOOR_DBFS = -60.0


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("room-tone")


@pytest.fixture(scope="module")
def greeting(media_dir: Path) -> Path:
    return make_speech(media_dir / "greeting.wav", "Hi Al,")


def make_clip(media_dir: Path, name: str, floor: str | None) -> Path:
    """ "Hey John," at 0.1 s, a pause, more words from 2.6 s, over `floor` (white or brown noise
    at FLOOR_DBFS) or over digital silence; 6 s, H.264/AAC in MP4 or VP9/Opus in WebM."""
    path = media_dir / name
    hey = make_speech(media_dir / "hey.wav", "Hey John,")
    more = make_speech(media_dir / "more.wav", "thanks for watching this video")
    words = (
        "[1:a]aresample=48000,adelay=100:all=1[a];[2:a]aresample=48000,adelay=2600:all=1,apad[b];"
    )
    if floor is None:
        graph = words + "[a][b]amix=inputs=2:duration=longest:normalize=0,atrim=end=6[mix]"
    else:
        peak = 10 ** (FLOOR_DBFS / 20) * math.sqrt(3)
        # anoisesrc's brown noise comes out about 12 dB under its white noise of the same peak.
        level = "" if floor == "white" else ",volume=12dB"
        graph = words + (
            f"anoisesrc=color={floor}:amplitude={peak:.6f}:seed=5:sample_rate=48000{level}[n];"
            "[a][b][n]amix=inputs=3:duration=longest:normalize=0,atrim=end=6[mix]"
        )
    if path.suffix == ".mp4":
        codecs = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
        codecs += ["-c:a", "aac", "-aac_pns", "0", "-b:a", "128k"]
    else:
        codecs = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"]
        codecs += ["-c:a", "libopus", "-b:a", "96k"]
    args = [
        "ffmpeg", "-v", "error", "-nostdin", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=30", "-i", str(hey), "-i", str(more),
        "-filter_complex", graph, "-map", "0:v", "-map", "[mix]", "-t", "6", "-ac", "2",
        *codecs, str(path),
    ]  # fmt: skip
    subprocess.run(args, capture_output=True, check=True)
    return path


def windows_db(pcm: Pcm, start: float, end: float, size: float = 0.02) -> list[float]:
    count = round((end - start) / size)
    return [rms_db(pcm.window(start + k * size, start + (k + 1) * size)) for k in range(count)]


@pytest.mark.media
@pytest.mark.parametrize("name", ["white.mp4", "white.webm", "brown.mp4"])
def test_the_slot_carries_the_recordings_floor(media_dir: Path, greeting: Path, name: str) -> None:
    source = make_clip(media_dir, name, name.split(".")[0])
    report = render_greeting(source, greeting, GREETING_END_S, media_dir / f"out-{name}.mp4")
    assert report.room_tone_db is not None
    out, original = decode_pcm(report.path), decode_pcm(source)
    floor = rms_db(original.window(1.0, 2.4))  # the original's pause: its room alone
    assert floor < -55

    # No 20 ms of the slot is digital silence (the old render: -inf from the greeting's end on).
    assert min(windows_db(out, 0.0, GREETING_END_S)) > -75
    # After the greeting's words (espeak's "Hi Al," is over by 0.6 s), the room's own level.
    gap = rms_db(out.window(0.7, GREETING_END_S - 0.05))
    assert abs(gap - floor) < 3.0, (gap, floor)
    # No step at the seam: the last of the slot, the crossfade, the original after it.
    before = rms_db(out.window(GREETING_END_S - 0.25, GREETING_END_S - 0.05))
    after = rms_db(out.window(GREETING_END_S + 0.05, GREETING_END_S + 0.25))
    assert abs(before - after) < 1.5, (before, after)
    # 40 ms windows through the crossfade vary no more than the recording's own do there
    # (white noise: a few tenths of a dB; brown noise, mostly low frequencies: about 2 dB).
    across = windows_db(out, GREETING_END_S - 0.1, GREETING_END_S + 0.1, 0.04)
    own = windows_db(original, GREETING_END_S - 0.1, GREETING_END_S + 0.1, 0.04)
    assert max(across) - min(across) < max(own) - min(own) + 1.0, (across, own)
    assert max(abs(a - b) for a, b in zip(across, own, strict=True)) < 3.0
    if name.endswith(".mp4"):
        assert report.path_taken == "head-reencode" and report.copy_point_s is not None
        copied_from = report.copy_point_s + 1024 / out.sample_rate
        assert max_abs_diff(out.window(copied_from), original.window(copied_from)) == 0.0


@pytest.mark.media
def test_the_loop_turns_without_a_click(media_dir: Path, greeting: Path) -> None:
    """Brown noise is mostly low frequencies, so a loop that jumped would show a jump between
    neighbouring samples far larger than any in the floor itself."""
    source = make_clip(media_dir, "brown-click.mp4", "brown")
    report = render_greeting(source, greeting, GREETING_END_S, media_dir / "out-brown-click.mp4")
    out, original = decode_pcm(report.path), decode_pcm(source)

    def largest_step(samples: array[float], channels: int) -> float:
        return max(abs(samples[i + channels] - samples[i]) for i in range(len(samples) - channels))

    own = largest_step(original.window(1.0, 2.4), original.channels)
    looped = largest_step(out.window(0.7, GREETING_END_S - 0.05), out.channels)
    assert looped < 2 * own, (looped, own)


@pytest.mark.media
@pytest.mark.parametrize("name", ["silent.mp4", "silent.webm"])
def test_a_recording_without_a_floor_keeps_silent_gaps(
    media_dir: Path, greeting: Path, name: str
) -> None:
    source = make_clip(media_dir, name, None)
    report = render_greeting(source, greeting, GREETING_END_S, media_dir / f"out-{name}.mp4")
    assert report.room_tone_db is None
    out = decode_pcm(report.path)
    assert rms_db(out.window(0.8, GREETING_END_S - 0.1)) < -90
