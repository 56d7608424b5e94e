"""The job lifecycle's rules that the trigger and the worker must agree on, in plain Python.

Firebase deploys triggers/ alone and the worker image holds flows/ alone, yet both decide which
flow run a job's attempt gets (the idempotency key), which jobs a batch's run may take and what
counts as finished. So these rules live once, here, with nothing but the standard library, and
triggers/lifecycle.py is a symbolic link to this file: firebase-tools packs the file it points
to (it reads the function source with `stat`, which follows links), and the worker image copies
flows/. A second copy that could drift is what this module replaces.
"""

from __future__ import annotations

from typing import Any

COLLECTION = "greetingJobs"
# greetingJobs/{jobId}/requests/{requestId}: what a user asks of a job (see firestore.rules).
REQUESTS = "requests"
# greetingBatches/{batchId}: written once after a batch's jobs, it starts them as one flow run.
BATCHES = "greetingBatches"
MAX_BATCH_JOBS = 400  # with their batch document, one Firestore commit (<= 500 writes)
MAX_JOB_ID_CHARS = 200

PENDING = "pending"
QUEUED = "queued"
VALIDATING_INPUT = "validating-input"
PROCESSING_AUDIO = "processing-audio"
GENERATING_VIDEO = "generating-video"
UPLOADING_RESULT = "uploading-result"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})
WAITING = frozenset({PENDING, QUEUED})  # created, no stage started yet
QUEUED_PROGRESS = 5

CANCEL = "cancel"  # a request allowed while the job is unfinished
RETRY = "retry"  # a request allowed once it failed
REVOKE_SHARE = "revoke-share"  # a request allowed once it completed with a share page

# shares/{shareId}: a completed video's share page (flows/shares.py writes it, the `share`
# function serves it). Closed to every client: a viewer gets only what the function answers.
SHARES = "shares"

BATCH_ATTEMPT = 0  # a batch runs its jobs' first attempts; later ones run alone

# The error code of a job refused by its owner's allowance of new jobs per minute (the trigger's
# triggers/quota.py). Retryable by the user, whose retry request takes from the allowance again;
# the sweep, whose retries would not, leaves such a job alone (flows/sweep.py).
RATE_LIMITED = "rate-limited"


def upload_prefix(user_id: str) -> str:
    """The user's own upload folder: the only place a job's inputVideo may name."""
    return f"user-uploads/{user_id}/"


def results_prefix(user_id: str) -> str:
    """The folder of everything the user's jobs stored."""
    return f"greeting-results/{user_id}/"


def result_path(user_id: str, job_id: str) -> str:
    """Where a job's video is stored: the same path on every attempt."""
    return f"{results_prefix(user_id)}{job_id}.mp4"


def poster_path(user_id: str, job_id: str) -> str:
    """The video's poster JPEG (a frame after the greeting), beside it."""
    return f"{results_prefix(user_id)}{job_id}.poster.jpg"


def thumbnail_path(user_id: str, job_id: str) -> str:
    """The animated GIF of the opening with the first name, for emails, beside it."""
    return f"{results_prefix(user_id)}{job_id}.gif"


def result_paths(user_id: str, job_id: str) -> list[str]:
    """Everything a job stores: what goes when the job is deleted."""
    return [f(user_id, job_id) for f in (result_path, poster_path, thumbnail_path)]


def attempt_of(job: dict[str, Any]) -> int:
    """The job's current attempt (its `retryCount`): every write of another attempt is refused."""
    return int(job.get("retryCount") or 0)


def idempotency_key(job_id: str, attempt: int) -> str:
    """One flow run per job and attempt; a new attempt needs a new key (keys never expire)."""
    return f"{job_id}:{attempt}"


def flow_run_name(job_id: str, attempt: int) -> str:
    return f"job-{job_id}-attempt-{attempt}"


def batch_idempotency_key(batch_id: str) -> str:
    """One flow run per batch, however often its document's event is delivered."""
    return f"batch:{batch_id}"


def batch_flow_run_name(batch_id: str) -> str:
    return f"batch-{batch_id}"


def batch_job_ids(batch: dict[str, Any]) -> list[str]:
    """The batch's listed job ids that can be job ids at all, once each, in order."""
    ids = [
        j
        for j in batch.get("jobIds") or []
        if isinstance(j, str) and 0 < len(j) <= MAX_JOB_ID_CHARS
    ]
    return list(dict.fromkeys(ids))[:MAX_BATCH_JOBS]


def belongs_to_batch(
    job: dict[str, Any] | None,
    batch_id: str,
    batch: dict[str, Any],
    statuses: frozenset[str] | None = WAITING,
) -> bool:
    """A job the batch's run may take: the batch owner's, naming this batch, on its first
    attempt, in one of `statuses` (None: in any).

    The batch document's list is the client's word, which the rules cannot check against the
    jobs it names: this is the check, on both sides.
    """
    return bool(
        job
        and batch.get("userId")
        and job.get("userId") == batch.get("userId")
        and job.get("batchId") == batch_id
        and attempt_of(job) == BATCH_ATTEMPT
        and (statuses is None or job.get("status") in statuses)
    )


# "Edit and retry": the fields a retry request may change, each set to a new value or to None
# (back to the default: the end found from the recording, the default text, no pronunciation).
# firestore.rules check them as job creation does; the trigger checks again (edit_fields).
RETRY_EDITS = ("greetingEndSecond", "greetingText", "firstName", "pronunciation")
MAX_GREETING_END_S = 10


class EditRefused(ValueError):
    """A retry request's edits that no job could be created with."""


def edit_fields(changes: Any) -> dict[str, Any]:
    """A retry request's `changes`, checked: {field: value or None} (pure)."""
    if not isinstance(changes, dict) or not changes:
        raise EditRefused("changes must name at least one field")
    unknown = sorted(set(changes) - set(RETRY_EDITS))
    if unknown:
        raise EditRefused(f"a retry cannot change {', '.join(unknown)}")
    checked: dict[str, Any] = {}
    # In RETRY_EDITS's order, not the map's: Firestore does not keep a map's key order, and the
    # request's answer (describe_edits) must read the same whichever order the client wrote.
    for field in (f for f in RETRY_EDITS if f in changes):
        value = changes[field]
        if value is None and field != "firstName":
            checked[field] = None
        elif field == "greetingEndSecond":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not 0 < value <= MAX_GREETING_END_S:
                raise EditRefused(
                    f"greetingEndSecond must be above 0 and at most {MAX_GREETING_END_S}"
                )
            checked[field] = float(value)
        elif field == "greetingText":
            if not isinstance(value, str) or not 1 <= len(value) <= 200:
                raise EditRefused("greetingText must be 1 to 200 characters")
            checked[field] = value
        elif field == "firstName":
            if not isinstance(value, str) or len(value) > 100:
                raise EditRefused("firstName must be at most 100 characters")
            checked[field] = value
        else:  # pronunciation
            if not isinstance(value, str) or not 1 <= len(value) <= 100:
                raise EditRefused("pronunciation must be 1 to 100 characters")
            checked[field] = value
    return checked


def describe_edits(changes: dict[str, Any]) -> str:
    """The edits in a user's words, for the request's answer (pure)."""
    words = []
    for field, value in changes.items():
        if field == "greetingEndSecond":
            words.append(
                "the greeting end found from the recording"
                if value is None
                else f"the greeting ending at {value:g} s"
            )
        elif field == "greetingText":
            words.append("the default greeting text" if value is None else f"the text {value!r}")
        elif field == "firstName":
            words.append(f"the first name {value!r}" if value else "no first name")
        else:
            words.append("no pronunciation" if value is None else f"said {value!r}")
    return ", ".join(words)
