"""`greetings watch`: follow jobs live until they end, driven by Firestore snapshot listeners.

Firestore pushes every change of the watched job documents; nothing here polls. The table is
redrawn in place on a terminal; anywhere else each status change is one line. Completed videos
are downloaded as they finish, and with `--json` each job that ends is one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from flows.job import COLLECTION, JobStatus
from greetings.client.enduser import Denied
from greetings.client.prospects import output_filename
from greetings.client.session import Session, connect
from greetings.client.table import (
    BAR_WIDTH,
    JobView,
    exit_code,
    json_line,
    render_table,
    status_line,
    summary,
)
from greetings.client.transfer import TRANSFER_ERRORS, download
from greetings.errors import CliError
from greetings.settings import get_settings

# Firestore's `in` filter takes at most 30 values: one listener per 30 jobs.
IDS_PER_LISTENER = 30
REDRAW_EVERY_S = 0.5
WIDE_TERMINAL = 110
NARROW_BAR_WIDTH = 10

Update = tuple[str, dict[str, Any] | None]  # (job id, document or None once deleted)


class JobListener:
    """Snapshot listeners on the given jobs of one user, feeding `updates`.

    The query names the owner (`userId == uid`), which is what lets firestore.rules allow it in
    production. Against the emulator the client acts as admin and the rules are not applied, so
    the job ids must be ones the user's own (rule-checked) REST requests returned.
    """

    def __init__(self, db: firestore.Client, uid: str, job_ids: Iterable[str]) -> None:
        self.db = db
        self.uid = uid
        self.job_ids = list(dict.fromkeys(job_ids))
        self.updates: queue.Queue[Update] = queue.Queue()
        self._watches: list[Any] = []

    def start(self) -> None:
        jobs = self.db.collection(COLLECTION)
        for i in range(0, len(self.job_ids), IDS_PER_LISTENER):
            chunk = [jobs.document(job_id) for job_id in self.job_ids[i : i + IDS_PER_LISTENER]]
            query = jobs.where(filter=firestore.FieldFilter("userId", "==", self.uid)).where(
                filter=firestore.FieldFilter(FieldPath.document_id(), "in", chunk)
            )
            self._watches.append(query.on_snapshot(self._on_snapshot))

    def _on_snapshot(self, _docs: Any, changes: Any, _read_time: Any) -> None:
        # Runs on the listener's thread: hand the change to the main thread, nothing more.
        for change in changes:
            document = change.document
            removed = change.type.name == "REMOVED"
            self.updates.put((document.id, None if removed else document.to_dict()))

    def stop(self) -> None:
        for watch in self._watches:
            # Closing a stream that already died is no error worth showing.
            with contextlib.suppress(Exception):
                watch.unsubscribe()
        self._watches.clear()


class Display(Protocol):
    def show(self, views: list[JobView], now: datetime) -> None: ...

    def note(self, line: str) -> None: ...

    def close(self, views: list[JobView], now: datetime) -> None: ...


@dataclass
class LiveTable:
    """The table, redrawn in place (plain ANSI: cursor up, clear line)."""

    stream: TextIO
    _drawn: int = 0

    def _erase(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def show(self, views: list[JobView], now: datetime) -> None:
        # A line that wraps, or a table taller than the screen, would break moving back up.
        columns, height = shutil.get_terminal_size()
        bar = BAR_WIDTH if columns >= WIDE_TERMINAL else NARROW_BAR_WIDTH
        lines = [
            line[: columns - 1]
            for line in render_table(views, now, bar_width=bar, max_rows=max(3, height - 3))
        ]
        # Overwrite the previous drawing line by line (no blank frame, so no flicker).
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        leftover = "\x1b[J" if len(lines) < self._drawn else ""
        self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines) + leftover)
        self.stream.flush()
        self._drawn = len(lines)

    def note(self, line: str) -> None:
        # Above the table: erase it, print the note, and let the next `show` draw it below.
        self._erase()
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self, views: list[JobView], now: datetime) -> None:
        self.show(views, now)


@dataclass
class StatusLines:
    """One line per status change, for pipes, logs and CI."""

    stream: TextIO
    _seen: dict[str, str] = field(default_factory=dict)

    def show(self, views: list[JobView], now: datetime) -> None:
        for view in views:
            if self._seen.get(view.job_id) != view.status:
                self._seen[view.job_id] = view.status
                self.stream.write(status_line(view, now) + "\n")
        self.stream.flush()

    def note(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self, views: list[JobView], now: datetime) -> None:
        self.show(views, now)
        self.note(summary(views))


def display_for(stream: TextIO) -> Display:
    return LiveTable(stream) if stream.isatty() else StatusLines(stream)


@dataclass
class Follow:
    """Follows jobs to their end: the display, downloads and JSON lines."""

    display: Display
    out_dir: Path | None
    json_stream: TextIO | None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    fetch: Callable[[str, Path], Path] = download
    views: dict[str, JobView] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    download_failures: int = 0

    def update(self, job_id: str, data: Mapping[str, Any] | None) -> None:
        if job_id in self.finished:
            return  # an ended job stays as it was reported
        previous = self.views.get(job_id)
        view = JobView.from_document(job_id, data)
        if data is None and previous is not None:
            view = JobView(job_id, previous.prospect_name, view.status, previous.progress)
        self.views[job_id] = view

    def finish_ended(self) -> None:
        for view in list(self.views.values()):
            if view.ended and view.job_id not in self.finished:
                self.finished.add(view.job_id)
                output = self._save(view)
                if self.json_stream is not None:
                    self.json_stream.write(json_line(view, output) + "\n")
                    self.json_stream.flush()

    def _save(self, view: JobView) -> str | None:
        if self.out_dir is None or view.status != JobStatus.COMPLETED:
            return None
        if not view.download_url:
            self.download_failures += 1
            self.display.note(f"{view.prospect_name}: completed, but has no download URL")
            return None
        dest = self.out_dir / output_filename(view.prospect_name, view.job_id)
        try:
            self.fetch(view.download_url, dest)
        except TRANSFER_ERRORS as exc:
            self.download_failures += 1
            self.display.note(f"{view.prospect_name}: download failed: {exc}")
            return None
        self.display.note(f"{view.prospect_name}: saved {dest}")
        return str(dest)

    @property
    def done(self) -> bool:
        return bool(self.views) and len(self.finished) == len(self.views)

    def rows(self) -> list[JobView]:
        return list(self.views.values())


def follow_jobs(
    session: Session,
    initial: Mapping[str, Mapping[str, Any]],
    *,
    out_dir: Path | None,
    json_output: bool,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Shows `initial` jobs (id -> document) live until each ends; returns the exit code."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    # With --json, stdout carries only the JSON lines; the live view goes to stderr.
    display = display_for(stderr if json_output else stdout)
    follow = Follow(display, out_dir, stdout if json_output else None)
    for job_id, document in initial.items():
        follow.update(job_id, document)
    listener = JobListener(session.listener_db, session.user.uid, initial)
    listener.start()
    try:
        display.show(follow.rows(), follow.clock())
        follow.finish_ended()
        while not follow.done:
            try:
                job_id, data = listener.updates.get(timeout=REDRAW_EVERY_S)
            except queue.Empty:
                if isinstance(display, LiveTable):
                    display.show(follow.rows(), follow.clock())  # the elapsed clock ticks
                continue
            follow.update(job_id, data)
            while not listener.updates.empty():
                follow.update(*listener.updates.get_nowait())
            display.show(follow.rows(), follow.clock())
            follow.finish_ended()
    except KeyboardInterrupt:
        unfinished = [j for j in follow.views if j not in follow.finished]
        stderr.write(
            "\nstopped watching; the jobs keep running. Follow them again with:\n"
            f"  greetings watch {' '.join(unfinished)}\n"
        )
        return 130
    finally:
        listener.stop()
    display.close(follow.rows(), follow.clock())
    return exit_code(follow.rows(), follow.download_failures)


def _watched_jobs(session: Session, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The jobs to follow, read as the user (so the rules decide which are theirs)."""
    if not job_ids:
        mine = session.firestore.list_mine(COLLECTION, session.user.uid)
        return {row["id"]: row for row in mine if not JobView.from_document(row["id"], row).ended}
    jobs: dict[str, dict[str, Any]] = {}
    for job_id in dict.fromkeys(job_ids):
        try:
            jobs[job_id] = session.firestore.get(COLLECTION, job_id)
        except Denied as exc:
            raise CliError(f"job {job_id}: not found, or not yours") from exc
    return jobs


def watch_command(args: argparse.Namespace) -> int:
    session = connect(get_settings(), args.user)
    jobs = _watched_jobs(session, args.job_ids)
    if not jobs:
        print("no unfinished jobs to watch (see them all with `greetings jobs`)")
        return 0
    out_dir = Path(args.out) if args.out else None
    return follow_jobs(session, jobs, out_dir=out_dir, json_output=args.json)
