"""`greetings jobs`, `greetings cancel JOB_ID`, `greetings retry JOB_ID [--greeting-end ...]`:
a user's own jobs.

Every request goes through Firestore as the user, so firestore.rules decide: a user sees only
their own jobs, may ask to cancel one that is still running and to retry one that failed.
"""

from __future__ import annotations

import argparse
from typing import Any

from flows.job import COLLECTION, RUNNING_STAGES, JobStatus, RequestAction
from flows.lifecycle import EditRefused, edit_fields
from greetings.client.enduser import Denied
from greetings.client.session import Session, connect
from greetings.client.table import JobView, json_line, newest_first, render_job_list
from greetings.errors import CliError
from greetings.settings import get_settings

CANCELLABLE = frozenset({JobStatus.PENDING, JobStatus.QUEUED, *RUNNING_STAGES})


def jobs_command(args: argparse.Namespace) -> int:
    session = connect(get_settings(), args.user)
    rows = session.firestore.list_mine(COLLECTION, session.user.uid)
    views = [JobView.from_document(row["id"], row) for row in rows]
    if args.json:
        for view in newest_first(views):
            print(json_line(view, None))
        return 0
    if not views:
        print("no jobs yet: create some with `greetings submit VIDEO --name NAME`")
        return 0
    print("\n".join(render_job_list(views)))
    return 0


def _read(session: Session, job_id: str) -> dict[str, Any]:
    try:
        return session.firestore.get(COLLECTION, job_id)
    except Denied as exc:
        raise CliError(f"job {job_id}: not found, or not yours") from exc


def refusal(action: str, job_id: str, status: str) -> str:
    """Why the rules refused a cancel or retry request, in the user's words."""
    if action == "cancel":
        why = "only a job that has not finished can be cancelled"
    else:
        why = "only a failed job can be retried"
    return f"Firestore refused to {action} job {job_id}: it is {status}, and {why}"


def retry_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The fields `greetings retry` was asked to change (edit and retry), checked as the trigger
    checks them, so a bad value is refused here in words rather than by the rules."""
    given = {
        "greetingEndSecond": getattr(args, "greeting_end", None),
        "greetingText": getattr(args, "greeting_text", None),
        "firstName": getattr(args, "first_name", None),
        "pronunciation": getattr(args, "pronunciation", None),
    }
    changes = {field: value for field, value in given.items() if value is not None}
    if not changes:
        return {}
    try:
        return edit_fields(changes)
    except EditRefused as exc:
        raise CliError(f"cannot retry with these changes: {exc}") from exc


def _request(args: argparse.Namespace, action: str) -> int:
    session = connect(get_settings(), args.user)
    changes = retry_changes(args) if action == "retry" else {}
    job = _read(session, args.job_id)
    status = str(job.get("status", "?"))
    name = job.get("prospectName", "?")
    try:
        session.firestore.request(
            args.job_id, session.user.uid, RequestAction(action), changes or None
        )
    except Denied as exc:
        if exc.status in (403, 404):  # PERMISSION_DENIED: the rules said no
            raise CliError(refusal(action, args.job_id, status)) from exc
        raise
    print(
        f"{action} requested for job {args.job_id} ({name}); follow it with "
        f"`greetings watch {args.job_id}`"
    )
    return 0


def cancel_command(args: argparse.Namespace) -> int:
    return _request(args, "cancel")


def retry_command(args: argparse.Namespace) -> int:
    return _request(args, "retry")
