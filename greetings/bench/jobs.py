"""What the job benchmarks share: a fresh end user, and a listener timing each job's statuses.

Jobs are created as the end user does it (greetings/commands/submit.py: an upload, then job
documents written through Firestore's REST API with the user's ID token, so firestore.rules
apply). A snapshot listener on the user's jobs records when a client first sees each status;
the job's own `history` says when the server wrote it.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.cloud import firestore

from flows.job import COLLECTION, TERMINAL_STATUSES, JobStatus
from greetings.client.session import Session, connect
from greetings.errors import UsageError
from greetings.settings import StackSettings

# The way to `completed`, in order: a status seen implies every earlier one happened.
HAPPY_PATH: tuple[str, ...] = (
    JobStatus.PENDING,
    JobStatus.QUEUED,
    JobStatus.VALIDATING_INPUT,
    JobStatus.PROCESSING_AUDIO,
    JobStatus.GENERATING_VIDEO,
    JobStatus.UPLOADING_RESULT,
    JobStatus.COMPLETED,
)
TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)
FIRST_NAMES = (
    "Ada", "Ben", "Cleo", "Dan", "Eva", "Finn", "Gia", "Hugo", "Ida", "Jon", "Kai", "Lea",
    "Max", "Nia", "Otto", "Pia", "Ravi", "Sam", "Tess", "Uma", "Vic", "Wes", "Yara", "Zoe",
)  # fmt: skip
SYLLABLES = ("ba", "ko", "mi", "ren", "sa", "lu", "te", "vo", "na", "di", "ro", "ka", "le", "mo")


def fresh_session(settings: StackSettings, label: str) -> Session:
    """A new Auth-emulator user of its own, so its jobs never mix with anyone else's."""
    if settings.id_token is not None:
        raise UsageError(
            "greetings bench measures the local stack: unset GREETINGS_ID_TOKEN to run it"
        )
    return connect(settings, f"bench-{label}-{uuid.uuid4().hex[:12]}@greetings.test")


def prospect_names(count: int, rng: random.Random) -> list[str]:
    """`count` different short names ("Ada Kosa"), new each run so the speech cache misses.

    Short, so "Hey <name>," fits the sample's 1.5 s greeting slot without speeding up much.
    """
    names: list[str] = []
    taken: set[str] = set()
    if count > len(FIRST_NAMES) * len(SYLLABLES) ** 2 // 2:
        raise ValueError(f"{count} names are too many to draw at random")
    while len(names) < count:
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(SYLLABLES).title()}{rng.choice(SYLLABLES)}"
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def new_job_id() -> str:
    return uuid.uuid4().hex[:20]  # as `greetings submit` names jobs


def epoch(value: Any) -> float | None:
    """A Firestore timestamp (a datetime) as seconds since the epoch."""
    return value.timestamp() if isinstance(value, datetime) else None


@dataclass
class JobTimes:
    """One job's times, all in epoch seconds on this machine's clock (the stack runs here too)."""

    job_id: str
    status: str
    created_at: float | None  # the server's request time of the create
    seen: dict[str, float]  # status -> when the listener first saw it
    written: dict[str, float]  # status -> `history[].at` of its first entry (attempt 0)
    error_code: str | None = None
    errors_seen: frozenset[str] = frozenset()  # every error code the listener ever saw on it
    attempts: int = 1


def history_times(history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """status -> time of its first entry in the job's history, for the first attempt only."""
    found: dict[str, float] = {}
    for entry in history:
        at = epoch(entry.get("at"))
        status = entry.get("status")
        if at is None or not isinstance(status, str) or int(entry.get("attempt") or 0) != 0:
            continue
        found.setdefault(status, at)
    return found


def reached(times: Mapping[str, float], status: str) -> float | None:
    """When the job was first known to be at `status` or past it on the way to `completed`.

    A listener can miss a status the server held only briefly (it may deliver only the newest
    state of a document); seeing a later one proves the earlier one was passed by then.
    """
    later = HAPPY_PATH[HAPPY_PATH.index(status) :]
    found = [times[s] for s in later if s in times]
    return min(found) if found else None


def since_created_ms(job: JobTimes, status: str, source: str) -> float | None:
    """Milliseconds from the job's creation until `status` was seen (`seen`) or written."""
    times = job.seen if source == "seen" else job.written
    at = reached(times, status)
    if at is None or job.created_at is None:
        return None
    return (at - job.created_at) * 1000


@dataclass
class JobWatch:
    """One user's jobs as a client sees them: when each status first arrived, the documents."""

    db: firestore.Client
    uid: str
    seen: dict[str, dict[str, float]] = field(default_factory=dict)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, set[str]] = field(default_factory=dict)
    snapshots: int = 0
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _watch: Any = None

    def _query(self) -> firestore.Query:
        return self.db.collection(COLLECTION).where(
            filter=firestore.FieldFilter("userId", "==", self.uid)
        )

    def start(self) -> JobWatch:
        """Listens: every change is pushed and timed as it arrives."""
        self._watch = self._query().on_snapshot(self._on_snapshot)
        return self

    def refresh(self) -> None:
        """Reads the user's jobs once: for following a batch without a listener's CPU cost.

        The Python client's listener re-sorts every document of the query on each change; over a
        100-job batch that cost this 2-core machine about 0.6 CPU s per job, taken from the stack.
        """
        now = time.time()
        snapshots = list(self._query().stream())
        with self._changed:
            for snapshot in snapshots:
                self._record(snapshot.id, snapshot.to_dict() or {}, now)
            self._changed.notify_all()

    def _on_snapshot(self, _docs: Any, changes: Any, _read_time: Any) -> None:
        now = time.time()  # first thing: the listener's thread may wait for the lock below
        with self._changed:
            self.snapshots += 1
            for change in changes:
                if change.type.name != "REMOVED":
                    self._record(change.document.id, change.document.to_dict() or {}, now)
            self._changed.notify_all()

    def _record(self, job_id: str, doc: dict[str, Any], now: float) -> None:
        self.seen.setdefault(job_id, {}).setdefault(str(doc.get("status")), now)
        self.docs[job_id] = doc
        error = doc.get("error")
        if isinstance(error, dict) and error.get("code"):
            self.errors.setdefault(job_id, set()).add(str(error["code"]))

    def finished(self, job_ids: Iterable[str]) -> set[str]:
        with self._changed:
            return {j for j in job_ids if self.docs.get(j, {}).get("status") in TERMINAL}

    def wait(self, job_ids: Sequence[str], timeout_s: float) -> bool:
        """Waits until every job is completed, failed or cancelled; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                if all(self.docs.get(j, {}).get("status") in TERMINAL for j in job_ids):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)

    def times(self, job_id: str) -> JobTimes:
        with self._changed:
            doc = dict(self.docs.get(job_id, {}))
            seen = dict(self.seen.get(job_id, {}))
            errors = frozenset(self.errors.get(job_id, set()))
        error = doc.get("error")
        return JobTimes(
            job_id=job_id,
            status=str(doc.get("status")),
            created_at=epoch(doc.get("createdAt")),
            seen=seen,
            written=history_times(doc.get("history") or []),
            error_code=error.get("code") if isinstance(error, dict) else None,
            errors_seen=errors,
            attempts=int(doc.get("retryCount") or 0) + 1,
        )

    def stop(self) -> None:
        if self._watch is not None:
            # A stream that already died has nothing left to close.
            with contextlib.suppress(Exception):
                self._watch.unsubscribe()
            self._watch = None
