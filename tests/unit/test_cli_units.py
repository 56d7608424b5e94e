"""The CLI's plain functions: names and CSVs, slugs, the table, JSON lines, exit codes, uploads."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from flows.job import JobRequest
from greetings.cli import build_parser, main
from greetings.client.enduser import SignedInUser, SignInError, uid_from_id_token
from greetings.client.prospects import names_from_args, names_from_csv, output_filename, slugify
from greetings.client.session import Session
from greetings.client.table import (
    GONE,
    JobView,
    exit_code,
    format_elapsed,
    json_line,
    parse_time,
    progress_bar,
    render_job_list,
    render_table,
    status_line,
    summary,
)
from greetings.client.transfer import (
    StoredObject,
    content_type,
    digest_file,
    holds,
    upload_once,
    upload_path,
)
from greetings.commands.jobs import refusal
from greetings.commands.submit import (
    Submission,
    choose_voice,
    create_jobs,
    read_prospects,
    share_page_options,
)
from greetings.commands.watch import Follow, LiveTable, StatusLines
from greetings.errors import EXIT_USAGE, UsageError
from greetings.settings import StackSettings

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def job(status: str = "queued", **extra: Any) -> dict[str, Any]:
    return {"prospectName": "Ada Lovelace", "status": status, "createdAt": T0, **extra}


# --- names -----------------------------------------------------------------------------------


def test_csv_takes_the_name_column_and_skips_blanks_and_duplicates() -> None:
    text = "company,name\nAcme,Ada Lovelace\nAcme,  \nNavy,Grace Hopper\nAcme, ada  lovelace\n"
    prospects = names_from_csv(text, "people.csv")
    assert prospects.names == ["Ada Lovelace", "Grace Hopper"]
    assert [str(s) for s in prospects.skipped] == [
        "people.csv line 3: blank name, skipped",
        "people.csv line 5: duplicate name 'ada lovelace' (first at people.csv line 2), skipped",
    ]


@pytest.mark.parametrize("header", ["prospectName", "ProspectName", " name ", "prospect_name"])
def test_csv_name_column_spellings(header: str) -> None:
    assert names_from_csv(f"{header}\nJosé Núñez\n", "x.csv").names == ["José Núñez"]


def test_csv_with_a_bom_and_a_quoted_name() -> None:
    prospects = names_from_csv('\ufeffname\n"Hopper, Grace"\n', "x.csv")
    assert prospects.names == ["Hopper, Grace"]


def test_csv_without_a_name_column_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as raised:
        names_from_csv("company,email\nAcme,a@b.c\n", "people.csv")
    assert raised.value.exit_code == EXIT_USAGE
    assert "people.csv has no `name` (or `prospectName`) column" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_empty_csv_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="empty"):
        names_from_csv("", "people.csv")


def test_names_the_pipeline_would_refuse_are_skipped_with_its_reason() -> None:
    prospects = names_from_args(["Ada", "<script>", "Ada", "x" * 101])
    assert prospects.names == ["Ada"]
    reasons = [str(s) for s in prospects.skipped]
    assert reasons[0].startswith("--name #2: '<script>': The prospect name contains characters")
    assert reasons[1] == "--name #3: duplicate name 'Ada' (first at --name #1), skipped"
    assert "at most 100" in reasons[2]


def test_a_csv_may_say_what_to_call_each_prospect() -> None:
    text = "Name,First Name\nDr. Anna-Lena Smith,\nRobert Jones,Bob\nKim Lee,$(id)\nAl Roe,Al\n"
    prospects = names_from_csv(text, "names.csv")
    assert prospects.names == ["Dr. Anna-Lena Smith", "Robert Jones", "Al Roe"]
    # A blank cell leaves it to the pipeline (as the page does); a first name the pipeline would
    # refuse is skipped.
    assert prospects.first_names == [None, "Bob", "Al"]
    assert "names.csv line 4" in str(prospects.skipped[0])
    without = names_from_csv("name\nRobert Jones\n", "names.csv")
    assert without.first_names == [None]  # derived from the name by the pipeline


def test_a_csv_may_say_how_to_say_each_name() -> None:
    text = (
        "name,firstName,Pronunciation\nSiobhan Kelly,,  Sheh-VAWN \nAda Lovelace,Ada,\n"
        "Kim Lee,,<phoneme>\nAoife Byrne,,EE-fa\n"
    )
    prospects = names_from_csv(text, "names.csv")
    # The name stays as written (the job's name, the file's); the pronunciation goes with it.
    assert prospects.names == ["Siobhan Kelly", "Ada Lovelace", "Aoife Byrne"]
    assert prospects.pronunciations == ["Sheh-VAWN", None, "EE-fa"]  # blank: said as written
    assert prospects.first_names == [None, "Ada", None]
    assert str(prospects.skipped[0]).startswith(
        "names.csv line 4: 'Kim Lee': pronunciation contains characters that cannot be spoken"
    )
    assert names_from_csv("name\nAda\n", "n.csv").pronunciations == [None]
    assert names_from_args(["Ada"]).pronunciations == [None]


def test_read_prospects_reports_skips_and_refuses_when_none_are_left(tmp_path: Path) -> None:
    csv_file = tmp_path / "names.csv"
    csv_file.write_text("name\n\n,\n")
    err = io.StringIO()
    with pytest.raises(UsageError, match="no prospect names left"):
        read_prospects(None, str(csv_file), err)
    with pytest.raises(UsageError, match="no such file"):
        read_prospects(None, str(tmp_path / "missing.csv"), err)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Ada Lovelace", "ada-lovelace"),
        ("José Núñez", "jose-nunez"),
        ("Ærøskøbing Straße", "aeroskobing-strasse"),
        ("O'Brien & Sons (UK)", "o-brien-sons-uk"),
        ("李小龙", "prospect"),
        ("  --  ", "prospect"),
        ("a" * 80, "a" * 60),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_output_filename() -> None:
    assert output_filename("Grace Hopper", "abc123") == "grace-hopper-abc123.mp4"
    assert output_filename("Grace", "../x") == "grace-x.mp4"


# --- the table and what scripts read -------------------------------------------------------


def test_progress_bar_and_elapsed() -> None:
    assert progress_bar(0) == "[--------------------]   0%"
    assert progress_bar(55) == "[###########---------]  55%"
    assert progress_bar(100) == "[####################] 100%"
    assert progress_bar(250) == progress_bar(100)
    assert [format_elapsed(s) for s in (None, 7.04, 65, 3700)] == ["-", "7.0s", "1m05s", "1h01m"]


def test_timestamps_from_rest_and_from_the_client_library() -> None:
    assert parse_time("2026-01-02T03:04:05.123456789Z") == T0 + timedelta(microseconds=123456)
    assert parse_time(T0.replace(tzinfo=None)) == T0
    assert parse_time("not a time") is None
    assert parse_time(None) is None


def test_job_view_of_a_failed_job() -> None:
    view = JobView.from_document(
        "j1",
        job(
            "failed",
            progress=10,
            error={"code": "input-not-video", "message": "Not a video.", "retryable": False},
            completedAt=T0 + timedelta(seconds=4),
        ),
    )
    assert (view.status, view.progress, view.error_code) == ("failed", 10, "input-not-video")
    assert view.ended
    assert view.elapsed_s(T0 + timedelta(hours=1)) == 4.0


def test_job_view_fills_progress_from_the_status_and_ignores_a_stale_error() -> None:
    view = JobView.from_document("j1", job("generating-video", error={"code": "internal"}))
    assert (view.progress, view.error_code, view.ended) == (55, None, False)
    assert view.elapsed_s(T0 + timedelta(seconds=3)) == 3.0


def test_a_deleted_job_has_ended() -> None:
    view = JobView.from_document("j1", None)
    assert view.status == GONE
    assert view.ended


def test_render_table() -> None:
    views = [
        JobView.from_document("a", job("completed", progress=100, completedAt=T0)),
        JobView.from_document(
            "b",
            job(
                "failed",
                prospectName="Grace Hopper with a very long company name attached",
                progress=10,
                error={"code": "input-not-video", "message": "x"},
            ),
        ),
        JobView.from_document("c", job("processing-audio", prospectName="Alan Turing")),
    ]
    lines = render_table(views, T0 + timedelta(seconds=5))
    assert lines[0].split() == ["NAME", "STATUS", "PROGRESS", "ELAPSED", "ERROR"]
    assert lines[1].split() == [
        "Ada",
        "Lovelace",
        "completed",
        "[####################]",
        "100%",
        "0.0s",
    ]
    assert lines[2].startswith("Grace Hopper with a very lo… ")
    assert lines[2].endswith("input-not-video")
    assert "[######--------------]  30%     5.0s" in lines[3]
    assert lines[4] == "3 jobs: 1 completed, 1 failed, 1 running"
    assert len({line.index("STATUS") for line in lines[:1]}) == 1
    # Columns line up.
    assert len({line.find("[") for line in lines[1:4]}) == 1


def test_a_long_table_shows_unfinished_jobs_first_and_counts_the_rest() -> None:
    views = [JobView.from_document(f"d{i}", job("completed")) for i in range(5)]
    views.append(JobView.from_document("r", job("queued", prospectName="Still Running")))
    lines = render_table(views, T0, bar_width=10, max_rows=3)
    assert lines[1].startswith("Still Running")
    assert "[----------]   5%" in lines[1]
    assert lines[-2:] == ["… and 4 more", "6 jobs: 5 completed, 1 running"]
    assert len(lines) == 5


def test_summary_of_nothing() -> None:
    assert summary([]) == "0 jobs: none"
    assert render_table([], T0) == [render_table([], T0)[0], "0 jobs: none"]


def test_status_line() -> None:
    view = JobView.from_document(
        "j1", job("failed", error={"code": "input-not-video", "message": "Not a video."})
    )
    assert status_line(view, T0 + timedelta(seconds=2)) == (
        "Ada Lovelace [j1]: failed 0% (2.0s): input-not-video: Not a video."
    )


def test_json_line() -> None:
    done = JobView.from_document("j1", job("completed", downloadUrl="http://x/y.mp4"))
    record = json.loads(json_line(done, "out/ada-lovelace-j1.mp4"))
    assert record == {
        "jobId": "j1",
        "prospectName": "Ada Lovelace",
        "status": "completed",
        "error": None,
        "output": "out/ada-lovelace-j1.mp4",
        "downloadUrl": "http://x/y.mp4",
    }
    failed = JobView.from_document(
        "j2", job("failed", error={"code": "tts-auth", "message": "m", "retryable": False})
    )
    assert json.loads(json_line(failed, None))["error"] == {"code": "tts-auth", "message": "m"}


def test_exit_code() -> None:
    def views(*statuses: str) -> list[JobView]:
        return [JobView.from_document(str(i), job(s)) for i, s in enumerate(statuses)]

    assert exit_code(views("completed", "completed")) == 0
    assert exit_code(views("completed", "failed")) == 1
    assert exit_code(views("cancelled")) == 1
    assert exit_code(views("completed"), download_failures=1) == 1


def test_job_list_is_newest_first() -> None:
    views = [
        JobView.from_document("old", job("completed", createdAt=T0)),
        JobView.from_document("new", job("queued", createdAt=T0 + timedelta(minutes=1))),
    ]
    lines = render_job_list(views)
    assert lines[0].split() == ["JOB", "ID", "NAME", "STATUS", "PROGRESS", "CREATED"]
    assert [line.split()[0] for line in lines[1:]] == ["new", "old"]


def test_refusal_says_why() -> None:
    assert refusal("cancel", "j1", "completed") == (
        "Firestore refused to cancel job j1: it is completed, and only a job that has not "
        "finished can be cancelled"
    )
    assert refusal("retry", "j1", "queued").endswith("only a failed job can be retried")


# --- following jobs --------------------------------------------------------------------------


class Notes:
    def __init__(self) -> None:
        self.notes: list[str] = []
        self.shown = 0

    def show(self, views: list[JobView], now: datetime) -> None:
        self.shown += 1

    def note(self, line: str) -> None:
        self.notes.append(line)

    def close(self, views: list[JobView], now: datetime) -> None:
        pass


def test_follow_downloads_completed_jobs_once_and_writes_one_json_line_each(
    tmp_path: Path,
) -> None:
    fetched: list[tuple[str, Path]] = []
    out = io.StringIO()

    def fetch(url: str, dest: Path) -> Path:
        fetched.append((url, dest))
        return dest

    follow = Follow(Notes(), tmp_path, out, fetch=fetch)
    follow.update("a", job("processing-audio"))
    follow.update("b", job("queued", prospectName="Grace Hopper"))
    follow.finish_ended()
    assert not follow.done and out.getvalue() == ""

    follow.update("a", job("completed", downloadUrl="http://x/a.mp4"))
    follow.update("b", job("failed", prospectName="Grace Hopper", error={"code": "internal"}))
    follow.finish_ended()
    follow.finish_ended()
    # A late event for an ended job changes nothing.
    follow.update("a", job("uploading-result"))
    assert follow.done
    assert fetched == [("http://x/a.mp4", tmp_path / "ada-lovelace-a.mp4")]
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["jobId"], r["status"], r["output"]) for r in records] == [
        ("a", "completed", str(tmp_path / "ada-lovelace-a.mp4")),
        ("b", "failed", None),
    ]
    assert exit_code(follow.rows(), follow.download_failures) == 1


def test_follow_counts_a_failed_download(tmp_path: Path) -> None:
    def fetch(url: str, dest: Path) -> Path:
        raise OSError("disk full")

    display = Notes()
    follow = Follow(display, tmp_path, None, fetch=fetch)
    follow.update("a", job("completed", downloadUrl="http://x/a.mp4"))
    follow.finish_ended()
    assert follow.download_failures == 1
    assert display.notes == ["Ada Lovelace: download failed: disk full"]
    assert exit_code(follow.rows(), follow.download_failures) == 1


def test_status_lines_print_only_status_changes() -> None:
    stream = io.StringIO()
    lines = StatusLines(stream)
    lines.show([JobView.from_document("a", job("queued"))], T0)
    lines.show([JobView.from_document("a", job("queued", progress=7))], T0)
    lines.show([JobView.from_document("a", job("validating-input"))], T0)
    assert [line.split(": ")[1].split()[0] for line in stream.getvalue().splitlines()] == [
        "queued",
        "validating-input",
    ]


def test_live_table_redraws_in_place() -> None:
    stream = io.StringIO()
    table = LiveTable(stream)
    views = [JobView.from_document("a", job("queued"))]
    table.show(views, T0)
    first = stream.getvalue()
    assert first.count("\n") == 3 and "\x1b[" in first and "F" not in first.split("NAME")[0]
    table.show(views, T0)
    assert stream.getvalue()[len(first) :].startswith("\x1b[3F")
    table.note("saved out/x.mp4")
    assert stream.getvalue().endswith("\x1b[3F\x1b[Jsaved out/x.mp4\n")


# --- uploads, voices, tokens -----------------------------------------------------------------


class MemoryStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts = 0

    def stat(self, path: str) -> StoredObject | None:
        data = self.objects.get(path)
        if data is None:
            return None
        return StoredObject(len(data), None)

    def put(self, path: str, source: Path, content_type: str) -> None:
        assert content_type == "video/mp4"
        self.puts += 1
        self.objects[path] = source.read_bytes()


def test_the_same_file_is_uploaded_once(tmp_path: Path) -> None:
    video = tmp_path / "Pitch.MP4"
    video.write_bytes(b"not really a video, but bytes are bytes")
    store = MemoryStore()
    first = upload_once(store, "uid-1", video)
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(video.read_bytes())
    second = upload_once(store, "uid-1", copy)
    assert (first.reused, second.reused, store.puts) == (False, True, 1)
    assert first.path == second.path
    assert first.path == f"user-uploads/uid-1/{digest_file(video).sha256}.mp4"


def test_upload_path_and_content_type(tmp_path: Path) -> None:
    file = tmp_path / "x"
    file.write_bytes(b"abc")
    digest = digest_file(file)
    assert digest.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert digest.md5_b64 == "kAFQmDzST7DWlj99KOF/cg=="
    assert upload_path("u", digest, "a.weird ext!") == f"user-uploads/u/{digest.sha256}"
    assert content_type("a.mov") == "video/quicktime"
    assert content_type("a.webm") == "video/webm"
    assert content_type("a.txt") == "video/mp4"


def test_an_object_holds_the_file_only_with_the_same_size_and_md5(tmp_path: Path) -> None:
    file = tmp_path / "x"
    file.write_bytes(b"abc")
    digest = digest_file(file)
    assert holds(StoredObject(3, digest.md5_b64), digest)
    assert holds(StoredObject(3, None), digest)
    assert not holds(StoredObject(4, None), digest)
    assert not holds(StoredObject(3, "other"), digest)
    assert not holds(None, digest)


class BatchRecorder:
    """The user's Firestore as `create_jobs` uses it: records each batch it is asked to create."""

    def __init__(self) -> None:
        self.batches: dict[str, dict[str, JobRequest]] = {}

    def create_batch(self, batch_id: str, jobs: dict[str, JobRequest]) -> None:
        self.batches[batch_id] = jobs


def test_every_job_of_a_batch_carries_its_pronunciation_and_the_following_words(
    tmp_path: Path,
) -> None:
    video = tmp_path / "pitch.mp4"
    video.write_bytes(b"a pitch")
    firestore = BatchRecorder()
    session = Session(
        StackSettings(), SignedInUser("uid-1", "token"), cast(Any, firestore), MemoryStore(), True
    )
    submission = Submission(
        video,
        ["Siobhan Kelly", "Ada Lovelace"],
        "espeak:en-us",
        1.5,
        pronunciations=["Sheh-VAWN", None],
        following_text="I saw your team is hiring",
    )
    created = create_jobs(session, submission, io.StringIO())
    assert sorted(created.values()) == ["Ada Lovelace", "Siobhan Kelly"]
    (jobs,) = firestore.batches.values()  # one batch: each job its own document
    written = {r.prospect_name: r.to_firestore() for r in jobs.values()}
    assert written["Siobhan Kelly"]["pronunciation"] == "Sheh-VAWN"
    assert "pronunciation" not in written["Ada Lovelace"]
    assert {w["followingText"] for w in written.values()} == {"I saw your team is hiring"}


def test_a_preview_is_one_job_marked_as_one(tmp_path: Path) -> None:
    video = tmp_path / "pitch.mp4"
    video.write_bytes(b"a pitch")
    firestore = BatchRecorder()
    session = Session(
        StackSettings(), SignedInUser("uid-1", "token"), cast(Any, firestore), MemoryStore(), True
    )
    preview = Submission(video, ["Siobhan Kelly"], "piper:joe", 1.5, preview=True)
    create_jobs(session, preview, io.StringIO())
    batch = Submission(video, ["Siobhan Kelly", "Ada Lovelace"], "piper:joe", 1.5)
    create_jobs(session, batch, io.StringIO())
    first, second = (list(jobs.values()) for jobs in firestore.batches.values())
    assert [r.to_firestore()["preview"] for r in first] == [True]
    assert all("preview" not in r.to_firestore() for r in second)
    args = build_parser().parse_args(
        ["preview", "v.mp4", "--name", "Siobhan Kelly", "--pronunciation", "Sheh-VAWN"]
    )
    said = (args.name, args.pronunciation, args.out)
    assert said == (["Siobhan Kelly"], "Sheh-VAWN", "out/preview")
    assert args.voice is None and args.greeting_end == 1.5


def test_following_text_is_an_option_of_submit(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(
        ["submit", "v.mp4", "--name", "A", "--following-text", "I saw your team is hiring"]
    )
    assert args.following_text == "I saw your team is hiring"
    assert build_parser().parse_args(["submit", "v.mp4", "--name", "A"]).following_text is None
    # Refused before anything is uploaded, as the worker would refuse it.
    assert main(["submit", "v.mp4", "--name", "Ada", "--following-text", "<b>hi</b>"]) == 2
    assert "followingText contains characters that cannot be spoken" in capsys.readouterr().err


VOICE = "JBFqnCBsd6RMkjVDRZzb"  # an ElevenLabs voice id's shape


def test_choose_voice() -> None:
    assert choose_voice(None, StackSettings(tts_provider="espeak")) == "piper:joe"
    robotic = StackSettings(tts_provider="espeak", local_voice="espeak")
    assert choose_voice(None, robotic) == "espeak:en-us"
    assert choose_voice(VOICE, StackSettings(tts_provider="espeak")) == VOICE
    with pytest.raises(UsageError, match="no voice id"):
        choose_voice("../../v1/sound-generation", StackSettings(tts_provider="espeak"))
    eleven = StackSettings(tts_provider="auto", elevenlabs_api_key="k")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="--voice"):
        choose_voice(None, eleven)
    assert choose_voice(VOICE, eleven) == VOICE


def _jwt(claims: dict[str, Any]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{payload}.signature"


def test_uid_from_id_token() -> None:
    assert uid_from_id_token(_jwt({"user_id": "u1", "sub": "u1"})) == "u1"
    assert uid_from_id_token(_jwt({"sub": "u2"})) == "u2"
    with pytest.raises(SignInError):
        uid_from_id_token("not-a-token")
    with pytest.raises(SignInError):
        uid_from_id_token(_jwt({"aud": "x"}))


# --- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "v.mp4"],  # no names
        ["submit", "v.mp4", "--name", "A", "--names-csv", "n.csv"],  # both
        ["submit", "v.mp4", "--name", "A", "--greeting-end", "soon"],
        ["cancel"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        build_parser().parse_args(argv)
    assert raised.value.code == 2


def test_existing_commands_still_parse() -> None:
    args = build_parser().parse_args(["stack", "status"])
    assert args.action == "status"
    args = build_parser().parse_args(["render", "v.mp4", "--name", "A", "--out", "o.mp4"])
    assert (args.greeting_end, args.voice) == (1.5, "default")


def test_a_missing_video_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["submit", str(tmp_path / "nope.mp4"), "--name", "Ada"])
    assert code == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nope.mp4'}: no such file\n"


def test_a_greeting_end_out_of_range_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", "v.mp4", "--name", "Ada", "--greeting-end", "12"]) == 2
    assert "at most 10 seconds" in capsys.readouterr().err


def test_a_stack_that_is_not_running_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GREETINGS_ID_TOKEN", raising=False)
    # Set through monkeypatch, so the CLI's defaults for them do not outlive the test.
    for key, value in {
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
        "GOOGLE_CLOUD_PROJECT": "demo-greetings",
        "GCLOUD_PROJECT": "demo-greetings",
    }.items():
        monkeypatch.setenv(key, value)
    # Port 9 (discard) answers nowhere on loopback.
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9")
    assert main(["jobs", "--user", "nobody@greetings.test"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "error: the local stack is not running (the Auth emulator at 127.0.0.1:9 does not "
        "answer): run `uv run greetings stack up` (or `make demo`)\n"
    )


def test_share_page_options_are_checked_as_the_rules_check_them() -> None:
    parser = build_parser()

    def page(*options: str) -> dict[str, str]:
        args = parser.parse_args(["submit", "v.mp4", "--name", "Ada", *options])
        return share_page_options(args)

    assert page() == {}
    assert page("--sender-name", " Sam Rep ", "--cta-url", "https://cal.example.com/x") == {
        "sender_name": "Sam Rep",
        "cta_url": "https://cal.example.com/x",
    }
    with pytest.raises(UsageError, match="https link"):
        page("--cta-url", "http://cal.example.com/x")
    with pytest.raises(UsageError, match="needs --cta-url"):
        page("--cta-text", "Book a call")
    with pytest.raises(UsageError, match="1-40 characters"):
        page("--cta-url", "https://cal.example.com/x", "--cta-text", "x" * 41)
    # What the jobs then carry: the fields the rules allow on a new job.
    request = JobRequest(
        user_id="u",
        input_video="v",
        prospect_name="Ada",
        voice_id="piper:joe",
        **page("--cta-url", "https://c.example.com/", "--cta-text", "Book"),
    )
    assert request.to_firestore()["ctaText"] == "Book"
