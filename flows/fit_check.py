"""The `fit-check` flow: before a batch is sent, does each name's greeting fit the video?

A rep who marks the greeting's end right after "Hey John," learns only after "Create 40 videos"
that "Hey Maximilian Oyelaran-Whitfield," does not fit. A fit check answers before any job
exists: the rep's page (or `greetings submit`) writes a `fitChecks/{checkId}` document with the
video, the voice, the greeting text and end and the names; the trigger starts this flow; it
speaks every name exactly as the jobs would (through the same speech cache, so the jobs sent
afterwards reuse every greeting) and measures each against the video's slot as the render would
fit it (`measure_fit`: the greeting's silences cut, the pause used, faster speech, tempo),
without rendering. It writes, per name in the order given: fits, fits with a fit step, or does
not fit and how long a slot it needs; and the nearest later pause of the recording where every
name fits, which the page offers as a one-click change of the greeting end.

The document's fields are checked as a job's are (`validate_request`): a name that would fail
its job `invalid-name` fails here with the same words.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from google.cloud import firestore
from prefect import State, flow, get_run_logger
from prefect.states import Completed, Failed
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from flows.clients import Clients, worker_clients
from flows.job import ErrorCode, ErrorInfo, JobError
from flows.lifecycle import MAX_BATCH_JOBS
from flows.media import (
    ProcessLimits,
    allowing,
    confined_to,
    for_user,
    limited,
    sniff_container,
)
from flows.stages.clone import CLONE_VOICE_ID, CloneSource, voice_to_speak
from flows.stages.greeting_end import find_phrase_ends
from flows.stages.render import FitMeasure, InputAnalysis, analyze_input, measure_fit
from flows.stages.synthesize import SpeechFile, speak_greeting
from flows.stages.validate import (
    MAX_GREETING_END_S,
    ValidRequest,
    load_upload,
    settle_greeting_end,
    validate_request,
)
from flows.workdir import run_dir, work_root

FIT_CHECKS = "fitChecks"
log = logging.getLogger(__name__)

Verdict = Literal["fits", "fitted", "too-long", "invalid"]
CheckStatus = Literal["pending", "queued", "running", "done", "failed"]


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Prospect(_Camel):
    prospect_name: str
    first_name: str | None = None
    pronunciation: str | None = None


class FitCheckRequest(_Camel):
    """What the client writes in `fitChecks/{checkId}` (firestore.rules allows nothing else)."""

    user_id: str
    input_video: str
    voice_id: str
    greeting_end_second: float | None = None  # None: found from the recording, as for a job
    greeting_text: str | None = None
    greeting_fallback: str | None = None
    following_text: str | None = None
    prospects: list[Prospect] = Field(min_length=1, max_length=MAX_BATCH_JOBS)

    def job_fields(self, prospect: Prospect) -> dict[str, Any]:
        """The job document this prospect's job would have: what `validate_request` reads."""
        fields = {
            "userId": self.user_id,
            "inputVideo": self.input_video,
            "voiceId": self.voice_id,
            "greetingEndSecond": self.greeting_end_second,
            "greetingText": self.greeting_text,
            "greetingFallback": self.greeting_fallback,
            "followingText": self.following_text,
            "prospectName": prospect.prospect_name,
            "firstName": prospect.first_name,
            "pronunciation": prospect.pronunciation,
        }
        return {key: value for key, value in fields.items() if value is not None}


class NameFit(_Camel):
    """One name's answer, in the order the names were given."""

    prospect_name: str
    verdict: Verdict
    text: str | None = None  # what is spoken
    greeting_second: float | None = None  # the spoken greeting's length, as used
    tempo: float | None = None
    provider_speed: float | None = None
    pause_used_second: float | None = None
    needs_greeting_end_second: float | None = None  # too-long: the slot it needs at max tempo
    error: ErrorInfo | None = None  # invalid: why its job would fail


class FitCheckResult(_Camel):
    greeting_end_second: float  # the end checked: the client's, or the one found
    results: list[NameFit]
    counts: dict[str, int]
    # The nearest pause of the recording (at or after the greeting end) where every name fits;
    # None when all fit already, or when no pause in the first MAX_GREETING_END_S is late enough.
    suggested_greeting_end_second: float | None = None
    max_tempo: float

    def to_firestore(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


# --- the answer (pure) ----------------------------------------------------------------------------


def name_fit(request: ValidRequest, measured: FitMeasure) -> NameFit:
    verdict: Verdict = "fitted" if measured.fitted else "fits"
    if not measured.fits:
        verdict = "too-long"
    return NameFit(
        prospect_name=request.prospect_name,
        verdict=verdict,
        text=request.greeting_text,
        greeting_second=measured.greeting_s,
        tempo=measured.tempo,
        provider_speed=measured.provider_speed,
        pause_used_second=measured.pause_used_s,
        needs_greeting_end_second=None if measured.fits else measured.needs_slot_s,
    )


def invalid_fit(prospect_name: str, error: JobError) -> NameFit:
    return NameFit(prospect_name=prospect_name, verdict="invalid", error=_info(error))


def suggest_greeting_end(
    results: Sequence[NameFit], greeting_end_s: float, phrase_ends: Sequence[float]
) -> float | None:
    """The first pause of the recording, after the greeting end, long enough for every name
    that does not fit; None if every name fits, or if none is (pure).

    A slot ending at a pause needs no pause of its own to fit: the greeting plays up to just
    before the next phrase, which is exactly where `phrase_ends` are.
    """
    needs = [r.needs_greeting_end_second for r in results if r.verdict == "too-long"]
    if not needs:
        return None
    need = max(n for n in needs if n is not None)
    for end in phrase_ends:
        if end > greeting_end_s and end >= need and end <= MAX_GREETING_END_S:
            return round(end, 2)
    return None


def count_verdicts(results: Sequence[NameFit]) -> dict[str, int]:
    counts = {"fits": 0, "fitted": 0, "too-long": 0, "invalid": 0}
    for result in results:
        counts[result.verdict] += 1
    return counts


# --- the check ------------------------------------------------------------------------------------


# Measures one valid name: speaks it (the speech cache first) and fits it to the slot.
Measure = Callable[[ValidRequest], FitMeasure]


def check_names(
    request: FitCheckRequest,
    measure: Measure,
    *,
    threads: int = 4,
) -> tuple[list[NameFit], list[ValidRequest]]:
    """Each prospect's answer, in order: `invalid` where its job would fail validation, else
    `measure`d. A name whose speech or measure fails gets its error, and the rest go on."""
    results: list[NameFit | None] = [None] * len(request.prospects)
    valid: list[tuple[int, ValidRequest]] = []
    for index, prospect in enumerate(request.prospects):
        try:
            valid.append((index, validate_request(request.job_fields(prospect))))
        except JobError as error:
            results[index] = invalid_fit(prospect.prospect_name, error)

    def one(item: tuple[int, ValidRequest]) -> None:
        index, job = item
        try:
            results[index] = name_fit(job, measure(job))
        except JobError as error:
            results[index] = invalid_fit(job.prospect_name, error)

    # Copies of this flow run's context: the tasks' runs belong to it, the limits apply.
    with ThreadPoolExecutor(max(1, threads), "fit-check") as pool:
        list(pool.map(lambda item: contextvars.copy_context().run(one, item), valid))
    return [r for r in results if r is not None], [job for _, job in valid]


def run_check(clients: Clients, request: FitCheckRequest, work: Path) -> FitCheckResult:
    """Downloads the video once, finds its greeting end if the request has none, analyses the
    slot once, and measures every name against it."""
    settings = clients.settings
    first = validate_request(request.job_fields(request.prospects[0]).copy() | _ANY_NAME)
    video, info = load_upload(
        clients.bucket, first.input_video, work / "input", settings.max_input_bytes
    )
    settled = settle_greeting_end(first, video, info, settings.max_input_seconds)
    assert settled.greeting_end_s is not None
    end_s = settled.greeting_end_s
    with allowing(settings.media_timeout_seconds + info.duration_s):
        analysis: InputAnalysis = analyze_input(video, end_s, work / "analysis", info)
        container = info.container or sniff_container(video)
        phrase_ends = find_phrase_ends(video, container, MAX_GREETING_END_S + 1)
    voices = clients.voices
    voice_lock = threading.Lock()
    spoken_by: dict[str, str] = {}

    def voice_of(job: ValidRequest) -> str:
        if job.voice_id != CLONE_VOICE_ID:
            return job.voice_id
        with voice_lock:  # cloned once, then every name speaks with it
            if job.voice_id not in spoken_by:
                source = CloneSource(job.user_id, job.input_video, video, info.container, work)
                spoken_by[job.voice_id] = voice_to_speak(voices, job.voice_id, source)
            return spoken_by[job.voice_id]

    def measure(job: ValidRequest) -> FitMeasure:
        voice_id = voice_of(job)
        folder = work / f"name-{uuid.uuid4().hex[:12]}"
        folder.mkdir(parents=True, exist_ok=True)
        text, following = job.greeting_text, job.following_text
        speech = speak_greeting(voices, voice_id, text, folder, next_text=following)

        def respeak(speed: float) -> SpeechFile:
            return speak_greeting(voices, voice_id, text, folder, speed, next_text=following)

        return measure_fit(analysis, speech, folder, max_tempo=settings.max_tempo, respeak=respeak)

    results, _ = check_names(
        request.model_copy(update={"greeting_end_second": end_s}),
        measure,
        threads=settings.batch_concurrency,
    )
    return FitCheckResult(
        greeting_end_second=end_s,
        results=results,
        counts=count_verdicts(results),
        suggested_greeting_end_second=suggest_greeting_end(results, end_s, phrase_ends),
        max_tempo=settings.max_tempo,
    )


# The video-level checks need a job's fields with some valid name: the first prospect's may be
# the invalid one, and it is answered on its own in check_names.
_ANY_NAME = {"prospectName": "Ada", "firstName": None, "pronunciation": None}


def _info(error: JobError) -> ErrorInfo:
    return ErrorInfo(code=error.code, message=error.message, retryable=error.retryable)


def claim(db: firestore.Client, check_id: str) -> FitCheckRequest | None:
    """Marks the check `running` if it waits; its request, or None if it is not waiting (a
    second delivery of the trigger, or a check answered already)."""
    ref = db.collection(FIT_CHECKS).document(check_id)

    @firestore.transactional
    def apply(transaction: firestore.Transaction) -> dict[str, Any] | None:
        snapshot = ref.get(transaction=transaction)
        data = snapshot.to_dict() if snapshot.exists else None
        if not data or data.get("status") not in ("pending", "queued"):
            return None
        transaction.update(ref, {"status": "running", "startedAt": firestore.SERVER_TIMESTAMP})
        return data

    data = apply(db.transaction())
    if data is None:
        return None
    try:
        return FitCheckRequest.model_validate(data)
    except ValueError as exc:
        # The rules let only well-formed documents through; an admin-written one may not be.
        message = f"The fit check's fields are not valid: {exc}"
        finish(db, check_id, error=JobError(ErrorCode.INTERNAL, message[:500], retryable=False))
        return None


def finish(
    db: firestore.Client,
    check_id: str,
    result: FitCheckResult | None = None,
    error: JobError | None = None,
) -> None:
    fields: dict[str, Any] = {"finishedAt": firestore.SERVER_TIMESTAMP}
    if result is not None:
        fields |= {"status": "done", **result.to_firestore()}
    else:
        assert error is not None
        fields |= {"status": "failed", "error": _info(error).to_firestore()}
    db.collection(FIT_CHECKS).document(check_id).update(fields)


@flow(name="fit-check", log_prints=True, persist_result=False)
def fit_check(check_id: str) -> State[Any]:
    """Answers a fitChecks document: which names fit the video's greeting slot, and a fix."""
    logger = get_run_logger()
    clients = worker_clients()
    request = claim(clients.db, check_id)
    if request is None:
        return Completed(message="nothing to do: not waiting")
    settings = clients.settings
    limits = ProcessLimits(
        timeout_s=settings.media_timeout_seconds,
        memory_bytes=settings.media_memory_mb << 20,
        cpu_s=int(settings.media_timeout_seconds),
    )
    with (
        run_dir(work_root(settings.state_dir), f"fit-{check_id}") as tmp,
        limited(limits),
        confined_to(Path(tmp), settings.sandbox),
        for_user(clients.user_slots.of(request.user_id)),
    ):
        try:
            result = run_check(clients, request, Path(tmp))
        except JobError as error:
            logger.warning("fit check %s failed: %s", check_id, error)
            finish(clients.db, check_id, error=error)
            return Failed(message=f"{error.code}: {error.message}")
        except Exception as exc:
            logger.exception("fit check %s: unexpected failure", check_id)
            unexpected = JobError(ErrorCode.INTERNAL, f"Unexpected error: {type(exc).__name__}")
            finish(clients.db, check_id, error=unexpected)
            return Failed(message=str(exc))
    finish(clients.db, check_id, result=result)
    counts = ", ".join(f"{n} {verdict}" for verdict, n in result.counts.items() if n)
    return Completed(message=counts)
