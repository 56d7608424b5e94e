"""The rep's own voice (`voiceId: "clone"`): an ElevenLabs instant voice clone of their upload.

`voice_to_speak` turns the job's voice id into the one that speaks. For `clone` that is the voice
cloned from the speech of the job's uploaded video, made once per user and upload and reused by
every job of a batch and every later batch of the same video; without ElevenLabs (no key: the
local espeak-ng voice is configured) it is the local voice, `espeak:<GREETINGS_ESPEAK_VOICE>`.

What is made, and kept:

- The speech: the first `voice_clone_seconds` (60) of the upload's first audio track, decoded to
  mono 16-bit WAV at 44.1 kHz with every pause longer than a second cut out (ffmpeg's
  `silenceremove`), run through flows.media's `run_ffmpeg` with the upload opened only as its
  sniffed container (`upload_input_options`). What remains is the speech; with less than
  `voice_clone_min_speech_seconds` (10) of it the job fails `voice-clone-too-short` before
  anything is sent. (ElevenLabs asks for at least a minute of clean speech for its best results.)
- The clone: `client.voices.ivc.create(name=, files=[speech.wav], remove_background_noise=False)`
  (`POST /v1/voices/add`), holding a slot of the `elevenlabs` Prefect concurrency limit as
  synthesis does, its HTTP errors mapped as text-to-speech's are (`clone_error`).
- The record: `voiceClones/{userId}_{sha256 of the object path}` holding `voiceId`, `userId`,
  `inputVideo` and `createdAt`, written by workers only (Admin SDK); firestore.rules give clients
  nothing there (their catch-all denies every path it does not name). Our clients name uploads
  `<sha256 of the content>.<ext>`, so the object path stands for the recording itself.

Never cloning twice, with the simplest pieces that are correct:

1. Within a worker process (a batch's jobs are threads of one flow run) a lock per upload
   (`OncePerKey`): one thread makes the clone, the others wait on the lock and take its voice id.
   Threads that waited through a failed attempt get that failure instead of each calling
   ElevenLabs again; a later job (a retry) tries afresh.
2. Across workers, a lease in the record itself, taken and checked only in Firestore
   transactions (`plan_claim`, `plan_renew`, `plan_finish`, `plan_release`: plain functions of
   the document as read, so a transaction that is retried re-plans from what it reads). A worker
   that finds another's live lease polls the record until its `voiceId` appears, and takes the
   lease over once it lapses (the holder died). The holder renews the lease right before the
   call, so a call starts only under a lease that outlives it (`voice_clone_lease_seconds`, 180,
   against the client's 30 s timeout); a holder whose lease was taken while it waited for a slot
   goes back to waiting. Finishing writes the voice id unless one is there already, which is
   then used. A lease rather than a `create()`-only lock because a lock cannot lapse: a worker
   that died mid-clone would block that upload's clone for ever.

The SDK's own retries are off for the call (`max_retries=0`): its HTTP client repeats a 429 or
5xx twice, but the repeat carries only the files, not the form fields (`name`, ...: elevenlabs
2.78 `core/http_client.py`), which ElevenLabs refuses, and an automatic repeat of a create is how
duplicates are made. Transient failures are retried here instead (twice, 2 s and 4 s apart with
jitter), under the lease. A timeout after ElevenLabs made the voice can still leave one unused
voice in the account: the API has no idempotency key to prevent that.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import socket
import threading
import time
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx
from elevenlabs.core.api_error import ApiError
from elevenlabs.core.parse_error import ParsingError
from google.cloud import firestore

from flows.job import ErrorCode, JobError
from flows.media import FfmpegError, run_ffmpeg, sniff_container, upload_input_options
from flows.settings import Settings
from flows.stages.synthesize import (
    ELEVENLABS_CONCURRENCY_LIMIT,
    _concurrency_slot,
    _provider_message,
    elevenlabs_error,
    elevenlabs_transport_error,
)

if TYPE_CHECKING:
    from elevenlabs import ElevenLabs

    from flows.stages.synthesize import Voices

logger = logging.getLogger(__name__)

CLONE_VOICE_ID = "clone"
VOICE_CLONES = "voiceClones"
# Transient clone failures retried in place: 2 s, then 4 s, each +-50%.
CLONE_RETRIES = 2
CLONE_RETRY_BACKOFF_SECONDS = 2.0
# How often a worker looks whether another worker's clone is done.
CLONE_POLL_SECONDS = 1.0
SPEECH_SAMPLE_RATE = 44100
# Pauses longer than a second (quieter than -50 dBFS) are cut out: what is left is the speech.
SPEECH_FILTER = (
    "silenceremove=start_periods=1:start_threshold=-50dB"
    ":stop_periods=-1:stop_duration=1:stop_threshold=-50dB:stop_silence=0.3"
)
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_PROVIDER_VOICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

R = TypeVar("R")
T = TypeVar("T")


# --- What is cloned, and its record ---------------------------------------------------------------


@dataclass(frozen=True)
class CloneKey:
    """A clone's identity: whose, and which upload (by object path)."""

    user_id: str
    object_path: str

    @property
    def path_hash(self) -> str:
        return hashlib.sha256(self.object_path.encode()).hexdigest()

    @property
    def record_id(self) -> str:
        """`{userId}_{sha256 of the object path}` (a uid that is no plain id is hashed too)."""
        user = self.user_id
        if not _SAFE_ID.fullmatch(user):
            user = hashlib.sha256(user.encode()).hexdigest()
        return f"{user}_{self.path_hash}"


@dataclass(frozen=True)
class CloneSource:
    """A job's upload, downloaded: what the voice is cloned from."""

    user_id: str
    object_path: str  # user-uploads/<uid>/<sha256>.<ext>
    video: Path
    container: str  # MediaInfo.container ("mov" or "matroska"); empty: sniffed from the file
    work_dir: Path  # the job's scratch folder, for the speech sample

    @property
    def key(self) -> CloneKey:
        return CloneKey(self.user_id, self.object_path)


@dataclass(frozen=True)
class StoredClone:
    voice_id: str
    requires_verification: bool = False


@dataclass(frozen=True)
class Claim:
    """What a claim found: the clone made already, another worker's live lease, or neither
    (then the lease is the claimant's now)."""

    done: StoredClone | None = None
    held_until: datetime | None = None

    @property
    def ours(self) -> bool:
        return self.done is None and self.held_until is None


@dataclass(frozen=True)
class Write:
    """The record's next content, written whole; `None` deletes it."""

    doc: dict[str, Any] | None


Plan = Callable[[dict[str, Any] | None], tuple[R, Write | None]]


def stored_clone(doc: dict[str, Any] | None) -> StoredClone | None:
    """The finished clone a record holds, if it holds one."""
    if not doc or not isinstance(doc.get("voiceId"), str) or not doc["voiceId"]:
        return None
    return StoredClone(doc["voiceId"], bool(doc.get("requiresVerification", False)))


def plan_claim(
    doc: dict[str, Any] | None, *, key: CloneKey, owner: str, now: datetime, lease_s: float
) -> tuple[Claim, Write | None]:
    """Take the lease unless the clone is made or another owner's lease is still live."""
    done = stored_clone(doc)
    if done is not None:
        return Claim(done=done), None
    if doc is not None and doc.get("leaseOwner") not in (None, owner):
        until = doc.get("leaseUntil")
        if isinstance(until, datetime) and until > now:
            return Claim(held_until=until), None
    lease = {
        "userId": key.user_id,
        "inputVideo": key.object_path,
        "leaseOwner": owner,
        "leaseUntil": now + timedelta(seconds=lease_s),
    }
    return Claim(), Write(lease)


def plan_renew(
    doc: dict[str, Any] | None, *, owner: str, now: datetime, lease_s: float
) -> tuple[bool, Write | None]:
    """Extend `owner`'s lease; False if it is no longer theirs (or the clone is made)."""
    if doc is None or stored_clone(doc) is not None or doc.get("leaseOwner") != owner:
        return False, None
    return True, Write({**doc, "leaseUntil": now + timedelta(seconds=lease_s)})


def plan_finish(
    doc: dict[str, Any] | None, *, key: CloneKey, made: StoredClone, now: datetime
) -> tuple[StoredClone, Write | None]:
    """Record `made` (lease fields dropped), unless a clone is recorded already: that one wins."""
    done = stored_clone(doc)
    if done is not None:
        return done, None
    record: dict[str, Any] = {
        "voiceId": made.voice_id,
        "userId": key.user_id,
        "inputVideo": key.object_path,
        "createdAt": now,
    }
    if made.requires_verification:
        record["requiresVerification"] = True
    return made, Write(record)


def plan_release(doc: dict[str, Any] | None, *, owner: str) -> tuple[None, Write | None]:
    """Drop `owner`'s lease after a failed attempt, so another job may try at once."""
    if doc is not None and stored_clone(doc) is None and doc.get("leaseOwner") == owner:
        return None, Write(None)
    return None, None


def usable(clone: StoredClone) -> str:
    """The clone's voice id, unless ElevenLabs will not let it speak yet."""
    if clone.requires_verification:
        raise JobError(
            ErrorCode.TTS_REJECTED,
            "ElevenLabs will not speak with the voice cloned from this recording until it is "
            "verified (it resembles a protected voice): choose another voice.",
            retryable=False,
        )
    return clone.voice_id


def check_speech(seconds: float, min_seconds: float, window_s: float) -> None:
    """`voice-clone-too-short` when the sample holds too little speech to clone a voice from."""
    if seconds < min_seconds:
        raise JobError(
            ErrorCode.VOICE_CLONE_TOO_SHORT,
            f"The recording has only {seconds:.1f} s of speech in its first {window_s:g} s; "
            f"cloning your voice needs at least {min_seconds:g} s (a minute is best). Upload a "
            "recording in which you speak for longer, or choose a voice.",
            retryable=False,
        )


# --- The store ------------------------------------------------------------------------------------


class CloneStore(Protocol):
    """Where clone records live: `read` one, or `apply` a plan to one atomically."""

    def read(self, key: CloneKey) -> dict[str, Any] | None: ...

    def apply(self, key: CloneKey, plan: Plan[R]) -> R:
        """Reads the record, writes what `plan` says, returns its result; all or nothing.
        `plan` may run more than once (a transaction retried on contention)."""
        ...


class FirestoreCloneStore:
    """`voiceClones/{recordId}` through the Admin SDK: a plan per Firestore transaction."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def _ref(self, key: CloneKey) -> firestore.DocumentReference:
        return self._db.collection(VOICE_CLONES).document(key.record_id)

    def read(self, key: CloneKey) -> dict[str, Any] | None:
        snapshot = self._ref(key).get()
        return snapshot.to_dict() if snapshot.exists else None

    def apply(self, key: CloneKey, plan: Plan[R]) -> R:
        ref = self._ref(key)

        @firestore.transactional
        def run(transaction: firestore.Transaction) -> R:
            snapshot = ref.get(transaction=transaction)
            result, write = plan(snapshot.to_dict() if snapshot.exists else None)
            if write is not None:
                if write.doc is None:
                    transaction.delete(ref)
                else:
                    transaction.set(ref, write.doc)
            return result

        result: R = run(self._db.transaction())
        return result


# --- One at a time per upload, in this process ----------------------------------------------------


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0
    failures: int = 0
    failure: JobError | None = None
    result: Any = None


class OncePerKey:
    """Runs work for a key one thread at a time; those that waited share its outcome.

    A thread that waited while another succeeded takes that result; one that waited through a
    failure (a JobError) gets the same error. A thread that arrives later runs the work again.
    Entries live while someone uses them.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def run(self, key: str, work: Callable[[], T]) -> T:
        with self._guard:
            entry = self._entries.setdefault(key, _Entry())
            entry.users += 1
            failures_seen = entry.failures
        try:
            with entry.lock:
                if entry.result is not None:
                    result: T = entry.result
                    return result
                if entry.failures != failures_seen and entry.failure is not None:
                    error = entry.failure
                    raise JobError(error.code, error.message, retryable=error.retryable)
                try:
                    entry.result = work()
                except JobError as error:
                    entry.failures += 1
                    entry.failure = error
                    raise
                result = entry.result
                return result
        finally:
            with self._guard:
                entry.users -= 1
                if entry.users == 0:
                    del self._entries[key]


# --- The speech and the clone call ----------------------------------------------------------------


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        frames, rate = wav.getnframes(), wav.getframerate()
    return frames / rate if rate else 0.0


def extract_speech(video: Path, container: str, dest: Path, window_s: float) -> float:
    """The speech of the upload's first `window_s` as a mono WAV at `dest`; its seconds."""
    opened_as = upload_input_options(container or sniff_container(video))
    args = [
        *opened_as, "-t", f"{window_s:g}", "-i", str(video),
        "-map", "0:a:0", "-vn", "-sn", "-dn", "-af", SPEECH_FILTER,
        "-ac", "1", "-ar", str(SPEECH_SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "wav", str(dest),
    ]  # fmt: skip
    try:
        run_ffmpeg(args)
    except FfmpegError as exc:
        raise JobError(
            ErrorCode.INTERNAL,
            f"could not take the speech from the recording to clone the voice: {exc.stderr_tail}",
            retryable=False,
        ) from exc
    return wav_seconds(dest)


def clone_error(status_code: int | None, body: Any) -> JobError:
    """The job failure an ElevenLabs error on `POST /v1/voices/add` means.

    As for text-to-speech (`elevenlabs_error`): 401/403 `tts-auth`, 429/408/5xx retryable
    `tts-unavailable`; any other refusal (400 `voice_limit_reached`, 422, ...) is `tts-rejected`
    with ElevenLabs' words, never `invalid-voice` (the job's voice id is no ElevenLabs id).
    """
    if status_code is not None and 200 <= status_code < 300:
        return JobError(
            ErrorCode.TTS_UNAVAILABLE,
            f"ElevenLabs answered the voice clone with an unreadable body (HTTP {status_code})",
            retryable=False,
        )
    error = elevenlabs_error(status_code, body, CLONE_VOICE_ID)
    if error.code not in (ErrorCode.INVALID_VOICE, ErrorCode.TTS_REJECTED):
        return error
    _, message = _provider_message(body)
    said = f": {message}" if message else ""
    return JobError(
        ErrorCode.TTS_REJECTED,
        f"ElevenLabs refused to clone the voice from this recording (HTTP {status_code}){said}",
        retryable=False,
    )


def create_clone(client: ElevenLabs, name: str, description: str, speech: Path) -> StoredClone:
    """One instant voice clone from `speech`; errors as JobErrors. The SDK does not retry it."""
    try:
        made = client.voices.ivc.create(
            name=name,
            files=[(speech.name, speech.read_bytes(), "audio/wav")],
            remove_background_noise=False,
            description=description,
            request_options={"max_retries": 0},
        )
    except ApiError as exc:
        raise clone_error(exc.status_code, exc.body) from exc
    except ParsingError as exc:
        raise clone_error(exc.status_code or 200, exc.body) from exc
    except httpx.HTTPError as exc:
        raise elevenlabs_transport_error(exc) from exc
    voice_id = getattr(made, "voice_id", None)
    if not isinstance(voice_id, str) or not _PROVIDER_VOICE_ID.fullmatch(voice_id):
        raise clone_error(200, None)
    return StoredClone(voice_id, bool(getattr(made, "requires_verification", False)))


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- The cloner -----------------------------------------------------------------------------------


class VoiceCloner(Protocol):
    def voice_id_for(self, source: CloneSource) -> str:
        """The voice id cloned from `source` (made now unless it was made before)."""
        ...


@dataclass(frozen=True)
class CloneLimits:
    window_s: float = 60.0
    min_speech_s: float = 10.0
    lease_s: float = 180.0
    wait_s: float = 1200.0
    poll_s: float = CLONE_POLL_SECONDS
    retries: int = CLONE_RETRIES
    backoff_s: float = CLONE_RETRY_BACKOFF_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings) -> CloneLimits:
        return cls(
            window_s=settings.voice_clone_seconds,
            min_speech_s=settings.voice_clone_min_speech_seconds,
            lease_s=settings.voice_clone_lease_seconds,
            wait_s=settings.voice_clone_wait_seconds,
        )


class ElevenLabsCloner:
    """Clones a rep's voice from an upload once (see the module's docstring for how)."""

    def __init__(
        self,
        client: ElevenLabs,
        store: CloneStore,
        limits: CloneLimits | None = None,
        *,
        concurrency_limit: str | None = ELEVENLABS_CONCURRENCY_LIMIT,
        extract: Callable[[Path, str, Path, float], float] = extract_speech,
        now: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._store = store
        self.limits = limits or CloneLimits()
        self.concurrency_limit = concurrency_limit
        self._extract = extract
        self._now = now
        self._sleep = sleep
        self._once = OncePerKey()

    def voice_id_for(self, source: CloneSource) -> str:
        key = source.key
        found = stored_clone(self._store.read(key))
        if found is None:
            found = self._once.run(key.record_id, partial(self._made_once, key, source))
        return usable(found)

    def _made_once(self, key: CloneKey, source: CloneSource) -> StoredClone:
        """The clone for `key`: recorded already, made by another worker, or made here."""
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        limits = self.limits
        deadline = self._now() + timedelta(seconds=limits.wait_s)
        while True:
            claim = self._store.apply(
                key,
                partial(plan_claim, key=key, owner=owner, now=self._now(), lease_s=limits.lease_s),
            )
            if claim.done is not None:
                return claim.done
            if not claim.ours:
                if self._now() > deadline:
                    raise JobError(
                        ErrorCode.TTS_UNAVAILABLE,
                        f"another worker has been cloning this recording's voice for more than "
                        f"{limits.wait_s:g} s",
                    )
                self._sleep(limits.poll_s)
                continue
            try:
                made = self._make(key, source, owner)
            except BaseException:
                self._release(key, owner)
                raise
            if made is not None:
                return made
            logger.info("clone %s: the lease lapsed before the call; waiting", key.record_id)

    def _make(self, key: CloneKey, source: CloneSource, owner: str) -> StoredClone | None:
        """Makes and records the clone under `owner`'s lease; None if the lease was lost."""
        limits = self.limits
        speech = source.work_dir / "clone-speech.wav"
        seconds = self._extract(source.video, source.container, speech, limits.window_s)
        check_speech(seconds, limits.min_speech_s, limits.window_s)
        made = self._call(key, owner, speech)
        if made is None:
            return None
        logger.info(
            "cloned the voice of %s from %.1f s of speech: %s", key.object_path, seconds, made
        )
        recorded = self._store.apply(key, partial(plan_finish, key=key, made=made, now=self._now()))
        if recorded != made:
            logger.warning(
                "clone %s: another worker recorded %s first; ElevenLabs voice %s is unused",
                key.record_id,
                recorded.voice_id,
                made.voice_id,
            )
        return recorded

    def _call(self, key: CloneKey, owner: str, speech: Path) -> StoredClone | None:
        """The clone call, retried while transient, each try under a renewed lease (None: the
        lease is another worker's now)."""
        limits = self.limits
        name = f"greetings {key.user_id[:28]} {key.path_hash[:12]}"
        description = f"Instant clone of {key.object_path} ({VOICE_CLONES}/{key.record_id})"
        attempt = 0
        while True:
            try:
                with _concurrency_slot(self.concurrency_limit):
                    renew = partial(
                        plan_renew, owner=owner, now=self._now(), lease_s=limits.lease_s
                    )
                    if not self._store.apply(key, renew):
                        return None
                    return create_clone(self._client, name, description, speech)
            except JobError as error:
                if not error.retryable or attempt >= limits.retries:
                    raise
                delay = limits.backoff_s * 2**attempt * random.uniform(0.5, 1.5)
                logger.info("clone %s: %s; trying again in %.1f s", key.record_id, error, delay)
                self._sleep(delay)
                attempt += 1

    def _release(self, key: CloneKey, owner: str) -> None:
        try:
            self._store.apply(key, partial(plan_release, owner=owner))
        except Exception:  # the lease lapses on its own; the job's own error matters more
            logger.exception("clone %s: could not release the lease", key.record_id)


def build_cloner(
    client: ElevenLabs | None, store: CloneStore, settings: Settings
) -> ElevenLabsCloner | None:
    """The worker's cloner: only with ElevenLabs (None: the local voice speaks for `clone`)."""
    if client is None:
        return None
    return ElevenLabsCloner(client, store, CloneLimits.from_settings(settings))


# --- The stage's entry ----------------------------------------------------------------------------


def voice_to_speak(voices: Voices, voice_id: str, source: CloneSource) -> str:
    """The voice id that speaks for the job's `voice_id`: `clone` becomes the rep's cloned
    voice, or the local voice where no ElevenLabs is configured; any other id stays itself."""
    if voice_id != CLONE_VOICE_ID:
        return voice_id
    if voices.cloner is None:
        logger.info("no ElevenLabs configured: the local voice speaks for %r", CLONE_VOICE_ID)
        return voices.local_voice_id
    return voices.cloner.voice_id_for(source)
