"""The `processing-audio` stage: speak the greeting ("Hey John,") in the rep's voice.

Two providers sit behind one small `Voice` protocol: ElevenLabs (production, and any machine with
a key) and espeak-ng (a laptop or CI without a key still gets a real, if robotic, greeting).
`build_voices` builds them (and the cached task) once per worker, as `Clients.voices`; the flow
passes them in.

`synthesize_speech` is the plain function (the local `greetings render` command calls it without
Prefect). `synthesize_greeting` is the Prefect task that wraps it and declares what a worker needs:

- retries only for failures worth retrying (429, 5xx, timeouts: `JobError.retryable`), with
  jittered exponential backoff. The task is their only owner: the SDK's HTTP client would repeat
  a 429/408/409/5xx twice more on its own (elevenlabs 2.78 `core/http_client.py`, `max_retries`
  2, for every non-streaming call such as `convert_with_timestamps`), unseen by Prefect and
  multiplying with the task's retries, so each call asks it for none (`request_options`);
- a cache shared by every run and every worker, keyed by what determines the audio (provider,
  model, output format, voice settings, voice id, text; speed and `next_text` when given) and
  not by the run, so re-rendering a batch or retrying a job costs no ElevenLabs characters for
  greetings already spoken;
- a Prefect global concurrency limit named `elevenlabs` around ElevenLabs calls, sized to the
  plan's concurrent-request allowance (`GREETINGS_ELEVENLABS_CONCURRENCY`), so workers queue
  instead of collecting 429s. The local stack creates the limit (`ensure_elevenlabs_limit`);
  where it does not exist Prefect logs a warning and runs the call unlimited: Prefect 3's client
  has no `create_if_missing` (the server deprecated it), so creating it is a deployment step.

`speak_greeting` is the stage: it picks the voice for the job's voice id, runs the task (bound to
the speech cache's storage: a folder, or `gs://...` in production) and writes the audio file,
returned with where its speech ends when the voice said so (`SpeechFile`): ElevenLabs answers
with per-character timestamps, so the render cuts the greeting right after its last word instead
of guessing from silence (espeak-ng gives none: the render measures silence, as before).
The voice id `clone` is resolved before it, by flows/stages/clone.py (`Voices.cloner`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import os
import re
import subprocess
import tempfile
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote

import httpx
from elevenlabs import ElevenLabs, VoiceSettings
from elevenlabs.core.api_error import ApiError
from elevenlabs.core.request_options import RequestOptions
from elevenlabs.types import CharacterAlignmentResponseModel
from prefect import Task, task
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.filesystems import RemoteFileSystem, WritableFileSystem
from prefect.tasks import exponential_backoff

from flows.job import ErrorCode, JobError
from flows.retry import retry_if_retryable
from flows.settings import Settings

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.context import TaskRunContext

    from flows.stages.clone import VoiceCloner

logger = logging.getLogger(__name__)

ELEVENLABS_CONCURRENCY_LIMIT = "elevenlabs"
SPEECH_CACHE_BLOCK = "greetings-speech-cache"
ESPEAK_VOICE_PREFIX = "espeak:"
PIPER_VOICE_PREFIX = "piper:"  # the Piper neural voices (flows/stages/piper.py)
# Bump when the bytes a provider returns for the same inputs change meaning (e.g. a new
# container format), so old cache entries are never served for new code.
# 2: espeak voice ids are checked against espeak-ng's list (1 cached Norwegian for `no-such-...`).
SPEECH_CACHE_VERSION = 2
# Task-level retries of transient TTS failures. GREETINGS_MAX_RETRIES is about re-running whole
# jobs, so it is not reused here. Delays: 2, 4, 8, 16 s, each +-50% jitter so that workers that
# hit the same 429 do not come back in lockstep.
TTS_RETRIES = 4
TTS_RETRY_BACKOFF_SECONDS = 2.0
TTS_RETRY_JITTER_FACTOR = 0.5
# How long a greeting may wait for an ElevenLabs slot before the attempt counts as a (retryable)
# unavailability; a batch of hundreds of greetings on a 2-slot plan legitimately waits minutes.
ELEVENLABS_SLOT_TIMEOUT_SECONDS = 900.0
ESPEAK_TIMEOUT_SECONDS = 30.0
# espeak-ng's default rate in words per minute (`-s`): a speed of 1.2 asks for 210.
ESPEAK_DEFAULT_WPM = 175
# The fastest ElevenLabs speaks (`voice_settings.speed`, 0.7-1.2 per its API reference), and so
# the fastest any voice is asked for before the render time-stretches what is left.
MAX_SPEECH_SPEED = 1.2
_MAX_PROVIDER_MESSAGE = 300
# Every ElevenLabs call: no retries inside the SDK, the Prefect task owns them (see above).
_NO_SDK_RETRIES: RequestOptions = {"max_retries": 0}

# espeak-ng voice names as `espeak-ng --voices` lists them (`en-us`, `de`, `en-us+f3` with a
# variant). Anything else never reaches the command line: no paths, no option-like values.
_ESPEAK_VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}(\+[A-Za-z0-9_-]{1,31})?")
# ElevenLabs interprets `<break .../>` and `<phoneme>` (SSML) on most models and `[whispers]`-style
# audio tags on v3. A greeting is plain speech: those brackets become spaces, so a name such as
# `<break time="5s"/>` is spoken as the words "break time 5s" instead of becoming a pause.
_MARKUP_CHARACTERS = str.maketrans(dict.fromkeys("<>[]", " "))
_WHITESPACE = re.compile(r"\s+")


# --- Greeting text ------------------------------------------------------------------------------


def plain_speech_text(text: str) -> str:
    """`text` with TTS markup characters and control characters turned into single spaces."""
    text = text.translate(_MARKUP_CHARACTERS)
    text = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)
    return _WHITESPACE.sub(" ", text).strip()


# --- Speech and the providers -------------------------------------------------------------------


@dataclass(frozen=True)
class Speech:
    """A synthesized greeting: encoded audio and what made it (it is cached as a Prefect result)."""

    audio: bytes
    extension: Literal["mp3", "wav"]
    provider: str
    voice_id: str  # the voice that spoke: for espeak-ng, `espeak:<voice>` actually used
    model: str
    # Where (in seconds from the audio's start) its last spoken character ends, as the provider's
    # timestamps say; None: unknown (espeak-ng), the render finds the end from silence. The
    # default is also a class attribute, so a Speech pickled into the cache before this field
    # existed reads None when unpickled (pickle restores `__dict__` without `__init__`): cached
    # greetings keep their keys and cost nothing again; they are cut by silence, as before.
    spoken_end_s: float | None = None


@dataclass(frozen=True)
class SpeechFile:
    """A greeting's audio file in the run's folder, and where its speech ends (`Speech`)."""

    path: Path
    spoken_end_s: float | None = None
    voice_id: str | None = None  # the voice that spoke (`Speech.voice_id`): the job's voiceUsed


@dataclass(frozen=True)
class SpeechIdentity:
    """Everything about a provider that changes the audio for the same text and voice id."""

    provider: str
    model: str
    output_format: str
    voice_settings: tuple[tuple[str, float | bool | str], ...] = ()


class Voice(Protocol):
    """A text-to-speech provider."""

    @property
    def cache_identity(self) -> SpeechIdentity: ...

    @property
    def concurrency_limit(self) -> str | None:
        """The Prefect global concurrency limit its calls must hold a slot of, if any."""
        ...

    def synthesize(
        self, text: str, voice_id: str, speed: float = 1.0, *, next_text: str | None = None
    ) -> Speech:
        """`speed` above 1.0 asks the voice itself to speak faster (at most MAX_SPEECH_SPEED):
        a voice speaking faster sounds natural where a time-stretch of its audio does not.
        `next_text`: the words the greeting leads into, for a voice that shapes its intonation
        toward them (it is not spoken); a voice that cannot use it ignores it."""
        ...


def speech_extension(output_format: str) -> Literal["mp3", "wav"]:
    """The file extension of an ElevenLabs `output_format`; only containers ffmpeg reads as-is."""
    if output_format.startswith("mp3_"):
        return "mp3"
    if output_format.startswith("wav_"):
        return "wav"
    # pcm_/ulaw_/alaw_ are headerless and opus would need its own handling downstream.
    raise ValueError(f"unsupported ElevenLabs output format {output_format!r}: use mp3_* or wav_*")


def spoken_end_s(alignment: CharacterAlignmentResponseModel | None) -> float | None:
    """When the last spoken character of an ElevenLabs alignment ends (None: none to tell).

    Spaces and punctuation are skipped: the API gives a trailing "," or "." a time of its own,
    which may run into the silence after the last word.
    """
    if alignment is None:
        return None
    characters = alignment.characters
    ends = alignment.character_end_times_seconds
    if len(characters) != len(ends):
        return None
    for character, end in zip(reversed(characters), reversed(ends), strict=True):
        if _spoken(character):
            return float(end) if math.isfinite(end) and end > 0 else None
    return None


def _decoded_audio(encoded: object) -> bytes:
    """The audio of a with-timestamps answer (its `audio_base64`)."""
    # The SDK builds its answer unchecked: a 200 without the documented JSON (a cut-off answer,
    # a proxy's) has no such field or garbage in it. Asking again may well get a good one.
    try:
        if isinstance(encoded, str):
            return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise JobError(
            ErrorCode.TTS_UNAVAILABLE, f"ElevenLabs answered unreadable audio: {exc}"
        ) from exc
    raise JobError(ErrorCode.TTS_UNAVAILABLE, "ElevenLabs answered without audio")


def _spoken(character: str) -> bool:
    return bool(character.strip()) and not all(
        unicodedata.category(ch).startswith("P") for ch in character
    )


class ElevenLabsVoice:
    """ElevenLabs text-to-speech through the official SDK, with per-character timestamps."""

    provider = "elevenlabs"

    def __init__(
        self,
        client: ElevenLabs,
        model_id: str,
        output_format: str,
        voice_settings: VoiceSettings | None = None,
        *,
        concurrency_limit: str | None = ELEVENLABS_CONCURRENCY_LIMIT,
    ) -> None:
        self._client = client
        self.concurrency_limit = concurrency_limit
        self.model_id = model_id
        self.output_format = output_format
        self.extension = speech_extension(output_format)
        self.voice_settings = voice_settings

    @property
    def cache_identity(self) -> SpeechIdentity:
        settings = self.voice_settings.model_dump(exclude_none=True) if self.voice_settings else {}
        return SpeechIdentity(
            provider=self.provider,
            model=self.model_id,
            output_format=self.output_format,
            voice_settings=tuple(sorted(settings.items())),
        )

    def synthesize(
        self, text: str, voice_id: str, speed: float = 1.0, *, next_text: str | None = None
    ) -> Speech:
        settings = self.voice_settings
        if speed != 1.0:
            base = settings.model_dump(exclude_none=True) if settings else {}
            settings = VoiceSettings(**{**base, "speed": check_speed(speed)})
        try:
            answer = self._client.text_to_speech.convert_with_timestamps(
                # The SDK puts the id into the URL path as it is: escaped, `../x` stays a
                # (refused) voice id instead of reaching another endpoint with our key.
                quote(voice_id, safe=""),
                text=text,
                model_id=self.model_id,
                output_format=self.output_format,
                voice_settings=settings,
                # None goes out as JSON null, which the API takes as "no next text".
                next_text=next_text,
                request_options=_NO_SDK_RETRIES,
            )
        except ApiError as exc:
            raise elevenlabs_error(exc.status_code, exc.body, voice_id) from exc
        except httpx.HTTPError as exc:
            raise elevenlabs_transport_error(exc) from exc
        audio = _decoded_audio(getattr(answer, "audio_base_64", None))
        if not audio:
            raise JobError(ErrorCode.TTS_UNAVAILABLE, "ElevenLabs returned no audio")
        # `alignment` is of the text as sent; `normalized_alignment` (numbers spelled out, ...)
        # shares its timeline, so it tells the end as well where the first is missing.
        end_s = spoken_end_s(answer.alignment)
        if end_s is None:
            end_s = spoken_end_s(answer.normalized_alignment)
        return Speech(audio, self.extension, self.provider, voice_id, self.model_id, end_s)


def parse_espeak_voices(listing: str) -> frozenset[str]:
    """Language codes and voice names in `espeak-ng --voices` output, lower-cased."""
    names: set[str] = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 4:
            names.update({fields[1].lower(), fields[3].lower()})
    return frozenset(names)


@cache
def espeak_voices(executable: str) -> frozenset[str]:
    """The voices this machine's espeak-ng has (empty if it cannot be asked)."""
    try:
        listing = subprocess.run(
            [executable, "--voices"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return parse_espeak_voices(listing)


class EspeakVoice:
    """The local espeak-ng voice: no key, no network, WAV output.

    Voice ids `espeak:<voice>` choose an espeak-ng voice; any other id (an ElevenLabs voice id on
    a laptop without a key) is spoken by `default_voice`, so every job still gets a greeting.
    Text goes in on stdin and SSML stays off (no `-m`): markup is read out as words.
    """

    provider = "espeak-ng"
    concurrency_limit: str | None = None

    def __init__(self, default_voice: str = "en-us", executable: str = "espeak-ng") -> None:
        if not _ESPEAK_VOICE_NAME.fullmatch(default_voice):
            raise ValueError(f"not an espeak-ng voice name: {default_voice!r}")
        self.default_voice = default_voice
        self.executable = executable

    @property
    def cache_identity(self) -> SpeechIdentity:
        return SpeechIdentity(
            provider=self.provider,
            model="espeak-ng",
            output_format="wav",
            voice_settings=(("default_voice", self.default_voice),),
        )

    def espeak_voice(self, voice_id: str) -> str:
        """The espeak-ng voice that speaks for `voice_id` (INVALID_VOICE for a malformed one)."""
        if not voice_id.startswith(ESPEAK_VOICE_PREFIX):
            logger.info(
                "voice %r is not an espeak-ng voice: the local voice %r speaks instead",
                voice_id,
                self.default_voice,
            )
            return self.default_voice
        name = voice_id.removeprefix(ESPEAK_VOICE_PREFIX)
        if not _ESPEAK_VOICE_NAME.fullmatch(name):
            raise JobError(ErrorCode.INVALID_VOICE, f"espeak-ng has no voice {voice_id!r}")
        # espeak-ng itself would read `no-such-voice` as Norwegian (`no`): check the real list.
        known = espeak_voices(self.executable)
        if known and name.split("+", 1)[0].lower() not in known:
            raise JobError(ErrorCode.INVALID_VOICE, f"espeak-ng has no voice {voice_id!r}")
        return name

    def synthesize(
        self, text: str, voice_id: str, speed: float = 1.0, *, next_text: str | None = None
    ) -> Speech:
        # espeak-ng has no notion of surrounding text: `next_text` is ignored.
        name = self.espeak_voice(voice_id)
        rate = round(ESPEAK_DEFAULT_WPM * check_speed(speed))
        with tempfile.TemporaryDirectory(prefix="greeting-espeak-") as folder:
            wav = Path(folder) / "speech.wav"
            # `-w` rather than `--stdout`: espeak-ng streams a WAV header with placeholder sizes
            # to stdout, but writes the real sizes into a file it closes itself.
            command = [self.executable, "-v", name, "-s", str(rate), "-b", "1", "--stdin"]
            command += ["-w", str(wav)]
            try:
                done = subprocess.run(
                    command,
                    input=espeak_text(text).encode("utf-8"),
                    capture_output=True,
                    timeout=ESPEAK_TIMEOUT_SECONDS,
                    check=False,
                )
            except FileNotFoundError as exc:
                raise JobError(
                    ErrorCode.TTS_UNAVAILABLE,
                    f"{self.executable} is not installed on this worker",
                    retryable=False,
                ) from exc
            except subprocess.TimeoutExpired as exc:
                raise JobError(
                    ErrorCode.TTS_UNAVAILABLE,
                    f"espeak-ng took longer than {ESPEAK_TIMEOUT_SECONDS:.0f} s",
                ) from exc
            stderr = done.stderr.decode("utf-8", "replace").strip()
            if done.returncode != 0:
                raise self._failure(name, voice_id, stderr)
            audio = wav.read_bytes() if wav.exists() else b""
        if not audio:
            raise JobError(ErrorCode.INTERNAL, f"espeak-ng produced no audio: {stderr}")
        return Speech(audio, "wav", self.provider, ESPEAK_VOICE_PREFIX + name, "espeak-ng")

    def _failure(self, name: str, voice_id: str, stderr: str) -> JobError:
        if "voice does not exist" not in stderr:
            return JobError(ErrorCode.INTERNAL, f"espeak-ng failed: {stderr}", retryable=False)
        if voice_id.startswith(ESPEAK_VOICE_PREFIX):
            return JobError(ErrorCode.INVALID_VOICE, f"espeak-ng has no voice {voice_id!r}")
        # The configured fallback itself is wrong: an operator's problem, not the job's.
        return JobError(
            ErrorCode.INTERNAL,
            f"the local voice {name!r} (GREETINGS_ESPEAK_VOICE) does not exist in espeak-ng",
            retryable=False,
        )


def voice_for(voice_id: str, configured: Voice, local: Voice, piper: Voice | None = None) -> Voice:
    """The voice that speaks for `voice_id`: `espeak:<voice>` ids always get the espeak-ng voice
    `local`, `piper:<voice>` ids the Piper voice (espeak-ng where none is installed).

    So a deployment with an ElevenLabs key can still render offline previews and test jobs.
    """
    if voice_id.startswith(PIPER_VOICE_PREFIX):
        return piper or local
    return local if voice_id.startswith(ESPEAK_VOICE_PREFIX) else configured


def piper_voice(settings: Settings) -> Voice | None:
    """The natural offline voice where its model is installed (and not turned off), else None."""
    if settings.local_voice != "piper":
        return None
    # Imported here: flows/stages/piper.py builds on this module's Speech.
    from flows.stages.piper import PiperVoice, installed_piper_voices

    if not installed_piper_voices():
        logger.warning("no Piper voice installed: the local voice is espeak-ng")
        return None
    return PiperVoice()


def elevenlabs_client(settings: Settings) -> ElevenLabs | None:
    """The ElevenLabs client the settings ask for (None: the local voice is configured)."""
    if not settings.use_elevenlabs:
        return None
    if settings.elevenlabs_api_key is None:
        raise JobError(
            ErrorCode.TTS_AUTH,
            "GREETINGS_TTS_PROVIDER=elevenlabs but GREETINGS_ELEVENLABS_API_KEY is not set",
            retryable=False,
        )
    return ElevenLabs(
        api_key=settings.elevenlabs_api_key.get_secret_value(),
        base_url=settings.elevenlabs_base_url,
        timeout=settings.elevenlabs_timeout_seconds,
    )


def build_voice(settings: Settings, client: ElevenLabs | None = None) -> Voice:
    """The provider the settings ask for, with its client built here unless one is given."""
    if not settings.use_elevenlabs:
        reason = (
            "no ElevenLabs key configured"
            if settings.tts_provider == "auto"
            else "GREETINGS_TTS_PROVIDER=espeak"
        )
        piper = piper_voice(settings)
        if piper is not None:
            logger.info("%s: using the local Piper voice (piper:joe)", reason)
            return piper
        logger.info("%s: using the local espeak-ng voice %r", reason, settings.espeak_voice)
        return EspeakVoice(settings.espeak_voice)
    if client is None:
        client = elevenlabs_client(settings)
        assert client is not None  # use_elevenlabs: a client or TTS_AUTH
    logger.info(
        "ElevenLabs key configured: using ElevenLabs (model %s, %s%s)",
        settings.elevenlabs_model_id,
        settings.elevenlabs_output_format,
        f", at {settings.elevenlabs_base_url}" if settings.elevenlabs_base_url else "",
    )
    return ElevenLabsVoice(
        client,
        model_id=settings.elevenlabs_model_id,
        output_format=settings.elevenlabs_output_format,
        voice_settings=VoiceSettings(
            stability=settings.elevenlabs_stability,
            similarity_boost=settings.elevenlabs_similarity_boost,
        ),
    )


# --- ElevenLabs errors ----------------------------------------------------------------------------


def _provider_message(body: Any) -> tuple[str, str]:
    """(status, message) of an ElevenLabs error body, whichever shape it has.

    ElevenLabs answers `{"detail": {"status": ..., "message": ...}}`; request validation answers
    FastAPI's `{"detail": [{"type", "loc", "msg"}, ...]}`; a proxy may answer plain text.
    """
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict):
        status, message = str(detail.get("status", "")), str(detail.get("message", ""))
    elif isinstance(detail, list):
        items = [item for item in detail if isinstance(item, dict)]
        status = str(items[0].get("type", "")) if items else ""
        message = "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', [])[1:])}: {item.get('msg', '')}"
            for item in items
        )
    else:
        status, message = "", str(detail or "")
    return status, message[:_MAX_PROVIDER_MESSAGE]


def _about_voice(status: str, message: str, body: Any) -> bool:
    return "voice" in status.lower() or "voice" in message.lower() or "voice_id" in str(body)


def elevenlabs_error(status_code: int | None, body: Any, voice_id: str) -> JobError:
    """The job failure an ElevenLabs HTTP error means (retryable only when waiting can help)."""
    status, message = _provider_message(body)
    said = f": {message}" if message else ""
    if status_code in (401, 403):
        # 401 also means an exhausted quota: the account, not this greeting, needs attention.
        what = "the account's quota" if status == "quota_exceeded" else "the API key"
        return JobError(
            ErrorCode.TTS_AUTH,
            f"ElevenLabs refused {what} (GREETINGS_ELEVENLABS_API_KEY){said}",
            retryable=False,
        )
    if status_code == 404 or (status_code in (400, 422) and _about_voice(status, message, body)):
        return JobError(
            ErrorCode.INVALID_VOICE,
            f"ElevenLabs has no usable voice {voice_id!r}{said}",
            retryable=False,
        )
    if status_code == 429:
        reason = (
            "is at the plan's concurrent-request limit"
            if status == "too_many_concurrent_requests"
            else "is busy"
        )
        return JobError(ErrorCode.TTS_UNAVAILABLE, f"ElevenLabs {reason}{said}", retryable=True)
    if status_code == 408 or status_code is None or status_code >= 500:
        return JobError(
            ErrorCode.TTS_UNAVAILABLE,
            f"ElevenLabs is unavailable (HTTP {status_code}){said}",
            retryable=True,
        )
    return JobError(
        ErrorCode.TTS_REJECTED,
        f"ElevenLabs rejected the greeting (HTTP {status_code}){said}",
        retryable=False,
    )


def elevenlabs_transport_error(exc: httpx.HTTPError) -> JobError:
    """The job failure a network-level error means: timeouts and dropped connections retry."""
    if isinstance(exc, httpx.TimeoutException):
        return JobError(ErrorCode.TTS_UNAVAILABLE, "ElevenLabs did not answer in time")
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        return JobError(ErrorCode.TTS_UNAVAILABLE, f"could not reach ElevenLabs: {exc}")
    # A malformed base URL or proxy setting will not fix itself by waiting.
    return JobError(
        ErrorCode.TTS_UNAVAILABLE,
        f"cannot call ElevenLabs: {exc!r} (check GREETINGS_ELEVENLABS_BASE_URL)",
        retryable=False,
    )


# --- The plain function and its task -------------------------------------------------------------


# Latin Extended Additional: Vietnamese letters with two diacritics (ễ, ị, ộ ...) and a few
# rarer ones. espeak-ng's English voices have no rule for them and read their code points aloud:
# "Nguyễn" became "N G U Y one E C five N" (2.6 s for "Hey Nguyễn,").
_UNSPOKEN_LATIN = re.compile("[\u1e00-\u1eff]")


def espeak_text(text: str) -> str:
    """`text` as espeak-ng can say it: letters it would spell by code point lose their
    diacritics ("Nguyễn" -> "Nguyen"), as a speaker of the voice's language would say them."""

    def base(match: re.Match[str]) -> str:
        decomposed = unicodedata.normalize("NFKD", match.group())
        return "".join(ch for ch in decomposed if not unicodedata.combining(ch))

    return _UNSPOKEN_LATIN.sub(base, text)


def check_speed(speed: float) -> float:
    """A speaking speed the providers accept: 1.0 (as the voice speaks) to MAX_SPEECH_SPEED."""
    if not 1.0 <= speed <= MAX_SPEECH_SPEED:
        raise ValueError(f"speech speed {speed} is outside 1.0-{MAX_SPEECH_SPEED}")
    return speed


def plain_next_text(next_text: str | None) -> str | None:
    """`next_text` made plain as the greeting is (None when nothing of it is left)."""
    if next_text is None:
        return None
    return plain_speech_text(next_text) or None


def synthesize_speech(
    voice: Voice, text: str, voice_id: str, speed: float = 1.0, *, next_text: str | None = None
) -> Speech:
    """The greeting `text` spoken by `voice_id`; no Prefect involved.

    The text (and `next_text`) is made plain here too, whoever built it: markup must never
    reach a provider.
    """
    spoken = plain_speech_text(text)
    if not spoken:
        raise JobError(ErrorCode.INVALID_GREETING_TEXT, "the greeting text is empty")
    return voice.synthesize(spoken, voice_id, speed, next_text=plain_next_text(next_text))


def speech_cache_key(
    identity: SpeechIdentity,
    voice_id: str,
    text: str,
    speed: float = 1.0,
    next_text: str | None = None,
) -> str:
    """A stable key for the audio these inputs produce: the same on every run and worker."""
    # The speed and the next text join the key only when asked for: greetings cached at the
    # voice's own speed and without a next text keep their keys. `next_text` changes the
    # intonation (for ElevenLabs), so the same greeting before other words is other audio.
    # It is keyed as passed, before `plain_next_text`: equal inputs, equal keys.
    faster = [] if speed == 1.0 else [round(speed, 4)]
    stitched = [] if next_text is None else [["next_text", next_text]]
    material = json.dumps(
        [
            *stitched,
            *faster,
            SPEECH_CACHE_VERSION,
            identity.provider,
            identity.model,
            identity.output_format,
            [list(pair) for pair in identity.voice_settings],
            voice_id,
            text,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    # Also the result's file name in the cache folder or bucket: hex only, provider for humans.
    return f"speech-{identity.provider}-{hashlib.sha256(material.encode()).hexdigest()}"


def _task_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    voice: Voice = parameters["voice"]
    return speech_cache_key(
        voice.cache_identity,
        parameters["voice_id"],
        parameters["text"],
        parameters.get("speed", 1.0),
        parameters.get("next_text"),
    )


@contextmanager
def _concurrency_slot(limit: str | None) -> Iterator[None]:
    """Hold one slot of `limit` (if any) around the body; a failure to get one is a JobError."""
    if limit is None:
        yield
        return
    acquired = False
    try:
        with concurrency(limit, occupy=1, timeout_seconds=ELEVENLABS_SLOT_TIMEOUT_SECONDS):
            acquired = True
            yield
    except TimeoutError as exc:  # Prefect's AcquireConcurrencySlotTimeoutError subclasses it
        if acquired:  # raised by the body, not by the wait for a slot
            raise
        raise JobError(
            ErrorCode.TTS_UNAVAILABLE,
            f"no {limit!r} slot became free in {ELEVENLABS_SLOT_TIMEOUT_SECONDS:.0f} s",
        ) from exc
    except ConcurrencySlotAcquisitionError as exc:
        raise JobError(
            ErrorCode.ORCHESTRATOR_UNAVAILABLE, f"could not take a {limit!r} slot: {exc}"
        ) from exc


# `synthesize_greeting` as a task value: (voice, text, voice_id, speed, next_text) -> Speech.
SynthesisTask = Task[[Voice, str, str, float, str | None], Speech]


@task(
    name="synthesize-greeting",
    retries=TTS_RETRIES,
    retry_delay_seconds=exponential_backoff(backoff_factor=TTS_RETRY_BACKOFF_SECONDS),
    retry_jitter_factor=TTS_RETRY_JITTER_FACTOR,
    retry_condition_fn=retry_if_retryable,
    cache_key_fn=_task_cache_key,
    persist_result=True,
    result_serializer="pickle",
)
def synthesize_greeting(
    voice: Voice, text: str, voice_id: str, speed: float = 1.0, next_text: str | None = None
) -> Speech:
    """The greeting spoken by `voice_id`, from the speech cache when it was spoken before."""
    with _concurrency_slot(voice.concurrency_limit):
        return synthesize_speech(voice, text, voice_id, speed, next_text=next_text)


# GREETINGS_SPEECH_CACHE naming a saved prefect-gcp GcsBucket block instead of a place.
GCS_BUCKET_BLOCK_PREFIX = "gcs-bucket/"


def speech_cache_storage(location: str) -> Path | WritableFileSystem:
    """Where cached speech lives: a folder, a bucket via fsspec, or a saved GcsBucket block.

    A folder serves one machine (or a shared volume); workers on several machines need a bucket:
    `gcs-bucket/<block>` (prefect-gcp's GcsBucket with its GcpCredentials, the Prefect way, and
    Google's own storage client), or `gs://<bucket>/speech-cache` (gcsfs). Both come with the
    `gcs` extra. A block is loaded here, at start-up, so a missing one stops the worker early.
    """
    if location.startswith(GCS_BUCKET_BLOCK_PREFIX):
        from prefect_gcp.cloud_storage import GcsBucket  # the `gcs` extra

        bucket: WritableFileSystem = GcsBucket.load(location.removeprefix(GCS_BUCKET_BLOCK_PREFIX))
        return bucket
    if "://" in location and not location.startswith("file://"):
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            # gcsfs (read at its import) first asks the storage-control gRPC API whether the
            # bucket is zonal: no emulator serves it, and each new filesystem waited 60 s for it.
            os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        return RemoteFileSystem(basepath=location)
    return Path(location.removeprefix("file://")).expanduser().resolve()


def synthesize_greeting_task(settings: Settings) -> SynthesisTask:
    """`synthesize_greeting` storing its results in the configured speech cache.

    A gs:// bucket is saved as the `remote-file-system/greetings-speech-cache` block first (an API
    call): Prefect accepts a block as task result storage only once it is saved server-side. A
    GcsBucket block was loaded from the server, so it is saved already.
    """
    storage = speech_cache_storage(settings.speech_cache_location)
    if isinstance(storage, RemoteFileSystem):
        storage.save(SPEECH_CACHE_BLOCK, overwrite=True)
    return synthesize_greeting.with_options(result_storage=storage)


def ensure_elevenlabs_limit(client: SyncPrefectClient, settings: Settings) -> None:
    """Create (or resize) the `elevenlabs` global concurrency limit; the local stack calls this."""
    client.upsert_global_concurrency_limit_by_name(
        ELEVENLABS_CONCURRENCY_LIMIT, settings.elevenlabs_concurrency
    )


# --- The stage ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Voices:
    """A worker's voices and its synthesis task, built once at start-up (`build_voices`)."""

    configured: Voice  # ElevenLabs with a key, else the local voice (Piper, else espeak-ng)
    local: Voice  # speaks `espeak:<voice>` ids whatever is configured
    task: SynthesisTask  # synthesize_greeting bound to the speech cache
    # Makes (once per upload) the voice of voiceId "clone"; None without ElevenLabs, where the
    # local voice `local_voice_id` speaks for "clone" (flows/stages/clone.py).
    cloner: VoiceCloner | None = None
    local_voice_id: str = f"{ESPEAK_VOICE_PREFIX}en-us"
    piper: Voice | None = None  # speaks `piper:<voice>` ids where a Piper voice is installed


def build_voices(
    settings: Settings,
    client: ElevenLabs | None = None,
    cloner: VoiceCloner | None = None,
) -> Voices:
    """The worker's voices; `client` (ElevenLabs) is built from the settings unless given."""
    piper = piper_voice(settings)
    return Voices(
        configured=build_voice(settings, client),
        local=EspeakVoice(settings.espeak_voice),
        task=synthesize_greeting_task(settings),
        cloner=cloner,
        local_voice_id=(
            f"{PIPER_VOICE_PREFIX}joe" if piper else ESPEAK_VOICE_PREFIX + settings.espeak_voice
        ),
        piper=piper,
    )


def speak_greeting(
    voices: Voices,
    voice_id: str,
    text: str,
    work_dir: Path,
    speed: float = 1.0,
    *,
    next_text: str | None = None,
) -> SpeechFile:
    """Speaks `text` in `voice_id` (from the cache when spoken before); returns the audio file
    and where its speech ends, if the voice said so (the render's cut).

    `speed` above 1.0: the voice asked to speak faster, to fit a greeting to its slot.
    `next_text`: the video's words after the greeting, which ElevenLabs shapes the greeting's
    intonation toward (not spoken)."""
    voice = voice_for(voice_id, voices.configured, voices.local, voices.piper)
    speech = voices.task(voice, text, voice_id, speed, next_text)
    suffix = "" if speed == 1.0 else f"-x{speed:.3f}"
    speech_file = work_dir / f"greeting{suffix}.{speech.extension}"
    speech_file.write_bytes(speech.audio)
    return SpeechFile(speech_file, speech.spoken_end_s, speech.voice_id)
