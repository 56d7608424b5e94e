"""A job run's own paths without the stack: the stages are swapped for recorders, and the status
writer is a list, so cancel and failure are seen exactly where they happen."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flows import pipeline
from flows.clients import Clients
from flows.job import ErrorCode, JobError, JobStatus
from flows.media import MediaInfo, UserSlots
from flows.settings import Settings
from flows.stages.render import RenderReport
from flows.stages.synthesize import SpeechFile
from flows.stages.thumbnails import Thumbnails
from flows.stages.upload import StoredResult
from flows.transitions import Transition, TransitionRefused
from tests.support.mediacheck import media_info, rendered

USER = "u-1"
JOB = {
    "userId": USER,
    "inputVideo": f"user-uploads/{USER}/pitch.mp4",
    "prospectName": "Dr. Anna-Lena Smith",
    "voiceId": "espeak:en-us",
    "greetingEndSecond": 1.5,
    "status": "queued",
}
INFO = media_info(duration=8.0)


@dataclass
class Writes:
    """The status writer: records every transition, refuses the one named in `refuse`."""

    refuse: JobStatus | None = None
    current: JobStatus = JobStatus.CANCELLED
    seen: list[Transition] = field(default_factory=list)

    def __call__(self, job_id: str, change: Transition) -> dict[str, Any]:
        if change.to == self.refuse:
            raise TransitionRefused(job_id, "refused by the test", self.current)
        self.seen.append(change)
        return dict(JOB)

    @property
    def statuses(self) -> list[JobStatus]:
        return [change.to for change in self.seen]


@dataclass
class Uploads:
    asked: list[str] = field(default_factory=list)
    alone: bool = True

    def get(self, object_path: str) -> tuple[Path, MediaInfo]:
        self.asked.append(object_path)
        return Path("input.mp4"), INFO

    def analysis(self, object_path: str, video: Path, greeting_end_s: float) -> None:
        return None

    def thumbnail_base(self, object_path: str, video: Path, greeting_end_s: float) -> None:
        return None


@pytest.fixture
def stages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Each stage's edge replaced by a recorder; returns what ran, in order."""
    ran: list[str] = []

    def speak(
        voices: Any,
        voice_id: str,
        text: str,
        work_dir: Path,
        speed: float = 1.0,
        *,
        next_text: str | None = None,
    ) -> SpeechFile:
        ran.append(f"speak {text}" + ("" if speed == 1.0 else f" x{speed}"))
        if next_text is not None:
            ran.append(f"leading into {next_text}")
        return SpeechFile(work_dir / "greeting.wav", None, voice_id)

    def render(
        video: Path, info: MediaInfo, speech: SpeechFile, end_s: float, *_: Any
    ) -> RenderReport:
        ran.append(f"render {end_s}")
        return rendered(tmp_path / "output.mp4")

    def upload(
        bucket: Any, video: Path, made: Thumbnails, user_id: str, job_id: str, url: str
    ) -> StoredResult:
        ran.append(f"upload {user_id}/{job_id}")
        ran.append(f"store thumbnails {user_id}/{job_id}")
        poster = f"greeting-results/{user_id}/{job_id}.poster.jpg"
        return StoredResult(
            f"greeting-results/{user_id}/{job_id}.mp4",
            "https://example.test/video",
            {"posterPath": poster, "posterUrl": "https://example.test/poster"},
        )

    def withdraw(bucket: Any, user_id: str, job_id: str) -> None:
        ran.append(f"withdraw {user_id}/{job_id}")

    def thumbnails(
        video: Path, first_name: str | None, end_s: float, work_dir: Path, base: object = None
    ) -> Thumbnails:
        where = "beside" if threading.current_thread().name.startswith("meanwhile") else "after"
        ran.append(f"thumbnails of {video.name}: {first_name} {end_s} ({where})")
        return Thumbnails(work_dir / "poster.jpg", None)

    monkeypatch.setattr(pipeline, "speak_greeting", speak)
    monkeypatch.setattr(pipeline, "render_video", render)
    monkeypatch.setattr(pipeline, "upload_result", upload)
    monkeypatch.setattr(pipeline, "withdraw_result", withdraw)

    def share(db: Any, job_id: str, job: dict[str, Any], paths: dict[str, str]) -> str:
        ran.append(f"share {job_id} of {job['userId']}: {sorted(paths)}")
        return "share-1"

    monkeypatch.setattr(pipeline, "create_share", share)
    monkeypatch.setattr(pipeline, "withdraw_share", lambda db, s: ran.append(f"unshare {s}"))
    monkeypatch.setattr(pipeline, "make_thumbnails", thumbnails)
    return ran


def in_line(stages: list[str]) -> list[str]:
    """The stages run one after another: the thumbnails are made beside them."""
    return [stage for stage in stages if not stage.startswith("thumbnails of ")]


def job_run(writes: Writes) -> pipeline.JobRun:
    clients = Clients(Settings(), None, None, None, UserSlots(4))  # type: ignore[arg-type]
    return pipeline.JobRun(clients, "job-1", 0, "run-1", writes)


def test_a_run_moves_through_every_stage_in_order(stages: list[str], tmp_path: Path) -> None:
    writes, uploads = Writes(), Uploads()
    assert job_run(writes).run(uploads, tmp_path) == f"greeting-results/{USER}/job-1.mp4"
    assert writes.statuses == [
        JobStatus.VALIDATING_INPUT,
        JobStatus.PROCESSING_AUDIO,
        JobStatus.GENERATING_VIDEO,
        JobStatus.UPLOADING_RESULT,
        JobStatus.COMPLETED,
    ]
    # Every job records the voice that spoke (a worker without piper:joe speaks espeak-ng).
    assert writes.seen[2].fields == {"voiceUsed": "espeak:en-us"}
    assert writes.seen[-1].fields == {
        "outputPath": f"greeting-results/{USER}/job-1.mp4",
        "downloadUrl": "https://example.test/video",
        # What fitting the greeting took, for the user to see (nothing: it fitted as spoken).
        "fit": {
            "tempo": 1.0,
            "providerSpeed": 1.0,
            "pauseUsedSecond": 0.0,
            "leadTrimmedSecond": 0.0,
        },
        # The thumbnails that were made and stored (here the poster: the GIF was not made).
        "posterPath": f"greeting-results/{USER}/job-1.poster.jpg",
        "posterUrl": "https://example.test/poster",
        # Its share page, made before the job says completed: the link works at once.
        "shareId": "share-1",
        "shareUrl": "https://demo-greetings.web.app/v/share-1",
    }
    assert uploads.asked == [JOB["inputVideo"]]
    # A lone job's thumbnails are made from the upload beside the voice and the render, so in
    # any order with them; the name as written, from the title and surname removed.
    assert sorted(stages[:3]) == [
        "render 1.5",
        "speak Hey Anna-Lena,",
        "thumbnails of input.mp4: Anna-Lena 1.5 (beside)",
    ]
    assert stages[3:] == [
        f"upload {USER}/job-1",
        f"store thumbnails {USER}/job-1",
        f"share job-1 of {USER}: ['posterPath', 'videoPath']",
    ]


def test_a_batch_job_makes_its_thumbnails_after_its_render(
    stages: list[str], tmp_path: Path
) -> None:
    # Its batch's other jobs keep the cores busy: beside its render they would only contend.
    job_run(Writes()).run(Uploads(alone=False), tmp_path)
    assert stages[:3] == [
        "speak Hey Anna-Lena,",
        "render 1.5",
        "thumbnails of input.mp4: Anna-Lena 1.5 (after)",
    ]


def test_the_pronunciation_is_spoken_and_the_following_words_lead_every_take(
    stages: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    job = {**JOB, "pronunciation": "AN-uh LAY-nuh", "followingText": "I saw you are hiring"}
    writes = Writes()

    def write(job_id: str, change: Transition) -> dict[str, Any]:
        writes(job_id, change)
        return dict(job)

    run = job_run(writes)
    run.write = write

    def render(*args: Any) -> RenderReport:
        args[-1](1.1)  # the slot is too short: the greeting is spoken again, faster
        return rendered(tmp_path / "output.mp4")

    monkeypatch.setattr(pipeline, "render_video", render)
    # The result keeps the job's own name and id: the pronunciation is for the voice only.
    assert run.run(Uploads(), tmp_path) == f"greeting-results/{USER}/job-1.mp4"
    assert in_line(stages)[:4] == [
        "speak Hey AN-uh LAY-nuh,",
        "leading into I saw you are hiring",
        "speak Hey AN-uh LAY-nuh, x1.1",
        "leading into I saw you are hiring",
    ]


def test_cancelled_while_uploading_withdraws_the_stored_result(
    stages: list[str], tmp_path: Path
) -> None:
    writes = Writes(refuse=JobStatus.COMPLETED)
    with pytest.raises(TransitionRefused) as refused:
        job_run(writes).run(Uploads(), tmp_path)
    assert refused.value.cancelled
    assert stages[-4:] == [
        f"store thumbnails {USER}/job-1",
        f"share job-1 of {USER}: ['posterPath', 'videoPath']",
        f"withdraw {USER}/job-1",
        "unshare share-1",
    ]
    assert JobStatus.COMPLETED not in writes.statuses


def test_cancelled_before_a_stage_runs_nothing_more(stages: list[str], tmp_path: Path) -> None:
    writes = Writes(refuse=JobStatus.GENERATING_VIDEO)
    with pytest.raises(TransitionRefused):
        job_run(writes).run(Uploads(), tmp_path)
    assert in_line(stages) == ["speak Hey Anna-Lena,"]  # no render, no upload


def test_a_bad_field_fails_before_the_upload_is_fetched(stages: list[str], tmp_path: Path) -> None:
    uploads = Uploads()
    run = job_run(Writes())
    run.write = lambda job_id, change: {**JOB, "greetingEndSecond": 0}
    with pytest.raises(JobError) as failed:
        run.run(uploads, tmp_path)
    assert failed.value.code == ErrorCode.INVALID_GREETING_END
    assert uploads.asked == [] and stages == []


def test_a_failure_is_recorded_with_its_code_unless_the_job_moved_on() -> None:
    writes = Writes()
    run = job_run(writes)
    pipeline._record_failure(run, JobError(ErrorCode.INPUT_NOT_VIDEO, "not a video"))
    assert writes.statuses == [JobStatus.FAILED]
    error = writes.seen[0].error
    assert error is not None
    assert (error.code, error.retryable) == (ErrorCode.INPUT_NOT_VIDEO, False)

    cancelled = Writes(refuse=JobStatus.FAILED)
    pipeline._record_failure(job_run(cancelled), JobError(ErrorCode.INTERNAL, "bug"))
    assert cancelled.seen == []  # a cancelled job stays cancelled, and nothing raises
