"""How jobs look on a terminal and to scripts: the live table, status lines, JSON lines, exit codes.

Plain functions of job documents (as dicts, the way Firestore hands them over), so what a user
sees is unit-tested without a stack.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flows.job import PROGRESS, TERMINAL_STATUSES, JobStatus
from greetings.errors import EXIT_JOB_FAILED, EXIT_OK

BAR_WIDTH = 20
MAX_NAME_WIDTH = 28
# A job document deleted while it is being watched (its owner may delete finished jobs).
GONE = "deleted"
_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: Any) -> datetime | None:
    """A Firestore timestamp: a datetime (client library) or an RFC 3339 string (REST)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            # REST timestamps carry nanoseconds; Python keeps microseconds.
            parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value).replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


@dataclass(frozen=True)
class JobView:
    """What the CLI shows of one job."""

    job_id: str
    prospect_name: str
    status: str
    progress: int
    created_at: datetime | None = None
    ended_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    download_url: str | None = None

    @classmethod
    def from_document(cls, job_id: str, data: Mapping[str, Any] | None) -> JobView:
        if data is None:
            return cls(job_id, "?", GONE, 0)
        status = str(data.get("status") or JobStatus.PENDING)
        error = data.get("error") if isinstance(data.get("error"), Mapping) else None
        progress = data.get("progress")
        if isinstance(progress, bool) or not isinstance(progress, int | float):
            progress = _default_progress(status)
        ended = data.get("completedAt") or (data.get("updatedAt") if status in _ENDED else None)
        return cls(
            job_id=job_id,
            prospect_name=str(data.get("prospectName") or "?"),
            status=status,
            progress=max(0, min(100, int(progress))),
            created_at=parse_time(data.get("createdAt")),
            ended_at=parse_time(ended) if status in _ENDED else None,
            error_code=str(error.get("code")) if error and status == JobStatus.FAILED else None,
            error_message=str(error.get("message", ""))
            if error and status == JobStatus.FAILED
            else None,
            download_url=data.get("downloadUrl") or None,
        )

    @property
    def ended(self) -> bool:
        return self.status in _ENDED

    def elapsed_s(self, now: datetime) -> float | None:
        if self.created_at is None:
            return None
        until = self.ended_at if self.ended and self.ended_at else now
        return max(0.0, (until - self.created_at).total_seconds())


def _default_progress(status: str) -> int:
    try:
        return PROGRESS.get(JobStatus(status), 0)
    except ValueError:
        return 0


_ENDED = frozenset({*(s.value for s in TERMINAL_STATUSES), GONE})


def progress_bar(percent: int, width: int = BAR_WIDTH) -> str:
    percent = max(0, min(100, percent))
    filled = round(width * percent / 100)
    return f"[{'#' * filled}{'-' * (width - filled)}] {percent:3d}%"


def format_elapsed(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(
    views: Iterable[JobView],
    now: datetime,
    *,
    bar_width: int = BAR_WIDTH,
    max_rows: int | None = None,
) -> list[str]:
    """The live table: one row per job (name, status, progress bar, elapsed, error code).

    With `max_rows`, unfinished jobs are shown first and the rest is counted in one line.
    """
    rows = list(views)
    shown = rows
    if max_rows is not None and len(rows) > max_rows:
        shown = ([v for v in rows if not v.ended] + [v for v in rows if v.ended])[
            : max(1, max_rows - 1)
        ]
    name_width = min(MAX_NAME_WIDTH, max([4, *(len(v.prospect_name) for v in shown)]))
    status_width = max([len(JobStatus.UPLOADING_RESULT), *(len(v.status) for v in shown)])
    lines = [
        f"{'NAME':<{name_width}}  {'STATUS':<{status_width}}  {'PROGRESS':<{bar_width + 7}}  "
        f"{'ELAPSED':>7}  ERROR".rstrip()
    ]
    for view in shown:
        lines.append(
            f"{_fit(view.prospect_name, name_width):<{name_width}}  "
            f"{view.status:<{status_width}}  {progress_bar(view.progress, bar_width)}  "
            f"{format_elapsed(view.elapsed_s(now)):>7}  {view.error_code or ''}".rstrip()
        )
    if len(shown) < len(rows):
        lines.append(f"… and {len(rows) - len(shown)} more")
    lines.append(summary(rows))
    return lines


def summary(views: Iterable[JobView]) -> str:
    """e.g. `3 jobs: 1 completed, 2 running`."""
    counts: dict[str, int] = {}
    rows = list(views)
    for view in rows:
        key = view.status if view.ended else "running"
        counts[key] = counts.get(key, 0) + 1
    order = ["completed", "failed", "cancelled", GONE, "running"]
    parts = [f"{counts[k]} {k}" for k in order if k in counts]
    return f"{len(rows)} job{'s' if len(rows) != 1 else ''}: {', '.join(parts) or 'none'}"


def status_line(view: JobView, now: datetime) -> str:
    """One line for a status change, for logs and pipes (no redrawing)."""
    line = (
        f"{view.prospect_name} [{view.job_id}]: {view.status} {view.progress}% "
        f"({format_elapsed(view.elapsed_s(now))})"
    )
    if view.error_code:
        line += f": {view.error_code}: {view.error_message}"
    return line


def json_line(view: JobView, output: str | None) -> str:
    """The `--json` record of a job that ended."""
    error = (
        {"code": view.error_code, "message": view.error_message or ""} if view.error_code else None
    )
    return json.dumps(
        {
            "jobId": view.job_id,
            "prospectName": view.prospect_name,
            "status": view.status,
            "error": error,
            "output": output,
            "downloadUrl": view.download_url,
        },
        ensure_ascii=False,
    )


def exit_code(views: Iterable[JobView], download_failures: int = 0) -> int:
    """0 when every job completed (and its video arrived), 1 when any did not."""
    all_done = all(view.status == JobStatus.COMPLETED for view in views)
    return EXIT_OK if all_done and not download_failures else EXIT_JOB_FAILED


def newest_first(views: Iterable[JobView]) -> list[JobView]:
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(views, key=lambda v: v.created_at or oldest, reverse=True)


def render_job_list(views: Iterable[JobView]) -> list[str]:
    """`greetings jobs`: newest first, one line per job."""
    rows = newest_first(views)
    id_width = max([6, *(len(v.job_id) for v in rows)])
    name_width = min(MAX_NAME_WIDTH, max([4, *(len(v.prospect_name) for v in rows)]))
    status_width = max([6, *(len(v.status) for v in rows)])
    lines = [
        f"{'JOB ID':<{id_width}}  {'NAME':<{name_width}}  {'STATUS':<{status_width}}  "
        f"{'PROGRESS':>8}  CREATED"
    ]
    for view in rows:
        created = (
            view.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if view.created_at else "-"
        )
        lines.append(
            f"{view.job_id:<{id_width}}  {_fit(view.prospect_name, name_width):<{name_width}}  "
            f"{view.status:<{status_width}}  {view.progress:>7}%  {created}"
        )
    return lines
