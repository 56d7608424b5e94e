"""The `greetings` end-user commands against the real local stack, as a user runs them.

Each test signs in as its own user (`--user`), so no test sees another's jobs or uploads.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from flows.job import JobRequest, upload_prefix
from flows.media import probe
from greetings.cli import main
from greetings.client.enduser import (
    FirestoreAsUser,
    SignedInUser,
    identity_toolkit_url,
    sign_in_with_password,
)
from greetings.client.export import NEW_COLUMNS
from greetings.client.session import LOCAL_PASSWORD
from greetings.settings import REPO_ROOT
from tests.conftest import wait_for
from tests.support.fake_elevenlabs import FakeElevenLabs
from tests.support.stackkit import wait_finished

pytestmark = [pytest.mark.stack, pytest.mark.timeout(150)]


@pytest.fixture
def email() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}@greetings.test"


def signed_in(stack: Any, email: str) -> SignedInUser:
    """The user the CLI acts as for `--user email` (same password, created on first use)."""
    return sign_in_with_password(
        identity_toolkit_url(stack.s.auth_emulator_host), email, LOCAL_PASSWORD, create=True
    )


def as_user(stack: Any, user: SignedInUser) -> FirestoreAsUser:
    return FirestoreAsUser(
        f"http://{stack.s.firestore_emulator_host}/v1", stack.s.project_id, user.id_token
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def uploads_of(clients: Any, user: SignedInUser) -> list[str]:
    return [blob.name for blob in clients.bucket.list_blobs(prefix=upload_prefix(user.uid))]


def test_submit_wait_json_completes_and_downloads(
    stack: Any,
    email: str,
    sample_video: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    argv = ["submit", str(sample_video), "--name", "Ada Lovelace", "--name", "José Núñez"]
    code = main([*argv, "--wait", "--json", "--out", str(out), "--user", email])
    captured = capsys.readouterr()
    assert code == 0, captured.err

    records = json_lines(captured.out)  # stdout holds only the JSON lines
    assert sorted(r["prospectName"] for r in records) == ["Ada Lovelace", "José Núñez"]
    original = probe(sample_video)
    for record in records:
        assert set(record) == {"jobId", "prospectName", "status", "error", "output", "downloadUrl"}
        assert (record["status"], record["error"]) == ("completed", None)
        assert record["downloadUrl"].startswith("http")
        output = Path(record["output"])
        expected = {"Ada Lovelace": "ada-lovelace", "José Núñez": "jose-nunez"}
        assert output == out / f"{expected[record['prospectName']]}-{record['jobId']}.mp4"
        info = probe(output)  # ffprobe reads it as a video with sound
        assert info.video is not None and info.audio is not None
        assert abs(info.duration_s - original.duration_s) < 0.1
    assert "video uploaded: user-uploads/" in captured.err
    assert "completed 100%" in captured.err  # the status lines went to stderr


def test_csv_names_blank_and_duplicate_are_reported_and_skipped(
    stack: Any,
    clients: Any,
    email: str,
    sample_video: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = tmp_path / "prospects.csv"
    names.write_text(
        "prospectName,company\nAda Lovelace,Analytical\n,Nobody\nGrace Hopper,Navy\n"
        "ada lovelace,Analytical\n"
    )
    code = main(["submit", str(sample_video), "--names-csv", str(names), "--json", "--user", email])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: prospects.csv line 3: blank name, skipped",
        "warning: prospects.csv line 5: duplicate name 'ada lovelace' "
        "(first at prospects.csv line 2), skipped",
    ]
    created = json_lines(captured.out)
    assert [r["prospectName"] for r in created] == ["Ada Lovelace", "Grace Hopper"]

    # The jobs exist as this user's, with exactly the fields a client writes.
    assert main(["jobs", "--json", "--user", email]) == 0
    listed = json_lines(capsys.readouterr().out)
    assert {r["jobId"] for r in listed} == {r["jobId"] for r in created}
    user = signed_in(stack, email)
    document = as_user(stack, user).get("greetingJobs", created[0]["jobId"])
    assert document["voiceId"] == "piper:joe"  # the natural local voice, without ElevenLabs
    assert document["greetingEndSecond"] == 1.5
    assert document["inputVideo"].startswith(upload_prefix(user.uid))
    assert document["batchIndex"] == 0  # its row among the CSV's data rows (Grace's is 2)
    # Nothing more to prove: cancel them rather than load the shared worker.
    for record in created:
        main(["cancel", record["jobId"], "--user", email])
    capsys.readouterr()
    # A cancel is a request the trigger answers; export what became of the jobs, not a race.
    for record in created:
        wait_finished(clients, record["jobId"], 60)

    # The rep's list comes back row for row, with what became of each.
    [batch_id] = re.findall(r"^batch ([0-9a-f]+): 2 jobs$", captured.err, re.MULTILINE)
    out = tmp_path / "export.csv"
    args = ["export", batch_id, "--from", str(names), "--csv", str(out), "--user", email]
    assert main(args) == 0
    rows = list(csv.reader(out.open(newline="")))
    assert rows[0] == ["prospectName", "company", *NEW_COLUMNS]
    assert [r[:2] for r in rows[1:]] == [
        ["Ada Lovelace", "Analytical"],
        ["", "Nobody"],
        ["Grace Hopper", "Navy"],
        ["ada lovelace", "Analytical"],
    ]
    assert [r[2] for r in rows[1:]][1::2] == ["skipped", "skipped"]
    assert all(r[2] in ("cancelled", "completed", "failed") for r in rows[1:][0::2]), rows


def test_a_cancelled_job_ends_cancelled_and_exits_1(
    stack: Any,
    email: str,
    sample_video: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(["submit", str(sample_video), "--name", "Alan Turing", "--json", "--user", email]) == 0
    )
    (record,) = json_lines(capsys.readouterr().out)
    job_id = record["jobId"]

    assert main(["cancel", job_id, "--user", email]) == 0
    assert f"cancel requested for job {job_id}" in capsys.readouterr().out

    assert main(["watch", job_id, "--json", "--user", email]) == 1
    captured = capsys.readouterr()
    (ended,) = json_lines(captured.out)
    assert (ended["jobId"], ended["status"], ended["output"]) == (job_id, "cancelled", None)

    # The rules refuse a second cancel, and say why in one line.
    assert main(["cancel", job_id, "--user", email]) == 1
    assert capsys.readouterr().err == (
        f"error: Firestore refused to cancel job {job_id}: it is cancelled, and only a job that "
        "has not finished can be cancelled\n"
    )
    # Another user cannot even see it.
    assert main(["cancel", job_id, "--user", f"other-{email}"]) == 1
    assert capsys.readouterr().err == f"error: job {job_id}: not found, or not yours\n"


def test_a_file_that_is_not_a_video_is_refused_before_upload(
    stack: Any,
    clients: Any,
    email: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_text("this is not a video\n" * 100)
    code = main(["submit", str(notes), "--name", "Ada", "--wait", "--user", email])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err == f"error: {notes} is not a video ffprobe can read\n"
    assert captured.out == ""
    assert uploads_of(clients, signed_in(stack, email)) == []


def test_a_job_whose_upload_is_not_a_video_fails_with_its_code(
    stack: Any, clients: Any, email: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Past the client's own probe: junk uploaded and the job created directly, as the user.
    user = signed_in(stack, email)
    junk = f"{upload_prefix(user.uid)}junk.mp4"
    clients.bucket.blob(junk).upload_from_string(b"junk " * 200, content_type="video/mp4")
    job_id = f"cli-{uuid.uuid4().hex[:16]}"
    as_user(stack, user).create_job(
        job_id,
        JobRequest(
            user_id=user.uid,
            input_video=junk,
            prospect_name="Grace Hopper",
            voice_id="espeak:en-us",
            greeting_end_second=1.5,
        ),
    )
    # The installed console script, as a user runs it (stdout is a pipe: status lines).
    result = subprocess.run(
        ["uv", "run", "--quiet", "greetings", "watch", job_id, "--json", "--user", email],
        cwd=REPO_ROOT,
        env={**os.environ, **stack.client_env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    (record,) = json_lines(result.stdout)
    assert (record["jobId"], record["status"]) == (job_id, "failed")
    assert record["error"]["code"] == "input-not-video"
    assert record["output"] is None
    assert f"Grace Hopper [{job_id}]: failed" in result.stderr
    assert "Traceback" not in result.stderr

    # A failed job may be retried; this one fails again, for the same reason.
    assert main(["retry", job_id, "--user", email]) == 0
    assert f"retry requested for job {job_id}" in capsys.readouterr().out
    # The trigger answers the request apart from the command: watching at once could see the
    # first attempt's failure, before the new attempt begins.
    wait_for(
        lambda: as_user(stack, user).get("greetingJobs", job_id),
        lambda job: job.get("retryCount") == 1,
        60,
    )
    assert main(["watch", job_id, "--json", "--user", email]) == 1
    (again,) = json_lines(capsys.readouterr().out)
    assert (again["status"], again["error"]["code"]) == ("failed", "input-not-video")
    assert as_user(stack, user).get("greetingJobs", job_id)["retryCount"] == 1


def test_resubmitting_the_same_video_does_not_upload_it_again(
    stack: Any,
    clients: Any,
    email: str,
    sample_video: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    copy = tmp_path / "same-bytes-other-name.mp4"
    copy.write_bytes(sample_video.read_bytes())
    job_ids: list[str] = []
    for video in (sample_video, copy):
        assert main(["submit", str(video), "--name", "Ada", "--json", "--user", email]) == 0
        captured = capsys.readouterr()
        job_ids += [r["jobId"] for r in json_lines(captured.out)]
        first = video == sample_video
        assert ("video uploaded:" if first else "video reused (already uploaded):") in captured.err
    user = signed_in(stack, email)
    assert len(uploads_of(clients, user)) == 1
    for job_id in job_ids:
        main(["cancel", job_id, "--user", email])
    capsys.readouterr()


def test_a_preview_is_saved_and_the_batch_after_it_reuses_its_speech(
    stack: Any,
    email: str,
    sample_video: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fake_elevenlabs: FakeElevenLabs | None,
) -> None:
    if fake_elevenlabs is None:
        pytest.skip("another test session's fake ElevenLabs serves the worker")
    voice = f"preview{uuid.uuid4().hex[:13]}"  # an ElevenLabs id's shape: 20 alphanumerics
    fake_elevenlabs.add_voice(voice)
    common = ["--voice", voice, "--user", email]
    code = main(
        [
            "preview",
            str(sample_video),
            "--name",
            "Ada Lovelace",
            *common,
            "--out",
            str(tmp_path / "preview"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    [saved] = list((tmp_path / "preview").glob("ada-lovelace-*.mp4"))
    info = probe(saved)
    assert info.video is not None and info.audio is not None
    assert "the preview is in" in captured.out
    job_id = saved.stem.removeprefix("ada-lovelace-")
    job = as_user(stack, signed_in(stack, email)).get("greetingJobs", job_id)
    assert job["preview"] is True
    spoken_for_ada = fake_elevenlabs.calls_for("Hey Ada,")
    assert spoken_for_ada >= 1

    # The batch after it: Ada's greeting comes from the cache, only Grace's is asked for.
    argv = ["submit", str(sample_video), "--name", "Ada Lovelace", "--name", "Grace Hopper"]
    code = main([*argv, *common, "--wait", "--out", str(tmp_path / "batch")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert len(list((tmp_path / "batch").glob("*.mp4"))) == 2
    assert fake_elevenlabs.calls_for("Hey Ada,") == spoken_for_ada
    assert fake_elevenlabs.calls_for("Hey Grace,") >= 1
