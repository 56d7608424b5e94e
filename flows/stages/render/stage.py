"""The `generating-video` stage itself. `render_video` is its step: render, then check the
output (a plain function, not a Prefect task: it has no retry or cache to declare, and a task
run's three states cost the Prefect server CPU for each job: docs/benchmarks.md).
`render_greeting` renders one greeting over one input, and `analyze_input` does the part that
depends only on the input and its greeting slot, once for a whole batch. Processes, as start-up
is most of the cost for a short head: ffprobe runs beside one ffmpeg that decodes what gets
measured, copies the original audio track and decodes its first seconds; then the worker mixes
and encodes the head itself (`head.encode_head`: no process) and one ffmpeg muxes.

The input is the user's upload: every ffprobe/ffmpeg opens it only as the container its first
bytes claim, and reads it no further than the duration its probe claims (`ffmpeg_args.Upload`).
The analysis needs that claim before it starts: with the pipeline's probe of the upload
(`upload`) it runs beside the render's own probe, without it after that probe.
"""

from __future__ import annotations

import contextvars
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np

from flows.job import ErrorCode, JobError
from flows.media import (
    MAX_AUDIO_CHANNELS,
    AudioStream,
    FfmpegError,
    MediaInfo,
    ProbeError,
    decode_speech,
    mp4_duration_s,
    mp4_track_kinds,
    probe_with_first_packets,
    run_ffmpeg,
    sniff_container,
)
from flows.settings import Settings
from flows.stages.render.ffmpeg_args import (
    ADTS_NAME,
    ANALYSIS_RATE,
    COUNT_NAME,
    HEAD_NAME,
    HEAD_PCM_NAME,
    LIST_NAME,
    ORIGINAL_PCM_NAME,
    TAIL_NAME,
    MixSpec,
    RoomTone,
    Upload,
    VideoPlan,
    analysis_args,
    audio_bitrate,
    channel_layout,
    concat_list,
    count_args,
    full_args,
    mux_args,
    video_plan,
)
from flows.stages.render.head import encode_head
from flows.stages.render.loudness import (
    QuietStretch,
    block_powers,
    gated_level_db,
    match_gain_db,
    next_onset_s,
    peak_db,
    quietest_stretch,
    speech_end_s,
    speech_start_s,
)
from flows.stages.render.timing import (
    SEAM_SCAN_S,
    HeadPlan,
    SlotFit,
    adts_window_sequences,
    fit_slot,
    full_lead,
    plan_head,
    to_samples,
)
from flows.stages.synthesize import MAX_SPEECH_SPEED, SpeechFile

log = logging.getLogger(__name__)

RenderPath = Literal["head-reencode", "full-audio-reencode"]
_T = TypeVar("_T")

# The head is mixed in the worker's memory: a few seconds of up to 7.1 audio (about 7 MB at
# 48 kHz). Validation refuses more channels; a render reached some other way (a direct call, a
# fit check) makes such a head by the sandboxed full re-encode instead.
HEAD_MAX_CHANNELS = MAX_AUDIO_CHANNELS
# Kept after the end of speech: the one `speech_end_s` finds, or the one the voice's timestamps
# tell (`SpeechFile.spoken_end_s`), whose last character's end may fall a hair before its decay.
SPEECH_TAIL_S = 0.03
# Kept before the start of speech that `speech_start_s` finds, when leading silence is cut.
SPEECH_LEAD_S = 0.02
# Decoded for measurement past the greeting slot: where room tone, and the pause a greeting too
# long for its slot may use, are looked for.
AFTER_SLOT_S = 2.0
# A slot grown into the original's pause ends this far before its next words start.
PAUSE_GUARD_S = 0.05


@dataclass(frozen=True)
class RenderReport:
    path: Path
    duration_s: float
    tempo: float
    gain_db: float
    path_taken: RenderPath
    seconds: float
    copy_point_s: float | None = None  # where copied audio starts (head-reencode only)
    video_reencoded: bool = False  # MP4 cannot hold the input's video codec (VP8): H.264 now
    # What fitting a long greeting took (`timing.fit_slot`), besides `tempo`: its leading
    # silence cut, and the original's pause after greetingEndSecond used.
    lead_trimmed_s: float = 0.0
    pause_used_s: float = 0.0
    # Level of the room tone under the slot (dBFS, as measured on the 24 kHz analysis decode);
    # None: the original has no floor, the slot's gaps stay silent.
    room_tone_db: float | None = None
    # How much faster the voice itself was asked to speak (1.0: as it speaks), before `tempo`.
    provider_speed: float = 1.0
    # How much of the greeting's audio was used (its lead included, before `tempo`), and what
    # told where its speech ends: the voice's timestamps, or silence measured in its audio.
    greeting_s: float = 0.0
    greeting_cut: GreetingCut = "silence"


# What told where the greeting's speech ends (and so where its audio is cut).
GreetingCut = Literal["timestamps", "silence"]
# A greeting's audio: its file alone (the end found from silence), or with the end of its speech
# as the voice's timestamps tell it (`speak_greeting`'s SpeechFile).
GreetingAudio = Path | SpeechFile
# Asks the voice to say the greeting again at a speed (1.0-1.2), returns the new audio.
Respeak = Callable[[float], GreetingAudio]


def _speech_file(greeting: GreetingAudio) -> SpeechFile:
    return greeting if isinstance(greeting, SpeechFile) else SpeechFile(greeting)


@dataclass(frozen=True)
class _Inspection:
    upload: Upload
    info: MediaInfo
    audio: AudioStream
    first_pts: int | None  # of the audio stream's first packet
    tail_ready: bool  # the original audio track was copied into the work folder
    windows: list[int | None]  # window sequence of the original's first packets
    greeting_pcm: array[float]  # mono, ANALYSIS_RATE
    original_pcm: array[float]  # the slot and AFTER_SLOT_S more, interleaved, ANALYSIS_RATE
    head_pcm: Path | None  # the original's first seconds at its own rate (with the tail)
    spoken_end_s: float | None = None  # the greeting's, from the voice's timestamps


@dataclass(frozen=True)
class _Fit:
    greeting_s: float  # up to the end of its speech
    gain_db: float
    slot: SlotFit
    cut: GreetingCut = "silence"

    @property
    def tempo(self) -> float:
        return self.slot.tempo


def render_greeting(
    input_video: Path,
    greeting_audio: GreetingAudio,
    greeting_end_s: float,
    output: Path,
    *,
    max_tempo: float = 1.3,
    crossfade_ms: int = 40,
    work_dir: Path | None = None,
    shared: InputAnalysis | None = None,
    upload: MediaInfo | None = None,
    respeak: Respeak | None = None,
) -> RenderReport:
    """Render `output` (MP4): the input with its greeting slot re-voiced; says what it did.

    `greeting_audio`: its file, or a SpeechFile that also says where its speech ends (the voice's
    timestamps): the greeting is then cut right there (plus SPEECH_TAIL_S) instead of where its
    audio turns silent, which a breath or noise after the last word would push later.

    `respeak`: where the greeting is too long for its slot even after its silences are cut and
    the original's pause is used, the voice is asked to speak faster through it before any
    time-stretch (which sounds worse than a voice speaking faster).

    `shared`, an `analyze_input` of this input and slot, spares the input's probe and decode.
    `upload`, the pipeline's probe of the input (`probe_upload`), names its container and the
    duration it claims, so the input's analysis need not wait for the render's own probe.
    """
    started = time.perf_counter()
    speech = _speech_file(greeting_audio)
    greeting_audio = speech.path
    if not greeting_end_s > 0:
        raise JobError(ErrorCode.INVALID_GREETING_END, "greetingEndSecond must be above 0.")
    container = _container(input_video, upload)
    claimed_s = upload.duration_s if upload is not None else None
    output.parent.mkdir(parents=True, exist_ok=True)
    # Beside the output so the final rename is atomic; ffmpeg creates it with the usual mode.
    part = output.with_name(f".{output.name}.{uuid.uuid4().hex}.part")
    try:
        with tempfile.TemporaryDirectory(prefix="render-", dir=work_dir) as tmp:
            work = Path(tmp)
            seen = _inspect(
                input_video, container, claimed_s, greeting_audio, greeting_end_s, work, shared
            )
            seen = replace(seen, spoken_end_s=speech.spoken_end_s)
            audio, sr = seen.audio, seen.audio.sample_rate
            stretch = quietest_stretch(
                seen.original_pcm, channels=audio.channels, sample_rate=ANALYSIS_RATE
            )
            if respeak is None:
                fit, speed = _fit_greeting(seen, greeting_end_s, max_tempo, stretch), 1.0
            else:
                fit, speed, seen, greeting_audio = _fit_respoken(
                    seen, greeting_end_s, max_tempo, stretch, respeak, greeting_audio
                )
            slot_end = to_samples(fit.slot.slot_end_s, sr)
            plan, why_full = _head_plan(seen, slot_end)
            room = (
                RoomTone(
                    start=to_samples(stretch.start_s, sr),
                    length=to_samples(stretch.length_s, sr),
                    gain_db=stretch.gain_db,
                )
                if stretch is not None
                else None
            )
            original_start = max(0, to_samples(audio.start_s, sr))
            head_pcm = None
            if plan is not None:
                head_pcm = _original_head(seen, head_samples_needed(plan, original_start, room))
                if head_pcm is None:
                    plan = None
                    why_full = (
                        "the seam lies past the original's decoded head, or it has more "
                        f"than {HEAD_MAX_CHANNELS} channels"
                    )
            if plan is not None:
                start = plan.head_start
            else:
                # Correct but slower: the whole track through the mix and the AAC encoder (MP4
                # players expect AAC, so Opus and the rest become AAC too).
                log.info("re-encoding all audio of %s: %s", input_video.name, why_full)
                decoded = _decoded_samples(seen.upload, work)
                start = -full_lead(original_start + decoded, slot_end)
            spec = MixSpec(
                sample_rate=sr,
                channels=audio.channels,
                layout=channel_layout(audio),
                greeting_samples=to_samples(fit.greeting_s, sr),
                greeting_start=to_samples(fit.slot.lead_trim_s, sr),
                slot_samples=slot_end,
                crossfade_samples=to_samples(crossfade_ms / 1000, sr),
                tempo=fit.tempo,
                gain_db=fit.gain_db,
                start=start,
                original_start=original_start,
                end=plan.encode_end if plan else None,
                room=room,
            )
            bitrate = audio_bitrate(audio)
            video = _video_plan(seen.info)
            if plan is not None and head_pcm is not None:
                encode_head(
                    original=head_pcm,
                    greeting_audio=greeting_audio,
                    spec=spec,
                    plan=plan,
                    bitrate=bitrate,
                    output=work / HEAD_NAME,
                )
                (work / LIST_NAME).write_text(concat_list(plan, sample_rate=sr))
                run_ffmpeg(
                    mux_args(
                        upload=seen.upload,
                        work=work,
                        plan=plan,
                        sample_rate=sr,
                        output=part,
                        video=video,
                    )
                )
            else:
                run_ffmpeg(
                    full_args(
                        upload=seen.upload,
                        greeting_audio=greeting_audio,
                        spec=spec,
                        bitrate=bitrate,
                        output=part,
                        video=video,
                    )
                )
        os.replace(part, output)
    except FfmpegError as exc:
        raise JobError(
            ErrorCode.RENDER_FAILED, f"ffmpeg could not render the video: {exc}"
        ) from exc
    finally:
        part.unlink(missing_ok=True)

    return RenderReport(
        path=output,
        # Every stream of the output is the input's, cut nowhere: the input's duration.
        duration_s=seen.info.duration_s,
        tempo=round(fit.tempo, 4),
        gain_db=fit.gain_db,
        path_taken="head-reencode" if plan else "full-audio-reencode",
        seconds=round(time.perf_counter() - started, 3),
        copy_point_s=plan.copy_point / sr if plan else None,
        video_reencoded=video.reencoded,
        lead_trimmed_s=round(fit.slot.lead_trim_s, 3),
        pause_used_s=round(fit.slot.pause_used_s(greeting_end_s), 3),
        room_tone_db=round(stretch.level_db + stretch.gain_db, 1) if stretch else None,
        provider_speed=speed,
        greeting_s=round(fit.greeting_s, 3),
        greeting_cut=fit.cut,
    )


@dataclass(frozen=True)
class FitMeasure:
    """How a greeting would fit its slot, measured as the render would fit it, without a render.

    `tempo` may exceed the render's max_tempo (then `fits` is False): it is what the greeting
    needs, and `needs_slot_s` how long a slot at max_tempo would have to be.
    """

    fits: bool
    tempo: float
    provider_speed: float
    pause_used_s: float
    lead_trimmed_s: float
    greeting_s: float  # of the (possibly faster) greeting, as used
    needs_slot_s: float  # the slot the greeting needs at max_tempo (<= the slot when it fits)

    @property
    def fitted(self) -> bool:
        """Fits only with a fit step: faster speech, time-stretch, the pause or a lead trim."""
        return self.fits and (
            self.tempo > 1.0
            or self.provider_speed > 1.0
            or self.pause_used_s > 0
            or self.lead_trimmed_s > 0
        )


def measure_fit(
    shared: InputAnalysis,
    greeting_audio: GreetingAudio,
    work: Path,
    *,
    max_tempo: float,
    respeak: Respeak | None = None,
) -> FitMeasure:
    """`render_greeting`'s fit of this greeting to `shared`'s slot, and nothing else: one decode
    of the greeting (and, where it is asked to speak faster, of the faster one)."""
    speech = _speech_file(greeting_audio)
    end_s = shared.greeting_end_s
    seen = _inspect(
        shared.input_video, shared.upload.container, None, speech.path, end_s, work, shared
    )
    seen = replace(seen, spoken_end_s=speech.spoken_end_s)
    stretch = quietest_stretch(
        seen.original_pcm, channels=seen.audio.channels, sample_rate=ANALYSIS_RATE
    )
    # With no tempo limit the fit never refuses: it says what the greeting would need.
    if respeak is None:
        fit, speed = _fit_greeting(seen, end_s, math.inf, stretch), 1.0
    else:
        fit, speed, _, _ = _fit_respoken(seen, end_s, math.inf, stretch, respeak, speech.path)
    used = fit.greeting_s - fit.slot.lead_trim_s
    return FitMeasure(
        fits=fit.tempo <= max_tempo * (1 + 1e-9),
        tempo=round(fit.tempo, 4),
        provider_speed=speed,
        pause_used_s=round(fit.slot.pause_used_s(end_s), 3),
        lead_trimmed_s=round(fit.slot.lead_trim_s, 3),
        greeting_s=round(fit.greeting_s, 3),
        needs_slot_s=round(used / max_tempo, 3),
    )


@dataclass(frozen=True)
class InputAnalysis:
    """What rendering learns from an input for one greeting slot, whatever the greeting.

    Every job of a batch renders the same video with the same slot: flows/pipeline.py's
    SharedInputs computes this once and each job then decodes only its own greeting. `folder`
    holds the copied original audio track the head-reencode path splices in.
    """

    input_video: Path
    greeting_end_s: float
    folder: Path
    upload: Upload  # how every later command opens the input
    info: MediaInfo
    audio: AudioStream
    first_pts: int | None
    tail_ready: bool
    windows: list[int | None]
    original_pcm: array[float]
    head_pcm: Path | None = None  # HEAD_PCM_NAME in `folder`, with the copied track


def analyze_input(
    input_video: Path, greeting_end_s: float, folder: Path, upload: MediaInfo | None = None
) -> InputAnalysis:
    """Probe the input, decode its greeting slot and copy its audio track (`upload`: as for
    `render_greeting`)."""
    container = _container(input_video, upload)
    folder.mkdir(parents=True, exist_ok=True)
    claimed_s = upload.duration_s if upload is not None else None
    analysis, _ = _probe_and_decode(input_video, container, claimed_s, None, greeting_end_s, folder)
    return analysis


def _container(input_video: Path, upload: MediaInfo | None) -> str:
    """The container the upload's first bytes claim: the only way it is ever opened."""
    if upload is not None and upload.container:
        return upload.container
    try:
        return sniff_container(input_video)
    except (ProbeError, OSError) as exc:
        raise JobError(
            ErrorCode.INPUT_NOT_VIDEO, f"The input is not a readable video: {exc}"
        ) from exc


def _inspect(
    input_video: Path,
    container: str,
    claimed_s: float | None,
    greeting_audio: Path,
    greeting_end_s: float,
    work: Path,
    shared: InputAnalysis | None,
) -> _Inspection:
    """What gets measured: the input's analysis (or the shared one) and the greeting's samples.

    With a shared analysis of the same input and slot, only the greeting is decoded.
    """
    if (
        shared is not None
        and shared.input_video == input_video
        and shared.greeting_end_s == greeting_end_s
        and shared.upload.container == container
    ):
        greeting_raw = _decoding(lambda: decode_greeting(greeting_audio))
        if shared.tail_ready:
            _link(shared.folder / TAIL_NAME, work / TAIL_NAME)
        analysis = shared
    else:
        analysis, greeting_raw = _probe_and_decode(
            input_video, container, claimed_s, greeting_audio, greeting_end_s, work
        )
    return _Inspection(
        upload=analysis.upload,
        info=analysis.info,
        audio=analysis.audio,
        first_pts=analysis.first_pts,
        tail_ready=analysis.tail_ready,
        windows=analysis.windows,
        greeting_pcm=_floats(greeting_raw),
        original_pcm=analysis.original_pcm,
        head_pcm=analysis.head_pcm,
    )


def _checked_probe(
    result: Callable[[], tuple[MediaInfo, dict[int, int]]], greeting_end_s: float
) -> tuple[MediaInfo, dict[int, int]]:
    try:
        info, first_pts = result()
    except ProbeError as exc:
        raise JobError(
            ErrorCode.INPUT_NOT_VIDEO, f"The input is not a readable video: {exc}"
        ) from exc
    if info.video is None:
        raise JobError(ErrorCode.INPUT_NO_VIDEO_STREAM, "The input has no video stream.")
    if info.audio is None:
        raise JobError(ErrorCode.INPUT_NO_AUDIO_STREAM, "The input has no audio stream.")
    if greeting_end_s >= info.duration_s:
        raise JobError(
            ErrorCode.INVALID_GREETING_END,
            f"greetingEndSecond ({greeting_end_s:g} s) must be before the end of the "
            f"video ({info.duration_s:.2f} s).",
        )
    return info, first_pts


def _probe_and_decode(
    input_video: Path,
    container: str,
    claimed_s: float | None,
    greeting_audio: Path | None,
    greeting_end_s: float,
    folder: Path,
) -> tuple[InputAnalysis, bytes]:
    """Probe the input and decode what gets measured, bounded by the duration it claims.

    With that claim known (`claimed_s`), the probe and the decode run at once; without it, the
    decode waits for the probe. Returns the input's analysis and the greeting's samples (empty
    without a greeting).
    """

    def probe() -> tuple[MediaInfo, dict[int, int]]:
        return probe_with_first_packets(input_video, container=container)

    def decode(claim: float) -> tuple[bytes, bool]:
        upload = Upload(input_video, container, claim)
        return _decode_for_analysis(upload, greeting_audio, greeting_end_s, folder)

    if claimed_s is None:
        info, first_pts = _checked_probe(probe, greeting_end_s)
        greeting_raw, tail_ready = _decoding(lambda: decode(info.duration_s))
    else:
        # The pool's threads do not inherit context variables: without a copy of this one, the
        # job's limits, cancel flag, user slot and sandbox would not reach these two processes.
        with ThreadPoolExecutor(max_workers=2) as pool:
            probed = pool.submit(contextvars.copy_context().run, probe)
            decoded = pool.submit(contextvars.copy_context().run, decode, claimed_s)
            info, first_pts = _checked_probe(probed.result, greeting_end_s)
            greeting_raw, tail_ready = _decoding(decoded.result)
    upload = Upload(input_video, container, info.duration_s)
    analysis = _analysis(upload, greeting_end_s, folder, info, first_pts, tail_ready)
    return analysis, greeting_raw


# Longer than any slot at any speed: past it, the samples only say again that the greeting is too
# long, and a voice that answered with minutes of audio costs no more than this to measure.
SPEECH_DECODE_MAX_S = 60.0


def decode_greeting(greeting_audio: Path) -> bytes:
    """The greeting alone, for measurement, the samples `analysis_args` decodes of it (mono,
    ANALYSIS_RATE), in this process: it is the voice's file, not the upload."""
    return decode_speech(greeting_audio, ANALYSIS_RATE, SPEECH_DECODE_MAX_S)


def _decoding(decode: Callable[[], _T]) -> _T:
    try:
        return decode()
    except FfmpegError as exc:
        raise JobError(
            ErrorCode.RENDER_FAILED, f"Could not decode the greeting audio: {exc}"
        ) from exc


def _analysis(
    upload: Upload,
    greeting_end_s: float,
    folder: Path,
    info: MediaInfo,
    first_pts: dict[int, int],
    tail_ready: bool,
) -> InputAnalysis:
    audio = info.audio
    assert audio is not None  # _checked_probe refused a video without audio
    return InputAnalysis(
        input_video=upload.path,
        greeting_end_s=greeting_end_s,
        folder=folder,
        upload=upload,
        info=info,
        audio=audio,
        first_pts=first_pts.get(audio.index),
        tail_ready=tail_ready,
        windows=adts_window_sequences((folder / ADTS_NAME).read_bytes()) if tail_ready else [],
        original_pcm=_floats((folder / ORIGINAL_PCM_NAME).read_bytes()),
        head_pcm=folder / HEAD_PCM_NAME if tail_ready else None,
    )


def head_samples_needed(plan: HeadPlan, original_start: int, room: RoomTone | None) -> int:
    """How many of the original's samples (from its first decoded one) the head's mix reads: up
    to where the head's input ends, or to the end of the room tone's stretch if that is later."""
    needed = plan.encode_end - original_start
    if room is not None:
        needed = max(needed, room.start + room.length)
    return needed


def _original_head(seen: _Inspection, samples: int) -> np.ndarray | None:
    """The original's first `samples` (interleaved float32) as the analysis decoded them, or
    None where it holds fewer (the decoded window ended first) or the track has more channels
    than HEAD_MAX_CHANNELS."""
    if seen.head_pcm is None or seen.audio.channels > HEAD_MAX_CHANNELS:
        return None
    count = samples * seen.audio.channels
    # Only what the mix reads: the file is the analysis's, its size the upload's claims.
    head = np.fromfile(seen.head_pcm, dtype="<f4", count=count)
    return head if len(head) == count else None


def _decoded_samples(upload: Upload, work: Path) -> int:
    """How many samples the original audio track decodes to (one decode, about 0.15 s a minute)."""
    run_ffmpeg(count_args(upload, work))
    counted = work / COUNT_NAME
    try:
        return counted.stat().st_size
    finally:
        counted.unlink(missing_ok=True)


def _link(source: Path, dest: Path) -> None:
    """The shared file in this job's folder, without copying it where the filesystem allows."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def _decode_for_analysis(
    upload: Upload, greeting_audio: Path | None, greeting_end_s: float, work: Path
) -> tuple[bytes, bool]:
    """The greeting's samples (if any), and whether the original audio track was copied too."""

    def args(copy_tail: bool) -> list[str]:
        return analysis_args(
            greeting_audio=greeting_audio,
            upload=upload,
            seconds=greeting_end_s + AFTER_SLOT_S,
            work=work,
            copy_tail=copy_tail,
            scan_s=greeting_end_s + AFTER_SLOT_S + SEAM_SCAN_S,
        )

    if upload.container != "mov":
        # Only MP4/MOV audio is ever spliced (`_head_plan`): a WebM's track is not worth copying.
        return run_ffmpeg(args(copy_tail=False)), False
    try:
        return run_ffmpeg(args(copy_tail=True)), True
    except FfmpegError as exc:
        # MP4 cannot hold every codec (Vorbis, ...); such tracks take the full re-encode anyway.
        log.info("audio of %s not copied (%s); decoding without the copy", upload.path.name, exc)
        return run_ffmpeg(args(copy_tail=False)), False


def _fit_greeting(
    seen: _Inspection, greeting_end_s: float, max_tempo: float, room: QuietStretch | None
) -> _Fit:
    """How long the greeting really is (its trailing silence cut), how it fits its slot
    (`timing.fit_slot`: its leading silence cut, the original's pause used, time-stretched, as
    far as each is needed) and its gain. `room`: the original's floor, below its next words."""
    powers = block_powers(seen.greeting_pcm, channels=1, sample_rate=ANALYSIS_RATE)
    end_s, cut = _speech_end(seen.spoken_end_s, powers)
    greeting_s = min(len(seen.greeting_pcm) / ANALYSIS_RATE, end_s + SPEECH_TAIL_S)
    if greeting_s <= SPEECH_TAIL_S:
        raise JobError(ErrorCode.RENDER_FAILED, "The synthesized greeting is silent or empty.")
    slot = fit_slot(
        greeting_s=greeting_s,
        lead_s=max(0.0, speech_start_s(powers) - SPEECH_LEAD_S),
        greeting_end_s=greeting_end_s,
        pause_end_s=_pause_end_s(seen, greeting_end_s, room),
        max_tempo=max_tempo,
    )
    spoken = seen.greeting_pcm[: round(greeting_s * ANALYSIS_RATE)]
    channels = seen.audio.channels
    replaced = seen.original_pcm[: round(greeting_end_s * ANALYSIS_RATE) * channels]
    original_powers = block_powers(replaced, channels=channels, sample_rate=ANALYSIS_RATE)
    gain_db = match_gain_db(
        gated_level_db(original_powers),
        gated_level_db(block_powers(spoken, channels=1, sample_rate=ANALYSIS_RATE)),
        peak_db(spoken),
    )
    return _Fit(greeting_s=greeting_s, gain_db=gain_db, slot=slot, cut=cut)


def _speech_end(spoken_end_s: float | None, powers: list[float]) -> tuple[float, GreetingCut]:
    """Where the greeting's speech ends: the voice's timestamps where they are believable,
    else the end of its last block loud enough to be speech."""
    if spoken_end_s is not None and spoken_end_s > speech_start_s(powers):
        return spoken_end_s, "timestamps"
    if spoken_end_s is not None:
        # Ends before any sound starts: timestamps of some other audio. Silence does not lie.
        log.warning("greeting timestamps end at %.3f s, before its speech: ignored", spoken_end_s)
    return speech_end_s(powers), "silence"


def _fit_respoken(
    seen: _Inspection,
    greeting_end_s: float,
    max_tempo: float,
    room: QuietStretch | None,
    respeak: Respeak,
    greeting_audio: Path,
) -> tuple[_Fit, float, _Inspection, Path]:
    """`_fit_greeting`, with the voice asked to speak faster first where the greeting needs it:
    the fit, the speed asked for, and what was measured of (and the file of) the greeting used."""
    unbounded = _fit_greeting(seen, greeting_end_s, math.inf, room)
    if unbounded.tempo <= 1.0:
        return unbounded, 1.0, seen, greeting_audio
    # The speed the whole shortfall asks for, 3 decimals so equal needs share a cache entry.
    speed = min(MAX_SPEECH_SPEED, math.ceil(unbounded.tempo * 1000) / 1000)
    faster = _speech_file(respeak(speed))
    raw = _decoding(lambda: decode_greeting(faster.path))
    # The faster speech has timestamps of its own (or none): the slower one's never apply.
    seen = replace(seen, greeting_pcm=_floats(raw), spoken_end_s=faster.spoken_end_s)
    return _fit_greeting(seen, greeting_end_s, max_tempo, room), speed, seen, faster.path


def _pause_end_s(seen: _Inspection, greeting_end_s: float, room: QuietStretch | None) -> float:
    """How far the slot may grow into the original's pause: to its next sound after the slot
    (in the analysis decode, which starts at the audio's first sample), less PAUSE_GUARD_S."""
    offset = max(0.0, seen.audio.start_s)
    onset = next_onset_s(
        seen.original_pcm,
        channels=seen.audio.channels,
        sample_rate=ANALYSIS_RATE,
        from_s=greeting_end_s - offset,
        floor_db=room.floor_db if room is not None else None,
    )
    return onset + offset - PAUSE_GUARD_S


def _floats(raw: bytes) -> array[float]:
    samples = array("f")
    samples.frombytes(raw[: len(raw) - len(raw) % 4])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _video_plan(info: MediaInfo) -> VideoPlan:
    assert info.video is not None  # _checked_probe refused a file without video
    return video_plan(info.video.codec, info.video.width, info.video.height)


def _head_plan(seen: _Inspection, slot_end: int) -> tuple[HeadPlan | None, str]:
    """The head-reencode plan, or None and why the whole audio track must be re-encoded."""
    info, audio = seen.info, seen.audio
    sr = audio.sample_rate
    if audio.codec != "aac" or audio.profile != "LC" or audio.frame_size is None:
        # Copied packets must decode with the head's codec configuration; our encoder makes
        # AAC-LC only, and Opus/Vorbis/HE-AAC tails cannot follow an AAC-LC head.
        return None, f"audio is {audio.codec} {audio.profile or ''}".strip()
    if not {"mov", "mp4"} & set(info.format_name.split(",")):
        return None, f"container {info.format_name}: only MP4/MOV keep exact audio timestamps"
    if not seen.tail_ready:
        return None, "its audio track could not be copied"
    if audio.time_base != Fraction(1, sr) or seen.first_pts is None:
        return None, "audio timestamps are not in samples"
    plan = plan_head(
        slot_end=slot_end,
        first_packet_pts=seen.first_pts,
        frame_size=audio.frame_size,
        audio_end=to_samples(info.duration_s, sr),
        windows=seen.windows,
    )
    if plan is None:
        return None, "the greeting ends too close to the end of the video"
    return plan, ""


# More than a few audio frames off: the input's header promised media the file does not hold.
OUTPUT_DURATION_TOLERANCE_S = 0.25


def check_output_duration(output_s: float, input_s: float) -> None:
    """A render as long as its input; a shorter one means the upload was cut off."""
    if abs(output_s - input_s) > OUTPUT_DURATION_TOLERANCE_S:
        raise JobError(
            ErrorCode.INPUT_NOT_VIDEO,
            f"The video says it lasts {input_s:.1f} s but holds only {output_s:.1f} s of media: "
            "it looks truncated. Upload the complete file again.",
        )


def render_video(
    video: Path,
    info: MediaInfo,
    speech_file: GreetingAudio,
    greeting_end_s: float,
    work_dir: Path,
    settings: Settings,
    shared: InputAnalysis | None = None,
    respeak: Respeak | None = None,
) -> RenderReport:
    """Replaces the greeting; says what it did (the video at `.path`), checked to be as long as
    its input."""
    output = work_dir / "output.mp4"
    report = render_greeting(
        video,
        speech_file,
        greeting_end_s,
        output,
        max_tempo=settings.max_tempo,
        crossfade_ms=settings.crossfade_ms,
        work_dir=work_dir,  # the run's scratch folder: gone with the run, whatever happens
        shared=shared,
        upload=info,
        respeak=respeak,
    )
    try:
        output_s = mp4_duration_s(output)
        tracks = mp4_track_kinds(output)
    except ProbeError as exc:
        raise JobError(ErrorCode.RENDER_FAILED, f"The rendered video is unreadable: {exc}") from exc
    if "vide" not in tracks:
        # No packet of the upload's video could be copied (its codec setup is damaged): ffmpeg
        # left the stream out and exited 0.
        raise JobError(
            ErrorCode.INPUT_NOT_VIDEO,
            "The video's picture could not be read (the file looks damaged): upload the "
            "recording again.",
        )
    if "soun" not in tracks:
        raise JobError(ErrorCode.RENDER_FAILED, "The rendered video has no sound track.")
    check_output_duration(output_s, info.duration_s)
    return report
