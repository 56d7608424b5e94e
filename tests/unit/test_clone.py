"""`voiceId: "clone"`: the rep's voice cloned from their upload, once per user and upload.

ElevenLabs is the real SDK talking to `tests.support.fake_elevenlabs` over HTTP; the speech is
taken from generated videos by real ffmpeg. The clone store is `MemoryCloneStore` below: the
Firestore store's logic is the same plain plans (`plan_claim`, ...) run in a transaction, which
only the stack can exercise. Two stores over one `MemoryBacking` are two workers.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elevenlabs import ElevenLabs, VoiceSettings

from flows import media, pipeline
from flows.clients import Clients
from flows.job import ErrorCode, JobError, JobStatus
from flows.media import MediaInfo, UserSlots, probe_upload
from flows.settings import Settings
from flows.stages import clone as stage
from flows.stages.clone import (
    CLONE_VOICE_ID,
    Claim,
    CloneKey,
    CloneLimits,
    CloneSource,
    ElevenLabsCloner,
    Plan,
    StoredClone,
    Write,
    build_cloner,
    clone_error,
    extract_speech,
    plan_claim,
    plan_finish,
    plan_release,
    plan_renew,
    voice_to_speak,
)
from flows.stages.render import RenderReport
from flows.stages.synthesize import ElevenLabsVoice, SpeechFile, build_voices
from flows.stages.upload import StoredResult
from flows.transitions import Transition
from tests.support.fake_elevenlabs import (
    DEFAULT_VOICES,
    FakeElevenLabs,
    Scripted,
    server_error,
    system_busy,
    too_many_concurrent_requests,
    unauthorized,
    unprocessable,
    voice_limit_reached,
)
from tests.support.mediacheck import rendered

USER = "rep-1"
UPLOAD = f"user-uploads/{USER}/{'ab' * 32}.mp4"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


# --- The in-memory store (unit tests only) --------------------------------------------------------


@dataclass
class MemoryBacking:
    """What Firestore is to several workers: one set of documents, changed atomically."""

    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class MemoryCloneStore:
    def __init__(self, backing: MemoryBacking) -> None:
        self.backing = backing

    def read(self, key: CloneKey) -> dict[str, Any] | None:
        with self.backing.lock:
            doc = self.backing.docs.get(key.record_id)
            return dict(doc) if doc is not None else None

    def apply(self, key: CloneKey, plan: Plan[Any]) -> Any:
        with self.backing.lock:
            doc = self.backing.docs.get(key.record_id)
            result, write = plan(dict(doc) if doc is not None else None)
            if write is not None:
                if write.doc is None:
                    self.backing.docs.pop(key.record_id, None)
                else:
                    self.backing.docs[key.record_id] = dict(write.doc)
            return result


# --- Fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeElevenLabs]:
    with FakeElevenLabs() as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeElevenLabs) -> FakeElevenLabs:
    fake_server.reset()
    return fake_server


def make_clip(path: Path, tone_s: float, silence_s: float) -> Path:
    """A small H.264 + AAC video: `tone_s` of a steady voice-like tone, then `silence_s` silence."""
    total = tone_s + silence_s
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-nostdin", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10",
            "-f", "lavfi", "-i", f"sine=frequency=180:sample_rate=48000:duration={tone_s:g}",
            "-filter_complex", f"[1:a]apad=whole_dur={total:g}[a]",
            "-map", "0:v", "-map", "[a]", "-t", f"{total:g}",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-ac", "2", str(path),
        ],
        capture_output=True,
        check=True,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "speech": make_clip(folder / "speech.mp4", 20.0, 0.0),
        "little": make_clip(folder / "little.mp4", 5.0, 15.0),
    }


def source(video: Path, work_dir: Path, user: str = USER, upload: str = UPLOAD) -> CloneSource:
    work_dir.mkdir(parents=True, exist_ok=True)
    return CloneSource(user, upload, video, "", work_dir)


def client(fake: FakeElevenLabs, api_key: str | None = None) -> ElevenLabs:
    return ElevenLabs(api_key=api_key or fake.api_key, base_url=fake.base_url, timeout=10)


def cloner(
    fake: FakeElevenLabs,
    store: MemoryCloneStore,
    *,
    api_key: str | None = None,
    sleeps: list[float] | None = None,
    **limits: Any,
) -> ElevenLabsCloner:
    """A worker's cloner; no Prefect server here, so no `elevenlabs` limit (see its own test)."""
    slept = sleeps if sleeps is not None else []

    def sleep(seconds: float) -> None:  # backoffs are recorded, not waited for
        slept.append(seconds)
        time.sleep(min(seconds, 0.02))

    return ElevenLabsCloner(
        client(fake, api_key),
        store,
        CloneLimits(**{"poll_s": 0.02, **limits}),
        concurrency_limit=None,
        sleep=sleep,
    )


def settings(**values: Any) -> Settings:
    base: dict[str, Any] = {"tts_provider": "auto", "elevenlabs_api_key": None}
    return Settings(_env_file=None, **{**base, **values})  # type: ignore[call-arg]


def speaks(fake: FakeElevenLabs, voice_id: str) -> bytes:
    """The greeting in `voice_id`, through the same ElevenLabs voice the worker uses."""
    voice = ElevenLabsVoice(
        client(fake),
        "eleven_multilingual_v2",
        "mp3_44100_128",
        VoiceSettings(stability=0.5, similarity_boost=0.75),
        concurrency_limit=None,
    )
    return voice.synthesize("Hey Ann,", voice_id).audio


# --- Keys and the store's plans -------------------------------------------------------------------


def test_a_clone_is_keyed_by_user_and_object_path() -> None:
    key = CloneKey(USER, UPLOAD)
    assert key.record_id == f"{USER}_{hashlib.sha256(UPLOAD.encode()).hexdigest()}"
    assert CloneKey("rep-2", UPLOAD).record_id != key.record_id
    assert CloneKey(USER, UPLOAD.replace(".mp4", ".webm")).record_id != key.record_id
    odd = CloneKey("a/b", UPLOAD).record_id  # never a path inside voiceClones/
    assert "/" not in odd and odd.endswith(key.path_hash)


def test_plans_claim_renew_finish_and_release() -> None:
    key = CloneKey(USER, UPLOAD)
    claim, write = plan_claim(None, key=key, owner="a", now=NOW, lease_s=60)
    assert claim.ours and write is not None and write.doc is not None
    lease = write.doc
    assert lease == {
        "userId": USER,
        "inputVideo": UPLOAD,
        "leaseOwner": "a",
        "leaseUntil": NOW + timedelta(seconds=60),
    }
    # Another worker waits while the lease is live, and takes it over once it lapsed.
    held, none = plan_claim(lease, key=key, owner="b", now=NOW, lease_s=60)
    assert held == Claim(held_until=NOW + timedelta(seconds=60)) and none is None
    later = NOW + timedelta(seconds=61)
    taken, write = plan_claim(lease, key=key, owner="b", now=later, lease_s=60)
    assert taken.ours and write is not None and write.doc is not None
    assert write.doc["leaseOwner"] == "b"
    # Only the lease's owner renews it.
    assert plan_renew(write.doc, owner="a", now=later, lease_s=60) == (False, None)
    renewed, write = plan_renew(lease, owner="a", now=later, lease_s=60)
    assert renewed and write is not None and write.doc is not None
    assert write.doc["leaseUntil"] == later + timedelta(seconds=60)
    # Finishing writes exactly the record, lease fields gone.
    made = StoredClone("v" * 20)
    recorded, write = plan_finish(lease, key=key, made=made, now=later)
    assert recorded == made and write == Write(
        {"voiceId": "v" * 20, "userId": USER, "inputVideo": UPLOAD, "createdAt": later}
    )
    assert write.doc is not None
    done = write.doc
    # The first recorded clone wins; a finished record is never released or re-claimed.
    assert plan_finish(done, key=key, made=StoredClone("w" * 20), now=later) == (made, None)
    assert plan_claim(done, key=key, owner="c", now=later, lease_s=60) == (Claim(done=made), None)
    assert plan_release(done, owner="a") == (None, None)
    assert plan_release(lease, owner="b") == (None, None)
    assert plan_release(lease, owner="a") == (None, Write(None))


# --- The speech -----------------------------------------------------------------------------------


def wav(path: Path) -> tuple[int, int, float]:
    with wave.open(str(path), "rb") as sample:
        return sample.getnchannels(), sample.getframerate(), sample.getnframes() / 44100


def test_the_speech_is_mono_wav_of_the_first_seconds_without_long_pauses(
    clips: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[list[str]] = []
    run = media.run_ffmpeg

    def recording(args: list[str], **kwargs: Any) -> bytes:
        commands.append(list(args))
        return run(args, **kwargs)

    monkeypatch.setattr(stage, "run_ffmpeg", recording)
    dest = tmp_path / "speech.wav"
    seconds = extract_speech(clips["speech"], "", dest, 60.0)
    assert seconds == pytest.approx(20.0, abs=0.3)
    channels, rate, length = wav(dest)
    assert (channels, rate) == (1, 44100) and length == pytest.approx(seconds)
    # Opened only as the container its bytes claim, local files only.
    args = commands[0]
    before_input = args[: args.index("-i")]
    assert before_input[:6] == [
        "-f", "mov", "-format_whitelist", "mov,mp4,m4a,3gp,3g2,mj2", "-protocol_whitelist", "file",
    ]  # fmt: skip
    # At most the window; pauses over a second are not speech.
    assert extract_speech(clips["speech"], "mov", dest, 8.0) == pytest.approx(8.0, abs=0.3)
    assert extract_speech(clips["little"], "mov", dest, 60.0) == pytest.approx(5.0, abs=0.6)


# --- Cloning once ---------------------------------------------------------------------------------


def test_a_batch_asking_at_once_clones_once_and_the_voice_speaks(
    fake: FakeElevenLabs, clips: dict[str, Path], tmp_path: Path
) -> None:
    backing = MemoryBacking()
    worker = cloner(fake, MemoryCloneStore(backing))
    fake.script_clone(Scripted(hang_seconds=0.5))  # slow enough for every thread to ask meanwhile
    with ThreadPoolExecutor(20) as pool:
        ids = list(
            pool.map(
                lambda n: worker.voice_id_for(source(clips["speech"], tmp_path / f"job-{n}")),
                range(20),
            )
        )
    assert fake.clone_calls == 1
    assert len(set(ids)) == 1 and ids[0] in fake.clones
    voice_id = ids[0]
    made = fake.clones[voice_id]
    assert made.remove_background_noise == "false"
    assert [(f.content_type, f.filename) for f in made.files] == [("audio/wav", "clone-speech.wav")]
    request = fake.clone_requests[0]
    assert request.fields["name"].startswith(f"greetings {USER} ")
    # The record is what the server keeps; nothing of the lease is left.
    (record,) = backing.docs.values()
    assert set(record) == {"voiceId", "userId", "inputVideo", "createdAt"}
    assert (record["voiceId"], record["userId"], record["inputVideo"]) == (voice_id, USER, UPLOAD)
    # A retry of a job, later, and another worker over the same records: no second clone.
    assert worker.voice_id_for(source(clips["speech"], tmp_path / "retry")) == voice_id
    other = cloner(fake, MemoryCloneStore(backing))
    assert other.voice_id_for(source(clips["speech"], tmp_path / "other")) == voice_id
    assert fake.clone_calls == 1
    # The cloned voice speaks.
    assert speaks(fake, voice_id)[:3] == b"ID3"
    # Another upload, or another user's, is another clone.
    second = worker.voice_id_for(source(clips["speech"], tmp_path / "b", upload=UPLOAD + "4"))
    third = worker.voice_id_for(source(clips["speech"], tmp_path / "c", user="rep-2"))
    assert len({voice_id, second, third}) == 3 and fake.clone_calls == 3


def test_two_workers_asking_at_once_clone_once(
    fake: FakeElevenLabs, clips: dict[str, Path], tmp_path: Path
) -> None:
    backing = MemoryBacking()
    workers = [cloner(fake, MemoryCloneStore(backing)) for _ in range(2)]
    fake.script_clone(Scripted(hang_seconds=0.5))
    with ThreadPoolExecutor(16) as pool:
        ids = list(
            pool.map(
                lambda n: workers[n % 2].voice_id_for(
                    source(clips["speech"], tmp_path / f"job-{n}")
                ),
                range(16),
            )
        )
    assert fake.clone_calls == 1 and len(set(ids)) == 1


def test_a_worker_waits_for_another_workers_clone(
    fake: FakeElevenLabs, clips: dict[str, Path], tmp_path: Path
) -> None:
    backing, key = MemoryBacking(), CloneKey(USER, UPLOAD)
    elsewhere = MemoryCloneStore(backing)
    now = datetime.now(UTC)
    claim = elsewhere.apply(
        key, lambda doc: plan_claim(doc, key=key, owner="w1", now=now, lease_s=60)
    )
    assert claim.ours
    made = StoredClone(sorted(DEFAULT_VOICES)[0])

    def finish_later() -> None:
        time.sleep(0.3)
        elsewhere.apply(key, lambda doc: plan_finish(doc, key=key, made=made, now=now))

    finisher = threading.Thread(target=finish_later)
    finisher.start()
    here = cloner(fake, MemoryCloneStore(backing))
    assert here.voice_id_for(source(clips["speech"], tmp_path)) == made.voice_id
    finisher.join()
    assert fake.clone_calls == 0


def test_a_lapsed_lease_is_taken_over(
    fake: FakeElevenLabs, clips: dict[str, Path], tmp_path: Path
) -> None:
    backing, key = MemoryBacking(), CloneKey(USER, UPLOAD)
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    MemoryCloneStore(backing).apply(
        key, lambda doc: plan_claim(doc, key=key, owner="dead", now=long_ago, lease_s=60)
    )
    voice_id = cloner(fake, MemoryCloneStore(backing)).voice_id_for(
        source(clips["speech"], tmp_path)
    )
    assert fake.clone_calls == 1 and backing.docs[key.record_id]["voiceId"] == voice_id


def test_a_worker_whose_lease_was_taken_meanwhile_does_not_clone(
    fake: FakeElevenLabs, clips: dict[str, Path], tmp_path: Path
) -> None:
    """Its lease lapsed (say, while it waited for a slot) and another worker took over: the
    renewal before the call fails, so it waits for the other's clone instead of making one."""
    backing, key = MemoryBacking(), CloneKey(USER, UPLOAD)
    other = MemoryCloneStore(backing)
    made = StoredClone(sorted(DEFAULT_VOICES)[0])

    def extract_while_taken_over(video: Path, container: str, dest: Path, window: float) -> float:
        later = datetime.now(UTC) + timedelta(hours=1)  # as if our lease had lapsed
        claim = other.apply(
            key, lambda doc: plan_claim(doc, key=key, owner="w2", now=later, lease_s=60)
        )
        assert claim.ours
        threading.Timer(
            0.2,
            lambda: other.apply(key, lambda doc: plan_finish(doc, key=key, made=made, now=later)),
        ).start()
        return extract_speech(video, container, dest, window)

    worker = ElevenLabsCloner(
        client(fake),
        MemoryCloneStore(backing),
        CloneLimits(poll_s=0.02),
        concurrency_limit=None,
        extract=extract_while_taken_over,
    )
    assert worker.voice_id_for(source(clips["speech"], tmp_path)) == made.voice_id
    assert fake.clone_calls == 0


def test_waiting_for_a_live_lease_has_an_end(
    fake: FakeElevenLabs, clips: dict[str, Path], tmp_path: Path
) -> None:
    backing, key = MemoryBacking(), CloneKey(USER, UPLOAD)
    now = datetime.now(UTC)
    MemoryCloneStore(backing).apply(
        key, lambda doc: plan_claim(doc, key=key, owner="w1", now=now, lease_s=600)
    )
    with pytest.raises(JobError) as caught:
        cloner(fake, MemoryCloneStore(backing), wait_s=0.2).voice_id_for(
            source(clips["speech"], tmp_path)
        )
    assert (caught.value.code, caught.value.retryable) == (ErrorCode.TTS_UNAVAILABLE, True)
    assert fake.clone_calls == 0


def test_the_call_holds_an_elevenlabs_slot(
    fake: FakeElevenLabs,
    clips: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held: list[str | None] = []

    @contextmanager
    def slot(limit: str | None) -> Iterator[None]:
        held.append(limit)
        calls = fake.clone_calls
        yield
        assert fake.clone_calls == calls + 1  # the request was made inside the slot

    monkeypatch.setattr(stage, "_concurrency_slot", slot)
    worker = ElevenLabsCloner(client(fake), MemoryCloneStore(MemoryBacking()))
    worker.voice_id_for(source(clips["speech"], tmp_path))
    assert held == ["elevenlabs"]


# --- Errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "code", "retryable", "calls"),
    [
        ([unauthorized()], ErrorCode.TTS_AUTH, False, 1),
        ([voice_limit_reached()], ErrorCode.TTS_REJECTED, False, 1),
        ([unprocessable("name")], ErrorCode.TTS_REJECTED, False, 1),
        ([Scripted(404, {"detail": "Not Found"})], ErrorCode.TTS_REJECTED, False, 1),
        ([server_error()] * 3, ErrorCode.TTS_UNAVAILABLE, True, 3),
        ([too_many_concurrent_requests(), system_busy(), server_error(503)], None, True, 3),
    ],
)
def test_clone_errors_map_like_speech_errors(
    fake: FakeElevenLabs,
    clips: dict[str, Path],
    tmp_path: Path,
    answers: list[Scripted],
    code: ErrorCode | None,
    retryable: bool,
    calls: int,
) -> None:
    backing = MemoryBacking()
    sleeps: list[float] = []
    worker = cloner(fake, MemoryCloneStore(backing), sleeps=sleeps)
    fake.script_clone(*answers)
    with pytest.raises(JobError) as caught:
        worker.voice_id_for(source(clips["speech"], tmp_path))
    assert caught.value.code == (code or ErrorCode.TTS_UNAVAILABLE)
    assert caught.value.retryable is retryable
    # Each answer was one request: the SDK's own retries are off (its repeat drops the form).
    assert fake.clone_calls == calls
    assert all(request.fields.get("name") for request in fake.clone_requests)
    assert len(sleeps) == calls - 1
    if code == ErrorCode.TTS_REJECTED:
        assert "refused to clone the voice" in caught.value.message
    # The lease is released: the next job tries again at once, and succeeds.
    assert backing.docs == {}
    voice_id = worker.voice_id_for(source(clips["speech"], tmp_path / "next"))
    assert voice_id in fake.clones and fake.clone_calls == calls + 1


def test_a_transient_failure_then_success_costs_two_calls(
    fake: FakeElevenLabs, clips: dict[str, Path], tmp_path: Path
) -> None:
    fake.script_clone(too_many_concurrent_requests())
    voice_id = cloner(fake, MemoryCloneStore(MemoryBacking())).voice_id_for(
        source(clips["speech"], tmp_path)
    )
    assert fake.clone_calls == 2 and list(fake.clones) == [voice_id]


def test_jobs_that_waited_through_a_failure_share_it(
    fake: FakeElevenLabs, clips: dict[str, Path], tmp_path: Path
) -> None:
    worker = cloner(fake, MemoryCloneStore(MemoryBacking()))
    fake.script_clone(Scripted(401, unauthorized().body, hang_seconds=0.5))
    with ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(worker.voice_id_for, source(clips["speech"], tmp_path / f"job-{n}"))
            for n in range(8)
        ]
    errors = [future.exception() for future in futures]
    assert fake.clone_calls == 1
    assert [error.code if isinstance(error, JobError) else error for error in errors] == [
        ErrorCode.TTS_AUTH
    ] * 8


def test_too_little_speech_fails_clearly_without_a_call(
    fake: FakeElevenLabs, clips: dict[str, Path], tmp_path: Path
) -> None:
    backing = MemoryBacking()
    with pytest.raises(JobError) as caught:
        cloner(fake, MemoryCloneStore(backing)).voice_id_for(source(clips["little"], tmp_path))
    error = caught.value
    assert (error.code, error.retryable) == (ErrorCode.VOICE_CLONE_TOO_SHORT, False)
    assert "only 5." in error.message and "at least 10 s" in error.message
    assert fake.clone_calls == 0 and backing.docs == {}


def test_a_clone_that_needs_verification_is_refused_and_not_made_again(
    fake: FakeElevenLabs, clips: dict[str, Path], tmp_path: Path
) -> None:
    fake.script_clone(Scripted(200, {"voice_id": "V" * 20, "requires_verification": True}))
    worker = cloner(fake, MemoryCloneStore(MemoryBacking()))
    for attempt in range(2):
        with pytest.raises(JobError) as caught:
            worker.voice_id_for(source(clips["speech"], tmp_path / str(attempt)))
        assert (caught.value.code, caught.value.retryable) == (ErrorCode.TTS_REJECTED, False)
        assert "verified" in caught.value.message
    assert fake.clone_calls == 1


def test_clone_error_never_blames_the_voice_id() -> None:
    body = {"detail": {"status": "voice_not_found", "message": "voice_id clone"}}
    error = clone_error(400, body)
    assert (error.code, error.retryable) == (ErrorCode.TTS_REJECTED, False)
    assert clone_error(401, {"detail": {"status": "quota_exceeded"}}).code == ErrorCode.TTS_AUTH
    assert clone_error(None, None).retryable
    assert clone_error(200, "<html>").code == ErrorCode.TTS_UNAVAILABLE


# --- The stage: which voice speaks, and the job says so -------------------------------------------


def test_without_a_key_clone_is_the_local_voice(tmp_path: Path) -> None:
    voices = build_voices(settings(espeak_voice="en-gb", local_voice="espeak", state_dir=tmp_path))
    assert voices.cloner is None
    assert build_cloner(None, MemoryCloneStore(MemoryBacking()), settings()) is None
    chosen = voice_to_speak(voices, CLONE_VOICE_ID, source(tmp_path / "unused.mp4", tmp_path))
    assert chosen == "espeak:en-gb"
    # By default the local voice is the natural one.
    natural = build_voices(settings(state_dir=tmp_path))
    unused = source(tmp_path / "unused.mp4", tmp_path)
    assert voice_to_speak(natural, CLONE_VOICE_ID, unused) == "piper:joe"
    assert voice_to_speak(voices, "espeak:de", source(tmp_path / "x.mp4", tmp_path)) == "espeak:de"


@dataclass
class Writes:
    job: dict[str, Any]
    seen: list[Transition] = field(default_factory=list)

    def __call__(self, job_id: str, change: Transition) -> dict[str, Any]:
        self.seen.append(change)
        return dict(self.job)

    def fields(self, status: JobStatus) -> dict[str, Any] | None:
        return next(change.fields for change in self.seen if change.to == status)


@dataclass
class OneUpload:
    video: Path
    info: MediaInfo
    alone: bool = True

    def get(self, object_path: str) -> tuple[Path, MediaInfo]:
        return self.video, self.info

    def analysis(self, object_path: str, video: Path, greeting_end_s: float) -> None:
        return None

    def thumbnail_base(self, object_path: str, video: Path, greeting_end_s: float) -> None:
        return None


def run_clone_job(
    monkeypatch: pytest.MonkeyPatch, clients: Clients, video: Path, tmp_path: Path
) -> tuple[Writes, list[str]]:
    """One job with voiceId "clone" through JobRun, render and upload left out."""
    spoken: list[str] = []

    def speak(voices: Any, voice_id: str, text: str, work_dir: Path, **_: Any) -> SpeechFile:
        spoken.append(voice_id)
        return SpeechFile(work_dir / "greeting.wav", None, voice_id)

    def render(*_: Any) -> RenderReport:
        return rendered(tmp_path / "out.mp4")

    def upload(*_: Any) -> StoredResult:
        return StoredResult("greeting-results/x.mp4", "https://example.test/x")

    monkeypatch.setattr(pipeline, "speak_greeting", speak)
    monkeypatch.setattr(pipeline, "render_video", render)
    monkeypatch.setattr(pipeline, "upload_result", upload)
    job = {
        "userId": USER,
        "inputVideo": UPLOAD,
        "prospectName": "Ann Smith",
        "voiceId": CLONE_VOICE_ID,
        "greetingEndSecond": 1.0,
        "status": "queued",
    }
    writes = Writes(job)
    tmp_path.mkdir(parents=True, exist_ok=True)
    run = pipeline.JobRun(clients, "job-1", 0, "run-1", writes)
    run.run(OneUpload(video, probe_upload(video)), tmp_path)
    return writes, spoken


def test_a_clone_job_records_the_local_voice_without_a_key(
    monkeypatch: pytest.MonkeyPatch, clips: dict[str, Path], tmp_path: Path
) -> None:
    configured = settings(espeak_voice="en-gb", local_voice="espeak", state_dir=tmp_path)
    voices = build_voices(configured)
    clients = Clients(configured, None, None, voices, UserSlots(4))  # type: ignore[arg-type]
    writes, spoken = run_clone_job(monkeypatch, clients, clips["speech"], tmp_path)
    assert spoken == ["espeak:en-gb"]
    assert writes.fields(JobStatus.GENERATING_VIDEO) == {"voiceUsed": "espeak:en-gb"}


def test_a_clone_job_speaks_and_records_the_cloned_voice(
    monkeypatch: pytest.MonkeyPatch,
    fake: FakeElevenLabs,
    clips: dict[str, Path],
    tmp_path: Path,
) -> None:
    configured = settings(elevenlabs_api_key=fake.api_key, state_dir=tmp_path)
    worker = cloner(fake, MemoryCloneStore(MemoryBacking()))
    voices = build_voices(configured, client(fake), worker)
    clients = Clients(configured, None, None, voices, UserSlots(4))  # type: ignore[arg-type]
    writes, spoken = run_clone_job(monkeypatch, clients, clips["speech"], tmp_path)
    (voice_id,) = fake.clones
    assert spoken == [voice_id]
    assert writes.fields(JobStatus.GENERATING_VIDEO) == {"voiceUsed": voice_id}
    # The job's retry reuses it.
    writes, spoken = run_clone_job(monkeypatch, clients, clips["speech"], tmp_path / "retry")
    assert spoken == [voice_id] and fake.clone_calls == 1
