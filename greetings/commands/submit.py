"""`greetings submit`: one recorded video and a list of prospects in, one job per prospect out.

Everything a user can get wrong is checked before anything is uploaded: the names (as the
pipeline would clean them), the greeting, the voice, and the video itself (probed locally with
the pipeline's own media checks).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from flows.job import COLLECTION, MAX_BATCH_JOBS, JobError, JobRequest
from flows.media import ProbeError, probe
from flows.shares import MAX_CTA_TEXT, cta_url
from flows.stages.synthesize import ESPEAK_VOICE_PREFIX
from flows.stages.validate import (
    VOICE_ID,
    check_media,
    following_text,
    greeting_end,
    greeting_text,
)
from greetings.client.prospects import Prospects, names_from_args, names_from_csv
from greetings.client.session import Session, connect
from greetings.client.table import JobView, json_line
from greetings.client.transfer import Upload, upload_once
from greetings.commands import fit
from greetings.errors import EXIT_JOB_FAILED, UsageError
from greetings.settings import StackSettings, get_settings

DEFAULT_GREETING_END_S = 1.5


@dataclass(frozen=True)
class Submission:
    video: Path
    names: list[str]
    voice_id: str
    greeting_end_s: float | None  # None: the worker finds it from the recording
    greeting_text: str | None = None
    first_names: list[str | None] | None = None  # per name; None: derived from the name
    pronunciations: list[str | None] | None = None  # per name; None: said as written
    # The video's words right after the greeting, the same for every job of the submission.
    following_text: str | None = None
    preview: bool = False  # one job to hear before the batch (`greetings preview`)
    # Per name: its row in the CSV (the job's batchIndex); None: the names' own order.
    rows: list[int] | None = None
    # The share page's fields, the same for every job: sender_name, cta_url, cta_text.
    page: dict[str, str] = field(default_factory=dict)


def choose_voice(requested: str | None, settings: StackSettings) -> str:
    """`--voice`, or the local voice when no ElevenLabs key is configured: piper:joe, or
    espeak-ng with GREETINGS_LOCAL_VOICE=espeak."""
    if requested:
        if not VOICE_ID.fullmatch(requested):
            raise UsageError(
                f"--voice {requested!r} is no voice id: an ElevenLabs voice id (20 letters and "
                "digits), a local voice such as espeak:en-us, or clone"
            )
        return requested
    if settings.use_elevenlabs:
        raise UsageError(
            "ElevenLabs is configured (GREETINGS_ELEVENLABS_API_KEY): pick its voice with "
            "--voice VOICE_ID"
        )
    if settings.local_voice == "espeak":
        return ESPEAK_VOICE_PREFIX + settings.espeak_voice
    # The natural local voice; a worker without it speaks with espeak-ng and says so.
    return "piper:joe"


def read_csv_file(csv_path: str) -> str:
    """A CSV the user names, as text (a spreadsheet's byte-order mark dropped)."""
    path = Path(csv_path)
    if not path.is_file():
        raise UsageError(f"{csv_path}: no such file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{csv_path} is not UTF-8 text: save it as UTF-8 CSV") from exc


def read_prospects(names: list[str] | None, csv_path: str | None, err: TextIO) -> Prospects:
    """The names to greet; skipped ones are reported on `err`, one line each."""
    if csv_path is not None:
        prospects: Prospects = names_from_csv(read_csv_file(csv_path), Path(csv_path).name)
    else:
        prospects = names_from_args(names or [])
    for skipped in prospects.skipped:
        err.write(f"warning: {skipped}\n")
    if not prospects.names:
        raise UsageError("no prospect names left to greet")
    return prospects


def check_video(video: Path, greeting_end_s: float | None, settings: StackSettings) -> None:
    """Refuses, before any upload, a file the pipeline would fail as input."""
    if not video.exists():
        raise UsageError(f"{video}: no such file")
    if not video.is_file():
        raise UsageError(f"{video} is not a file")
    size = video.stat().st_size
    if size == 0:
        raise UsageError(f"{video} is empty")
    if size > settings.max_input_bytes:
        raise UsageError(
            f"{video} is {size / 1e6:.0f} MB; the limit is {settings.max_input_bytes / 1e6:.0f} MB"
        )
    try:
        info = probe(video)
    except ProbeError as exc:
        raise UsageError(f"{video} is not a video ffprobe can read") from exc
    try:
        check_media(info, greeting_end_s, settings.max_input_seconds)
    except JobError as exc:
        raise UsageError(f"{video}: {exc.message}") from exc


def build_submission(args: argparse.Namespace, settings: StackSettings, err: TextIO) -> Submission:
    try:
        end_s = None if args.greeting_end is None else greeting_end(args.greeting_end)
        if args.greeting_text is not None:
            greeting_text(args.greeting_text, "Name")
        following = following_text(args.following_text)
    except JobError as exc:
        raise UsageError(exc.message) from exc
    voice = choose_voice(args.voice, settings)
    page = share_page_options(args)
    prospects = read_prospects(args.name, args.names_csv, err)
    video = Path(args.video)
    check_video(video, end_s, settings)
    return Submission(
        video,
        prospects.names,
        voice,
        end_s,
        args.greeting_text,
        prospects.first_names,
        prospects.pronunciations,
        following,
        rows=prospects.rows,
        page=page,
    )


def share_page_options(args: argparse.Namespace) -> dict[str, str]:
    """--sender-name, --cta-url and --cta-text, checked as firestore.rules check them."""
    page: dict[str, str] = {}
    limits = (("sender_name", "--sender-name", 80), ("cta_text", "--cta-text", MAX_CTA_TEXT))
    for field_name, option, most in limits:
        value = getattr(args, field_name, None)
        if value is not None:
            if not value.strip() or len(value) > most:
                raise UsageError(f"{option} must be 1-{most} characters")
            page[field_name] = value.strip()
    url = getattr(args, "cta_url", None)
    if url is not None:
        if cta_url(url) is None:
            raise UsageError(f"--cta-url must be an https link, not {url!r}")
        page["cta_url"] = url.strip()
    if "cta_text" in page and "cta_url" not in page:
        raise UsageError("--cta-text needs --cta-url: a button needs somewhere to go")
    return page


def upload_video(session: Session, submission: Submission, out: TextIO) -> Upload:
    """Uploads the video, unless the user's folder holds the same bytes already."""
    upload = upload_once(session.uploads, session.user.uid, submission.video)
    verb = "reused (already uploaded)" if upload.reused else "uploaded"
    out.write(f"video {verb}: {upload.path} ({upload.size / 1e6:.1f} MB)\n")
    return upload


def create_jobs(
    session: Session, submission: Submission, out: TextIO, upload: Upload | None = None
) -> dict[str, str]:
    """Uploads the video (once) and creates one job per name; returns job id -> name."""
    upload = upload or upload_video(session, submission, out)
    jobs: dict[str, str] = {}
    names = list(submission.names)
    first_names = submission.first_names or [None] * len(names)
    pronunciations = submission.pronunciations or [None] * len(names)
    rows = submission.rows or list(range(len(names)))
    # One batch (one flow run) per MAX_BATCH_JOBS names: a batch is one Firestore commit.
    for start in range(0, len(names), MAX_BATCH_JOBS):
        batch_id = uuid.uuid4().hex
        requests = {
            uuid.uuid4().hex[:20]: JobRequest(
                user_id=session.user.uid,
                input_video=upload.path,
                prospect_name=name,
                voice_id=submission.voice_id,
                greeting_end_second=submission.greeting_end_s,
                greeting_text=submission.greeting_text,
                first_name=first_name,
                pronunciation=pronunciation,
                following_text=submission.following_text,
                preview=submission.preview or None,
                batch_id=batch_id,
                batch_index=row,
                **submission.page,
            )
            for name, first_name, pronunciation, row in zip(
                names[start : start + MAX_BATCH_JOBS],
                first_names[start : start + MAX_BATCH_JOBS],
                pronunciations[start : start + MAX_BATCH_JOBS],
                rows[start : start + MAX_BATCH_JOBS],
                strict=True,
            )
        }
        session.firestore.create_batch(batch_id, requests)
        out.write(f"batch {batch_id}: {len(requests)} jobs\n")
        for job_id, request in requests.items():
            jobs[job_id] = request.prospect_name
            out.write(f"job {job_id} created for {request.prospect_name}\n")
    out.flush()
    return jobs


def check_fit_first(
    session: Session, submission: Submission, upload: Upload, out: TextIO, *, yes: bool
) -> bool:
    """Runs the fit check, prints its table; whether to create the jobs (flows/fit_check.py)."""
    first_names = submission.first_names or [None] * len(submission.names)
    pronunciations = submission.pronunciations or [None] * len(submission.names)
    prospects = [
        {"prospectName": name, "firstName": first, "pronunciation": said}
        for name, first, said in zip(submission.names, first_names, pronunciations, strict=True)
    ]
    fields = fit.check_fields(
        session.user.uid,
        upload.path,
        submission.voice_id,
        prospects,
        greeting_end_s=submission.greeting_end_s,
        greeting_text=submission.greeting_text,
        following_text=submission.following_text,
    )
    check = fit.run_fit_check(session, fields)
    fit.print_lines(fit.fit_lines(check), out)
    ask = input if sys.stdin.isatty() and out.isatty() else None
    if fit.go_on(check, yes=yes, ask=ask):
        return True
    out.write(
        "no videos were created: change the greeting end or text, or pass --yes to create "
        "them anyway\n"
    )
    return False


def submit_and_follow(
    session: Session,
    submission: Submission,
    *,
    wait: bool,
    out_dir: Path,
    json_output: bool,
    fit_check: bool = False,
    yes: bool = False,
) -> int:
    """Creates the jobs (after a fit check, with `fit_check`) and, with `wait`, follows them."""
    # With --json, stdout carries only JSON lines; what people read goes to stderr.
    human = sys.stderr if json_output else sys.stdout
    upload = upload_video(session, submission, human)
    if fit_check and not check_fit_first(session, submission, upload, human, yes=yes):
        return EXIT_JOB_FAILED
    jobs = create_jobs(session, submission, human, upload)
    if not wait:
        if json_output:
            for job_id, name in jobs.items():
                print(json_line(JobView(job_id, name, "pending", 0), None))
        human.write(f"follow them live: greetings watch {' '.join(jobs)}\n")
        return 0
    from greetings.commands.watch import follow_jobs

    initial = {job_id: session.firestore.get(COLLECTION, job_id) for job_id in jobs}
    return follow_jobs(session, initial, out_dir=out_dir, json_output=json_output)


def submit_command(args: argparse.Namespace) -> int:
    settings = get_settings()
    submission = build_submission(args, settings, sys.stderr)
    session = connect(settings, args.user)
    return submit_and_follow(
        session,
        submission,
        wait=args.wait,
        out_dir=Path(args.out),
        json_output=args.json,
        fit_check=not args.no_fit_check,
        yes=args.yes,
    )
