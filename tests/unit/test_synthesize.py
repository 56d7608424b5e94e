"""The `processing-audio` stage: greeting text, both providers, and the Prefect task's declarations.

ElevenLabs is the real SDK talking to `tests.support.fake_elevenlabs` over HTTP; espeak-ng is the
real binary; the Prefect tests run a real temporary Prefect server (`prefect_test_harness`).
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from elevenlabs import CharacterAlignmentResponseModel, ElevenLabs, VoiceSettings
from elevenlabs.core.api_error import ApiError
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.filesystems import RemoteFileSystem
from prefect.serializers import PickleSerializer
from prefect.states import Failed

from flows.job import ErrorCode, JobError
from flows.retry import is_retryable
from flows.settings import Settings
from flows.stages import synthesize as stage
from flows.stages.piper import PiperVoice
from flows.stages.synthesize import (
    ELEVENLABS_CONCURRENCY_LIMIT,
    ElevenLabsVoice,
    EspeakVoice,
    Speech,
    SpeechFile,
    SpeechIdentity,
    Voices,
    build_voice,
    build_voices,
    elevenlabs_error,
    elevenlabs_transport_error,
    ensure_elevenlabs_limit,
    espeak_text,
    parse_espeak_voices,
    plain_speech_text,
    speak_greeting,
    speech_cache_key,
    speech_cache_storage,
    speech_extension,
    spoken_end_s,
    synthesize_greeting,
    synthesize_greeting_task,
    synthesize_speech,
    voice_for,
)
from flows.stages.validate import greeting_text
from tests.support.fake_elevenlabs import (
    DEFAULT_VOICES,
    FakeElevenLabs,
    hang,
    server_error,
    system_busy,
    too_many_concurrent_requests,
    unauthorized,
    unprocessable,
)

VOICE_ID = sorted(DEFAULT_VOICES)[0]
MODEL = "eleven_multilingual_v2"


# --- Fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeElevenLabs]:
    with FakeElevenLabs() as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeElevenLabs) -> FakeElevenLabs:
    fake_server.reset()
    return fake_server


def elevenlabs_voice(
    fake: FakeElevenLabs,
    *,
    api_key: str | None = None,
    timeout: float = 5.0,
    concurrency_limit: str | None = ELEVENLABS_CONCURRENCY_LIMIT,
) -> ElevenLabsVoice:
    client = ElevenLabs(
        api_key=api_key if api_key is not None else fake.api_key,
        base_url=fake.base_url,
        timeout=timeout,
    )
    return ElevenLabsVoice(
        client,
        MODEL,
        "mp3_44100_128",
        VoiceSettings(stability=0.5, similarity_boost=0.75),
        concurrency_limit=concurrency_limit,
    )


@pytest.fixture
def voice(fake: FakeElevenLabs) -> ElevenLabsVoice:
    return elevenlabs_voice(fake)


@pytest.fixture
def unlimited_voice(fake: FakeElevenLabs) -> ElevenLabsVoice:
    """For the Prefect tests of caching and retries. The `elevenlabs` limit has its own test;
    here it would only add the SQLite test server's "database is locked" 503s, each of which
    Prefect's client retries after 2 s."""
    return elevenlabs_voice(fake, concurrency_limit=None)


def settings(**values: Any) -> Settings:
    # No .env and explicit values: the machine's GREETINGS_* variables must not leak in.
    base: dict[str, Any] = {"tts_provider": "auto", "elevenlabs_api_key": None}
    return Settings(_env_file=None, **{**base, **values})  # type: ignore[call-arg]


def probe(audio: bytes, suffix: str, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / f"probe.{suffix}"
    path.write_bytes(audio)
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        text=True,
    )
    info: dict[str, Any] = json.loads(done.stdout)
    return info


def wav_seconds(audio: bytes) -> float:
    with wave.open(BytesIO(audio)) as wav:
        frames: int = wav.getnframes()
        rate: int = wav.getframerate()
    return frames / rate


# --- Greeting text --------------------------------------------------------------------------------


def test_greeting_text_substitutes_the_name() -> None:
    assert greeting_text("Hey {name},", "John") == "Hey John,"
    assert greeting_text("{name}, {name}", "Bo") == "Bo, Bo"


@pytest.mark.parametrize(
    "text",
    [
        'Hey <break time="5s"/>,',
        'Hey <phoneme alphabet="ipa" ph="x">John</phoneme>,',
        "Hey [whispers] John,",
        "Hey <speak>John</speak>,",
    ],
)
def test_markup_is_neutralised_before_any_provider_sees_it(text: str) -> None:
    """Validation refuses such names; synthesis neutralises markup again, whoever built the text."""
    plain = plain_speech_text(text)
    assert not set("<>[]") & set(plain)
    assert plain.startswith("Hey ")


def test_plain_speech_keeps_the_words_of_markup_and_flattens_lines() -> None:
    assert plain_speech_text('Hey <break time="5s"/>,') == 'Hey break time="5s"/ ,'
    assert plain_speech_text("Hey\nJo\x00hn\r\nDoe,\t") == "Hey Jo hn Doe,"


# --- Pure parts of the task: cache key, retry condition, error mapping ----------------------------

IDENTITY = SpeechIdentity(
    "elevenlabs", MODEL, "mp3_44100_128", (("similarity_boost", 0.75), ("stability", 0.5))
)


def test_cache_key_is_stable_and_file_name_safe() -> None:
    key = speech_cache_key(IDENTITY, VOICE_ID, "Hey John,")
    assert key == speech_cache_key(IDENTITY, VOICE_ID, "Hey John,")
    assert key.startswith("speech-elevenlabs-")
    assert all(ch.isalnum() or ch == "-" for ch in key)


@pytest.mark.parametrize(
    ("identity", "voice_id", "text"),
    [
        (
            SpeechIdentity("espeak-ng", MODEL, "mp3_44100_128", IDENTITY.voice_settings),
            VOICE_ID,
            "Hey John,",
        ),
        (
            SpeechIdentity("elevenlabs", "eleven_v3", "mp3_44100_128", IDENTITY.voice_settings),
            VOICE_ID,
            "Hey John,",
        ),
        (
            SpeechIdentity("elevenlabs", MODEL, "mp3_22050_32", IDENTITY.voice_settings),
            VOICE_ID,
            "Hey John,",
        ),
        (
            SpeechIdentity("elevenlabs", MODEL, "mp3_44100_128", (("stability", 0.6),)),
            VOICE_ID,
            "Hey John,",
        ),
        (IDENTITY, "another-voice", "Hey John,"),
        (IDENTITY, VOICE_ID, "Hey Joan,"),
    ],
)
def test_cache_key_changes_with_every_input(
    identity: SpeechIdentity, voice_id: str, text: str
) -> None:
    assert speech_cache_key(identity, voice_id, text) != speech_cache_key(
        IDENTITY, VOICE_ID, "Hey John,"
    )


def test_task_cache_key_ignores_the_run(voice: ElevenLabsVoice) -> None:
    # Two different "runs" (contexts) with the same inputs: same key.
    key_fn = synthesize_greeting.cache_key_fn
    assert key_fn is not None
    parameters = {"voice": voice, "text": "Hey John,", "voice_id": VOICE_ID}
    first = key_fn(object(), parameters)  # type: ignore[arg-type]
    second = key_fn(object(), dict(parameters))  # type: ignore[arg-type]
    assert first == second == speech_cache_key(voice.cache_identity, VOICE_ID, "Hey John,")


def test_voice_settings_are_part_of_the_identity(fake: FakeElevenLabs) -> None:
    client = ElevenLabs(api_key="k", base_url=fake.base_url)
    calm = ElevenLabsVoice(client, MODEL, "mp3_44100_128", VoiceSettings(stability=0.9))
    lively = ElevenLabsVoice(client, MODEL, "mp3_44100_128", VoiceSettings(stability=0.1))
    assert calm.cache_identity != lively.cache_identity
    assert EspeakVoice("en-us").cache_identity != EspeakVoice("de").cache_identity


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (JobError(ErrorCode.TTS_UNAVAILABLE, "429"), True),
        (JobError(ErrorCode.TTS_UNAVAILABLE, "bad url", retryable=False), False),
        (JobError(ErrorCode.TTS_AUTH, "401", retryable=False), False),
        (JobError(ErrorCode.INVALID_VOICE, "404"), False),
        (ValueError("bug"), False),
        (None, False),
    ],
)
def test_retry_condition(exc: BaseException | None, expected: bool) -> None:
    assert is_retryable(exc) is expected
    condition = synthesize_greeting.retry_condition_fn
    assert condition is not None
    state: State[Any] = Failed(data=exc)
    assert condition(synthesize_greeting, None, state) is expected  # type: ignore[arg-type]


def test_retries_are_declared_on_the_task() -> None:
    assert synthesize_greeting.retries == stage.TTS_RETRIES
    assert synthesize_greeting.retry_delay_seconds == [2.0, 4.0, 8.0, 16.0]
    assert synthesize_greeting.retry_jitter_factor == stage.TTS_RETRY_JITTER_FACTOR
    assert synthesize_greeting.persist_result is True


def detail(status: str, message: str) -> dict[str, Any]:
    return {"detail": {"status": status, "message": message}}


@pytest.mark.parametrize(
    ("status", "body", "code", "retryable"),
    [
        (401, detail("invalid_api_key", "Invalid API key"), ErrorCode.TTS_AUTH, False),
        (401, detail("quota_exceeded", "insufficient quota"), ErrorCode.TTS_AUTH, False),
        (403, detail("missing_permissions", "no tts permission"), ErrorCode.TTS_AUTH, False),
        (
            404,
            detail("voice_not_found", "A voice with the voice_id x was not found."),
            ErrorCode.INVALID_VOICE,
            False,
        ),
        (
            400,
            detail("voice_not_found", "A voice for the voice_id x was not found."),
            ErrorCode.INVALID_VOICE,
            False,
        ),
        (
            422,
            {"detail": [{"type": "x", "loc": ["path", "voice_id"], "msg": "bad"}]},
            ErrorCode.INVALID_VOICE,
            False,
        ),
        (400, detail("max_character_limit_exceeded", "too long"), ErrorCode.TTS_REJECTED, False),
        (
            422,
            {"detail": [{"type": "missing", "loc": ["body", "text"], "msg": "Field required"}]},
            ErrorCode.TTS_REJECTED,
            False,
        ),
        (429, detail("too_many_concurrent_requests", "slow down"), ErrorCode.TTS_UNAVAILABLE, True),
        (429, detail("system_busy", "retry"), ErrorCode.TTS_UNAVAILABLE, True),
        (500, detail("internal_error", "oops"), ErrorCode.TTS_UNAVAILABLE, True),
        (503, "<html>Service Unavailable</html>", ErrorCode.TTS_UNAVAILABLE, True),
        (408, None, ErrorCode.TTS_UNAVAILABLE, True),
    ],
)
def test_elevenlabs_errors_map_to_job_errors(
    status: int, body: Any, code: ErrorCode, retryable: bool
) -> None:
    error = elevenlabs_error(status, body, "voice-x")
    assert (error.code, error.retryable) == (code, retryable)


def test_elevenlabs_error_messages_say_what_to_fix() -> None:
    auth = elevenlabs_error(401, detail("invalid_api_key", "Invalid API key"), "v")
    assert "API key" in auth.message and "Invalid API key" in auth.message
    voice = elevenlabs_error(404, detail("voice_not_found", "not found"), "voice-x")
    assert "'voice-x'" in voice.message
    rejected = elevenlabs_error(
        422,
        {"detail": [{"type": "missing", "loc": ["body", "text"], "msg": "Field required"}]},
        "v",
    )
    assert "text: Field required" in rejected.message


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (httpx.ReadTimeout("slow"), True),
        (httpx.ConnectError("refused"), True),
        (httpx.RemoteProtocolError("dropped"), True),
        (httpx.UnsupportedProtocol("ftp://"), False),
    ],
)
def test_transport_errors(exc: httpx.HTTPError, retryable: bool) -> None:
    error = elevenlabs_transport_error(exc)
    assert (error.code, error.retryable) == (ErrorCode.TTS_UNAVAILABLE, retryable)


def test_speech_extension() -> None:
    assert speech_extension("mp3_44100_128") == "mp3"
    assert speech_extension("wav_44100") == "wav"
    with pytest.raises(ValueError, match="pcm_16000"):
        speech_extension("pcm_16000")


def test_speech_cache_storage(tmp_path: Path) -> None:
    assert speech_cache_storage(str(tmp_path / "cache")) == tmp_path / "cache"
    assert speech_cache_storage(f"file://{tmp_path}/cache") == tmp_path / "cache"
    bucket = speech_cache_storage("gs://greetings-prod/speech-cache")
    assert isinstance(bucket, RemoteFileSystem)
    assert bucket.basepath == "gs://greetings-prod/speech-cache"


def test_slot_wait_failures_become_job_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    @contextmanager
    def never_free(*args: Any, **kwargs: Any) -> Iterator[None]:
        raise TimeoutError("no slot")
        yield

    @contextmanager
    def free(*args: Any, **kwargs: Any) -> Iterator[None]:
        yield

    monkeypatch.setattr(stage, "concurrency", never_free)
    with pytest.raises(JobError) as caught, stage._concurrency_slot("elevenlabs"):
        pass
    assert (caught.value.code, caught.value.retryable) == (ErrorCode.TTS_UNAVAILABLE, True)
    # A TimeoutError from the call itself is not mistaken for the wait.
    monkeypatch.setattr(stage, "concurrency", free)
    with pytest.raises(TimeoutError, match="body"), stage._concurrency_slot("elevenlabs"):
        raise TimeoutError("body")


# --- build_voice ----------------------------------------------------------------------------------


def test_build_voice_without_a_key_uses_the_piper_voice(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=stage.__name__):
        chosen = build_voice(settings())
    assert isinstance(chosen, PiperVoice)
    assert "no ElevenLabs key configured: using the local Piper voice" in caplog.text
    voices = build_voices(settings())
    assert voices.local_voice_id == "piper:joe" and voices.piper is not None


def test_build_voice_without_a_key_uses_espeak_when_asked_or_without_piper(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with caplog.at_level(logging.INFO, logger=stage.__name__):
        chosen = build_voice(settings(espeak_voice="en-gb", local_voice="espeak"))
    assert isinstance(chosen, EspeakVoice)
    assert chosen.default_voice == "en-gb"
    assert "no ElevenLabs key configured: using the local espeak-ng voice" in caplog.text

    import flows.stages.piper as piper

    monkeypatch.setattr(piper, "installed_piper_voices", list)  # a machine without the wheel
    assert isinstance(build_voice(settings()), EspeakVoice)
    voices = build_voices(settings())
    assert voices.local_voice_id == "espeak:en-us" and voices.piper is None
    # A piper: id there is spoken by espeak-ng, which says so in the voice it reports.
    speaker = voice_for("piper:joe", voices.configured, voices.local, voices.piper)
    assert speaker is voices.local
    assert speaker.synthesize("Hey John,", "piper:joe").voice_id == "espeak:en-us"


def test_build_voice_with_a_key_talks_to_the_configured_endpoint(
    fake: FakeElevenLabs, caplog: pytest.LogCaptureFixture
) -> None:
    configured = settings(
        elevenlabs_api_key=fake.api_key, elevenlabs_base_url=fake.base_url, elevenlabs_stability=0.3
    )
    with caplog.at_level(logging.INFO, logger=stage.__name__):
        chosen = build_voice(configured)
    assert isinstance(chosen, ElevenLabsVoice)
    assert "using ElevenLabs" in caplog.text
    speech = chosen.synthesize("Hey Ann,", VOICE_ID)
    assert speech.extension == "mp3"
    assert fake.requests[-1].body["voice_settings"] == {"stability": 0.3, "similarity_boost": 0.75}


def test_build_voice_forced_elevenlabs_without_a_key_fails_clearly() -> None:
    with pytest.raises(JobError) as caught:
        build_voice(settings(tts_provider="elevenlabs"))
    assert caught.value.code == ErrorCode.TTS_AUTH
    assert "GREETINGS_ELEVENLABS_API_KEY" in caught.value.message


def test_build_voice_uses_a_given_client(fake: FakeElevenLabs) -> None:
    client = ElevenLabs(api_key=fake.api_key, base_url=fake.base_url)
    chosen = build_voice(settings(tts_provider="elevenlabs"), client)
    assert isinstance(chosen, ElevenLabsVoice)


# --- ElevenLabs through the real SDK and the fake server ------------------------------------------


def test_elevenlabs_speaks_mp3(
    fake: FakeElevenLabs, voice: ElevenLabsVoice, tmp_path: Path
) -> None:
    speech = synthesize_speech(voice, "Hey John,", VOICE_ID)
    end_s = fake.timed("Hey John,").alignment.ends[-2]  # the "n"'s, as the answer said
    assert speech == Speech(speech.audio, "mp3", "elevenlabs", VOICE_ID, MODEL, end_s)
    info = probe(speech.audio, "mp3", tmp_path)
    assert info["streams"][0]["codec_name"] == "mp3"
    assert info["streams"][0]["sample_rate"] == "44100"
    assert 0.3 < float(info["format"]["duration"]) < 5
    [request] = fake.requests
    assert request.path == f"/v1/text-to-speech/{VOICE_ID}/with-timestamps"
    assert request.headers["xi-api-key"] == fake.api_key
    assert request.query["output_format"] == "mp3_44100_128"
    assert request.body["text"] == "Hey John,"
    assert request.body["model_id"] == MODEL


def test_elevenlabs_is_asked_to_speak_faster_with_voice_settings_speed(
    fake: FakeElevenLabs, voice: ElevenLabsVoice, tmp_path: Path
) -> None:
    plain = synthesize_speech(voice, "Hey Alexander Montgomery,", VOICE_ID)
    faster = synthesize_speech(voice, "Hey Alexander Montgomery,", VOICE_ID, 1.2)
    first, second = fake.requests[-2:]
    assert "speed" not in (first.body.get("voice_settings") or {})
    assert second.body["voice_settings"]["speed"] == 1.2
    # The local stand-in speaks at that speed, as the service does: the audio is shorter.
    plain_s = float(probe(plain.audio, "mp3", tmp_path)["format"]["duration"])
    faster_s = float(probe(faster.audio, "mp3", tmp_path)["format"]["duration"])
    assert faster_s < plain_s * 0.92


def test_speeds_outside_what_providers_take_are_refused_before_any_call(
    fake: FakeElevenLabs, voice: ElevenLabsVoice
) -> None:
    for speed in (0.9, 1.21, 2.0):
        with pytest.raises(ValueError, match="outside"):
            synthesize_speech(voice, "Hey John,", VOICE_ID, speed)
    assert fake.requests == []


def test_the_speed_is_part_of_the_cache_key_only_when_asked_for() -> None:
    identity = SpeechIdentity("elevenlabs", MODEL, "mp3_44100_128")
    plain = speech_cache_key(identity, VOICE_ID, "Hey John,")
    assert speech_cache_key(identity, VOICE_ID, "Hey John,", 1.0) == plain
    faster = speech_cache_key(identity, VOICE_ID, "Hey John,", 1.15)
    assert faster != plain
    assert faster != speech_cache_key(identity, VOICE_ID, "Hey John,", 1.2)


def test_markup_never_reaches_elevenlabs(fake: FakeElevenLabs, voice: ElevenLabsVoice) -> None:
    synthesize_speech(voice, 'Hey <break time="5s"/> [whispers] John,', VOICE_ID)
    assert fake.requests[-1].body["text"] == 'Hey break time="5s"/ whispers John,'


def test_elevenlabs_wrong_key_is_an_auth_error(fake: FakeElevenLabs) -> None:
    with pytest.raises(JobError) as caught:
        elevenlabs_voice(fake, api_key="wrong").synthesize("Hey John,", VOICE_ID)
    assert (caught.value.code, caught.value.retryable) == (ErrorCode.TTS_AUTH, False)
    assert "API key" in caught.value.message and "Invalid API key" in caught.value.message


def test_elevenlabs_unknown_voice(voice: ElevenLabsVoice) -> None:
    with pytest.raises(JobError) as caught:
        voice.synthesize("Hey John,", "no-such-voice")
    assert (caught.value.code, caught.value.retryable) == (ErrorCode.INVALID_VOICE, False)
    assert "'no-such-voice'" in caught.value.message


def test_elevenlabs_invalid_body_is_rejected(fake: FakeElevenLabs, voice: ElevenLabsVoice) -> None:
    with pytest.raises(JobError) as caught:
        voice.synthesize(None, VOICE_ID)  # type: ignore[arg-type]
    assert (caught.value.code, caught.value.retryable) == (ErrorCode.TTS_REJECTED, False)
    assert "text: Input should be a valid string" in caught.value.message
    fake.script(unprocessable("text"))
    with pytest.raises(JobError) as scripted:
        voice.synthesize("Hey John,", VOICE_ID)
    assert scripted.value.code == ErrorCode.TTS_REJECTED


@pytest.mark.parametrize("answer", [too_many_concurrent_requests, system_busy, server_error])
def test_elevenlabs_transient_failures_are_retryable(
    fake: FakeElevenLabs, voice: ElevenLabsVoice, answer: Callable[[], Any]
) -> None:
    fake.script(answer())
    with pytest.raises(JobError) as caught:
        voice.synthesize("Hey John,", VOICE_ID)
    assert (caught.value.code, caught.value.retryable) == (ErrorCode.TTS_UNAVAILABLE, True)
    assert fake.calls == 1  # the SDK itself did not retry (max_retries=0)
    assert voice.synthesize("Hey John,", VOICE_ID).audio  # and the next call is served


def test_elevenlabs_hung_response_times_out(fake: FakeElevenLabs) -> None:
    fake.script(hang(5))
    started = time.monotonic()
    with pytest.raises(JobError) as caught:
        elevenlabs_voice(fake, timeout=0.5).synthesize("Hey John,", VOICE_ID)
    assert time.monotonic() - started < 3
    assert (caught.value.code, caught.value.retryable) == (ErrorCode.TTS_UNAVAILABLE, True)


def test_elevenlabs_unreachable_is_retryable() -> None:
    with FakeElevenLabs() as gone:
        base_url = gone.base_url
    voice = ElevenLabsVoice(
        ElevenLabs(api_key="k", base_url=base_url, timeout=2), MODEL, "mp3_44100_128"
    )
    with pytest.raises(JobError) as caught:
        voice.synthesize("Hey John,", VOICE_ID)
    assert (caught.value.code, caught.value.retryable) == (ErrorCode.TTS_UNAVAILABLE, True)


# --- espeak-ng ----------------------------------------------------------------------------------


def test_espeak_speaks_a_valid_wav(tmp_path: Path) -> None:
    speech = synthesize_speech(EspeakVoice("en-us"), "Hey John,", "espeak:en-us")
    assert (speech.extension, speech.provider, speech.voice_id) == (
        "wav",
        "espeak-ng",
        "espeak:en-us",
    )
    # The header's sizes are the real ones (espeak-ng's --stdout leaves placeholders).
    assert int.from_bytes(speech.audio[4:8], "little") == len(speech.audio) - 8
    assert 0.3 < wav_seconds(speech.audio) < 5
    assert probe(speech.audio, "wav", tmp_path)["streams"][0]["codec_name"] == "pcm_s16le"


def test_espeak_says_vietnamese_letters_instead_of_their_code_points() -> None:
    assert espeak_text("Hey Nguyễn Thị,") == "Hey Nguyen Thi,"
    # Letters espeak-ng's voices know keep their marks; other scripts are left alone.
    assert espeak_text("Zoë Łukasz Søren 李小龙") == "Zoë Łukasz Søren 李小龙"
    voice = EspeakVoice("en-us")
    said = wav_seconds(synthesize_speech(voice, "Hey Nguyễn,", "espeak:en-us").audio)
    assert said < 1.2  # was 2.6 s: "N G U Y one E C five N"


def test_espeak_speaks_faster_by_its_rate() -> None:
    voice, text = EspeakVoice("en-us"), "Hey Alexander Montgomery, good morning,"
    plain = wav_seconds(synthesize_speech(voice, text, "espeak:en-us").audio)
    faster = wav_seconds(synthesize_speech(voice, text, "espeak:en-us", 1.2).audio)
    # 210 words a minute instead of 175: about 1.2x shorter (espeak's pauses scale too).
    assert plain / faster == pytest.approx(1.2, abs=0.08)


@pytest.mark.parametrize(
    "template",
    [
        "$(touch {sentinel})",
        "`touch {sentinel}`",
        "'; touch {sentinel}; echo \"",
        "line one\ntouch {sentinel}\n",
        "-h",
        "--help -w {sentinel}",
        '<break time="5s"/>',
    ],
)
def test_espeak_speaks_hostile_text_and_nothing_else_happens(
    template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A relative sentinel keeps the text short; a shell would create it in the working folder.
    monkeypatch.chdir(tmp_path)
    text = template.replace("{sentinel}", "pwned")
    speech = EspeakVoice("en-us").synthesize(text, "espeak:en-us")
    assert list(tmp_path.iterdir()) == []
    seconds = wav_seconds(speech.audio)
    # Spoken as words: something is said, and `<break time="5s"/>` is no 5 s pause.
    assert 0.2 < seconds < 4.5


def test_espeak_voice_ids(caplog: pytest.LogCaptureFixture) -> None:
    espeak = EspeakVoice("en-us")
    assert espeak.synthesize("Hallo Anna,", "espeak:de").voice_id == "espeak:de"
    with caplog.at_level(logging.INFO, logger=stage.__name__):
        fallback = espeak.synthesize("Hey John,", VOICE_ID)
    assert fallback.voice_id == "espeak:en-us"
    assert "the local voice 'en-us' speaks instead" in caplog.text


@pytest.mark.parametrize(
    "voice_id", ["espeak:nosuchvoice", "espeak:-h", "espeak:../../etc/x", "espeak:"]
)
def test_espeak_rejects_unknown_voices(voice_id: str) -> None:
    with pytest.raises(JobError) as caught:
        EspeakVoice("en-us").synthesize("Hey John,", voice_id)
    assert (caught.value.code, caught.value.retryable) == (ErrorCode.INVALID_VOICE, False)
    assert repr(voice_id) in caught.value.message


def test_espeak_misconfigured_default_voice() -> None:
    with pytest.raises(JobError) as caught:
        EspeakVoice("nosuchvoice").synthesize("Hey John,", VOICE_ID)
    assert (caught.value.code, caught.value.retryable) == (ErrorCode.INTERNAL, False)
    with pytest.raises(ValueError):
        EspeakVoice("-v")


def test_empty_greeting_is_refused_before_any_call(
    fake: FakeElevenLabs, voice: ElevenLabsVoice
) -> None:
    with pytest.raises(JobError) as caught:
        synthesize_speech(voice, " <> \n", VOICE_ID)
    assert caught.value.code == ErrorCode.INVALID_GREETING_TEXT
    assert fake.calls == 0


# --- The Prefect task on a real (temporary) Prefect server ----------------------------------------


def run_flow(task: Any, voice: Any, *texts: str) -> list[Speech]:
    @flow(name="speak-greetings")
    def speak() -> list[Speech]:
        futures = [task.submit(voice, text, VOICE_ID) for text in texts]
        return [future.result() for future in futures]

    result: list[Speech] = speak()
    return result


@pytest.mark.usefixtures("prefect_server")
def test_repeated_greeting_costs_no_second_elevenlabs_call(
    fake: FakeElevenLabs, unlimited_voice: ElevenLabsVoice, tmp_path: Path
) -> None:
    task = synthesize_greeting_task(settings(speech_cache=str(tmp_path / "speech-cache")))
    [first] = run_flow(task, unlimited_voice, "Hey Cached,")
    # A second flow run, with a new Voice and client (as a new worker would have).
    [again, _other] = run_flow(
        task, elevenlabs_voice(fake, concurrency_limit=None), "Hey Cached,", "Hey Uncached,"
    )
    assert again == first
    assert fake.calls_for("Hey Cached,") == 1
    assert fake.calls_for("Hey Uncached,") == 1
    assert len(list((tmp_path / "speech-cache").glob("speech-elevenlabs-*"))) == 2


@pytest.mark.usefixtures("prefect_server")
class CountingVoice:
    """`voice`, counting the task's attempts: each attempt calls `synthesize` once. (The server
    records task runs from events after the flow returns, too late to be read reliably.)"""

    def __init__(self, voice: ElevenLabsVoice) -> None:
        self.voice = voice
        self.attempts = 0

    @property
    def cache_identity(self) -> SpeechIdentity:
        return self.voice.cache_identity

    @property
    def concurrency_limit(self) -> str | None:
        return self.voice.concurrency_limit

    def synthesize(self, *args: Any, **kwargs: Any) -> Speech:
        self.attempts += 1
        return self.voice.synthesize(*args, **kwargs)


def test_429_then_success_costs_two_calls(
    fake: FakeElevenLabs, unlimited_voice: ElevenLabsVoice, tmp_path: Path
) -> None:
    """The Prefect task owns the retries: one HTTP call per attempt, every attempt in its UI."""
    task = synthesize_greeting_task(settings(speech_cache=str(tmp_path))).with_options(
        retry_delay_seconds=0
    )
    fake.script(too_many_concurrent_requests())
    voice = CountingVoice(unlimited_voice)

    @flow(name="speak-busy")
    def speak() -> Speech:
        return task.submit(voice, "Hey Busy,", VOICE_ID).result()

    speech = speak()
    assert speech.extension == "mp3" and speech.spoken_end_s is not None
    assert (voice.attempts, fake.calls) == (2, 2)  # 1 call per attempt: the SDK repeated nothing
    assert all(r.with_timestamps for r in fake.requests)


def test_the_sdk_alone_would_retry_twice_more(fake: FakeElevenLabs) -> None:
    """Why its retries are off: elevenlabs 2.78 repeats a 429 twice on its own (`max_retries`
    2, about 1 s then 2 s apart), unseen by Prefect; times the task's 5 attempts, 15 calls."""
    client = ElevenLabs(api_key=fake.api_key, base_url=fake.base_url, timeout=5)
    fake.script(*[too_many_concurrent_requests()] * 3)
    with pytest.raises(ApiError):
        client.text_to_speech.convert_with_timestamps(VOICE_ID, text="Hey Busy,", model_id=MODEL)
    assert fake.calls == 3


@pytest.mark.usefixtures("prefect_server")
def test_persistent_500_ends_in_a_retryable_error_after_the_retries(
    fake: FakeElevenLabs, unlimited_voice: ElevenLabsVoice, tmp_path: Path
) -> None:
    task = synthesize_greeting_task(settings(speech_cache=str(tmp_path))).with_options(
        retries=2, retry_delay_seconds=0
    )
    fake.script(*[server_error()] * 3)
    with pytest.raises(JobError) as caught:
        run_flow(task, unlimited_voice, "Hey Broken,")
    assert (caught.value.code, caught.value.retryable) == (ErrorCode.TTS_UNAVAILABLE, True)
    assert fake.calls == 3


@pytest.mark.usefixtures("prefect_server")
def test_auth_failure_is_not_retried(
    fake: FakeElevenLabs, unlimited_voice: ElevenLabsVoice, tmp_path: Path
) -> None:
    task = synthesize_greeting_task(settings(speech_cache=str(tmp_path))).with_options(
        retry_delay_seconds=0
    )
    fake.script(unauthorized())
    with pytest.raises(JobError) as caught:
        run_flow(task, unlimited_voice, "Hey Locked,")
    assert caught.value.code == ErrorCode.TTS_AUTH
    assert fake.calls == 1


@pytest.mark.usefixtures("prefect_server")
def test_elevenlabs_calls_hold_a_global_concurrency_slot(
    fake: FakeElevenLabs, voice: ElevenLabsVoice, unlimited_voice: ElevenLabsVoice, tmp_path: Path
) -> None:
    task = synthesize_greeting_task(settings(speech_cache=str(tmp_path)))
    # A limit that does not exist is tolerated (Prefect warns and lets the call through).
    assert len(run_flow(task, voice, "Hey Ann,")) == 1
    # Control: without a slot to hold, two slow calls overlap at the server.
    fake.reset()
    fake.script(hang(0.5), hang(0.5))
    run_flow(task, unlimited_voice, "Hey Bo,", "Hey Cy,")
    assert (fake.calls, fake.max_in_flight) == (2, 2)
    fake.reset()
    with get_client(sync_client=True) as client:
        ensure_elevenlabs_limit(client, settings(elevenlabs_concurrency=1))
        try:
            fake.script(hang(0.5), hang(0.5))
            run_flow(task, voice, "Hey Di,", "Hey Ed,")
            assert (fake.calls, fake.max_in_flight) == (2, 1)
        finally:
            client.delete_global_concurrency_limit_by_name(ELEVENLABS_CONCURRENCY_LIMIT)


@pytest.mark.usefixtures("prefect_server")
def test_espeak_through_the_task_needs_no_limit(tmp_path: Path) -> None:
    task = synthesize_greeting_task(settings(speech_cache=str(tmp_path)))
    [speech] = run_flow(task, EspeakVoice("en-us"), "Hey Local,")
    assert speech.provider == "espeak-ng"
    assert list(tmp_path.glob("speech-espeak-ng-*"))


@pytest.mark.usefixtures("prefect_server")
def test_bucket_cache_is_shared_through_a_saved_block(
    fake: FakeElevenLabs, unlimited_voice: ElevenLabsVoice
) -> None:
    # fsspec's in-process memory:// stands in for gs://: the same RemoteFileSystem code path.
    task = synthesize_greeting_task(settings(speech_cache="memory://greetings-test/speech-cache"))
    run_flow(task, unlimited_voice, "Hey Bucket,")
    run_flow(task, elevenlabs_voice(fake, concurrency_limit=None), "Hey Bucket,")
    assert fake.calls_for("Hey Bucket,") == 1
    saved = RemoteFileSystem.load(stage.SPEECH_CACHE_BLOCK, _sync=True)  # type: ignore[call-arg]
    assert isinstance(saved, RemoteFileSystem)
    assert saved.basepath == "memory://greetings-test/speech-cache"


def test_espeak_voice_ids_always_get_the_local_voice() -> None:
    configured = ElevenLabsVoice(
        ElevenLabs(api_key="k", base_url="http://127.0.0.1:9"),
        model_id="eleven_multilingual_v2",
        output_format="mp3_44100_128",
    )
    local = EspeakVoice("en-us")
    assert voice_for("espeak:en-gb", configured, local) is local
    assert voice_for("21m00Tcm4TlvDq8ikWAM", configured, local) is configured


def test_espeak_voice_list_is_parsed_from_its_listing() -> None:
    listing = (
        "Pty Language       Age/Gender VoiceName          File                 Other Languages\n"
        " 5  en-us           --/M      English_(America)  gmw/en-US            (en 3)\n"
        " 5  no              --/M      Norwegian_Bokmål   gmw/nb               (nb 5)\n"
    )
    assert parse_espeak_voices(listing) == {"en-us", "english_(america)", "no", "norwegian_bokmål"}


def test_espeak_rejects_a_voice_it_would_misread_as_a_language() -> None:
    with pytest.raises(JobError) as error:
        EspeakVoice("en-us").espeak_voice("espeak:no-such-voice")
    assert error.value.code == ErrorCode.INVALID_VOICE
    assert EspeakVoice("en-us").espeak_voice("espeak:en-gb") == "en-gb"


# --- Timestamps: where the greeting's speech ends -------------------------------------------------


def alignment(text: str, ends: list[float]) -> CharacterAlignmentResponseModel:
    return CharacterAlignmentResponseModel(
        characters=list(text),
        character_start_times_seconds=[0.0, *ends[:-1]],
        character_end_times_seconds=ends,
    )


def test_the_end_is_the_last_spoken_characters_not_the_trailing_punctuations() -> None:
    # As ElevenLabs answers: the trailing "," runs on into the silence after the last word.
    assert spoken_end_s(alignment("Hey Jo,", [0.1, 0.2, 0.3, 0.35, 0.5, 0.62, 1.4])) == 0.62
    assert spoken_end_s(alignment("Hi Zoë!? ", [0.1, 0.2, 0.3, 0.4, 0.5, 0.61, 0.9, 1.0, 1.2])) == (
        0.61
    )
    assert spoken_end_s(alignment("Hey 2", [0.1, 0.2, 0.3, 0.4, 0.7])) == 0.7


@pytest.mark.parametrize(
    "told",
    [
        None,
        alignment(", .", [0.1, 0.2, 0.3]),  # nothing spoken
        CharacterAlignmentResponseModel(
            characters=["H", "i"],
            character_start_times_seconds=[0.0],
            character_end_times_seconds=[0.2],
        ),  # lists of different lengths
        alignment("Hi", [0.1, 0.0]),  # no time
    ],
)
def test_no_end_is_made_up(told: CharacterAlignmentResponseModel | None) -> None:
    assert spoken_end_s(told) is None


def test_elevenlabs_alignment_becomes_spoken_end_s(
    fake: FakeElevenLabs, voice: ElevenLabsVoice, tmp_path: Path
) -> None:
    speech = synthesize_speech(voice, "Hey Johanna,", VOICE_ID)
    timed = fake.timed("Hey Johanna,")
    # The fake's alignment is in ms, as the API's: the end of "a", not of "," (the audio's end).
    assert speech.spoken_end_s == pytest.approx(timed.spoken_end_s, abs=0.0006)
    assert timed.alignment.ends[-1] == pytest.approx(
        timed.lead_s + timed.speech_s + timed.tail_s, abs=0.0006
    )
    duration = float(probe(speech.audio, "mp3", tmp_path)["format"]["duration"])
    assert speech.spoken_end_s < duration - timed.tail_s  # the added noise is after it


def test_espeak_knows_no_end() -> None:
    assert EspeakVoice("en-us").synthesize("Hey John,", "espeak:en-us").spoken_end_s is None


def test_speech_cached_before_the_end_existed_reads_none() -> None:
    """A Speech pickled by older code has no `spoken_end_s`: it unpickles as None (the class
    default), so the render cuts it by silence as before and its cache key stays."""
    old = object.__new__(Speech)
    old.__dict__.update(audio=b"ID3", extension="mp3", provider="elevenlabs", voice_id="v")
    old.__dict__.update(model=MODEL)  # what an old result held: no spoken_end_s
    serializer = PickleSerializer()  # the task's result_serializer="pickle"
    cached = serializer.loads(serializer.dumps(old))
    assert "spoken_end_s" not in cached.__dict__
    assert cached.spoken_end_s is None
    assert cached == Speech(b"ID3", "mp3", "elevenlabs", "v", MODEL)


# --- next_text ------------------------------------------------------------------------------------


def test_next_text_reaches_elevenlabs_and_is_made_plain(
    fake: FakeElevenLabs, voice: ElevenLabsVoice
) -> None:
    synthesize_speech(voice, "Hey John,", VOICE_ID, next_text="thanks for <b>joining</b> me")
    assert fake.requests[-1].next_text == "thanks for b joining /b me"
    synthesize_speech(voice, "Hey John,", VOICE_ID)
    assert fake.requests[-1].body["next_text"] is None  # JSON null: no next text
    synthesize_speech(voice, "Hey John,", VOICE_ID, next_text=" <> ")
    assert fake.requests[-1].next_text is None  # nothing of it left: not sent


def test_espeak_ignores_next_text() -> None:
    voice = EspeakVoice("en-us")
    plain = voice.synthesize("Hey John,", "espeak:en-us")
    stitched = voice.synthesize("Hey John,", "espeak:en-us", next_text="thanks for joining me")
    assert stitched == plain


def test_next_text_is_part_of_the_cache_key_only_when_set() -> None:
    # Keys made before next_text existed (the same code at the previous commit) stay the same.
    assert speech_cache_key(IDENTITY, VOICE_ID, "Hey John,") == (
        "speech-elevenlabs-ae66cc2c2de89d4e78985f5ebaf608180c16b1867afa794b51edcfa2aafaf42d"
    )
    assert speech_cache_key(IDENTITY, VOICE_ID, "Hey John,", 1.15) == (
        "speech-elevenlabs-b1f8491128bd5967895e722ecf4648dd44fd0d323c27445e4780dbe616982265"
    )
    plain = speech_cache_key(IDENTITY, VOICE_ID, "Hey John,")
    assert speech_cache_key(IDENTITY, VOICE_ID, "Hey John,", 1.0, None) == plain
    stitched = speech_cache_key(IDENTITY, VOICE_ID, "Hey John,", 1.0, "thanks for joining")
    assert stitched != plain
    assert stitched != speech_cache_key(IDENTITY, VOICE_ID, "Hey John,", 1.0, "welcome back")
    assert stitched != speech_cache_key(IDENTITY, VOICE_ID, "Hey John,", 1.15, "thanks for joining")
    key_fn = synthesize_greeting.cache_key_fn
    assert key_fn is not None
    client = ElevenLabs(api_key="k", base_url="http://127.0.0.1:9")
    voice = ElevenLabsVoice(client, MODEL, "mp3_44100_128")
    parameters = {"voice": voice, "text": "Hey John,", "voice_id": VOICE_ID, "speed": 1.0}
    unset = key_fn(object(), {**parameters, "next_text": None})  # type: ignore[arg-type]
    assert unset == speech_cache_key(voice.cache_identity, VOICE_ID, "Hey John,")
    stitched_key = key_fn(object(), {**parameters, "next_text": "hi"})  # type: ignore[arg-type]
    assert stitched_key == speech_cache_key(voice.cache_identity, VOICE_ID, "Hey John,", 1.0, "hi")


@pytest.mark.usefixtures("prefect_server")
def test_speak_greeting_passes_next_text_and_returns_the_end(
    fake: FakeElevenLabs, unlimited_voice: ElevenLabsVoice, tmp_path: Path
) -> None:
    voices = Voices(
        configured=unlimited_voice,
        local=EspeakVoice("en-us"),
        task=synthesize_greeting_task(settings(speech_cache=str(tmp_path / "cache"))),
    )
    work = tmp_path / "work"
    work.mkdir()

    @flow(name="speak-stitched")
    def speak(next_text: str | None, voice_id: str = VOICE_ID) -> SpeechFile:
        return speak_greeting(voices, voice_id, "Hey Stitched,", work, next_text=next_text)

    first = speak("thanks for joining me")
    assert first.path == work / "greeting.mp3" and first.path.read_bytes()
    assert first.spoken_end_s == pytest.approx(fake.timed("Hey Stitched,").spoken_end_s, abs=1e-3)
    assert [r.next_text for r in fake.requests] == ["thanks for joining me"]
    assert speak("thanks for joining me") == first  # cached: no call
    speak("welcome back")  # another next text: other audio, another call
    speak(None)  # and none: the key of a greeting without one
    assert [r.next_text for r in fake.requests] == ["thanks for joining me", "welcome back", None]
    # The local voice: no timestamps, the render measures silence.
    local = speak("thanks for joining me", "espeak:en-us")
    assert local.spoken_end_s is None and local.path.suffix == ".wav"
