"""Hostile input, fuzzed: mutated uploads of every container kind through a worker's whole job.

Small seed clips (MP4 with its index first, MOV with it last, WebM VP8+Opus as browsers record,
MKV H.264+AAC) are made once with real ffmpeg; each case mutates one of them (truncated,
bit-flipped, a burst of flipped bytes, a zeroed range, a duplicated chunk, or another
container's first bytes spliced onto its body) and runs what a worker runs for one job, in
process: the upload's size check and probe, the pipeline's stages (`JobRun`: validation, the
greeting's end found or checked, the render and its output check) under the process limits
`run_job` sets, with `run_job`'s mapping of failures. Speech synthesis and the result's upload
are swapped for a fixed greeting and a recorder; nothing else is.

Every case must end `completed` (an output ffprobe reads, as long as the input claims) or
`failed` with a code a user can act on, within the wall-clock the limits allow, with no other
exception escaping, no file but the output left in the run's folder and no process left behind.

Mutations are deterministic: the test id names the seed clip, the mutation, the region it hits
and the case's seed, from which `random.Random` draws every offset and byte. A failing case
reruns alone with `-k <its id>` and says exactly which bytes it changed. With `-s` the module
prints how the cases ended, by container kind and mutation.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flows import pipeline
from flows.clients import Clients
from flows.job import ErrorCode, JobError, JobStatus
from flows.media import (
    FfmpegError,
    MediaInfo,
    MediaTimeout,
    ProcessLimits,
    UserSlots,
    limited,
    probe,
)
from flows.settings import Settings
from flows.stages import greeting_end
from flows.stages.render import render_video
from flows.stages.render.stage import check_output_duration
from flows.stages.synthesize import SpeechFile
from flows.stages.thumbnails import Thumbnails
from flows.stages.upload import StoredResult
from flows.stages.validate import check_size, inspect_video
from flows.transitions import Transition
from greetings.samples import make_speech
from tests.support.mediacheck import make_narrated_clip

pytestmark = pytest.mark.media

BASE_SEED = 20_240_611
KINDS = ("mp4", "mov", "webm", "mkv")
SEED_S = 3.0
SEED_SIZE = "160x90"
NARRATION = "Hey there, thanks for watching this short video."
GREETING_TEXT = "Hey John,"
FIXED_END_S = 1.0

# What a hostile upload may legitimately end with: codes that tell the user what to change.
# Never `internal` (a bug), nor a retryable code (the same bytes fail the same way again).
ALLOWED_CODES = frozenset(
    {
        ErrorCode.INPUT_NOT_VIDEO,
        ErrorCode.INPUT_TOO_LARGE,
        ErrorCode.INPUT_TOO_LONG,
        ErrorCode.INPUT_TOO_SHORT,
        ErrorCode.INPUT_NO_VIDEO_STREAM,
        ErrorCode.INPUT_NO_AUDIO_STREAM,
        ErrorCode.INVALID_GREETING_END,
        ErrorCode.GREETING_TOO_LONG,  # no slot left for it in what the recording still holds
        ErrorCode.RENDER_FAILED,
        ErrorCode.RENDER_TIMEOUT,
    }
)
# Media steps of a job that run one after another once the upload is probed, each under the
# job's budget: the greeting's end searched, the input's analysis (its probe beside its decode),
# that decode again without copying the audio track, a faster greeting decoded, the track's
# samples counted, the render.
SEQUENTIAL_MEDIA_STEPS = 6

# How many cases of each mutation hit each region, per container kind.
REGION_CASES: dict[str, dict[str, int]] = {
    "truncate": {"head": 3, "index": 3, "middle": 3, "tail": 3},
    "flip": {"head": 3, "index": 3, "middle": 2, "tail": 2},
    "burst": {"head": 2, "index": 3, "middle": 2, "tail": 2},
    "zero": {"head": 2, "index": 2, "middle": 2, "tail": 2},
    "dup": {"index": 2, "middle": 2, "tail": 1},
}
SWAP_CASES_PER_DONOR = 2
SWAP_PREFIXES = (8, 12, 32, 64, 512, 4096)


# --- the seed clips -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedClip:
    suffix: str
    sample_rate: int
    channels: int
    audio_args: list[str]
    video_args: list[str] | None = None


# Byte for byte the same clip on every run (no random Matroska segment id, no encoder tag), so a
# case's seed names the same bytes every time.
_BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]
_X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "60", *_BITEXACT]
# As VP8_ARGS (what Chrome records), but at the `good` deadline: `realtime` adapts to the clock.
_VP8 = ["-c:v", "libvpx", "-deadline", "good", "-cpu-used", "5", "-b:v", "300k", *_BITEXACT]
SEED_CLIPS: dict[str, SeedClip] = {
    # A browser's or an editor's MP4: the index (moov) before the media.
    "mp4": SeedClip(
        ".mp4", 48000, 2, ["-c:a", "aac", "-b:a", "96k"], [*_X264, "-movflags", "+faststart"]
    ),
    # A phone's MOV: the index after the media.
    "mov": SeedClip(".mov", 44100, 1, ["-c:a", "aac", "-b:a", "64k"], _X264),
    # Chrome's MediaRecorder: VP8 with Opus in WebM.
    "webm": SeedClip(".webm", 48000, 2, ["-c:a", "libopus", "-b:a", "64k"], _VP8),
    "mkv": SeedClip(".mkv", 44100, 2, ["-c:a", "aac", "-b:a", "96k"], _X264),
}


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-media")


@pytest.fixture(scope="module")
def seeds(media_dir: Path) -> dict[str, bytes]:
    """Each container kind's seed clip, as bytes."""
    narration = make_speech(media_dir / "narration.wav", NARRATION)
    made: dict[str, bytes] = {}
    for kind, clip in SEED_CLIPS.items():
        path = make_narrated_clip(
            media_dir / f"seed{clip.suffix}",
            narration,
            seconds=SEED_S,
            sample_rate=clip.sample_rate,
            channels=clip.channels,
            audio_args=clip.audio_args,
            size=SEED_SIZE,
            video_args=clip.video_args,
        )
        made[kind] = path.read_bytes()
    return made


@pytest.fixture(scope="module")
def greeting(media_dir: Path) -> Path:
    """What the voice would say, made once: every case renders the same greeting."""
    return make_speech(media_dir / "greeting.wav", GREETING_TEXT)


# --- mutations ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    kind: str  # the seed clip's container kind
    mutation: str  # truncate, flip, burst, zero, dup, swap
    region: str  # head, index, middle, tail; for swap: the donor kind
    seed: int
    greeting_end_s: float | None  # None: the job leaves the greeting's end to be found

    @property
    def id(self) -> str:
        end = "auto" if self.greeting_end_s is None else f"{self.greeting_end_s:g}"
        return f"{self.kind}-{self.mutation}-{self.region}-end{end}-seed{self.seed}"


def _cases() -> list[Case]:
    draw = random.Random(BASE_SEED)
    planned: list[tuple[str, str, str]] = []
    for kind in KINDS:
        for mutation, regions in REGION_CASES.items():
            for region, count in regions.items():
                planned += [(kind, mutation, region)] * count
        for donor in KINDS:
            if donor != kind:
                planned += [(kind, "swap", donor)] * SWAP_CASES_PER_DONOR
    # Every third job leaves its greeting's end to be found from the (mutated) recording.
    return [
        Case(kind, mutation, region, draw.randrange(1 << 31), None if i % 3 == 1 else FIXED_END_S)
        for i, (kind, mutation, region) in enumerate(planned)
    ]


CASES = _cases()


def _vint(data: bytes, at: int) -> tuple[int, int]:
    """An EBML variable-length integer at `at`: (its value, its length in bytes)."""
    first = data[at] if at < len(data) else 0
    length = next((i + 1 for i in range(8) if first & (0x80 >> i)), 1)
    value = first & (0xFF >> length)
    for byte in data[at + 1 : at + length]:
        value = value << 8 | byte
    return value, length


def _mkv_element(data: bytes, at: int) -> tuple[bytes, int, int]:
    """The EBML element at `at`: (its id, where its body starts, where it ends)."""
    _, id_length = _vint(data, at)
    size, size_length = _vint(data, at + id_length)
    body = at + id_length + size_length
    unknown = size == (1 << (7 * size_length)) - 1  # all ones: up to the end of the file
    return data[at : at + id_length], body, len(data) if unknown else min(body + size, len(data))


def _mkv_tracks(data: bytes) -> tuple[int, int] | None:
    """(start, end) of a Matroska file's Tracks: the Segment's child, not a SeekHead's mention."""
    _, _, at = _mkv_element(data, 0)  # past the EBML header
    segment, at, end = _mkv_element(data, at)
    if segment != b"\x18\x53\x80\x67":
        return None
    while at < end:
        element, _, after = _mkv_element(data, at)
        if element == b"\x16\x54\xae\x6b":
            return at, after
        if element == b"\x1f\x43\xb6\x75" or after <= at:  # a Cluster: media from here on
            return None
        at = after
    return None


def _mov_box(data: bytes, kind: bytes) -> tuple[int, int] | None:
    """(start, end) of the top-level `kind` box of an MP4/MOV."""
    at = 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        if size == 1:
            size = int.from_bytes(data[at + 8 : at + 16], "big")
        elif size == 0:
            size = len(data) - at
        if size < 8:
            return None
        if data[at + 4 : at + 8] == kind:
            return at, min(at + size, len(data))
        at += size
    return None


def index_region(data: bytes) -> tuple[int, int]:
    """Where a file says what it holds: an MP4/MOV's `moov` box, a Matroska file's Tracks."""
    found = _mkv_tracks(data) if data[:4] == b"\x1a\x45\xdf\xa3" else _mov_box(data, b"moov")
    return found or (0, min(len(data), 512))


def region_bounds(data: bytes, region: str) -> tuple[int, int]:
    n = len(data)
    bounds = {
        "head": (0, min(n, 512)),
        "index": index_region(data),
        "middle": (n // 4, 3 * n // 4),
        "tail": (max(0, n - 1024), n),
    }[region]
    return bounds if bounds[1] > bounds[0] else (0, n)


def mutate(case: Case, seeds: dict[str, bytes]) -> tuple[bytes, str]:
    """The case's mutated upload, and what was done to the seed, in words."""
    data = seeds[case.kind]
    n = len(data)
    draw = random.Random(case.seed)
    if case.mutation == "swap":
        donor = seeds[case.region]
        keep = draw.choice(SWAP_PREFIXES)
        return donor[:keep] + data[keep:], f"first {keep} bytes from the {case.region} seed"
    lo, hi = region_bounds(data, case.region)
    out = bytearray(data)
    if case.mutation == "truncate":
        at = draw.randrange(lo, hi)
        return data[:at], f"cut at byte {at} of {n}"
    if case.mutation == "flip":
        at, bit = draw.randrange(lo, hi), draw.randrange(8)
        out[at] ^= 1 << bit
        return bytes(out), f"bit {bit} of byte {at} flipped"
    if case.mutation == "burst":
        length = draw.randint(2, 64)
        at = draw.randrange(lo, max(lo + 1, hi - length))
        for i in range(at, min(n, at + length)):
            out[i] ^= draw.randrange(1, 256)
        return bytes(out), f"{length} bytes from {at} XORed with random bytes"
    if case.mutation == "zero":
        length = draw.choice((4, 16, 64, 256, 1024))
        at = draw.randrange(lo, hi)
        out[at : at + length] = bytes(len(out[at : at + length]))
        return bytes(out), f"{length} bytes zeroed from {at}"
    if case.mutation == "dup":
        length = draw.choice((16, 188, 1024, 4096))
        at = draw.randrange(lo, hi)
        chunk = data[at : at + length]
        to = at + len(chunk) if draw.random() < 0.5 else draw.randrange(lo, hi)
        return data[:to] + chunk + data[to:], f"{len(chunk)} bytes from {at} repeated at {to}"
    raise AssertionError(f"unknown mutation {case.mutation}")


# --- one job, as a worker runs it -------------------------------------------------------------

USER = "fuzz-user"
JOB_ID = "fuzz-job"


@dataclass
class Writes:
    """The status writer: every transition of the job, in order; hands the job document out."""

    job: dict[str, Any]
    seen: list[Transition] = field(default_factory=list)

    def __call__(self, job_id: str, change: Transition) -> dict[str, Any]:
        self.seen.append(change)
        return dict(self.job)


@dataclass
class LocalUpload:
    """The job's upload, already on disk: size-checked and probed as `load_upload` does."""

    path: Path
    max_bytes: int
    info: MediaInfo | None = None
    alone: bool = True  # a lone job's: its thumbnails are made beside its render

    def get(self, object_path: str) -> tuple[Path, MediaInfo]:
        check_size(self.path.stat().st_size, self.max_bytes)
        self.info = inspect_video.fn(self.path)
        return self.path, self.info

    def analysis(self, object_path: str, video: Path, greeting_end_s: float) -> None:
        return None

    def thumbnail_base(self, object_path: str, video: Path, greeting_end_s: float) -> None:
        return None


@dataclass(frozen=True)
class Outcome:
    status: JobStatus
    code: ErrorCode | None
    info: MediaInfo | None  # the upload's probe, when it got that far
    seconds: float
    limit_s: float


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch, greeting: Path) -> list[Path]:
    """The pipeline with its voice and its result store swapped out; returns what it stored."""
    stored: list[Path] = []

    def speak(
        voices: Any, voice_id: str, text: str, work_dir: Path, *_: Any, **__: Any
    ) -> SpeechFile:
        # Outside the run's folder: what a run leaves there is all the render's.
        return SpeechFile(greeting, None, voice_id)

    def upload(
        bucket: Any, video: Path, made: Thumbnails, user_id: str, job_id: str, url: str
    ) -> StoredResult:
        assert video.is_file()
        stored.append(video)
        path = f"greeting-results/{user_id}/{job_id}.mp4"
        return StoredResult(path, "https://example.test/result.mp4")

    monkeypatch.setattr(pipeline, "speak_greeting", speak)
    monkeypatch.setattr(pipeline, "render_video", render_video)
    monkeypatch.setattr(pipeline, "upload_result", upload)
    monkeypatch.setattr(pipeline, "withdraw_result", lambda bucket, user, job: None)
    return stored


def job_limits(settings: Settings) -> ProcessLimits:
    """What `run_job` gives every media process of a job before its upload is probed."""
    return ProcessLimits(
        timeout_s=settings.media_timeout_seconds,
        memory_bytes=settings.media_memory_mb << 20,
        cpu_s=int(settings.media_timeout_seconds),
    )


def wall_clock_limit(settings: Settings, info: MediaInfo | None) -> float:
    """How long a job may take under its limits: the probe's, then each later step's budget
    (`JobRun._run_stages`: the base timeout plus time per second the upload claims)."""
    budget = settings.media_timeout_seconds
    if info is not None:
        budget += settings.media_seconds_per_input_second * info.duration_s
    return settings.media_timeout_seconds + SEQUENTIAL_MEDIA_STEPS * budget


def run_one_job(upload: Path, work_dir: Path, greeting_end_s: float | None) -> Outcome:
    """One attempt of one job on `upload`, as `run_job` runs it (its limits, its failures)."""
    # Thumbnails are made of the render's own output, never of the hostile upload: left out,
    # they would add about 0.6 s to each of the completed cases and test nothing of the input.
    settings = Settings(thumbnails=False)
    job = {
        "userId": USER,
        "inputVideo": f"user-uploads/{USER}/{upload.name}",
        "prospectName": "John Smith",
        "voiceId": "espeak:en-us",
        "greetingEndSecond": greeting_end_s,
        "status": "queued",
    }
    writes = Writes(job)
    clients = Clients(settings, None, None, None, UserSlots(settings.media_slots_per_user))  # type: ignore[arg-type]
    run = pipeline.JobRun(clients, JOB_ID, 0, "fuzz-run", writes)
    uploads = LocalUpload(upload, settings.max_input_bytes)
    began = time.monotonic()
    with limited(job_limits(settings), threading.Event()):
        try:
            run.run(uploads, work_dir)
        except (JobError, MediaTimeout) as failure:
            error = failure if isinstance(failure, JobError) else pipeline._timed_out(failure)
            pipeline._record_failure(run, error)
    seconds = time.monotonic() - began
    last = writes.seen[-1]
    return Outcome(
        status=last.to,
        code=ErrorCode(last.error.code) if last.error is not None else None,
        info=uploads.info,
        seconds=seconds,
        limit_s=wall_clock_limit(settings, uploads.info),
    )


# --- what must hold after every job ---------------------------------------------------------


def _processes() -> Iterator[tuple[int, int, bytes]]:
    """(pid, parent pid, command line) of every process there is."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        yield int(entry.name), int(fields[1]), cmdline


def leftover_processes(before: set[int], folder: Path) -> list[str]:
    """Children of this process started since `before`, and any process naming `folder`."""
    me, named = os.getpid(), f"{folder}/".encode()
    return [
        cmdline.replace(b"\0", b" ").decode(errors="replace")
        for pid, parent, cmdline in _processes()
        if (parent == me and pid not in before) or named in cmdline
    ]


def children() -> set[int]:
    me = os.getpid()
    return {pid for pid, parent, _ in _processes() if parent == me}


def wait_until(check: Callable[[], list[str]], timeout_s: float = 5.0) -> list[str]:
    """`check()`'s complaints once they are gone or `timeout_s` has passed (a killed process
    takes a moment to go)."""
    deadline = time.monotonic() + timeout_s
    found = check()
    while found and time.monotonic() < deadline:
        time.sleep(0.05)
        found = check()
    return found


@pytest.fixture(scope="module")
def outcomes() -> Iterator[Counter[tuple[str, str, str]]]:
    """(kind, mutation, outcome) of every case; their distribution is printed at the end."""
    seen: Counter[tuple[str, str, str]] = Counter()
    yield seen
    by_outcome: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    for (kind, mutation, outcome), count in sorted(seen.items()):
        by_outcome[outcome] += count
        by_kind.setdefault(f"{kind:5} {mutation:8}", Counter())[outcome] += count
    print(f"\nfuzzed jobs: {sum(seen.values())}; outcomes: {dict(by_outcome.most_common())}")
    for label, counts in by_kind.items():
        print(f"  {label} {dict(counts.most_common())}")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_mutated_upload_ends_completed_or_failed_with_a_users_code(
    case: Case,
    seeds: dict[str, bytes],
    worker: list[Path],
    outcomes: Counter[tuple[str, str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, done = mutate(case, seeds)
    what = f"{case.id}: {done}"
    upload = tmp_path / f"upload{SEED_CLIPS[case.kind].suffix}"
    upload.write_bytes(data)
    work_dir = tmp_path / "work"  # the run's scratch folder, as `run_job` makes it
    work_dir.mkdir()
    # The process's temporary folder, private to the case (the machine's is shared): whatever a
    # job put there without its run's folder would be left behind.
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    before = children()

    try:
        outcome = run_one_job(upload, work_dir, case.greeting_end_s)
    except Exception as exc:  # run_job would record this as `internal`
        pytest.fail(f"{what}: {type(exc).__name__} escaped the job: {exc}")

    rendered_anyway = outcome.status == JobStatus.FAILED and (work_dir / "output.mp4").exists()
    label = outcome.status.value if outcome.code is None else f"failed {outcome.code.value}"
    outcomes[
        (case.kind, case.mutation, label + (" (after its render)" if rendered_anyway else ""))
    ] += 1
    assert outcome.status in (JobStatus.COMPLETED, JobStatus.FAILED), what
    assert outcome.seconds <= outcome.limit_s, f"{what}: took {outcome.seconds:.1f} s"
    if outcome.status == JobStatus.FAILED:
        assert outcome.code in ALLOWED_CODES, f"{what}: failed {outcome.code}"
    else:
        output = work_dir / "output.mp4"
        assert worker == [output], what
        assert outcome.info is not None
        rendered = probe(output)
        assert rendered.video is not None and rendered.audio is not None, what
        try:
            check_output_duration(rendered.duration_s, outcome.info.duration_s)
        except JobError as exc:
            pytest.fail(f"{what}: a completed render {exc.message}")

    # Nothing left behind: in the run's folder only the output, no temporary folder, no
    # process. A render refused by the output check (`render_video`) stays in the run's folder
    # (which goes with the run), as the output.
    left = {p.name for p in work_dir.iterdir()}
    if outcome.status == JobStatus.COMPLETED or rendered_anyway:
        assert left == {"output.mp4"}, f"{what}: left {sorted(left)}"
    else:
        assert left == set(), f"{what}: left {sorted(left)}"
    if rendered_anyway:
        assert outcome.code in (ErrorCode.INPUT_NOT_VIDEO, ErrorCode.RENDER_FAILED), what
    assert {p.name for p in tmp_path.iterdir()} == {upload.name, "work", "tmp"}, what
    # tempfile.tempdir is process-wide: a local ElevenLabs stand-in still serving an earlier
    # stack test in this session makes its own folders here, which are not the job's.
    stray = sorted(p.name for p in temp.iterdir() if not p.name.startswith("fake-elevenlabs-"))
    assert stray == [], f"{what}: left {stray}"
    assert wait_until(lambda: leftover_processes(before, tmp_path)) == [], what


def test_a_sound_track_too_damaged_to_search_for_the_greeting_is_the_uploads_fault(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Found by the fuzz (a duplicated chunk in an MP4's media): ffmpeg gives up on the decode
    # (exit 69, too many bad packets) and the error escaped the job as `internal`.
    said = "Error while decoding stream #0:1: Invalid data found when processing input"

    def broken(args: list[str], *, stdin: bytes | None = None) -> bytes:
        raise FfmpegError(["ffmpeg", *args], 69, said)

    monkeypatch.setattr(greeting_end, "run_ffmpeg", broken)
    with pytest.raises(JobError) as refused:
        greeting_end.find_greeting_end(tmp_path / "upload.mp4", "mov")
    assert refused.value.code == ErrorCode.INPUT_NOT_VIDEO
    assert not refused.value.retryable


def test_a_video_whose_codec_setup_is_damaged_fails_rather_than_renders_sound_only(
    seeds: dict[str, bytes], worker: list[Path], tmp_path: Path
) -> None:
    # Found by the fuzz (16 bytes zeroed in an MKV's Tracks): the H.264 setup (CodecPrivate, the
    # avcC) said NAL lengths take 1 byte, so ffmpeg copied none of the video's packets, left the
    # stream out of the render and exited 0: the job completed with a result without a picture.
    data = bytearray(seeds["mkv"])
    start, end = index_region(bytes(data))
    at = data.find(b"\x63\xa2", start, end)  # CodecPrivate of the first track, the video
    assert at > 0
    _, body, _ = _mkv_element(bytes(data), at)
    data[body + 1 : body + 17] = bytes(16)  # all but the avcC's version byte
    upload = tmp_path / "upload.mkv"
    upload.write_bytes(bytes(data))
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    assert inspect_video.fn(upload).video is not None  # the header still names an H.264 stream
    outcome = run_one_job(upload, work_dir, FIXED_END_S)
    assert (outcome.status, outcome.code) == (JobStatus.FAILED, ErrorCode.INPUT_NOT_VIDEO)
    assert worker == []
