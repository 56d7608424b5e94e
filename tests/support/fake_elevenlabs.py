"""A local stand-in for ElevenLabs' text-to-speech and voice-cloning endpoints, for the real SDK.

It serves `POST /v1/text-to-speech/{voice_id}` (and `/stream`) the way the SDK calls it: the
`xi-api-key` header, the `output_format` query parameter, a JSON body. It answers real audio (the
request's text spoken by espeak-ng; MP3 through ffmpeg for `mp3_*` formats), ElevenLabs' error
bodies (`{"detail": {"status", "message"}}`; FastAPI's `{"detail": [...]}` for a malformed body),
and, when told to, misbehaves: each scripted response is used by one request, in order.

`POST /v1/text-to-speech/{voice_id}/with-timestamps` (`convert_with_timestamps`) takes the same
request (auth, errors, `voice_settings.speed`, `next_text`, all scripted alike) and answers as the
API does: JSON with `audio_base64` and `alignment` / `normalized_alignment` (`characters`,
`character_start_times_seconds`, `character_end_times_seconds`). The alignment comes from its own
audio: the last spoken (non-space, non-punctuation) character ends where espeak-ng's speech
really ends (its last sample above SPEECH_THRESHOLD), the characters before it are spread evenly
over the speech, and trailing punctuation runs on to the end of the audio, as ElevenLabs' often
does. So that a cut at that end can be told from a cut at silence, this audio has
`timestamps_lead_s` of digital silence before the speech and `timestamps_tail_s` of soft noise
(`timestamps_tail_dbfs` RMS, a breath or hiss after the last word, loud enough for a silence
detector to take it for sound) after espeak-ng's own audio. The plain endpoints answer espeak-ng's
audio as it is.

    with FakeElevenLabs(voices={"voice-a"}) as fake:
        fake.script(too_many_concurrent_requests(), server_error())
        client = ElevenLabs(api_key=fake.api_key, base_url=fake.base_url)
        ...
        assert fake.calls == 3

Calls are counted when a request arrives, whatever its answer, since that is what ElevenLabs
rate-limits; `billed` counts the requests it answered with audio, which are what ElevenLabs
charges characters for. A fixed `port` lets another process (the stack's worker) be pointed at it
before it starts.

`POST /v1/voices/add` (instant voice cloning, `client.voices.ivc.create`) takes the SDK's multipart
form (`name`, `files`, `remove_background_noise`, `description`, `labels`), answers
`{"voice_id", "requires_verification"}` and adds the new voice to those text-to-speech serves.
Its calls are counted apart (`clone_calls`, `clones`) and scripted apart (`script_clone`).
"""

from __future__ import annotations

import base64
import json
import math
import random
import re
import secrets
import string
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
import wave
from array import array
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_API_KEY = "fake-elevenlabs-key"
DEFAULT_VOICES = frozenset({"JBFqnCBsd6RMkjVDRZzb", "21m00Tcm4TlvDq8ikWAM"})
_PATH = re.compile(r"^/v1/text-to-speech/(?P<voice_id>[^/]+)(?P<kind>/stream|/with-timestamps)?$")
_CLONE_PATH = "/v1/voices/add"
_OUTPUT_FORMAT = re.compile(r"^(?P<codec>mp3|wav|pcm)_(?P<rate>\d+)(?:_(?P<kbps>\d+))?$")
# espeak-ng's samples (16 bit) above this are speech: its own silence is exact zeros.
SPEECH_THRESHOLD = 64
DEFAULT_TIMESTAMPS_LEAD_S = 0.1
DEFAULT_TIMESTAMPS_TAIL_S = 0.4
DEFAULT_TIMESTAMPS_TAIL_DBFS = -40.0


@dataclass(frozen=True)
class Scripted:
    """One programmed answer: an HTTP status and JSON body, optionally after hanging."""

    status: int = 200
    body: Any = None
    hang_seconds: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()


def too_many_concurrent_requests() -> Scripted:
    return Scripted(
        429,
        _detail(
            "too_many_concurrent_requests",
            "You have too many concurrent requests ongoing. Please wait for some of them to"
            " finish before sending more.",
        ),
    )


def system_busy() -> Scripted:
    return Scripted(
        429,
        _detail("system_busy", "Our services are experiencing high traffic. Please retry."),
    )


def server_error(status: int = 500) -> Scripted:
    return Scripted(status, _detail("internal_error", "An internal error occurred."))


def unauthorized() -> Scripted:
    return Scripted(401, _detail("invalid_api_key", "Invalid API key"))


def unprocessable(field_name: str = "text") -> Scripted:
    return Scripted(422, {"detail": [_missing(field_name, None)]})


def voice_limit_reached() -> Scripted:
    """ElevenLabs' answer to a clone beyond the plan's custom voices (seen in the wild)."""
    return Scripted(
        400,
        _detail(
            "voice_limit_reached",
            "You have reached your maximum amount of custom voices (10 / 10). You can upgrade"
            " your subscription to increase your custom voice limit.",
        ),
    )


def hang(seconds: float) -> Scripted:
    """Say nothing for `seconds`, then answer normally (if the client is still there)."""
    return Scripted(200, None, hang_seconds=seconds)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    voice_id: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() when it arrived

    @property
    def with_timestamps(self) -> bool:
        return self.path.endswith("/with-timestamps")

    @property
    def next_text(self) -> str | None:
        """The `next_text` the request carried (None: absent or null)."""
        value = self.body.get("next_text") if isinstance(self.body, dict) else None
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Alignment:
    """ElevenLabs' `CharacterAlignmentResponseModel`, as the fake derives it."""

    characters: list[str]
    starts: list[float]
    ends: list[float]

    def to_json(self) -> dict[str, Any]:
        return {
            "characters": self.characters,
            "character_start_times_seconds": self.starts,
            "character_end_times_seconds": self.ends,
        }


@dataclass(frozen=True)
class TimedSpeech:
    """What a with-timestamps answer was made of (`FakeElevenLabs.timed`, by text)."""

    spoken_end_s: float  # where the speech ends in the audio served (lead included)
    speech_s: float  # the length of espeak-ng's own audio, its trailing silence included
    lead_s: float
    tail_s: float
    alignment: Alignment


@dataclass(frozen=True)
class UploadedFile:
    filename: str | None
    content_type: str
    data: bytes


@dataclass(frozen=True)
class CloneRequest:
    """A `POST /v1/voices/add` as it arrived: its form fields and files."""

    fields: dict[str, str]
    files: list[UploadedFile]
    headers: dict[str, str]
    at: float


@dataclass(frozen=True)
class ClonedVoice:
    voice_id: str
    name: str
    remove_background_noise: str | None  # as sent: "true", "false" or absent
    files: list[UploadedFile]


@dataclass
class _State:
    api_key: str
    voices: set[str]
    scripted: deque[Scripted] = field(default_factory=deque)
    clone_scripted: deque[Scripted] = field(default_factory=deque)
    clone_requests: list[CloneRequest] = field(default_factory=list)
    cloned: dict[str, ClonedVoice] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    texts: Counter[str] = field(default_factory=Counter)
    billed: Counter[str] = field(default_factory=Counter)  # texts answered with audio
    in_flight: int = 0
    max_in_flight: int = 0
    timestamps_lead_s: float = DEFAULT_TIMESTAMPS_LEAD_S
    timestamps_tail_s: float = DEFAULT_TIMESTAMPS_TAIL_S
    timestamps_tail_dbfs: float = DEFAULT_TIMESTAMPS_TAIL_DBFS
    timed: dict[str, TimedSpeech] = field(default_factory=dict)  # last answer per text
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


class FakeElevenLabs:
    """The fake server, on 127.0.0.1 and a free port (or `port`), served from a daemon thread.

    Binding happens here, so a `port` another process holds raises OSError at construction.
    """

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        voices: Iterable[str] = DEFAULT_VOICES,
        port: int = 0,
        *,
        timestamps_lead_s: float = DEFAULT_TIMESTAMPS_LEAD_S,
        timestamps_tail_s: float = DEFAULT_TIMESTAMPS_TAIL_S,
        timestamps_tail_dbfs: float = DEFAULT_TIMESTAMPS_TAIL_DBFS,
    ) -> None:
        self._state = _State(
            api_key=api_key,
            voices=set(voices),
            timestamps_lead_s=timestamps_lead_s,
            timestamps_tail_s=timestamps_tail_s,
            timestamps_tail_dbfs=timestamps_tail_dbfs,
        )
        state = self._state

        class Handler(_Handler):
            shared = state

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-elevenlabs", daemon=True
        )

    # --- lifecycle ---

    def start(self) -> FakeElevenLabs:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._state.stopping.set()  # wakes hanging handlers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeElevenLabs:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- programming and inspection ---

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_key(self) -> str:
        return self._state.api_key

    def add_voice(self, voice_id: str) -> None:
        with self._state.lock:
            self._state.voices.add(voice_id)

    def script(self, *responses: Scripted) -> None:
        """Queue answers for the next requests, one each, before normal service resumes."""
        with self._state.lock:
            self._state.scripted.extend(responses)

    def script_clone(self, *responses: Scripted) -> None:
        """Queue answers for the next voice-clone requests, one each."""
        with self._state.lock:
            self._state.clone_scripted.extend(responses)

    def reset(self) -> None:
        """Forget calls, requests, clones and unused scripted answers (between tests)."""
        with self._state.lock:
            self._state.scripted.clear()
            self._state.clone_scripted.clear()
            self._state.clone_requests.clear()
            self._state.voices.difference_update(self._state.cloned)
            self._state.cloned.clear()
            self._state.requests.clear()
            self._state.texts.clear()
            self._state.billed.clear()
            self._state.timed.clear()
            self._state.max_in_flight = 0

    @property
    def calls(self) -> int:
        with self._state.lock:
            return len(self._state.requests)

    def calls_for(self, text: str) -> int:
        with self._state.lock:
            return self._state.texts[text]

    @property
    def billed(self) -> int:
        """Requests answered with audio: what ElevenLabs charges characters for."""
        with self._state.lock:
            return sum(self._state.billed.values())

    def billed_for(self, text: str) -> int:
        with self._state.lock:
            return self._state.billed[text]

    def requests_for(self, text: str) -> list[RecordedRequest]:
        with self._state.lock:
            return [
                r
                for r in self._state.requests
                if isinstance(r.body, dict) and r.body.get("text") == text
            ]

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def timed(self, text: str) -> TimedSpeech:
        """How the last with-timestamps answer for `text` was made (KeyError: none was)."""
        with self._state.lock:
            return self._state.timed[text]

    @property
    def clone_calls(self) -> int:
        """Voice-clone requests that arrived, whatever their answer."""
        with self._state.lock:
            return len(self._state.clone_requests)

    @property
    def clone_requests(self) -> list[CloneRequest]:
        with self._state.lock:
            return list(self._state.clone_requests)

    @property
    def clones(self) -> dict[str, ClonedVoice]:
        """The voices it cloned, by voice id."""
        with self._state.lock:
            return dict(self._state.cloned)

    @property
    def max_in_flight(self) -> int:
        """The most text-to-speech requests it was serving at the same time."""
        with self._state.lock:
            return self._state.max_in_flight


class _Handler(BaseHTTPRequestHandler):
    shared: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean

    def do_GET(self) -> None:
        self._send_json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        match = _PATH.match(url.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if url.path == _CLONE_PATH:
            self._clone(raw)
            return
        if match is None:
            self._send_json(404, {"detail": "Not Found"})
            return
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        state = self.shared
        with state.lock:
            state.requests.append(
                RecordedRequest(
                    method="POST",
                    path=url.path,
                    voice_id=match["voice_id"],
                    query=query,
                    headers={key.lower(): value for key, value in self.headers.items()},
                    body=body,
                    at=time.monotonic(),
                )
            )
            if isinstance(body, dict) and isinstance(body.get("text"), str):
                state.texts[body["text"]] += 1
            scripted = state.scripted.popleft() if state.scripted else None
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            self._answer(scripted, match["voice_id"], query, body, match["kind"])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to answer
        finally:
            with state.lock:
                state.in_flight -= 1

    def _scripted_or_refused(self, scripted: Scripted | None) -> bool:
        """Answers with the scripted response or an authentication error; False: neither."""
        if scripted is not None:
            if scripted.hang_seconds and self.shared.stopping.wait(scripted.hang_seconds):
                return True
            if scripted.status != 200 or scripted.body is not None:
                self._send_json(scripted.status, scripted.body, scripted.headers)
                return True
        if self.headers.get("xi-api-key") is None:
            self._send_json(
                401,
                _detail(
                    "needs_authorization",
                    "Neither authorization header nor xi-api-key received, please provide one.",
                ),
            )
            return True
        if self.headers.get("xi-api-key") != self.shared.api_key:
            self._send_json(401, unauthorized().body)
            return True
        return False

    def _clone(self, raw: bytes) -> None:
        """`POST /v1/voices/add`: a multipart form with `name` and one or more `files`."""
        fields, files = _multipart(self.headers.get("Content-Type", ""), raw)
        state = self.shared
        with state.lock:
            state.clone_requests.append(
                CloneRequest(
                    fields=fields,
                    files=files,
                    headers={key.lower(): value for key, value in self.headers.items()},
                    at=time.monotonic(),
                )
            )
            scripted = state.clone_scripted.popleft() if state.clone_scripted else None
        try:
            if self._scripted_or_refused(scripted):
                return
            missing = [_missing("name", None)] if "name" not in fields else []
            missing += [] if files else [_missing("files", None)]
            if missing:
                self._send_json(422, {"detail": missing})
                return
            voice_id = "".join(
                secrets.choice(string.ascii_letters + string.digits) for _ in range(20)
            )
            with state.lock:
                state.cloned[voice_id] = ClonedVoice(
                    voice_id, fields["name"], fields.get("remove_background_noise"), files
                )
                state.voices.add(voice_id)
            self._send_json(200, {"voice_id": voice_id, "requires_verification": False})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _answer_timed(self, text: str, fmt: re.Match[str], speed: float) -> None:
        state = self.shared
        audio, timed = _speak_timed(
            text,
            fmt["codec"],
            int(fmt["rate"]),
            fmt["kbps"],
            speed,
            lead_s=state.timestamps_lead_s,
            tail_s=state.timestamps_tail_s,
            tail_dbfs=state.timestamps_tail_dbfs,
        )
        alignment = timed.alignment.to_json()
        # The fake normalizes nothing: its normalized alignment is the alignment.
        body = {
            "audio_base64": base64.b64encode(audio).decode("ascii"),
            "alignment": alignment,
            "normalized_alignment": alignment,
        }
        # Recorded before the answer goes out: a test reads it as soon as its call returns.
        with state.lock:
            state.timed[text] = timed
        self._send_json(200, body, [("request-id", f"fake-{len(state.requests)}")])
        with state.lock:
            state.billed[text] += 1

    def _answer(
        self,
        scripted: Scripted | None,
        voice_id: str,
        query: dict[str, str],
        body: Any,
        kind: str | None = None,
    ) -> None:
        if self._scripted_or_refused(scripted):
            return
        errors = _validate(body)
        if errors:
            self._send_json(422, {"detail": errors})
            return
        output_format = query.get("output_format", "mp3_44100_128")
        fmt = _OUTPUT_FORMAT.match(output_format)
        if fmt is None:
            self._send_json(
                422,
                {"detail": [_invalid(["query", "output_format"], output_format)]},
            )
            return
        if voice_id not in self.shared.voices:
            self._send_json(
                404,
                _detail("voice_not_found", f"A voice with the voice_id {voice_id} was not found."),
            )
            return
        speed = (body.get("voice_settings") or {}).get("speed") or 1.0
        if kind == "/with-timestamps":
            self._answer_timed(body["text"], fmt, float(speed))
            return
        audio, content_type = _speak(
            body["text"], fmt["codec"], int(fmt["rate"]), fmt["kbps"], float(speed)
        )
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(audio)))
        self.send_header("request-id", f"fake-{len(self.shared.requests)}")
        self.end_headers()
        self.wfile.write(audio)
        self.wfile.flush()
        with self.shared.lock:
            self.shared.billed[body["text"]] += 1

    def _send_json(self, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _detail(status: str, message: str) -> dict[str, Any]:
    return {"detail": {"status": status, "message": message}}


def _missing(name: str, given: Any) -> dict[str, Any]:
    return {"type": "missing", "loc": ["body", name], "msg": "Field required", "input": given}


def _invalid(loc: list[str], given: Any) -> dict[str, Any]:
    return {"type": "enum", "loc": loc, "msg": "Input should be a valid format", "input": given}


def _multipart(content_type: str, raw: bytes) -> tuple[dict[str, str], list[UploadedFile]]:
    """The text fields and the `files` parts of a multipart/form-data body."""
    fields: dict[str, str] = {}
    files: list[UploadedFile] = []
    if not content_type.startswith("multipart/form-data"):
        return fields, files
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    assert isinstance(message, EmailMessage)
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(data, bytes):
            continue
        if name == "files":
            files.append(UploadedFile(part.get_filename(), part.get_content_type(), data))
        else:
            fields[name] = data.decode("utf-8", "replace")
    return fields, files


def _validate(body: Any) -> list[dict[str, Any]]:
    """FastAPI-style validation errors of a text-to-speech body (empty when it is fine)."""
    if not isinstance(body, dict):
        return [
            {
                "type": "model_attributes_type",
                "loc": ["body"],
                "msg": "Input should be a valid dictionary or object to extract fields from",
                "input": body,
            }
        ]
    if "text" not in body:
        return [_missing("text", body)]
    if not isinstance(body["text"], str):
        return [
            {
                "type": "string_type",
                "loc": ["body", "text"],
                "msg": "Input should be a valid string",
                "input": body["text"],
            }
        ]
    for name in ("previous_text", "next_text"):
        if body.get(name) is not None and not isinstance(body[name], str):
            return [
                {
                    "type": "string_type",
                    "loc": ["body", name],
                    "msg": "Input should be a valid string",
                    "input": body[name],
                }
            ]
    settings = body.get("voice_settings")
    if settings is not None and not isinstance(settings, dict):
        return [
            {
                "type": "model_attributes_type",
                "loc": ["body", "voice_settings"],
                "msg": "Input should be a valid dictionary or object to extract fields from",
                "input": settings,
            }
        ]
    speed = settings.get("speed") if settings else None
    if speed is not None and not (isinstance(speed, int | float) and 0.7 <= speed <= 1.2):
        # As the API documents voice_settings.speed: 0.7 (slower) to 1.2 (faster).
        return [
            {
                "type": "value_error",
                "loc": ["body", "voice_settings", "speed"],
                "msg": "Value error, speed must be between 0.7 and 1.2",
                "input": speed,
            }
        ]
    return []


_ESPEAK = ("espeak-ng", "-v", "en-us", "-b", "1")


def _speak(
    text: str, codec: str, rate: int, kbps: str | None, speed: float = 1.0
) -> tuple[bytes, str]:
    """`text` spoken by espeak-ng (stdin, no SSML) at `speed` (175 words a minute at 1.0),
    encoded as the output format asks."""
    with tempfile.TemporaryDirectory(prefix="fake-elevenlabs-") as folder:
        wav = Path(folder) / "speech.wav"
        _espeak_wav(text, speed, wav)
        return _encode(wav, Path(folder), codec, rate, kbps)


def _encode(wav: Path, folder: Path, codec: str, rate: int, kbps: str | None) -> tuple[bytes, str]:
    """`wav` as the output format asks, and its content type."""
    out = folder / f"out.{'mp3' if codec == 'mp3' else 'wav'}"
    encode = ["-c:a", "libmp3lame", "-b:a", f"{kbps or 128}k"] if codec == "mp3" else []
    if codec == "pcm":
        encode = ["-f", "s16le", "-c:a", "pcm_s16le"]
    command = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), "-ar", str(rate)]
    subprocess.run(
        [*command, *encode, str(out)],
        capture_output=True,
        check=True,
        timeout=30,
    )
    audio = out.read_bytes()
    content_type = {"mp3": "audio/mpeg", "wav": "audio/wav", "pcm": "audio/pcm"}[codec]
    return audio, content_type


def _espeak_wav(text: str, speed: float, wav: Path) -> None:
    subprocess.run(
        [*_ESPEAK, "-s", str(round(175 * speed)), "--stdin", "-w", str(wav)],
        input=text.encode("utf-8"),
        capture_output=True,
        check=True,
        timeout=30,
    )


def _speak_timed(
    text: str,
    codec: str,
    rate: int,
    kbps: str | None,
    speed: float,
    *,
    lead_s: float,
    tail_s: float,
    tail_dbfs: float,
) -> tuple[bytes, TimedSpeech]:
    """`text` spoken as `_speak` does, with `lead_s` of silence before it and `tail_s` of noise
    after it, and the alignment of its characters to that audio."""
    with tempfile.TemporaryDirectory(prefix="fake-elevenlabs-") as folder:
        spoken = Path(folder) / "speech.wav"
        _espeak_wav(text, speed, spoken)
        with wave.open(str(spoken)) as source:
            params = source.getparams()
            frames = source.readframes(source.getnframes())
        samples = array("h")
        samples.frombytes(frames)
        if sys.byteorder == "big":
            samples.byteswap()
        sr = params.framerate
        loud = [i for i, x in enumerate(samples) if abs(x) > SPEECH_THRESHOLD]
        first, last = (loud[0], loud[-1] + 1) if loud else (0, len(samples))
        lead = round(lead_s * sr)
        # Uniform noise of peak A has an RMS of A / sqrt(3); seeded: the same text, the same audio.
        peak = 10 ** (tail_dbfs / 20) * math.sqrt(3) * 32767
        noise = random.Random(text)
        tail = array("h", (round(noise.uniform(-peak, peak)) for _ in range(round(tail_s * sr))))
        padded = array("h", bytes(2 * lead)) + samples + tail
        if sys.byteorder == "big":
            padded.byteswap()
        whole = Path(folder) / "timed.wav"
        with wave.open(str(whole), "wb") as out:
            out.setparams(params)
            out.writeframes(padded.tobytes())
        audio, _ = _encode(whole, Path(folder), codec, rate, kbps)
    timed = TimedSpeech(
        spoken_end_s=(lead + last) / sr,
        speech_s=len(samples) / sr,
        lead_s=lead / sr,
        tail_s=len(tail) / sr,
        alignment=_alignment(text, (lead + first) / sr, (lead + last) / sr, len(padded) / sr),
    )
    return audio, timed


def _spoken(character: str) -> bool:
    return bool(character.strip()) and not unicodedata.category(character).startswith("P")


def _alignment(text: str, start_s: float, end_s: float, total_s: float) -> Alignment:
    """Characters up to the last spoken one spread evenly over start_s..end_s; what follows it
    (punctuation, spaces) from end_s to the end of the audio. Times in ms, as the API's are."""
    characters = list(text)
    spoken = [i for i, ch in enumerate(characters) if _spoken(ch)]
    count = spoken[-1] + 1 if spoken else 0
    step = (end_s - start_s) / count if count else 0.0
    starts = [start_s + i * step for i in range(count)]
    ends = [start_s + (i + 1) * step for i in range(count)]
    if count:
        ends[-1] = end_s
    starts += [end_s if count else 0.0] * (len(characters) - count)
    ends += [total_s] * (len(characters) - count)
    return Alignment(characters, [round(t, 3) for t in starts], [round(t, 3) for t in ends])
