"""The `validating-input` stage: every client field, then the upload itself.

Plain functions take the raw job document (whose types nobody has checked yet) and a probe of the
file, and raise `JobError` with a specific, non-retryable code and a message that tells the user
what to change. The stage's tasks fetch the upload from Storage (retried when Storage is down)
and probe it; `load_upload` is what a job (or its batch, once for all its jobs) calls.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from google.cloud import storage
from nameparser import HumanName
from prefect import task
from prefect.cache_policies import NO_CACHE

from flows import storage as object_store
from flows.job import (
    DEFAULT_GREETING_FALLBACK,
    DEFAULT_GREETING_TEXT,
    ErrorCode,
    JobError,
    upload_prefix,
)
from flows.media import (
    MAX_AUDIO_CHANNELS,
    MediaInfo,
    MediaTimeout,
    MediaTooLarge,
    ProbeError,
    TooManyTracks,
    probe_upload,
    sniff_container,
)
from flows.retry import transient_task
from flows.stages.greeting_end import find_greeting_end

MAX_NAME_CHARS = 100
MAX_TEMPLATE_CHARS = 200
MAX_GREETING_END_S = 10.0
# What an upload may hold, checked from its header before anything is decoded. A phone records
# 4K at most; anything beyond is a mistake or an attack (a 3 MB PNG-in-MOV of 16000x16000 took a
# render to 1.6 GB). The codecs are what phones, cameras and browsers record.
MAX_WIDTH = MAX_HEIGHT = 4096
MAX_PIXELS = 4096 * 2304
MAX_FPS = 120.0
MAX_AUDIO_STREAMS = 4
VIDEO_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4"})
AUDIO_CODECS = frozenset(
    {"aac", "opus", "mp3", "vorbis", "flac", "alac", "pcm_s16le", "pcm_s24le", "pcm_f32le"}
)
MIN_TAIL_S = 1.0  # the video must go on at least this long after the greeting
# Punctuation that real names use. Everything else that is not a letter, mark, digit or space is
# refused: quotes, brackets, `$`, backticks, `<`/`>` (markup to a TTS engine), emoji, controls.
# Apostrophes and hyphens as people and word processors type them (U+2019, U+2018, U+2010, U+2013).
NAME_PUNCTUATION = frozenset(".,'-&()\u2019\u2018\u2010\u2013")
MAX_FALLBACK_CHARS = 40
# The rep's words right after the greeting, which the voice leads into (never spoken): a sentence.
MAX_FOLLOWING_TEXT_CHARS = 200
# A sentence may ask or exclaim, as the greeting template may.
SENTENCE_PUNCTUATION = frozenset("!?")
# What may reach the voice once the template is filled: a greeting is a few words, and a provider
# bills by the character (a 200-character template of 33 `{name}`s would be 3,000).
MAX_SPOKEN_CHARS = 120
# The voice ids there are: an ElevenLabs id (20 letters and digits), a local voice by name
# (`espeak:en-us`, `piper:joe`), or `clone`. Nothing else reaches a provider's URL or a command.
VOICE_ID = re.compile(r"[A-Za-z0-9]{20}|(?:espeak|piper):[A-Za-z0-9][A-Za-z0-9_+.-]{0,62}|clone")
# An upload's object name: what the clients write (`<sha256>.<ext>`) and names like it; no
# separators, encoded or not, no `..`, nothing a URL or a shell would read twice.
UPLOAD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
# What a greeting template may name: the whole name as given, the first name, the last name.
PLACEHOLDERS = ("{name}", "{firstName}", "{lastName}")


@dataclass(frozen=True)
class ValidRequest:
    user_id: str
    input_video: str
    prospect_name: str
    voice_id: str
    greeting_end_s: float | None  # None: found from the recording (settle_greeting_end)
    greeting_text: str  # the template with the names filled in: what is spoken
    # How the name is said, already in `greeting_text`; kept to say why the text reads as it does.
    pronunciation: str | None = None
    following_text: str | None = None  # the video's words after the greeting: the voice's next_text
    # The first name as written (never its pronunciation), drawn on the email thumbnail; None
    # when the prospect has none to call them by.
    first_name: str | None = None


def _refused_characters(text: str, allowed_extra: frozenset[str] = frozenset()) -> list[str]:
    refused = []
    for char in text:
        category = unicodedata.category(char)
        if category[0] in "LMN" or char == " " or char in NAME_PUNCTUATION | allowed_extra:
            continue
        refused.append(char)
    return refused


def _describe(chars: list[str]) -> str:
    shown = []
    for char in dict.fromkeys(chars):
        name = unicodedata.name(char, f"U+{ord(char):04X}")
        shown.append(repr(char) if char.isprintable() else name)
    return ", ".join(shown[:5])


def clean_name(raw: Any) -> str:
    """The prospect's name, trimmed and normalised, or `invalid-name`."""
    if not isinstance(raw, str):
        raise JobError(ErrorCode.INVALID_NAME, "The prospect name must be text.")
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if not name:
        raise JobError(ErrorCode.INVALID_NAME, "The prospect name is empty.")
    if len(name) > MAX_NAME_CHARS:
        raise JobError(
            ErrorCode.INVALID_NAME,
            f"The prospect name has {len(name)} characters; at most {MAX_NAME_CHARS} are allowed.",
        )
    # Controls (newlines, tabs) are refused, not folded: they are a sign of a broken import.
    raw_refused = [c for c in raw if unicodedata.category(c) in ("Cc", "Cf") and c != " "]
    refused = raw_refused or _refused_characters(name)
    if refused:
        raise JobError(
            ErrorCode.INVALID_NAME,
            f"The prospect name contains characters that cannot be spoken ({_describe(refused)}). "
            "Use letters, digits, spaces and . , ' - & ( ) only.",
        )
    return name


@dataclass(frozen=True)
class SpokenName:
    """The parts of a prospect's name a greeting template can use."""

    full: str  # {name}: as the user gave it, cleaned
    first: str  # {firstName}: what to call them, or the fallback word
    last: str  # {lastName}: the family name, or the whole name when there is none
    fallback_used: bool = False  # `first` is the fallback word, not a name


def _is_initial(word: str) -> bool:
    return len(word.rstrip(".")) <= 1


def first_name_of(name: str) -> str:
    """What to call a person named `name` ("" if nothing): titles dropped, hyphens kept.

    "Dr. Anna-Lena Smith" -> "Anna-Lena"; "Dr. Smith" -> "Dr. Smith" (a title with a family
    name only is how such a person is addressed); "J. R. R. Tolkien" -> "J. R. R." (one who goes
    by initials is called by them: "Hey J. R.,"), "J. Edgar Hoover" -> the whole name (one
    initial before a name is nothing to call anyone by). nameparser knows the titles and the
    "Last, First" order.
    """
    parsed = HumanName(name)
    if parsed.first and not _is_initial(parsed.first):
        return str(parsed.first)
    given = [str(parsed.first), *str(parsed.middle).split()]
    if parsed.first and len(given) > 1 and all(_is_initial(word) for word in given):
        return " ".join(given)
    if parsed.first:
        return " ".join(str(p) for p in (parsed.first, parsed.middle, parsed.last) if p)
    if parsed.title and parsed.last:
        return f"{parsed.title} {parsed.last}"
    return str(parsed.last)


def spoken_name(prospect_name: str, first_name: Any = None, fallback: Any = None) -> SpokenName:
    """The name parts to speak for a cleaned `prospect_name`.

    An explicit `first_name` (the client's `firstName`) wins over the derived one; a blank one
    asks for the fallback word.
    """
    if fallback is None:
        fallback = DEFAULT_GREETING_FALLBACK
    elif not isinstance(fallback, str) or len(fallback) > MAX_FALLBACK_CHARS:
        raise JobError(
            ErrorCode.INVALID_GREETING_TEXT,
            f"greetingFallback must be a word or two of text (at most {MAX_FALLBACK_CHARS} "
            'characters), e.g. "there".',
        )
    else:
        fallback = _spoken_part(fallback, "greetingFallback")
    if first_name is None:
        first = first_name_of(prospect_name)
    elif not isinstance(first_name, str):
        raise JobError(ErrorCode.INVALID_NAME, "firstName must be text.")
    else:
        first = _spoken_part(first_name, "firstName") if first_name.strip() else ""
    last = str(HumanName(prospect_name).last) or prospect_name
    return SpokenName(prospect_name, first or fallback, last, fallback_used=not first)


def _spoken_part(raw: str, field: str) -> str:
    try:
        return clean_name(raw)
    except JobError as exc:
        raise JobError(exc.code, exc.message.replace("The prospect name", field)) from None


def clean_pronunciation(raw: Any) -> str | None:
    """How to say the name the greeting says ("Sheh-VAWN"), checked as names are (it stands for
    one: at most MAX_NAME_CHARS); None when unset or blank (the name is said as written),
    `invalid-name` when it cannot be spoken."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise JobError(ErrorCode.INVALID_NAME, "pronunciation must be text.")
    if not raw.strip():
        return None
    return _spoken_part(raw, "pronunciation")


def pronounced(spoken: SpokenName, pronunciation: str | None) -> SpokenName:
    """`spoken` with the name the greeting says respelt: `{firstName}` and `{name}` are what a
    greeting calls the person, so both say the pronunciation; `{lastName}` stays as written (a
    rep who needs it respelt writes a template without it and puts it in the pronunciation)."""
    if pronunciation is None:
        return spoken
    return replace(spoken, full=pronunciation, first=pronunciation)


def following_text(raw: Any) -> str | None:
    """The rep's words right after the greeting, trimmed, or None; checked as the words of a
    greeting are (`invalid-greeting-text`): they go to the voice too, though it never says them."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise JobError(ErrorCode.INVALID_GREETING_TEXT, "followingText must be text.")
    text = " ".join(unicodedata.normalize("NFC", raw).split())
    if not text:
        return None
    if len(text) > MAX_FOLLOWING_TEXT_CHARS:
        raise JobError(
            ErrorCode.INVALID_GREETING_TEXT,
            f"followingText has {len(text)} characters; at most {MAX_FOLLOWING_TEXT_CHARS} are "
            "allowed: the first words after the greeting are enough.",
        )
    # Controls are refused before folding, as in names: a sign of a broken import.
    raw_refused = [c for c in raw if unicodedata.category(c) in ("Cc", "Cf") and c != " "]
    refused = raw_refused or _refused_characters(text, SENTENCE_PUNCTUATION)
    if refused:
        raise JobError(
            ErrorCode.INVALID_GREETING_TEXT,
            f"followingText contains characters that cannot be spoken ({_describe(refused)}). "
            "Write the words as they are said, with letters, digits, spaces and "
            ". , ' - & ( ) ! ? only.",
        )
    return text


def greeting_text(template: Any, name: str | SpokenName) -> str:
    """The words to speak: the template's `{name}`, `{firstName}` and `{lastName}` filled in,
    taken literally (no format(): braces are refused everywhere else)."""
    spoken = spoken_name(name) if isinstance(name, str) else name
    if template is None:
        template = DEFAULT_GREETING_TEXT
    if not isinstance(template, str) or not template.strip():
        raise JobError(ErrorCode.INVALID_GREETING_TEXT, "The greeting text must be non-empty text.")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise JobError(
            ErrorCode.INVALID_GREETING_TEXT,
            f"The greeting text is longer than {MAX_TEMPLATE_CHARS} characters.",
        )
    bare = template
    for placeholder in PLACEHOLDERS:
        bare = bare.replace(placeholder, "")
    refused = _refused_characters(bare, allowed_extra=frozenset("!?"))
    if refused:
        raise JobError(
            ErrorCode.INVALID_GREETING_TEXT,
            f"The greeting text contains characters that cannot be spoken ({_describe(refused)}). "
            "Write it as plain words with {firstName}, {lastName} or {name} where the name "
            'goes, e.g. "Hey {firstName},".',
        )
    # One pass over the placeholders, so a name is never read as a placeholder itself.
    values = {"{name}": spoken.full, "{firstName}": spoken.first, "{lastName}": spoken.last}
    filled = re.sub(r"\{(?:name|firstName|lastName)\}", lambda m: values[m.group(0)], template)
    text = " ".join(filled.split())
    if len(text) > MAX_SPOKEN_CHARS:
        raise JobError(
            ErrorCode.INVALID_GREETING_TEXT,
            f"The greeting to speak is {len(text)} characters long; at most {MAX_SPOKEN_CHARS} "
            'are spoken. Use fewer words or {firstName}, e.g. "Hey {firstName},".',
        )
    return text


def greeting_end(raw: Any) -> float:
    # bool is an int in Python, and a JSON true is no number of seconds.
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise JobError(
            ErrorCode.INVALID_GREETING_END,
            "greetingEndSecond must be a number of seconds, e.g. 1.5.",
        )
    if not 0 < raw <= MAX_GREETING_END_S:
        raise JobError(
            ErrorCode.INVALID_GREETING_END,
            f"greetingEndSecond is {raw}; it must be above 0 and at most {MAX_GREETING_END_S:g} "
            "seconds (the end of the spoken greeting in your video).",
        )
    return float(raw)


def input_path(raw: Any, user_id: str) -> str:
    """The upload's object path, which must sit in the job owner's own upload folder."""
    if not isinstance(raw, str) or not raw:
        raise JobError(ErrorCode.INPUT_NOT_FOUND, "inputVideo must be the path of your upload.")
    path = PurePosixPath(raw)
    prefix = upload_prefix(user_id)
    if ".." in path.parts or raw.startswith("/") or not raw.startswith(prefix) or raw == prefix:
        raise JobError(
            ErrorCode.INPUT_PATH_FORBIDDEN,
            f"inputVideo must be a file in your own upload folder ({prefix}…).",
        )
    if not UPLOAD_NAME.fullmatch(raw.removeprefix(prefix)):
        raise JobError(
            ErrorCode.INPUT_PATH_FORBIDDEN,
            f"inputVideo must name a file directly in your upload folder ({prefix}…) with "
            "letters, digits, '.', '_' and '-' only: upload the video again.",
        )
    return raw


def validate_request(raw: dict[str, Any]) -> ValidRequest:
    """Checks every client-written field of a job document."""
    user_id = raw.get("userId")
    if not isinstance(user_id, str) or not user_id:
        raise JobError(ErrorCode.INTERNAL, "The job has no owner (userId).", retryable=False)
    name = clean_name(raw.get("prospectName"))
    voice_id = raw.get("voiceId")
    if not isinstance(voice_id, str) or not VOICE_ID.fullmatch(voice_id.strip()):
        raise JobError(
            ErrorCode.INVALID_VOICE,
            "voiceId must be an ElevenLabs voice id (20 letters and digits), a local voice "
            "such as espeak:en-us, or clone.",
        )
    pronunciation = clean_pronunciation(raw.get("pronunciation"))
    spoken = spoken_name(name, raw.get("firstName"), raw.get("greetingFallback"))
    return ValidRequest(
        user_id=user_id,
        input_video=input_path(raw.get("inputVideo"), user_id),
        prospect_name=name,
        voice_id=voice_id.strip(),
        greeting_end_s=(
            None if raw.get("greetingEndSecond") is None else greeting_end(raw["greetingEndSecond"])
        ),
        # The pronunciation goes into what is spoken only: prospect_name (the job's name, the
        # result's file name) stays as the user wrote it.
        greeting_text=greeting_text(raw.get("greetingText"), pronounced(spoken, pronunciation)),
        pronunciation=pronunciation,
        following_text=following_text(raw.get("followingText")),
        first_name=None if spoken.fallback_used else spoken.first,
    )


def check_size(size_bytes: int, max_bytes: int) -> None:
    if size_bytes == 0:
        raise JobError(ErrorCode.INPUT_NOT_VIDEO, "The uploaded file is empty.")
    if size_bytes > max_bytes:
        raise JobError(
            ErrorCode.INPUT_TOO_LARGE,
            f"The video is {size_bytes / 1e6:.0f} MB; the limit is {max_bytes / 1e6:.0f} MB.",
        )


def settle_greeting_end(
    request: ValidRequest, video: Path, info: MediaInfo, max_seconds: float
) -> ValidRequest:
    """The request with its greeting end: the client's, or found from the recording; the
    upload checked against it."""
    check_media(info, request.greeting_end_s, max_seconds)
    if request.greeting_end_s is not None:
        return request
    found = find_greeting_end(video, info.container or sniff_container(video))
    check_media(info, found, max_seconds)
    return replace(request, greeting_end_s=found)


def check_media(info: MediaInfo, greeting_end_s: float | None, max_seconds: float) -> None:
    """A video stream, an audio stream, and a duration that fits the greeting and the caps
    (the greeting's end, when it is known yet)."""
    if info.video is None:
        raise JobError(
            ErrorCode.INPUT_NO_VIDEO_STREAM, "The file has no video stream: upload a video."
        )
    if info.audio is None:
        raise JobError(
            ErrorCode.INPUT_NO_AUDIO_STREAM,
            "The video has no sound track, so there is no greeting to replace.",
        )
    check_streams(info)
    if info.duration_s > max_seconds:
        raise JobError(
            ErrorCode.INPUT_TOO_LONG,
            f"The video lasts {info.duration_s:.0f} s; the limit is {max_seconds:.0f} s.",
        )
    if greeting_end_s is None:
        return
    if greeting_end_s >= info.duration_s:
        # The field is wrong, not the video (the render stage classifies it the same way).
        raise JobError(
            ErrorCode.INVALID_GREETING_END,
            f"greetingEndSecond ({greeting_end_s:g} s) is past the end of the video "
            f"({info.duration_s:.1f} s): set it to the second where the spoken greeting ends.",
        )
    if info.duration_s <= greeting_end_s + MIN_TAIL_S:
        raise JobError(
            ErrorCode.INPUT_TOO_SHORT,
            f"The video lasts {info.duration_s:.1f} s; it must run at least {MIN_TAIL_S:g} s "
            f"past the greeting (greetingEndSecond {greeting_end_s:g} s).",
        )


def check_streams(info: MediaInfo) -> None:
    """One video stream and a few audio streams, of sizes, channels and codecs a recording
    has."""
    video, audio = info.video, info.audio
    assert video is not None and audio is not None  # check_media looked first
    if info.video_streams > 1:
        raise JobError(
            ErrorCode.INPUT_NOT_VIDEO,
            f"The file holds {info.video_streams} video streams; upload a recording with one.",
        )
    if info.audio_streams > MAX_AUDIO_STREAMS:
        raise JobError(
            ErrorCode.INPUT_NOT_VIDEO,
            f"The file holds {info.audio_streams} audio tracks; at most {MAX_AUDIO_STREAMS} "
            "are accepted: export the recording with its voice track only.",
        )
    if audio.channels > MAX_AUDIO_CHANNELS:
        raise JobError(
            ErrorCode.INPUT_NOT_VIDEO,
            f"The video's sound has {audio.channels} channels; at most {MAX_AUDIO_CHANNELS} "
            "(7.1 surround) are accepted: export the recording in mono or stereo.",
        )
    if (
        video.width > MAX_WIDTH
        or video.height > MAX_HEIGHT
        or video.width * video.height > MAX_PIXELS
    ):
        raise JobError(
            ErrorCode.INPUT_TOO_LARGE,
            f"The video is {video.width}x{video.height}; at most 4K (4096x2304) is accepted: "
            "export it at 1080p or 4K.",
        )
    if video.fps > MAX_FPS:
        raise JobError(
            ErrorCode.INPUT_NOT_VIDEO,
            f"The video runs at {video.fps:.0f} frames per second; at most {MAX_FPS:.0f}.",
        )
    if video.codec not in VIDEO_CODECS or audio.codec not in AUDIO_CODECS:
        raise JobError(
            ErrorCode.INPUT_NOT_VIDEO,
            f"The video is {video.codec} with {audio.codec} sound; upload a recording in "
            "H.264, HEVC, VP8, VP9 or AV1 with AAC, Opus or MP3 sound (what phones, cameras "
            "and browsers record).",
        )


# --- the stage's tasks --------------------------------------------------------------------------


@transient_task
def fetch_input(bucket: storage.Bucket, path: str, dest: Path, max_bytes: int) -> Path:
    """Downloads the user's upload, refused when its bytes are not the SHA-256 its name says
    (`input-mismatch`); returns its local path."""
    return object_store.download_input(bucket, path, dest, lambda size: check_size(size, max_bytes))


@task(cache_policy=NO_CACHE)
def inspect_video(video: Path) -> MediaInfo:
    """Probes the upload; returns what it holds, or fails the job if it is no readable video."""
    try:
        return probe_upload(video)
    except MediaTooLarge as exc:
        raise JobError(
            ErrorCode.INPUT_TOO_LARGE,
            "The video's frames are too large to read: upload it at 4K (4096x2304) or less.",
        ) from exc
    except TooManyTracks as exc:
        raise JobError(
            ErrorCode.INPUT_NOT_VIDEO,
            f"The file holds {exc.tracks} tracks; a recording has one video track and at most "
            f"{MAX_AUDIO_STREAMS} audio tracks: export it with one of each.",
        ) from exc
    except MediaTimeout as exc:
        raise JobError(
            ErrorCode.INPUT_NOT_VIDEO,
            "The uploaded file could not be read in time: upload it again as an MP4 or WebM.",
        ) from exc
    except ProbeError as exc:
        raise JobError(
            ErrorCode.INPUT_NOT_VIDEO,
            "The uploaded file is not a video we can read (empty, truncated or another "
            "format): upload an MP4, MOV or WebM recording.",
        ) from exc


def load_upload(
    bucket: storage.Bucket, object_path: str, dest: Path, max_bytes: int
) -> tuple[Path, MediaInfo]:
    """The upload at `object_path`, downloaded to `dest` and probed."""
    video = fetch_input(bucket, object_path, dest, max_bytes)
    return video, inspect_video(video)
