"""Timing maths for the render (pure): how the greeting fits its slot (trimmed, the slot grown
into the original's pause, its tempo), and where in the original's AAC packets the re-encoded
head ends and copied packets start. Everything is counted in samples at the audio's own rate;
the ADTS reader tells long-window packets from the rest so the cut lands where the original is
stationary, and `seconds_arg` turns sample counts into the time arguments ffmpeg parses back to
exactly those samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from flows.job import ErrorCode, JobError

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
# Samples per packet of that encoder (AAC-LC), which makes every re-encoded track.
ENCODER_FRAME = 1024
# The latest greetingEndSecond the rules allow (flows.stages.validate.MAX_GREETING_END_S).
MAX_GREETING_END_S = 10.0


def to_samples(seconds: float, sample_rate: int) -> int:
    return round(seconds * sample_rate)


def tempo_needed(greeting_s: float, greeting_end_s: float) -> float:
    """How much faster the greeting must play to fit the slot (1.0: it fits as it is)."""
    if greeting_end_s <= 0:
        raise ValueError("the greeting slot must be longer than zero")
    return max(1.0, greeting_s / greeting_end_s)


def fit_greeting(greeting_s: float, greeting_end_s: float, max_tempo: float) -> float:
    """The tempo to apply, or `GREETING_TOO_LONG` when even `max_tempo` does not fit it."""
    tempo = tempo_needed(greeting_s, greeting_end_s)
    # A hair of slack so a greeting exactly at the limit is not refused for float rounding.
    if tempo > max_tempo * (1 + 1e-9):
        raise JobError(
            ErrorCode.GREETING_TOO_LONG, too_long_message(greeting_s, greeting_end_s, max_tempo)
        )
    return tempo


def too_long_message(
    greeting_s: float, greeting_end_s: float, max_tempo: float, pause_s: float = 0.0
) -> str:
    """What went wrong and what to change: a later greetingEndSecond only where the rules allow
    one that fits (at most MAX_GREETING_END_S), else a shorter greeting text. `pause_s`: the
    original's pause after the slot, already used."""
    fits_at = math.ceil(greeting_s / max_tempo * 100) / 100
    room = greeting_end_s + pause_s
    using = (
        f", even with the {pause_s:.2f} s pause after it before the next words" if pause_s else ""
    )
    said = (
        f"The spoken greeting lasts {greeting_s:.2f} s but the greeting slot (up to "
        f"greetingEndSecond) is only {greeting_end_s:.2f} s; it would have to play "
        f"{greeting_s / room:.2f}x faster{using}, and the limit is {max_tempo:.2f}x. "
    )
    if fits_at <= MAX_GREETING_END_S:
        return said + (
            f"Set greetingEndSecond to {fits_at:.2f} s or later, or use a shorter greeting text."
        )
    return said + (
        f"Even at {max_tempo:.2f}x it needs {fits_at:.2f} s, longer than any greeting slot "
        f"(greetingEndSecond is at most {MAX_GREETING_END_S:g} s): use a shorter greeting "
        'text, such as "Hey {firstName},".'
    )


@dataclass(frozen=True)
class SlotFit:
    """How a greeting is fitted to its slot, each step taken only if the one before fell short:
    the greeting's leading silence cut, the original's pause after the slot used, time-stretch."""

    slot_end_s: float  # where the slot ends now: greetingEndSecond, or later into the pause
    lead_trim_s: float  # leading silence cut from the synthesized greeting
    tempo: float

    def pause_used_s(self, greeting_end_s: float) -> float:
        return self.slot_end_s - greeting_end_s


def fit_slot(
    *,
    greeting_s: float,
    lead_s: float,
    greeting_end_s: float,
    pause_end_s: float,
    max_tempo: float,
) -> SlotFit:
    """Fit a greeting of `greeting_s` (its trailing silence already cut; `lead_s` of leading
    silence) to the slot ending at `greeting_end_s`, before giving up.

    1. As it is, if it fits. 2. Without its leading silence. 3. Into the original's pause after
    the slot, as far as needed and never past `pause_end_s` (its next words, less a guard).
    4. Faster, up to `max_tempo`, over the slot and the whole pause. Else `GREETING_TOO_LONG`.
    """
    if greeting_s <= greeting_end_s:
        return SlotFit(greeting_end_s, 0.0, 1.0)
    trimmed = greeting_s - lead_s
    if trimmed <= greeting_end_s:
        return SlotFit(greeting_end_s, lead_s, 1.0)
    longest = max(greeting_end_s, pause_end_s)
    if trimmed <= longest:
        return SlotFit(trimmed, lead_s, 1.0)
    tempo = trimmed / longest
    if tempo > max_tempo * (1 + 1e-9):
        raise JobError(
            ErrorCode.GREETING_TOO_LONG,
            too_long_message(trimmed, greeting_end_s, max_tempo, longest - greeting_end_s),
        )
    return SlotFit(longest, lead_s, tempo)


def copy_point(first_packet_pts: int, frame_size: int, min_sample: int) -> int:
    """The first packet boundary of the original audio at or after `min_sample`."""
    frames = max(0, math.ceil((min_sample - first_packet_pts) / frame_size))
    return first_packet_pts + frames * frame_size


def lead_in(copy_at: int, frame_size: int) -> int:
    """Samples of silence before time 0 so the head's packets fall on the original's grid."""
    return (-copy_at) % frame_size


def full_lead(audio_end: int, slot_end: int) -> int:
    """Samples of silence encoded before time 0 when the whole track is re-encoded.

    The encoder pads its last packet to a whole frame, and ffmpeg 5.1's MP4 demuxer honours an
    edit list at the front only: at the end, that padding made the track up to a frame longer
    than the original (+640 samples for 5 s of Opus). Put before time 0, where the edit list
    skips it with the priming, it leaves the track ending on the original's last sample.
    """
    return lead_in(max(audio_end, slot_end), ENCODER_FRAME)


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
