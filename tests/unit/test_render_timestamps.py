"""The greeting cut where its last word ends, as the voice's timestamps say.

ElevenLabs answers `convert_with_timestamps` with per-character times (`Speech.spoken_end_s`);
the render then cuts the greeting there (plus SPEECH_TAIL_S) instead of where its audio turns
silent. The greeting here is the real SDK's answer from `tests.support.fake_elevenlabs`, whose
audio carries 0.4 s of soft noise after the last word (a breath, a hiss): loud enough for the
silence trim to keep it, so only the timestamps cut can leave it out. espeak-ng gives no
timestamps and keeps today's silence trim.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from elevenlabs import ElevenLabs

from flows.stages.render import render_greeting
from flows.stages.render.loudness import BLOCK_S
from flows.stages.render.stage import SPEECH_TAIL_S, _speech_end
from flows.stages.synthesize import (
    ElevenLabsVoice,
    EspeakVoice,
    SpeechFile,
    synthesize_speech,
)
from greetings.samples import DEFAULT_NARRATION, make_speech
from tests.support.fake_elevenlabs import DEFAULT_VOICES, FakeElevenLabs, TimedSpeech
from tests.support.mediacheck import decode_pcm, make_narrated_clip, rms_db

VOICE_ID = sorted(DEFAULT_VOICES)[0]
GREETING_END_S = 1.5
TEXT = "Hey John,"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeElevenLabs]:
    with FakeElevenLabs() as server:
        yield server


@pytest.fixture(scope="module")
def voice(fake: FakeElevenLabs) -> ElevenLabsVoice:
    client = ElevenLabs(api_key=fake.api_key, base_url=fake.base_url, timeout=10)
    return ElevenLabsVoice(client, "eleven_multilingual_v2", "mp3_44100_128")


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("render-timestamps")


@pytest.fixture(scope="module")
def floorless_clip(media_dir: Path) -> Path:
    """Speech with no noise floor: after the greeting the slot is silent, so whatever of the
    greeting's own audio plays there can be measured."""
    narration = make_speech(media_dir / "narration.wav", DEFAULT_NARRATION)
    return make_narrated_clip(
        media_dir / "floorless.mp4",
        narration,
        seconds=6,
        sample_rate=48000,
        channels=2,
        audio_args=["-c:a", "aac", "-aac_pns", "0", "-b:a", "128k"],
    )


def spoken(
    fake: FakeElevenLabs, voice: ElevenLabsVoice, folder: Path, text: str, speed: float = 1.0
) -> tuple[SpeechFile, TimedSpeech]:
    """`text` from the fake through the real SDK, as `speak_greeting` hands it to the render."""
    speech = synthesize_speech(voice, text, VOICE_ID, speed)
    path = folder / f"{text.replace(' ', '-')}-x{speed}.mp3"
    path.write_bytes(speech.audio)
    return SpeechFile(path, speech.spoken_end_s), fake.timed(text)


@pytest.fixture(scope="module")
def greeting(
    fake: FakeElevenLabs, voice: ElevenLabsVoice, media_dir: Path
) -> tuple[SpeechFile, TimedSpeech]:
    return spoken(fake, voice, media_dir, TEXT)


def tail_window(timed: TimedSpeech) -> tuple[float, float]:
    """Where the noise the fake added after espeak-ng's audio plays, if it plays (margins for
    the MP3 and AAC round trip)."""
    start = timed.lead_s + timed.speech_s
    return start + 0.02, start + timed.tail_s - 0.02


@pytest.mark.media
def test_the_greeting_is_cut_where_its_last_word_ends(
    floorless_clip: Path, greeting: tuple[SpeechFile, TimedSpeech], tmp_path: Path
) -> None:
    speech, timed = greeting
    assert speech.spoken_end_s is not None
    report = render_greeting(floorless_clip, speech, GREETING_END_S, tmp_path / "cut.mp4")
    assert report.greeting_cut == "timestamps"
    assert report.greeting_s == pytest.approx(speech.spoken_end_s + SPEECH_TAIL_S, abs=0.001)
    assert report.tempo == 1.0 and report.room_tone_db is None
    out = decode_pcm(report.path)
    assert rms_db(out.window(timed.lead_s + 0.02, speech.spoken_end_s - 0.05)) > -35  # the words
    # Nothing of the added noise: from the cut to the crossfade, the slot is silent.
    assert rms_db(out.window(speech.spoken_end_s + SPEECH_TAIL_S + 0.005, 1.4)) < -80
    assert rms_db(out.window(*tail_window(timed))) < -80


@pytest.mark.media
def test_without_timestamps_the_silence_trim_keeps_what_sounds(
    floorless_clip: Path, greeting: tuple[SpeechFile, TimedSpeech], tmp_path: Path
) -> None:
    """The same audio as a bare file (as espeak-ng's is handed over): cut where it turns silent,
    which is after the noise. This is what the timestamps spare."""
    speech, timed = greeting
    report = render_greeting(floorless_clip, speech.path, GREETING_END_S, tmp_path / "trim.mp4")
    assert report.greeting_cut == "silence"
    noise_end = timed.lead_s + timed.speech_s + timed.tail_s
    # The silence trim's end is on its block grid (whole blocks only).
    assert report.greeting_s == pytest.approx(noise_end + SPEECH_TAIL_S, abs=BLOCK_S)
    out = decode_pcm(report.path)
    assert -55 < rms_db(out.window(*tail_window(timed))) < -30  # the fake's noise, played


@pytest.mark.media
def test_espeak_keeps_the_silence_trim(floorless_clip: Path, tmp_path: Path) -> None:
    speech = EspeakVoice("en-us").synthesize(TEXT, "espeak:en-us")
    assert speech.spoken_end_s is None
    path = tmp_path / "espeak.wav"
    path.write_bytes(speech.audio)
    as_file = render_greeting(floorless_clip, path, GREETING_END_S, tmp_path / "a.mp4")
    as_speech = render_greeting(
        floorless_clip, SpeechFile(path, None), GREETING_END_S, tmp_path / "b.mp4"
    )
    assert as_file.greeting_cut == as_speech.greeting_cut == "silence"
    assert as_file.greeting_s == as_speech.greeting_s
    # The silence trim's cut: the end of espeak-ng's last sound, before its own silence.
    assert as_file.greeting_s < len(speech.audio) / 2 / 22050


@pytest.mark.media
def test_a_respoken_greeting_is_cut_by_its_own_timestamps(
    fake: FakeElevenLabs, voice: ElevenLabsVoice, floorless_clip: Path, tmp_path: Path
) -> None:
    """Too long for a 1.2 s slot: the voice speaks faster, and that audio's end is its own."""
    text = "Hey Alexander Montgomery,"
    slow, _ = spoken(fake, voice, tmp_path, text)
    asked: list[float] = []

    def respeak(speed: float) -> SpeechFile:
        asked.append(speed)
        faster, _ = spoken(fake, voice, tmp_path, text, speed)
        return faster

    report = render_greeting(floorless_clip, slow, 1.2, tmp_path / "fast.mp4", respeak=respeak)
    [speed] = asked
    faster = fake.timed(text)  # the last answer for the text: the faster one
    assert report.provider_speed == speed > 1.0
    assert report.greeting_cut == "timestamps"
    assert slow.spoken_end_s is not None and faster.spoken_end_s < slow.spoken_end_s
    assert report.greeting_s == pytest.approx(
        round(faster.spoken_end_s, 3) + SPEECH_TAIL_S, abs=0.001
    )


def test_timestamps_before_any_sound_are_not_believed() -> None:
    # Speech from 0.2 s to 0.7 s, in blocks of BLOCK_S.
    powers = [0.0] * round(0.2 / BLOCK_S) + [0.1] * round(0.5 / BLOCK_S) + [0.0] * 6
    assert _speech_end(0.55, powers) == (0.55, "timestamps")
    assert _speech_end(None, powers) == (pytest.approx(0.7), "silence")
    # An end before the speech even starts is some other audio's: the silence decides.
    assert _speech_end(0.1, powers) == (pytest.approx(0.7), "silence")
