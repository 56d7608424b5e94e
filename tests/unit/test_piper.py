"""The Piper neural voice run in-process: real model, real espeak-ng phonemes, real audio."""

from __future__ import annotations

import dataclasses
import io
import wave
from array import array

import pytest

from flows.job import ErrorCode, JobError
from flows.stages import piper
from flows.stages.piper import (
    PiperVoice,
    installed_piper_voices,
    load_piper_model,
    phoneme_ids,
    phonemize,
)


def wav_samples(audio: bytes) -> tuple[int, array[int]]:
    with wave.open(io.BytesIO(audio)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return wav.getframerate(), array("h", wav.readframes(wav.getnframes()))


def rms(samples: array[int]) -> float:
    return float((sum(s * s for s in samples) / max(1, len(samples))) ** 0.5)


def test_the_joe_voice_is_installed() -> None:
    # A main dependency: a worker without it would quietly speak with espeak-ng instead.
    assert installed_piper_voices() == ["joe"]


def test_phoneme_ids_are_framed_and_padded_as_piper_trained_them() -> None:
    table = {"^": [1], "$": [2], "_": [0], "h": [20], "a": [14], ",": [8], " ": [3]}
    assert phoneme_ids("ha,", table) == [1, 0, 20, 0, 14, 0, 8, 0, 2]
    assert phoneme_ids("hʘa", table) == [1, 0, 20, 0, 14, 0, 2]  # untrained phonemes left out


def test_clauses_keep_their_closing_mark() -> None:
    phonemes = phonemize("Hey John, I saw your team.", "en-us")
    john = "h\u02c8e\u026a d\u0292\u02c8\u0251\u02d0n,"  # "Hey John," in IPA
    assert phonemes.startswith(john) and phonemes.endswith(".")
    assert "Hey" not in phonemes  # phonemes, not letters


def test_a_greeting_is_spoken_at_the_voices_rate_with_real_sound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    voice = PiperVoice()
    speech = voice.synthesize("Hey Anna-Lena,", "piper:joe")
    assert (speech.provider, speech.voice_id, speech.extension) == ("piper", "piper:joe", "wav")
    rate, samples = wav_samples(speech.audio)
    assert rate == 22050
    assert 0.6 < len(samples) / rate < 1.6
    assert rms(samples) > 1000  # speech, not silence (peak-normalised to full scale)

    # VITS draws each phoneme's length with noise (noise_w): averages of three takes still
    # differed by up to 10 % from run to run, failing one run in three. Without that noise the
    # lengths are the model's own, and the speed divides them.
    model = piper.load_piper_model("joe")
    steady = dataclasses.replace(model, noise_w=0.0)
    monkeypatch.setattr(piper, "load_piper_model", lambda name: steady)

    def samples_at(speed: float) -> int:
        return len(wav_samples(voice.synthesize("Hey Anna-Lena,", "piper:joe", speed).audio)[1])

    assert samples_at(1.0) == samples_at(1.0)  # no noise left in the length
    assert samples_at(1.2) / samples_at(1.0) == pytest.approx(1 / 1.2, rel=0.05)


def test_other_ids_get_the_default_voice_and_unknown_piper_voices_are_refused() -> None:
    voice = PiperVoice()
    assert voice.synthesize("Hey John,", "JBFqnCBsd6RMkjVDRZzb").voice_id == "piper:joe"
    with pytest.raises(JobError) as refused:
        voice.synthesize("Hey John,", "piper:nosuchvoice")
    assert refused.value.code == ErrorCode.INVALID_VOICE
    assert "piper:joe" in refused.value.message


def test_the_model_is_loaded_once_per_process_and_named_by_its_hash() -> None:
    assert load_piper_model("joe") is load_piper_model("joe")
    identity = PiperVoice().cache_identity
    assert identity.model == f"joe@{load_piper_model('joe').sha256[:16]}"
    assert load_piper_model("joe").sha256.startswith("58afce0321b8d9c4")  # README records it
