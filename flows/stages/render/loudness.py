"""Loudness maths for the render (pure): block powers of decoded samples, a gated level and
the peak, where the synthesized speech ends (TTS pads its output with silence), and the gain
that brings the greeting to the level of the original audio it replaces without clipping; and
the quietest stretch of the original's room tone, which plays under the greeting so the slot
never drops to digital silence where the recording has a noise floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BLOCK_S = 0.05
ABSOLUTE_GATE_DB = -60.0
RELATIVE_GATE_DB = -10.0
# Speech ends where blocks stay this far below the loudest block; TTS pads its output with silence.
SPEECH_END_DROP_DB = 35.0
MAX_GAIN_DB = 20.0
HEADROOM_DB = 1.0


Floats = npt.NDArray[np.float64]


def _wide(samples: Sequence[float]) -> Floats:
    """Samples (an array('f') of decoded PCM, or any sequence) as float64, the precision the
    Python loops summed in (numpy's pairwise order differs only in the last bits). Vectorized:
    the per-sample loops these functions were took 10-12 % of the worker's GIL in a 100-job
    batch (py-spy --gil, 2026-12-07)."""
    return np.asarray(samples, dtype=np.float64)


def _mean_squares(wide: Floats, step: int) -> Floats:
    """Mean square of each whole `step`-sample block (a short tail is left out)."""
    blocks = len(wide) // step
    squares = np.square(wide[: blocks * step]).reshape(blocks, step)
    return np.asarray(squares.mean(axis=1), dtype=np.float64)


def block_powers(samples: Sequence[float], *, channels: int, sample_rate: int) -> list[float]:
    """Mean square per BLOCK_S block, over all channels (samples interleaved)."""
    step = max(1, round(BLOCK_S * sample_rate)) * channels
    wide = _wide(samples)
    if len(wide) >= step:
        return [float(p) for p in _mean_squares(wide, step)]
    return [float(np.mean(np.square(wide)))] if len(wide) else []


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
    peak = float(np.max(np.abs(_wide(samples)))) if len(samples) else 0.0
    return 20 * math.log10(peak) if peak > 0 else -math.inf


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


# --- room tone ------------------------------------------------------------------------------------

ROOM_BLOCK_S = 0.02
# Loop lengths tried, longest first: a longer loop repeats less audibly.
ROOM_TONE_LENGTHS_S = (0.4, 0.3, 0.2, 0.15)
# Below this a block is digital silence (or a codec's rounding of it), not a room.
DIGITAL_SILENCE_DB = -90.0
# Above this the quietest stretch is no room tone but a bed (music, a hum, a loud room) or
# speech; looping a fraction of a second of it would be heard as a loop.
ROOM_TONE_MAX_DB = -45.0
# Within a stretch of room tone, 20 ms blocks stay this close to each other: no word, no click.
ROOM_TONE_SPREAD_DB = 10.0
# The stretch is the quietest one: at most this much below the floor around it.
ROOM_TONE_MAX_GAIN_DB = 3.0
# Blocks at most this far above the stretch count as the floor the room tone must match.
FLOOR_RANGE_DB = 6.0


@dataclass(frozen=True)
class QuietStretch:
    """Where the original is only its room: the loop played under the greeting."""

    start_s: float  # from the first decoded sample
    length_s: float
    level_db: float  # mean power of the stretch
    floor_db: float  # the original's floor around it (median of its quiet blocks)

    @property
    def gain_db(self) -> float:
        """Brings the stretch to the floor it was picked from (it is the quietest part of it)."""
        return round(max(0.0, min(ROOM_TONE_MAX_GAIN_DB, self.floor_db - self.level_db)), 2)


def _decibels(powers: Floats) -> Floats:
    with np.errstate(divide="ignore"):
        return np.asarray(10 * np.log10(powers), dtype=np.float64)  # 0 -> -inf, as _db


def _block_db(samples: Sequence[float], *, channels: int, sample_rate: int) -> Floats:
    step = max(1, round(ROOM_BLOCK_S * sample_rate)) * channels
    return _decibels(_mean_squares(_wide(samples), step))


def quietest_stretch(
    samples: Sequence[float], *, channels: int, sample_rate: int
) -> QuietStretch | None:
    """The quietest stretch of room tone in `samples` (interleaved), or None if there is none:
    digital silence (nothing to loop: silence is right there), or a floor too loud to be a room.

    Tries ROOM_TONE_LENGTHS_S longest first; a stretch must hold no digital silence and no block
    more than ROOM_TONE_SPREAD_DB above another (no word, no breath, no click).
    """
    blocks = _block_db(samples, channels=channels, sample_rate=sample_rate)
    powers = np.power(10.0, blocks / 10)
    for length_s in ROOM_TONE_LENGTHS_S:
        size = round(length_s / ROOM_BLOCK_S)
        if len(blocks) < size:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(blocks, size)
        low, high = windows.min(axis=1), windows.max(axis=1)
        levels = _decibels(
            np.lib.stride_tricks.sliding_window_view(powers, size).sum(axis=1) / size
        )
        with np.errstate(invalid="ignore"):  # -inf - -inf: a window of digital silence
            fits = (low > DIGITAL_SILENCE_DB) & (high - low <= ROOM_TONE_SPREAD_DB)
        fits &= levels <= ROOM_TONE_MAX_DB
        if not fits.any():
            continue
        # The quietest, the earliest of equals.
        first = int(np.argmin(np.where(fits, levels, np.inf)))
        level = float(levels[first])
        quiet = np.sort(blocks[(blocks > DIGITAL_SILENCE_DB) & (blocks <= level + FLOOR_RANGE_DB)])
        return QuietStretch(
            start_s=first * ROOM_BLOCK_S,
            length_s=size * ROOM_BLOCK_S,
            level_db=level,
            floor_db=float(quiet[len(quiet) // 2]),
        )
    return None


def speech_start_s(powers: Sequence[float]) -> float:
    """Where the first block loud enough to be speech starts (0.0 if there is none): the
    leading silence a TTS voice puts before the words, at block resolution (never later)."""
    if not powers or max(powers) <= 0:
        return 0.0
    floor = max(_db(max(powers)) - SPEECH_END_DROP_DB, ABSOLUTE_GATE_DB)
    return next((i * BLOCK_S for i, p in enumerate(powers) if _db(p) >= floor), 0.0)


# --- the pause after the greeting slot ------------------------------------------------------------

ONSET_BLOCK_S = 0.01
# A block this far above the room's floor is sound: the next words (or a breath, a click: the
# slot stops early rather than late).
ONSET_ABOVE_FLOOR_DB = 10.0
# Without a room floor to go by (digital silence, or a bed too loud to tell), anything above this.
ONSET_SILENCE_DB = -70.0


def next_onset_s(
    samples: Sequence[float],
    *,
    channels: int,
    sample_rate: int,
    from_s: float,
    floor_db: float | None,
) -> float:
    """Where the first sound above the floor starts at or after `from_s` (seconds from the first
    sample of `samples`, interleaved), or where `samples` end if none does.

    The threshold errs low: ONSET_ABOVE_FLOOR_DB over the room tone's floor, or
    ONSET_SILENCE_DB where there is none; AAC's pre-echo before an onset only makes it earlier.
    """
    threshold = ONSET_SILENCE_DB
    if floor_db is not None:
        threshold = max(threshold, floor_db + ONSET_ABOVE_FLOOR_DB)
    frames = max(1, round(ONSET_BLOCK_S * sample_rate))
    step = frames * channels
    total = len(samples) // channels
    first = max(0, math.floor(from_s * sample_rate / frames))
    after = _decibels(_mean_squares(_wide(samples)[first * step :], step))
    loud = np.flatnonzero(after > threshold)
    if len(loud):
        return (first + int(loud[0])) * frames / sample_rate
    return total / sample_rate
