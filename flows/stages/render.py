"""The `generating-video` stage: put the synthesized greeting over the first seconds of the video.

The video stream is always copied, never re-encoded. For AAC audio in MP4/MOV (what phones and
browsers record) only the head of the audio is re-encoded and every later packet is copied with
its original timestamp, so the cost tracks the greeting, not the video:

    presentation samples  s0 ........ 0 ...... E-X .. E ........ C ..... C+2F
    head (re-encoded)     [lead-in]  [greeting][fade][original  ]
    tail (copied)                                               [original packets, same pts ...]

E is the end of the greeting slot, X the crossfade, C the copy point: the first boundary of the
original's packets at least two frames (F samples each) past E where the original uses long
windows. The head is encoded from s0 (C minus a whole number of frames, s0 <= 0) so its packets
land on the original's packet grid, and it is fed original audio up to C + 2F so its last packet,
which the first copied packet overlaps in the MDCT, encodes the same signal; the head's packets
from C on are dropped. AAC encoders prepend priming samples; appending copied packets after the
head shifts everything after it by that delay, so each side keeps explicit timestamps instead
(concat demuxer offsets, `-copyts`).

Processes, as start-up is most of the cost for a short head: ffprobe runs beside one ffmpeg that
decodes what gets measured and copies the original audio track; then the head encoder streams
into a FIFO while the final mux, already started, reads it.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, TypeVar

from flows.job import ErrorCode, JobError
from flows.media import (
    AudioStream,
    FfmpegError,
    MediaInfo,
    ProbeError,
    probe_with_first_packets,
    run_ffmpeg,
    run_ffmpeg_piped,
)

log = logging.getLogger(__name__)

RenderPath = Literal["head-reencode", "full-audio-reencode"]
_T = TypeVar("_T")

# Loudness and silence are measured on a mono/low-rate decode: plenty for levels, cheap in Python.
ANALYSIS_RATE = 24000
BLOCK_S = 0.05
ABSOLUTE_GATE_DB = -60.0
RELATIVE_GATE_DB = -10.0
# Speech ends where blocks stay this far below the loudest block; TTS pads its output with silence.
SPEECH_END_DROP_DB = 35.0
SPEECH_TAIL_S = 0.03
MAX_GAIN_DB = 20.0
HEADROOM_DB = 1.0
# Frames of pure original audio encoded before the copy point, so the seam is consistent.
GUARD_FRAMES = 2
# How far past the first possible copy point to look for a stationary place to cut.
SEAM_SEARCH_FRAMES = 48
SEAM_SCAN_S = 2.5  # of packets past the greeting slot read for that: 48 frames at any common rate
# AAC syntax: element ids and the long-window sequence.
SCE, CPE, LFE = 0, 1, 3
ONLY_LONG = 0
# The priming samples ffmpeg's AAC encoder puts before the first input sample.
ENCODER_PRIMING = 1024
DEFAULT_AUDIO_BITRATE = 128_000
MIN_AUDIO_BITRATE = 64_000
MAX_AUDIO_BITRATE = 320_000
HEAD_NAME = "head.nut"  # a FIFO
TAIL_NAME = "original-audio.m4a"
LIST_NAME = "audio.ffconcat"
ORIGINAL_PCM_NAME = "original.f32"
ADTS_NAME = "original-head.aac"


@dataclass(frozen=True)
class RenderReport:
    path: Path
    duration_s: float
    tempo: float
    gain_db: float
    path_taken: RenderPath
    seconds: float
    copy_point_s: float | None = None  # where copied audio starts (head-reencode only)


# --- timing maths (pure) ----------------------------------------------------------------------


def to_samples(seconds: float, sample_rate: int) -> int:
    return round(seconds * sample_rate)


def tempo_needed(greeting_s: float, slot_s: float) -> float:
    """How much faster the greeting must play to fit the slot (1.0: it fits as it is)."""
    if slot_s <= 0:
        raise ValueError("the greeting slot must be longer than zero")
    return max(1.0, greeting_s / slot_s)


def fit_greeting(greeting_s: float, slot_s: float, max_tempo: float) -> float:
    """The tempo to apply, or `GREETING_TOO_LONG` when even `max_tempo` does not fit it."""
    tempo = tempo_needed(greeting_s, slot_s)
    # A hair of slack so a greeting exactly at the limit is not refused for float rounding.
    if tempo > max_tempo * (1 + 1e-9):
        raise JobError(ErrorCode.GREETING_TOO_LONG, too_long_message(greeting_s, slot_s, max_tempo))
    return tempo


def too_long_message(greeting_s: float, slot_s: float, max_tempo: float) -> str:
    fits_at = math.ceil(greeting_s / max_tempo * 100) / 100
    return (
        f"The spoken greeting lasts {greeting_s:.2f} s but the greeting slot (up to "
        f"greetingEndSecond) is only {slot_s:.2f} s; it would have to play "
        f"{greeting_s / slot_s:.2f}x faster and the limit is {max_tempo:.2f}x. "
        f"Set greetingEndSecond to {fits_at:.2f} s or later, or use a shorter greeting text."
    )


def copy_point(first_packet_pts: int, frame_size: int, min_sample: int) -> int:
    """The first packet boundary of the original audio at or after `min_sample`."""
    frames = max(0, math.ceil((min_sample - first_packet_pts) / frame_size))
    return first_packet_pts + frames * frame_size


def lead_in(copy_at: int, frame_size: int) -> int:
    """Samples of silence before time 0 so the head's packets fall on the original's grid."""
    return (-copy_at) % frame_size


@dataclass(frozen=True)
class HeadPlan:
    copy_point: int  # presentation sample where the copied packets start
    lead: int  # samples encoded before time 0 (trimmed again by the MP4 edit list)
    encode_end: int  # presentation sample where the head's input ends
    first_packet: int  # pts of the original's first packet: the copied track starts there

    @property
    def head_start(self) -> int:
        return -self.lead

    @property
    def offset(self) -> int:
        """How far ahead of presentation time the head's timestamps run on their way."""
        return ENCODER_PRIMING + self.lead


def plan_head(
    *,
    slot_end: int,
    first_packet_pts: int,
    frame_size: int,
    audio_end: int,
    windows: Sequence[int | None] = (),
) -> HeadPlan | None:
    """Where to cut between re-encoded and copied audio; None if the clip is too short for it.

    `windows` are the window sequences of the original's packets from the first one on; when
    known, the cut moves (at most SEAM_SEARCH_FRAMES) to where the original is stationary.
    """
    first = copy_point(first_packet_pts, frame_size, slot_end + GUARD_FRAMES * frame_size)
    copy_at = first
    for k in range(SEAM_SEARCH_FRAMES + 1):
        candidate = first + k * frame_size
        index = (candidate - first_packet_pts) // frame_size
        if stationary_seam(windows, index):
            copy_at = candidate
            break
    encode_end = copy_at + 2 * frame_size
    # The encoder looks ahead of its last kept packet; past the end there is nothing to copy.
    if encode_end + frame_size > audio_end:
        return None
    return HeadPlan(
        copy_point=copy_at,
        lead=lead_in(copy_at, frame_size),
        encode_end=encode_end,
        first_packet=first_packet_pts,
    )


def stationary_seam(windows: Sequence[int | None], index: int) -> bool:
    """Whether the original's packets on both sides of a cut before packet `index` use long
    windows only.

    The first copied packet's first half overlaps the head's last packet. The overlap cancels
    (TDAC) only if the two windows' slopes match; a head packet with a long slope next to an
    original that switched to short windows there decodes to a burst of aliasing. Where the
    original encoder saw nothing to switch for, ours, fed the same signal, does not either.
    """
    return 1 <= index < len(windows) and windows[index - 1] == windows[index] == ONLY_LONG


def adts_window_sequences(adts: bytes) -> list[int | None]:
    """The window sequence of each AAC frame in an ADTS stream (None where not readable).

    Reads only the first syntax element's ics_info: enough for mono and stereo AAC-LC, which is
    what the first element of every frame is in those files.
    """
    found: list[int | None] = []
    i = 0
    while i + 9 <= len(adts):
        if adts[i] != 0xFF or adts[i + 1] & 0xF6 != 0xF0:
            break  # not a frame header (layer bits must be 0): stop rather than guess
        length = ((adts[i + 3] & 0x03) << 11) | (adts[i + 4] << 3) | (adts[i + 5] >> 5)
        if length < 7:
            break
        header = 7 if adts[i + 1] & 0x01 else 9
        bits = int.from_bytes(adts[i + header : i + header + 4].ljust(4, b"\0"), "big")
        found.append(_first_window_sequence(bits))
        i += length
    return found


def _first_window_sequence(bits: int) -> int | None:
    """window_sequence from the first 32 bits of a raw_data_block."""
    element = bits >> 29
    if element in (SCE, LFE):
        # tag(4) global_gain(8) ics_reserved_bit(1) window_sequence(2)
        return (bits >> (32 - 3 - 4 - 8 - 1 - 2)) & 0x3
    if element == CPE:
        if (bits >> (32 - 3 - 4 - 1)) & 1:  # common_window: ics_info follows at once
            return (bits >> (32 - 3 - 4 - 1 - 1 - 2)) & 0x3
        return (bits >> (32 - 3 - 4 - 1 - 8 - 1 - 2)) & 0x3
    return None


def seconds_arg(samples: int, sample_rate: int) -> str:
    """Sample count as seconds with microseconds, the resolution ffmpeg's time options parse.

    A microsecond is a twentieth of a sample at 48 kHz, so ffmpeg turns these back into exactly
    the sample counts meant, and differences of two of them too.
    """
    sign = "-" if samples < 0 else ""
    us = round(abs(samples) * 1_000_000 / sample_rate)
    return f"{sign}{us // 1_000_000}.{us % 1_000_000:06d}"


# --- loudness (pure) --------------------------------------------------------------------------


def block_powers(samples: Sequence[float], *, channels: int, sample_rate: int) -> list[float]:
    """Mean square per BLOCK_S block, over all channels (samples interleaved)."""
    step = max(1, round(BLOCK_S * sample_rate)) * channels
    return [
        sum(x * x for x in samples[i : i + step]) / len(samples[i : i + step])
        for i in range(0, len(samples) - step + 1, step)
    ] or ([sum(x * x for x in samples) / len(samples)] if samples else [])


def _db(power: float) -> float:
    return 10 * math.log10(power) if power > 0 else -math.inf


def gated_level_db(powers: Sequence[float]) -> float | None:
    """Loudness of the active part (gated like EBU R128, unweighted); None if all silent."""
    loud = [p for p in powers if _db(p) > ABSOLUTE_GATE_DB]
    if not loud:
        return None
    threshold = _db(sum(loud) / len(loud)) + RELATIVE_GATE_DB
    active = [p for p in loud if _db(p) > threshold]
    return _db(sum(active) / len(active))


def peak_db(samples: Sequence[float]) -> float:
    return 20 * math.log10(max(map(abs, samples))) if samples and any(samples) else -math.inf


def speech_end_s(powers: Sequence[float]) -> float:
    """Where the last block loud enough to be speech ends (0.0 if there is none)."""
    if not powers or max(powers) <= 0:
        return 0.0
    floor = max(_db(max(powers)) - SPEECH_END_DROP_DB, ABSOLUTE_GATE_DB)
    loud = [i for i, p in enumerate(powers) if _db(p) >= floor]
    return (loud[-1] + 1) * BLOCK_S if loud else 0.0


def match_gain_db(
    original_db: float | None, greeting_db: float | None, greeting_peak: float
) -> float:
    """Gain that brings the greeting to the original's level, limited and kept off clipping."""
    gain = 0.0
    if original_db is not None and greeting_db is not None:
        gain = max(-MAX_GAIN_DB, min(MAX_GAIN_DB, original_db - greeting_db))
    if math.isfinite(greeting_peak):
        gain = min(gain, -HEADROOM_DB - greeting_peak)
    return round(gain, 2)


# --- ffmpeg arguments (pure; filter graphs are built from numbers only) -------------------------


@dataclass(frozen=True)
class MixSpec:
    sample_rate: int
    channels: int
    layout: str
    greeting_samples: int  # the greeting is cut here (its trailing silence)
    slot_samples: int  # greeting slot: presentation samples 0 .. slot_samples
    crossfade_samples: int
    tempo: float
    gain_db: float
    start: int  # presentation sample of the graph's first output sample (<= 0)
    original_start: int  # presentation sample of the original's first decoded sample
    end: int | None  # presentation sample where the output stops; None: the original's end


def channel_layout(audio: AudioStream) -> str:
    if audio.channel_layout and audio.channel_layout.replace("(", "").replace(")", "").isalnum():
        return audio.channel_layout
    return {1: "mono", 2: "stereo"}.get(audio.channels, f"{audio.channels:d}c")


def mix_graph(spec: MixSpec, *, original: str = "0:a:0", greeting: str = "1:a:0") -> str:
    """The filter graph mixing greeting and original into `[mix]`, on sample counts, not pts."""
    sr = spec.sample_rate
    fade = max(1, min(spec.crossfade_samples, spec.slot_samples))
    fade_at = spec.slot_samples - fade - spec.start  # graph sample where the crossfade starts
    slot = spec.slot_samples - spec.start
    fmt = f"aformat=sample_fmts=fltp:sample_rates={sr:d}:channel_layouts={spec.layout}"
    # One mono copy per output channel: the level measured on the mono greeting is what plays.
    spread = "|".join(f"c{i:d}=c0" for i in range(spec.channels))
    tempo = f"atempo={spec.tempo:.6f}," if spec.tempo > 1.0 else ""
    greeting_chain = (
        f"[{greeting}]aresample={sr:d},aformat=sample_fmts=fltp:channel_layouts=mono,"
        f"asetpts=N/SR/TB,atrim=end_sample={spec.greeting_samples:d},{tempo}"
        f"volume={spec.gain_db:.2f}dB,pan={spec.channels:d}c|{spread},{fmt},"
        f"{_delay(-spec.start)}apad=whole_len={slot:d},atrim=end_sample={slot:d},"
        f"afade=t=out:start_sample={fade_at:d}:nb_samples={fade:d}:curve=qsin[greeting]"
    )
    original_chain = (
        f"[{original}]{fmt},asetpts=N/SR/TB,{_delay(spec.original_start - spec.start)}"
        f"afade=t=in:start_sample={fade_at:d}:nb_samples={fade:d}:curve=qsin[original]"
    )
    trim = f",atrim=end_sample={spec.end - spec.start:d}" if spec.end is not None else ""
    return (
        f"{greeting_chain};{original_chain};"
        f"[greeting][original]amix=inputs=2:duration=longest:normalize=0{trim}[mix]"
    )


def _delay(samples: int) -> str:
    # adelay keeps the input pts; re-stamping makes afade/atrim positions plain sample counts.
    return f"adelay=delays={samples:d}S:all=1,asetpts=N/SR/TB," if samples > 0 else ""


def audio_bitrate(audio: AudioStream) -> int:
    rate = audio.bit_rate or DEFAULT_AUDIO_BITRATE
    return max(MIN_AUDIO_BITRATE, min(MAX_AUDIO_BITRATE, rate))


def head_args(
    *,
    input_video: Path,
    greeting_audio: Path,
    work: Path,
    spec: MixSpec,
    plan: HeadPlan,
    bitrate: int,
) -> list[str]:
    """Encode the head into the FIFO, as NUT: a format that streams and keeps exact timestamps.

    NUT refuses negative timestamps, so the head travels `plan.offset` samples late (its priming
    packet at 0) and the mux moves it back. Packets from the copy point on are dropped here: they
    only fed the encoder the signal the first copied packet overlaps.
    """
    decode_s = seconds_arg(plan.encode_end + spec.sample_rate // 10, spec.sample_rate)
    stop = plan.copy_point + plan.offset
    return [
        "-t",
        decode_s,
        "-i",
        str(input_video),
        "-i",
        str(greeting_audio),
        "-filter_complex",
        mix_graph(spec),
        "-map",
        "[mix]",
        "-c:a",
        "aac",
        "-b:a",
        str(bitrate),
        "-ar",
        str(spec.sample_rate),
        "-bsf:a",
        f"setts=ts=TS+{ENCODER_PRIMING:d},noise=drop=gte(pts\\,{stop:d})",
        "-f",
        "nut",
        str(work / HEAD_NAME),
    ]


def concat_list(plan: HeadPlan, *, sample_rate: int) -> str:
    """The head, then the original's packets from the copy point on, each at its own time.

    The concat demuxer moves a file's packets by (its start in the list - its `inpoint`). The
    copied track was stored starting at 0 (an edit list off the packet grid makes the MP4
    demuxer seek one packet early), so the copy point sits at `copy_point - first_packet` in
    it; the head's `duration` puts the tail where, once the mux takes the head's offset off
    everything, each copied packet is back at its original time.
    """
    start = seconds_arg(plan.copy_point + plan.offset, sample_rate)
    inpoint = seconds_arg(plan.copy_point - plan.first_packet, sample_rate)
    return (
        "ffconcat version 1.0\n"
        f"file {HEAD_NAME}\nduration {start}\n"
        f"file {TAIL_NAME}\ninpoint {inpoint}\n"
    )


def mux_args(
    *, input_video: Path, work: Path, plan: HeadPlan, sample_rate: int, output: Path
) -> list[str]:
    return [
        "-copyts",
        "-i",
        str(input_video),
        "-itsoffset",
        seconds_arg(-plan.offset, sample_rate),
        "-f",
        "concat",
        "-i",
        str(work / LIST_NAME),
        "-map",
        "0:V:0",
        "-map",
        "1:a:0",
        "-c",
        "copy",
        *_output_args(output),
    ]


def full_args(
    *, input_video: Path, greeting_audio: Path, spec: MixSpec, bitrate: int, output: Path
) -> list[str]:
    return [
        "-copyts",
        "-i",
        str(input_video),
        "-i",
        str(greeting_audio),
        "-filter_complex",
        mix_graph(spec),
        "-map",
        "0:V:0",
        "-map",
        "[mix]",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-b:a",
        str(bitrate),
        "-ar",
        str(spec.sample_rate),
        *_output_args(output),
    ]


def _output_args(output: Path) -> list[str]:
    return [
        "-map_metadata",
        "0",
        "-map_metadata:s:a",
        "0:s:a:0",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        str(output),
    ]


PCM_ARGS = ["-ar", str(ANALYSIS_RATE), "-c:a", "pcm_f32le", "-f", "f32le"]


def analysis_args(
    *,
    greeting_audio: Path | None,
    input_video: Path,
    seconds: float,
    work: Path,
    copy_tail: bool,
    scan_s: float = 0.0,
) -> list[str]:
    """One ffmpeg run: decode for measurement the greeting (mono, to stdout) and the original's
    greeting slot (its own channels, to a file); with `copy_tail`, also copy the original audio
    track, timestamps untouched, into an MP4 the concat demuxer can seek in.

    The copy is speculative (only the head-reencode path uses it), but it rides along a process
    that runs anyway instead of costing a start-up of its own. Without `greeting_audio` only the
    input is analysed (a batch's shared analysis; its greetings are decoded one by one).
    """
    args = ["-copyts"]
    if greeting_audio is not None:
        args += ["-i", str(greeting_audio)]
    original = 0 if greeting_audio is None else 1  # the input index of the original
    args += ["-t", f"{seconds:.6f}", "-i", str(input_video)]
    if copy_tail:
        args += ["-i", str(input_video)]
    if greeting_audio is not None:
        args += ["-map", "0:a:0", "-ac", "1", *PCM_ARGS, "pipe:1"]
    args += ["-map", f"{original}:a:0", *PCM_ARGS, str(work / ORIGINAL_PCM_NAME)]
    if copy_tail:
        tail = original + 1
        args += ["-map", f"{tail}:a:0", "-c", "copy", "-bsf:a", "setts=ts=TS-STARTPTS"]
        args += ["-f", "mp4", str(work / TAIL_NAME)]
        # The packets where the cut may go, so the cut can avoid window switches.
        args += ["-map", f"{tail}:a:0", "-c", "copy", "-t", f"{scan_s:.6f}", "-f", "adts"]
        args += [str(work / ADTS_NAME)]
    return args


def greeting_pcm_args(greeting_audio: Path) -> list[str]:
    """Decode the greeting alone for measurement, as `analysis_args` decodes it."""
    return ["-copyts", "-i", str(greeting_audio), "-map", "0:a:0", "-ac", "1", *PCM_ARGS, "pipe:1"]


# --- the stage --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Inspection:
    info: MediaInfo
    audio: AudioStream
    first_pts: int | None  # of the audio stream's first packet
    tail_ready: bool  # the original audio track was copied into the work folder
    windows: list[int | None]  # window sequence of the original's first packets
    greeting_pcm: array[float]  # mono, ANALYSIS_RATE
    original_pcm: array[float]  # the greeting slot, interleaved, ANALYSIS_RATE


@dataclass(frozen=True)
class _Fit:
    greeting_s: float
    tempo: float
    gain_db: float


def render_greeting(
    input_video: Path,
    greeting_audio: Path,
    greeting_end_s: float,
    output: Path,
    *,
    max_tempo: float = 1.3,
    crossfade_ms: int = 40,
    work_dir: Path | None = None,
    shared: InputAnalysis | None = None,
) -> RenderReport:
    """Render `output` (MP4): the input with its greeting slot re-voiced; says what it did.

    `shared`, an `analyze_input` of this input and slot, spares the input's probe and decode.
    """
    started = time.perf_counter()
    if not greeting_end_s > 0:
        raise JobError(ErrorCode.INVALID_GREETING_END, "greetingEndSecond must be above 0.")
    output.parent.mkdir(parents=True, exist_ok=True)
    # Beside the output so the final rename is atomic; ffmpeg creates it with the usual mode.
    part = output.with_name(f".{output.name}.{uuid.uuid4().hex}.part")
    try:
        with tempfile.TemporaryDirectory(prefix="render-", dir=work_dir) as tmp:
            work = Path(tmp)
            seen = _inspect(input_video, greeting_audio, greeting_end_s, work, shared)
            fit = _fit_greeting(seen, greeting_end_s, max_tempo)
            audio, sr = seen.audio, seen.audio.sample_rate
            plan, why_full = _head_plan(seen, greeting_end_s)
            spec = MixSpec(
                sample_rate=sr,
                channels=audio.channels,
                layout=channel_layout(audio),
                greeting_samples=to_samples(fit.greeting_s, sr),
                slot_samples=to_samples(greeting_end_s, sr),
                crossfade_samples=to_samples(crossfade_ms / 1000, sr),
                tempo=fit.tempo,
                gain_db=fit.gain_db,
                start=plan.head_start if plan else 0,
                original_start=max(0, to_samples(audio.start_s, sr)),
                end=plan.encode_end if plan else None,
            )
            bitrate = audio_bitrate(audio)
            if plan is not None:
                os.mkfifo(work / HEAD_NAME)
                (work / LIST_NAME).write_text(concat_list(plan, sample_rate=sr))
                run_ffmpeg_piped(
                    head_args(
                        input_video=input_video,
                        greeting_audio=greeting_audio,
                        work=work,
                        spec=spec,
                        plan=plan,
                        bitrate=bitrate,
                    ),
                    mux_args(
                        input_video=input_video, work=work, plan=plan, sample_rate=sr, output=part
                    ),
                )
            else:
                # Correct but slower: the whole track through the mix and the AAC encoder (MP4
                # players expect AAC, so Opus and the rest become AAC too).
                log.info("re-encoding all audio of %s: %s", input_video.name, why_full)
                run_ffmpeg(
                    full_args(
                        input_video=input_video,
                        greeting_audio=greeting_audio,
                        spec=spec,
                        bitrate=bitrate,
                        output=part,
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
    info: MediaInfo
    audio: AudioStream
    first_pts: int | None
    tail_ready: bool
    windows: list[int | None]
    original_pcm: array[float]


def analyze_input(input_video: Path, greeting_end_s: float, folder: Path) -> InputAnalysis:
    """Probe the input while decoding its greeting slot and copying its audio track."""
    folder.mkdir(parents=True, exist_ok=True)
    analysis, _ = _probe_and_decode(input_video, None, greeting_end_s, folder)
    return analysis


def _inspect(
    input_video: Path,
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
    ):
        greeting_raw = _decoding(lambda: run_ffmpeg(greeting_pcm_args(greeting_audio)))
        if shared.tail_ready:
            _link(shared.folder / TAIL_NAME, work / TAIL_NAME)
        analysis = shared
    else:
        analysis, greeting_raw = _probe_and_decode(
            input_video, greeting_audio, greeting_end_s, work
        )
    return _Inspection(
        info=analysis.info,
        audio=analysis.audio,
        first_pts=analysis.first_pts,
        tail_ready=analysis.tail_ready,
        windows=analysis.windows,
        greeting_pcm=_floats(greeting_raw),
        original_pcm=analysis.original_pcm,
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
    input_video: Path, greeting_audio: Path | None, greeting_end_s: float, folder: Path
) -> tuple[InputAnalysis, bytes]:
    """Probe the input while one ffmpeg decodes what gets measured: two processes at once.

    Returns the input's analysis and the greeting's samples (empty without a greeting).
    """
    with ThreadPoolExecutor(max_workers=2) as pool:
        probed = pool.submit(probe_with_first_packets, input_video)
        decoded = pool.submit(
            _decode_for_analysis, input_video, greeting_audio, greeting_end_s, folder
        )
        info, first_pts = _checked_probe(probed.result, greeting_end_s)
        greeting_raw, tail_ready = _decoding(decoded.result)
    analysis = _analysis(input_video, greeting_end_s, folder, info, first_pts, tail_ready)
    return analysis, greeting_raw


def _decoding(decode: Callable[[], _T]) -> _T:
    try:
        return decode()
    except FfmpegError as exc:
        raise JobError(
            ErrorCode.RENDER_FAILED, f"Could not decode the greeting audio: {exc}"
        ) from exc


def _analysis(
    input_video: Path,
    greeting_end_s: float,
    folder: Path,
    info: MediaInfo,
    first_pts: dict[int, int],
    tail_ready: bool,
) -> InputAnalysis:
    audio = info.audio
    assert audio is not None  # _checked_probe refused a video without audio
    return InputAnalysis(
        input_video=input_video,
        greeting_end_s=greeting_end_s,
        folder=folder,
        info=info,
        audio=audio,
        first_pts=first_pts.get(audio.index),
        tail_ready=tail_ready,
        windows=adts_window_sequences((folder / ADTS_NAME).read_bytes()) if tail_ready else [],
        original_pcm=_floats((folder / ORIGINAL_PCM_NAME).read_bytes()),
    )


def _link(source: Path, dest: Path) -> None:
    """The shared file in this job's folder, without copying it where the filesystem allows."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def _decode_for_analysis(
    input_video: Path, greeting_audio: Path | None, greeting_end_s: float, work: Path
) -> tuple[bytes, bool]:
    """The greeting's samples (if any), and whether the original audio track was copied too."""

    def args(copy_tail: bool) -> list[str]:
        return analysis_args(
            greeting_audio=greeting_audio,
            input_video=input_video,
            seconds=greeting_end_s,
            work=work,
            copy_tail=copy_tail,
            scan_s=greeting_end_s + SEAM_SCAN_S,
        )

    try:
        return run_ffmpeg(args(copy_tail=True)), True
    except FfmpegError as exc:
        # MP4 cannot hold every codec (Vorbis, ...); such tracks take the full re-encode anyway.
        log.info("audio of %s not copied (%s); decoding without the copy", input_video.name, exc)
        return run_ffmpeg(args(copy_tail=False)), False


def _fit_greeting(seen: _Inspection, greeting_end_s: float, max_tempo: float) -> _Fit:
    """How long the greeting really is (its trailing silence cut), its tempo and its gain."""
    powers = block_powers(seen.greeting_pcm, channels=1, sample_rate=ANALYSIS_RATE)
    greeting_s = min(len(seen.greeting_pcm) / ANALYSIS_RATE, speech_end_s(powers) + SPEECH_TAIL_S)
    if greeting_s <= SPEECH_TAIL_S:
        raise JobError(ErrorCode.RENDER_FAILED, "The synthesized greeting is silent or empty.")
    tempo = fit_greeting(greeting_s, greeting_end_s, max_tempo)
    spoken = seen.greeting_pcm[: round(greeting_s * ANALYSIS_RATE)]
    original_powers = block_powers(
        seen.original_pcm, channels=seen.audio.channels, sample_rate=ANALYSIS_RATE
    )
    gain_db = match_gain_db(
        gated_level_db(original_powers),
        gated_level_db(block_powers(spoken, channels=1, sample_rate=ANALYSIS_RATE)),
        peak_db(spoken),
    )
    return _Fit(greeting_s=greeting_s, tempo=tempo, gain_db=gain_db)


def _floats(raw: bytes) -> array[float]:
    samples = array("f")
    samples.frombytes(raw[: len(raw) - len(raw) % 4])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _head_plan(seen: _Inspection, greeting_end_s: float) -> tuple[HeadPlan | None, str]:
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
        slot_end=to_samples(greeting_end_s, sr),
        first_packet_pts=seen.first_pts,
        frame_size=audio.frame_size,
        audio_end=to_samples(info.duration_s, sr),
        windows=seen.windows,
    )
    if plan is None:
        return None, "the greeting ends too close to the end of the video"
    return plan, ""
