"""Fit before failing: a greeting longer than its slot is fitted, step by step, before the job
fails as `greeting-too-long`.

1. The synthesized audio's own leading (and, as always, trailing) silence is cut.
2. The slot grows into the original's pause after greetingEndSecond, as far as needed and never
   past the next sound the decoded original holds (less a guard).
3. Only then is the greeting time-stretched, up to max_tempo, over the slot and the whole pause.
RenderReport says what was done: `lead_trimmed_s`, `pause_used_s`, `tempo`.
"""

from __future__ import annotations

import math
import random
import subprocess
from array import array
from pathlib import Path

import pytest

from flows.job import ErrorCode, JobError
from flows.stages.render import analyze_input, measure_fit, render_greeting
from flows.stages.render.ffmpeg_args import RESTAMP, MixSpec, mix_graph
from flows.stages.render.loudness import (
    block_powers,
    next_onset_s,
    speech_end_s,
    speech_start_s,
)
from flows.stages.render.timing import SlotFit, fit_slot
from flows.stages.synthesize import EspeakVoice, synthesize_speech
from greetings.samples import make_speech
from tests.support.mediacheck import decode_pcm, lagged, max_abs_diff, rms_db

RATE = 24000


# --- the steps (pure) ---------------------------------------------------------------------------


def fit(
    greeting_s: float, lead_s: float = 0.0, end: float = 1.0, pause_end: float = 1.0
) -> SlotFit:
    return fit_slot(
        greeting_s=greeting_s,
        lead_s=lead_s,
        greeting_end_s=end,
        pause_end_s=pause_end,
        max_tempo=1.3,
    )


def test_a_greeting_that_fits_is_left_as_it_is() -> None:
    # Even with leading silence and a pause to spare: nothing is cut, nothing grows.
    assert fit(0.9, lead_s=0.3, pause_end=2.0) == SlotFit(1.0, 0.0, 1.0)
    assert fit(1.0) == SlotFit(1.0, 0.0, 1.0)


def test_first_its_leading_silence_is_cut() -> None:
    assert fit(1.4, lead_s=0.5, pause_end=2.0) == SlotFit(1.0, 0.5, 1.0)


def test_then_the_pause_after_the_slot_is_used_as_far_as_needed() -> None:
    done = fit(1.6, lead_s=0.1, pause_end=2.0)
    assert done == SlotFit(1.5, 0.1, 1.0)
    assert done.pause_used_s(1.0) == pytest.approx(0.5)
    assert fit(2.0, pause_end=2.0) == SlotFit(2.0, 0.0, 1.0)  # right up to the pause's end


def test_then_it_plays_faster_over_the_slot_and_the_whole_pause() -> None:
    done = fit(2.4, lead_s=0.0, pause_end=2.0)
    assert done.slot_end_s == 2.0 and done.tempo == pytest.approx(1.2)
    # Without a pause (the next words start at once), the slot alone, as before.
    assert fit(1.2, pause_end=0.95).tempo == pytest.approx(1.2)
    assert fit(1.2, pause_end=0.95).slot_end_s == 1.0


def test_and_only_then_does_it_fail_saying_what_was_tried() -> None:
    with pytest.raises(JobError) as caught:
        fit(2.8, lead_s=0.1, pause_end=2.0)
    assert caught.value.code == ErrorCode.GREETING_TOO_LONG
    message = caught.value.message
    assert "2.70 s" in message  # the greeting without its leading silence
    assert "1.35x faster, even with the 1.00 s pause after it before the next words" in message
    assert "greetingEndSecond to 2.08 s or later" in message
    assert fit(2.7, lead_s=0.1, pause_end=2.0).tempo == pytest.approx(1.3)  # at the limit: fits
    with pytest.raises(JobError) as no_pause:
        fit(1.4, pause_end=0.9)
    assert "pause" not in no_pause.value.message  # none was there to use


def test_the_slot_never_grows_past_the_next_words() -> None:
    for greeting in range(5, 60):
        for pause_end in (0.8, 1.0, 1.3, 2.0, 3.1):
            try:
                done = fit(greeting / 10, lead_s=0.05, pause_end=pause_end)
            except JobError:
                assert (greeting / 10 - 0.05) / max(1.0, pause_end) > 1.3
                continue
            assert done.slot_end_s <= max(1.0, pause_end) + 1e-12
            assert done.slot_end_s >= 1.0 and 1.0 <= done.tempo <= 1.3 + 1e-9


def noise(level_db: float, seconds: float, seed: int = 1) -> array[float]:
    peak = 10 ** (level_db / 20) * math.sqrt(3)
    rng = random.Random(seed)
    return array("f", (rng.uniform(-peak, peak) for _ in range(round(seconds * RATE))))


def with_word(floor: array[float], at_s: float, seconds: float, level_db: float) -> array[float]:
    out = array("f", floor)
    amplitude = 10 ** (level_db / 20) * math.sqrt(2)
    first = round(at_s * RATE)
    for i in range(round(seconds * RATE)):
        out[first + i] += amplitude * math.sin(2 * math.pi * 200 * i / RATE)
    return out


def test_the_next_words_are_found_over_the_floor() -> None:
    samples = with_word(noise(-60.0, 3.0), 2.2, 0.5, -30.0)
    onset = next_onset_s(samples, channels=1, sample_rate=RATE, from_s=1.0, floor_db=-60.0)
    assert 2.19 <= onset <= 2.2
    # A breath at -45 dBFS counts as sound too: the slot stops early rather than late.
    breath = with_word(samples, 1.6, 0.1, -45.0)
    assert next_onset_s(breath, channels=1, sample_rate=RATE, from_s=1.0, floor_db=-60.0) < 1.61
    # No words after the slot: up to the end of what was decoded.
    quiet = noise(-60.0, 3.0)
    assert next_onset_s(quiet, channels=1, sample_rate=RATE, from_s=1.0, floor_db=-60.0) == 3.0
    # Mid-word at the slot's end: no pause at all.
    assert next_onset_s(samples, channels=1, sample_rate=RATE, from_s=2.4, floor_db=-60.0) == 2.4


def test_without_a_floor_any_sound_is_the_next_words() -> None:
    silent = array("f", bytes(4 * 3 * RATE))
    samples = with_word(silent, 2.0, 0.3, -50.0)
    assert next_onset_s(samples, channels=1, sample_rate=RATE, from_s=1.0, floor_db=None) >= 1.99
    assert next_onset_s(samples, channels=1, sample_rate=RATE, from_s=1.0, floor_db=None) <= 2.0
    # A loud bed without a room-tone floor: no pause can be told from it, so none is used.
    bed = noise(-35.0, 3.0)
    assert next_onset_s(bed, channels=1, sample_rate=RATE, from_s=1.0, floor_db=None) == 1.0


def test_the_greetings_leading_silence_is_found_at_block_resolution() -> None:
    spoken = with_word(array("f", bytes(4 * 2 * RATE)), 0.62, 0.8, -20.0)
    powers = block_powers(spoken, channels=1, sample_rate=RATE)
    assert speech_start_s(powers) == pytest.approx(0.6)  # the block it starts in: never later
    assert speech_end_s(powers) == pytest.approx(1.45)
    assert speech_start_s([]) == 0.0


def test_the_mix_cuts_the_leading_silence_and_restamps() -> None:
    spec = MixSpec(
        sample_rate=48000,
        channels=2,
        layout="stereo",
        greeting_samples=76800,
        greeting_start=28800,
        slot_samples=72000,
        crossfade_samples=1920,
        tempo=1.0,
        gain_db=0.0,
        start=0,
        original_start=0,
        end=77824,
    )
    graph = mix_graph(spec)
    assert f"atrim=start_sample=28800:end_sample=76800,{RESTAMP}," in graph
    assert "atrim=start_sample" not in mix_graph(MixSpec(**{**spec.__dict__, "greeting_start": 0}))


# --- real renders -------------------------------------------------------------------------------

GREETING_END_S = 1.0
NEXT_WORDS_S = 2.6


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("render-fit")


@pytest.fixture(scope="module")
def clip(media_dir: Path) -> Path:
    """ "Hey John," from 0.1 s (over by 0.8 s), a pause, the next words from 2.6 s, over a
    -60 dBFS room; 6 s of H.264/AAC in MP4."""
    hey = make_speech(media_dir / "hey.wav", "Hey John,")
    more = make_speech(media_dir / "more.wav", "thanks for watching this video")
    peak = 10 ** (-60 / 20) * math.sqrt(3)
    graph = (
        "[1:a]aresample=48000,adelay=100:all=1[a];"
        f"[2:a]aresample=48000,adelay={NEXT_WORDS_S * 1000:.0f}:all=1,apad[b];"
        f"anoisesrc=color=white:amplitude={peak:.6f}:seed=5:sample_rate=48000[n];"
        "[a][b][n]amix=inputs=3:duration=longest:normalize=0,atrim=end=6[mix]"
    )
    path = media_dir / "clip.mp4"
    args = [
        "ffmpeg", "-v", "error", "-nostdin", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=30", "-i", str(hey), "-i", str(more),
        "-filter_complex", graph, "-map", "0:v", "-map", "[mix]", "-t", "6", "-ac", "2",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-aac_pns", "0", "-b:a", "128k", str(path),
    ]  # fmt: skip
    subprocess.run(args, capture_output=True, check=True)
    return path


def greeting(media_dir: Path, text: str, lead_s: float = 0.0) -> Path:
    plain = make_speech(media_dir / f"{len(text)}.wav", text)
    if not lead_s:
        return plain
    led = media_dir / f"{len(text)}-lead.wav"
    delay = f"adelay={lead_s * 1000:.0f}:all=1"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(plain), "-af", delay, str(led)], check=True
    )
    return led


def first_sound_s(path: Path, after_s: float) -> float:
    """Where the original's next words really start: its first 5 ms over -50 dBFS."""
    pcm = decode_pcm(path)
    at = after_s
    while rms_db(pcm.window(at, at + 0.005)) < -50:
        at += 0.005
    return at


def next_words_untouched(out_path: Path, source: Path, slot_end_s: float) -> None:
    """The original's next words play at their time, as the original has them."""
    out, original = decode_pcm(out_path), decode_pcm(source)
    window = (NEXT_WORDS_S, NEXT_WORDS_S + 0.5)
    a, b = out.window(*window), original.window(*window)
    error = array("f", (x - y for x, y in zip(a, b, strict=True)))
    assert rms_db(error) - rms_db(b) < -20  # codec noise at most: no greeting over them
    assert lagged(a, b, 0, 2) > 0.99
    # And the slot ends before them: the pause between holds the room, not the greeting.
    gap = out.window(slot_end_s + 0.01, NEXT_WORDS_S - 0.02)
    if gap:
        assert rms_db(gap) < -55


@pytest.mark.media
def test_leading_silence_is_cut_to_fit(media_dir: Path, clip: Path) -> None:
    # "Hi Al," is 0.55 s of speech; behind 0.7 s of silence it is 1.28 s: too long for 1.0 s.
    led = greeting(media_dir, "Hi Al,", lead_s=0.7)
    report = render_greeting(clip, led, GREETING_END_S, media_dir / "lead.mp4")
    assert report.tempo == 1.0 and report.pause_used_s == 0.0
    assert report.lead_trimmed_s == pytest.approx(0.68, abs=0.03)
    out = decode_pcm(report.path)
    assert rms_db(out.window(0.05, 0.4)) > -35  # the words from the start, not silence
    next_words_untouched(report.path, clip, GREETING_END_S)


@pytest.mark.media
def test_the_pause_after_the_slot_takes_the_rest(media_dir: Path, clip: Path) -> None:
    # 1.68 s of "Hey Alexander Montgomery," in a 1.0 s slot: 0.68 s of the pause, at tempo 1.
    spoken = greeting(media_dir, "Hey Alexander Montgomery,")
    report = render_greeting(clip, spoken, GREETING_END_S, media_dir / "pause.mp4")
    assert report.tempo == 1.0 and report.lead_trimmed_s == 0.0
    assert report.pause_used_s == pytest.approx(0.68, abs=0.03)
    slot_end = GREETING_END_S + report.pause_used_s
    out = decode_pcm(report.path)
    assert rms_db(out.window(slot_end - 0.3, slot_end - 0.1)) > -40  # the greeting's last word
    next_words_untouched(report.path, clip, slot_end)
    # Head path: every copied sample still at its original time.
    assert report.path_taken == "head-reencode" and report.copy_point_s is not None
    assert report.copy_point_s > slot_end
    copied_from = report.copy_point_s + 1024 / 48000
    assert max_abs_diff(out.window(copied_from), decode_pcm(clip).window(copied_from)) == 0.0


@pytest.mark.media
def test_only_then_is_it_stretched_over_slot_and_pause(media_dir: Path, clip: Path) -> None:
    # 2.98 s of greeting; the slot and the pause up to the next words (from 2.6 s, less a 50 ms
    # guard) hold about 2.55 s: 1.17x.
    spoken = greeting(media_dir, "Hey Alexander Montgomery the third, good morning,")
    report = render_greeting(clip, spoken, GREETING_END_S, media_dir / "stretch.mp4")
    slot_end = GREETING_END_S + report.pause_used_s
    words = first_sound_s(clip, GREETING_END_S + 0.2)
    assert NEXT_WORDS_S <= words < NEXT_WORDS_S + 0.05
    # The whole pause, and never past the words (less the 50 ms guard, to 10 ms blocks).
    assert words - 0.08 < slot_end <= words - 0.04
    assert report.tempo == pytest.approx(2.98 / slot_end, abs=0.02)
    assert 1.0 < report.tempo < 1.3
    next_words_untouched(report.path, clip, slot_end)


@pytest.mark.media
def test_too_long_even_so_fails_saying_so(media_dir: Path, clip: Path, tmp_path: Path) -> None:
    spoken = greeting(
        media_dir, "Hey Alexander Montgomery the third, good morning to you and your whole team,"
    )
    with pytest.raises(JobError) as caught:
        render_greeting(clip, spoken, GREETING_END_S, tmp_path / "out.mp4")
    assert caught.value.code == ErrorCode.GREETING_TOO_LONG
    assert "pause after it before the next words" in caught.value.message
    assert not (tmp_path / "out.mp4").exists()


# --- before the stretch, the voice is asked to speak faster (`respeak`) ---------------------------


class Respeaker:
    """The voice asked again at a speed: espeak-ng at that rate, as the worker's local voice."""

    def __init__(self, folder: Path, text: str) -> None:
        self.folder, self.text, self.asked = folder, text, list[float]()

    def __call__(self, speed: float) -> Path:
        self.asked.append(speed)
        speech = synthesize_speech(EspeakVoice("en-us"), self.text, "espeak:en-us", speed)
        path = self.folder / f"respoken-{speed}.wav"
        path.write_bytes(speech.audio)
        return path


@pytest.mark.media
def test_a_greeting_that_fits_never_asks_the_voice_again(media_dir: Path, clip: Path) -> None:
    text = "Hey Alexander Montgomery,"
    respeak = Respeaker(media_dir, text)
    report = render_greeting(
        clip, greeting(media_dir, text), GREETING_END_S, media_dir / "once.mp4", respeak=respeak
    )
    assert respeak.asked == [] and report.provider_speed == 1.0 and report.tempo == 1.0


@pytest.mark.media
def test_then_the_voice_speaks_faster_before_any_stretch(media_dir: Path, clip: Path) -> None:
    # The greeting that needs 1.17x over the slot and the pause (the test above): the voice is
    # asked for that speed, and what it says then needs (almost) no time-stretch.
    text = "Hey Alexander Montgomery the third, good morning,"
    respeak = Respeaker(media_dir, text)
    stretched = render_greeting(
        clip, greeting(media_dir, text), GREETING_END_S, media_dir / "stretched.mp4"
    )
    report = render_greeting(
        clip, greeting(media_dir, text), GREETING_END_S, media_dir / "faster.mp4", respeak=respeak
    )
    [speed] = respeak.asked
    assert speed == pytest.approx(stretched.tempo, abs=0.002)
    assert report.provider_speed == speed
    assert report.tempo < 1.06 < stretched.tempo
    slot_end = GREETING_END_S + report.pause_used_s
    next_words_untouched(report.path, clip, slot_end)


@pytest.mark.media
def test_past_what_the_voice_can_do_the_stretch_takes_the_rest(
    media_dir: Path, clip: Path, tmp_path: Path
) -> None:
    # Needs about 1.4x: the voice at its fastest (1.2), the rest time-stretched (under 1.3).
    text = "Hey Alexander Montgomery the third, good morning to you,"
    respeak = Respeaker(media_dir, text)
    report = render_greeting(
        clip, greeting(media_dir, text), GREETING_END_S, tmp_path / "both.mp4", respeak=respeak
    )
    assert respeak.asked == [1.2] and report.provider_speed == 1.2
    assert 1.0 < report.tempo < 1.3

    # And a greeting no speed and no stretch can fit still fails, after one faster try.
    text = "Hey Alexander Montgomery the third, good morning to you and your whole team,"
    respeak = Respeaker(media_dir, text)
    with pytest.raises(JobError) as caught:
        render_greeting(
            clip, greeting(media_dir, text), GREETING_END_S, tmp_path / "no.mp4", respeak=respeak
        )
    assert caught.value.code == ErrorCode.GREETING_TOO_LONG and respeak.asked == [1.2]
    assert not (tmp_path / "no.mp4").exists()


# --- the fit check before sending: the render's fit, measured without rendering ------------------


@pytest.mark.media
@pytest.mark.parametrize(
    "text",
    [
        "Hi Al,",  # fits as it is
        "Hey Alexander Montgomery,",  # the pause
        "Hey Alexander Montgomery the third, good morning,",  # the pause and a stretch
        "Hey Alexander Montgomery the third, good morning to you and your whole team,",
    ],
)
def test_measure_fit_says_what_the_render_does(
    media_dir: Path, clip: Path, tmp_path: Path, text: str
) -> None:
    spoken = greeting(media_dir, text)
    shared = analyze_input(clip, GREETING_END_S, tmp_path / "analysis")
    measured = measure_fit(shared, spoken, tmp_path, max_tempo=1.3)
    try:
        report = render_greeting(clip, spoken, GREETING_END_S, tmp_path / "out.mp4")
    except JobError as error:
        assert error.code == ErrorCode.GREETING_TOO_LONG
        assert not measured.fits and measured.tempo > 1.3
        # The slot it would need at 1.3x is longer than the slot and its whole pause.
        assert measured.needs_slot_s > GREETING_END_S + measured.pause_used_s
        return
    assert measured.fits
    assert measured.tempo == pytest.approx(report.tempo, abs=1e-3)
    assert measured.pause_used_s == pytest.approx(report.pause_used_s, abs=1e-3)
    assert measured.fitted == (report.tempo > 1.0 or report.pause_used_s > 0)
    assert measured.needs_slot_s <= GREETING_END_S + report.pause_used_s + 1e-3
