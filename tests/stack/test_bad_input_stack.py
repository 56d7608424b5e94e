"""Bad and hostile input against the real stack: every job ends cleanly, nothing is left behind.

Each job is created the way a client creates it (the user's ID token, so firestore.rules apply).
Where the rules refuse a document, the test checks that refusal and then writes the same document
as admin (the trigger fires for admin writes too), to prove the worker refuses it on its own.
The jobs of a matrix are all created first and then awaited together, so the worker runs them side
by side and the module stays well under three minutes.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.cloud.firestore import SERVER_TIMESTAMP

from flows.job import COLLECTION, result_path
from flows.media import probe, run_ffmpeg
from greetings.client.enduser import Denied
from greetings.samples import make_sample_video
from greetings.settings import REPO_ROOT
from tests.conftest import User, wait_for
from tests.support.stackkit import (
    as_user,
    new_job_id,
    upload,
)

pytestmark = pytest.mark.stack

GOOD_END_S = 1.5
# Room for a long name spoken by the English voice (Arabic letters are read out one by one).
HOSTILE_END_S = 4.0
SHELL_WORDS_END_S = 6.5
MATRIX_TIMEOUT_S = 150.0
SCRATCH_TIMEOUT_S = 15.0
TERMINAL = ("completed", "failed", "cancelled")


# --- media ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every file the tests upload, generated once for the module (small and short)."""
    folder = tmp_path_factory.mktemp("bad-input")
    good = make_sample_video(folder / "good.mp4", seconds=8, width=320, height=180)
    files = {
        "good": good,
        "short": make_sample_video(folder / "short.mp4", seconds=2, width=320, height=180),
        "audio-only": make_sample_video(folder / "audio-only.mp4", seconds=4, video=False),
        "video-only": make_sample_video(
            folder / "video-only.mp4", seconds=4, width=320, height=180, audio=False
        ),
    }
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("these are my meeting notes, not a video\n" * 50)
    files["empty"], files["text"] = folder / "empty.mp4", folder / "notes.mp4"
    # ffmpeg writes the index (moov) last: half the file has none.
    data = good.read_bytes()
    files["truncated"] = folder / "truncated.mp4"
    files["truncated"].write_bytes(data[: len(data) // 2])
    # With the index first (what "web optimized" exports do) half a file still probes as whole.
    faststart = folder / "faststart.mp4"
    run_ffmpeg(["-i", str(good), "-c", "copy", "-movflags", "+faststart", str(faststart)])
    data = faststart.read_bytes()
    files["truncated-faststart"] = folder / "truncated-faststart.mp4"
    files["truncated-faststart"].write_bytes(data[: len(data) // 2])
    return files


# --- jobs ----------------------------------------------------------------------------------------


def job_fields(user: User, input_video: str, **overrides: Any) -> dict[str, Any]:
    """A valid job document's client fields (camelCase), with `overrides` on top."""
    return {
        "userId": user.uid,
        "inputVideo": input_video,
        "prospectName": "Jane",
        "voiceId": "espeak:en-us",
        "greetingEndSecond": GOOD_END_S,
        **overrides,
    }


def create_as_user(stack: Any, user: User, job_id: str, fields: dict[str, Any]) -> None:
    as_user(stack, user).create(COLLECTION, job_id, {**fields, "status": "pending"}, ("createdAt",))


def create_as_admin(clients: Any, job_id: str, fields: dict[str, Any]) -> None:
    """What a buggy or hostile server-side writer could store: the rules do not apply."""
    clients.db.collection(COLLECTION).document(job_id).set(
        {**fields, "status": "pending", "createdAt": SERVER_TIMESTAMP}
    )


def read_jobs(clients: Any, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    refs = [clients.db.collection(COLLECTION).document(job_id) for job_id in job_ids]
    return {snap.id: snap.to_dict() or {} for snap in clients.db.get_all(refs)}


def wait_all_finished(
    clients: Any, prefect_client: Any, job_ids: list[str], timeout_s: float = MATRIX_TIMEOUT_S
) -> dict[str, dict[str, Any]]:
    """Every job's document once all of them are finished (one deadline for the lot).

    When the Prefect server is too busy to create a run (it answers 503 under a burst of jobs,
    more so with other people's jobs on the same stack), the trigger leaves the job `pending`
    with `orchestrator-unavailable` for the sweep, which starts it within five minutes. For this
    test's own jobs, that start is done here at once, exactly as the sweep does it.
    """
    from flows.sweep import start

    deadline = time.monotonic() + timeout_s
    nudged: set[str] = set()
    while True:
        jobs = read_jobs(clients, job_ids)
        unfinished = {
            i: j.get("status") for i, j in jobs.items() if j.get("status") not in TERMINAL
        }
        if not unfinished:
            if nudged:
                print(f"started {len(nudged)} job(s) the trigger left for the sweep: {nudged}")
            return jobs
        if time.monotonic() > deadline:
            pytest.fail(f"not finished after {timeout_s:.0f} s: {unfinished}")
        for job_id in unfinished:
            job = jobs[job_id]
            left_for_sweep = (job.get("error") or {}).get("code") == "orchestrator-unavailable"
            if job.get("status") == "pending" and left_for_sweep and not job.get("flowRunId"):
                with contextlib.suppress(Exception):  # still busy: the next poll tries again
                    start(clients.db, prefect_client, job_id, int(job.get("retryCount") or 0))
                    nudged.add(job_id)
        time.sleep(0.5)


def scratch_folders(stack: Any, job_ids: list[str]) -> list[str]:
    """The worker's scratch folders (`<pid>-<jobId>-<random>`) that belong to these jobs."""
    root = work_root(stack)
    return sorted(p.name for p in root.iterdir() if any(f"-{j}-" in p.name for j in job_ids))


def work_root(stack: Any) -> Path:
    root = Path(stack.s.state_dir) / "work"
    # The worker makes it for its first run: missing, the check below would prove nothing.
    assert root.is_dir(), f"no work root at {root}"
    return root


def assert_no_scratch_left(stack: Any, job_ids: list[str]) -> None:
    # The job is marked finished just before its run leaves (and removes) its folder.
    left = wait_for(
        lambda: scratch_folders(stack, job_ids), lambda left: not left, SCRATCH_TIMEOUT_S
    )
    assert left == []


def failure_problems(
    clients: Any, job: dict[str, Any], job_id: str, code: str, hint: str
) -> list[str]:
    """Why `job` is not a clean, user-actionable failure with `code` (empty if it is)."""
    problems = []
    error = job.get("error") or {}
    if job.get("status") != "failed" or error.get("code") != code:
        problems.append(f"ended {job.get('status')!r} with {error!r}, expected code {code!r}")
        return problems
    message = error.get("message")
    if error.get("retryable") is not False:
        problems.append(f"retryable is {error.get('retryable')!r}")
    if not isinstance(message, str) or not message.strip():
        problems.append(f"no message: {message!r}")
    elif hint.lower() not in message.lower():
        problems.append(f"message {message!r} does not say {hint!r}")
    elif len(message) > 400 or "Traceback" in message or "Unexpected error" in message:
        problems.append(f"message is not for a user: {message!r}")
    history = job.get("history") or []
    if not history or history[-1].get("status") != "failed":
        problems.append(f"history does not end failed: {history!r}")
    elif history[-1].get("errorCode") != code:
        problems.append(f"history records {history[-1].get('errorCode')!r}")
    for key in ("outputPath", "downloadUrl"):
        if key in job:
            problems.append(f"a failed job has {key}")
    if clients.bucket.get_blob(result_path(job["userId"], job_id)) is not None:
        problems.append("an output object exists in Storage")
    return problems


def run_good_job(
    stack: Any, clients: Any, prefect_client: Any, user: User, video: Path
) -> tuple[str, dict[str, Any]]:
    """One ordinary job to completion: the worker is still healthy after what came before."""
    job_id = new_job_id()
    create_as_user(stack, user, job_id, job_fields(user, upload(clients, user, video)))
    job = wait_all_finished(clients, prefect_client, [job_id], 90)[job_id]
    assert job["status"] == "completed", job.get("error")
    assert clients.bucket.get_blob(result_path(user.uid, job_id)) is not None
    return job_id, job


# --- 1. the bad input matrix ---------------------------------------------------------------------


@dataclass
class Case:
    label: str
    code: str
    hint: str  # what the message must say for the user to know what to change
    upload: str | None = "good"  # which media file the job's user uploads (None: nothing)
    overrides: dict[str, Any] = field(default_factory=dict)
    rules_refuse: bool = False
    # Where inputVideo points instead of the user's upload, given another user who uploaded it.
    input_video: Callable[[User, User, str], str] | None = None


def _other_users_upload(user: User, other: User, own: str) -> str:
    return own.replace(f"user-uploads/{user.uid}/", f"user-uploads/{other.uid}/")


def _escapes_own_folder(user: User, other: User, own: str) -> str:
    return f"user-uploads/{user.uid}/../{other.uid}/{own.rsplit('/', 1)[1]}"


MATRIX = [
    Case("empty file", "input-not-video", "empty", upload="empty"),
    Case("text renamed .mp4", "input-not-video", "not a video", upload="text"),
    Case("truncated mp4 (index last)", "input-not-video", "truncated", upload="truncated"),
    Case(
        "truncated mp4 (index first)",
        "input-not-video",
        "truncated",
        upload="truncated-faststart",
    ),
    Case("audio only", "input-no-video-stream", "no video stream", upload="audio-only"),
    Case("video only", "input-no-audio-stream", "no sound track", upload="video-only"),
    Case("2 s video, greeting ends at 1.5 s", "input-too-short", "2.0 s", upload="short"),
    Case(
        "greeting ends after the video",
        "invalid-greeting-end",
        "greetingEndSecond",
        overrides={"greetingEndSecond": 9.5},
    ),
    Case(
        "greetingEndSecond 0",
        "invalid-greeting-end",
        "above 0",
        overrides={"greetingEndSecond": 0},
        rules_refuse=True,
    ),
    Case(
        "greetingEndSecond negative",
        "invalid-greeting-end",
        "above 0",
        overrides={"greetingEndSecond": -1.5},
        rules_refuse=True,
    ),
    Case(
        "greetingEndSecond NaN",
        "invalid-greeting-end",
        "number of seconds",
        overrides={"greetingEndSecond": math.nan},
        rules_refuse=True,
    ),
    Case(
        "greetingEndSecond 11",
        "invalid-greeting-end",
        "at most 10",
        overrides={"greetingEndSecond": 11},
        rules_refuse=True,
    ),
    Case(
        "greetingEndSecond as text",
        "invalid-greeting-end",
        "number of seconds",
        overrides={"greetingEndSecond": "1.5"},
        rules_refuse=True,
    ),
    Case(
        "name of 101 characters",
        "invalid-name",
        "101 characters",
        overrides={"prospectName": "A" * 101},
        rules_refuse=True,
    ),
    Case(
        "name of whitespace only",
        "invalid-name",
        "empty",
        overrides={"prospectName": "   "},
        rules_refuse=True,
    ),
    Case(
        "empty name",
        "invalid-name",
        "empty",
        overrides={"prospectName": ""},
        rules_refuse=True,
    ),
    Case(
        "name with a control character",
        "invalid-name",
        "cannot be spoken",
        overrides={"prospectName": "Jane\u0007Doe"},
    ),
    Case(
        "name with a tab and a carriage return",
        "invalid-name",
        "cannot be spoken",
        overrides={"prospectName": "Jane\tDoe\r"},
    ),
    Case(
        "inputVideo in another user's folder",
        "input-path-forbidden",
        "your own upload folder",
        input_video=_other_users_upload,
        rules_refuse=True,
    ),
    Case(
        "inputVideo escaping the user's folder",
        "input-path-forbidden",
        "your own upload folder",
        input_video=_escapes_own_folder,
        rules_refuse=True,
    ),
    Case(
        "missing object",
        "input-not-found",
        "upload the video again",
        upload=None,
    ),
    Case(
        "voice espeak-ng does not have",
        "invalid-voice",
        "'espeak:nosuchvoice'",
        overrides={"voiceId": "espeak:nosuchvoice"},
    ),
    Case(
        "voice id that is a path",
        "invalid-voice",
        "ElevenLabs voice id (20 letters and digits)",
        overrides={"voiceId": "espeak:../../etc/passwd"},
        rules_refuse=True,
    ),
    Case(
        "voice id that names another ElevenLabs endpoint",
        "invalid-voice",
        "ElevenLabs voice id (20 letters and digits)",
        overrides={"voiceId": "../../v1/sound-generation"},
        rules_refuse=True,
    ),
]


def test_bad_input_matrix_fails_each_job_cleanly(
    stack: Any,
    clients: Any,
    prefect_client: Any,
    make_user: Callable[[], User],
    media: dict[str, Path],
) -> None:
    began = time.monotonic()
    problems: list[str] = []
    jobs: dict[str, Case] = {}
    for case in MATRIX:
        user, job_id = make_user(), new_job_id()
        if case.upload is not None:
            own = upload(clients, user, media[case.upload])
        else:
            own = f"user-uploads/{user.uid}/never-uploaded.mp4"
        input_video = own
        if case.input_video is not None:
            other = make_user()
            upload(clients, other, media["good"])  # the other user's object really exists
            input_video = case.input_video(user, other, own)
        fields = job_fields(user, input_video, **case.overrides)
        try:
            create_as_user(stack, user, job_id, fields)
            if case.rules_refuse:
                problems.append(f"{case.label}: the rules let the user create it")
        except Denied as denied:
            if not case.rules_refuse or denied.status != 403:
                problems.append(f"{case.label}: create refused with {denied}")
                continue
            create_as_admin(clients, job_id, fields)
        jobs[job_id] = case

    finished = wait_all_finished(clients, prefect_client, list(jobs))
    print(f"{len(jobs)} bad jobs finished {time.monotonic() - began:.1f} s after the first")
    for job_id, case in jobs.items():
        found = failure_problems(clients, finished[job_id], job_id, case.code, case.hint)
        problems += [f"{case.label} ({job_id}): {p}" for p in found]

    # The worker is still healthy: an ordinary job right after all of that completes.
    good_id, _ = run_good_job(stack, clients, prefect_client, make_user(), media["good"])
    assert_no_scratch_left(stack, [*jobs, good_id])
    assert not problems, "\n".join(problems)


def test_espeak_voice_that_only_looks_like_a_language_is_refused(
    stack: Any,
    clients: Any,
    prefect_client: Any,
    make_user: Callable[[], User],
    media: dict[str, Path],
) -> None:
    user, job_id = make_user(), new_job_id()
    fields = job_fields(user, upload(clients, user, media["good"]), voiceId="espeak:no-such-voice")
    create_as_user(stack, user, job_id, fields)
    job = wait_all_finished(clients, prefect_client, [job_id], 90)[job_id]
    assert_no_scratch_left(stack, [job_id])
    assert failure_problems(clients, job, job_id, "invalid-voice", "espeak:no-such-voice") == []


# --- 2. hostile names ----------------------------------------------------------------------------

# Names that must render: real names use these characters, and some are filter-graph syntax.
MUST_RENDER = [
    "O'Brien",
    "Jane, O'Hara (Sales) & Co.",
    "محمد",  # Arabic
    "דוד כהן",  # Hebrew
    "--help -q",  # option-like: it goes to espeak-ng on stdin, never as an argument
]


def shell_words_names(token: str) -> list[str]:
    """Names of allowed characters only that a shell would still run (`&`, `(`, `'`)."""
    return [
        f"Ann & touch pwned-{token}-amp &",
        f"Ann' (touch pwned-{token}-sub) '",
    ]


def hostile_names(token: str) -> list[str]:
    """Names that must either render as plain speech or fail with `invalid-name`."""
    marker = f"/tmp/pwned-{token}"
    return [
        'Jane "JJ" Doe',
        "Jane'; DROP TABLE greetingJobs; --",
        f"$(touch {marker}-dollar)",
        f"`touch {marker}-backtick`",
        f"Ann; touch {marker}-semicolon",
        f"Ann\ntouch {marker}-newline",
        f"Ann' && touch {marker}-quote && echo '",
        "Ann:volume=0,asetrate=8000[x];[x]",
        "[0:a]volume=10[out]",
        "Ann\\'s %{pts} text='x'",
        '<break time="5s"/>',
        '<speak>Ann<break time="5s"/></speak>',
        "[whispers] Ann",
        "\u202eenaJ",  # right-to-left override
        "Ann \u05d3\u05d5\u05d3 \u202bنور\u202c",  # mixed scripts with an embedding
        "Ann \U0001f600",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467 Family",
    ]


def test_hostile_names_are_spoken_or_refused_never_executed(
    stack: Any,
    clients: Any,
    prefect_client: Any,
    make_user: Callable[[], User],
    media: dict[str, Path],
    tmp_path: Path,
) -> None:
    token = uuid.uuid4().hex[:6]
    names = [(name, True, HOSTILE_END_S) for name in MUST_RENDER]
    # Spoken out, a shell command is long: these get most of the 8 s video as their slot.
    names += [(name, True, SHELL_WORDS_END_S) for name in shell_words_names(token)]
    names += [(name, False, HOSTILE_END_S) for name in hostile_names(token)]
    jobs: dict[str, tuple[str, bool, User]] = {}
    for name, must_render, end_s in names:
        user, job_id = make_user(), new_job_id()
        fields = job_fields(
            user,
            upload(clients, user, media["good"]),
            prospectName=name,
            greetingEndSecond=end_s,
        )
        try:
            create_as_user(stack, user, job_id, fields)
        except Denied as denied:
            # Where the rules refuse a name, the worker must still see it.
            assert denied.status == 403, denied
            create_as_admin(clients, job_id, fields)
        jobs[job_id] = (name, must_render, user)

    finished = wait_all_finished(clients, prefect_client, list(jobs))
    problems: list[str] = []
    original = probe(media["good"])
    outcomes = []
    for job_id, (name, must_render, user) in jobs.items():
        job = finished[job_id]
        outcomes.append(f"{name!r}: {job.get('status')} {(job.get('error') or {}).get('code')}")
        if job.get("status") == "completed":
            out = tmp_path / f"{job_id}.mp4"
            clients.bucket.blob(result_path(user.uid, job_id)).download_to_filename(str(out))
            info = probe(out)
            if info.video is None or info.audio is None:
                problems.append(f"{name!r}: the output lacks a stream")
            if abs(info.duration_s - original.duration_s) > 0.05:
                problems.append(
                    f"{name!r}: the output lasts {info.duration_s:.3f} s, "
                    f"the input {original.duration_s:.3f} s"
                )
        elif must_render:
            problems.append(f"{name!r} must render, got {job.get('status')} {job.get('error')}")
        else:
            found = failure_problems(clients, job, job_id, "invalid-name", "cannot be spoken")
            problems += [f"{name!r}: {p}" for p in found]
    print("\n".join(outcomes))

    assert_no_scratch_left(stack, list(jobs))
    # Nothing ran: not in /tmp, not in the worker's working directory, not in its work root.
    for folder in (Path("/tmp"), REPO_ROOT, work_root(stack)):
        assert sorted(folder.glob(f"pwned-{token}*")) == []
    assert not problems, "\n".join(problems)
