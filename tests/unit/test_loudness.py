"""The render's loudness maths, vectorized with numpy, against their per-sample definitions.

The definitions below are the loops flows/stages/render/loudness.py ran until 2026-12-07 (they
took 10-12 % of the worker's GIL in a batch). Every input here is decoded-PCM-like: float32
samples in an array('f'), a room-tone floor, words, digital silence, mono and stereo.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.stages.render.ffmpeg_args import ANALYSIS_RATE
from flows.stages.render.loudness import (
    DIGITAL_SILENCE_DB,
    FLOOR_RANGE_DB,
    ROOM_BLOCK_S,
    ROOM_TONE_LENGTHS_S,
    ROOM_TONE_MAX_DB,
    ROOM_TONE_SPREAD_DB,
    QuietStretch,
    block_powers,
    next_onset_s,
    peak_db,
    quietest_stretch,
)


def _db(power: float) -> float:
    return 10 * math.log10(power) if power > 0 else -math.inf


def block_powers_loop(samples: Sequence[float], channels: int, sample_rate: int) -> list[float]:
    step = max(1, round(0.05 * sample_rate)) * channels
    return [
        sum(x * x for x in samples[i : i + step]) / len(samples[i : i + step])
        for i in range(0, len(samples) - step + 1, step)
    ] or ([sum(x * x for x in samples) / len(samples)] if samples else [])


def peak_db_loop(samples: Sequence[float]) -> float:
    return 20 * math.log10(max(map(abs, samples))) if samples and any(samples) else -math.inf


def quietest_stretch_loop(
    samples: Sequence[float], channels: int, sample_rate: int
) -> QuietStretch | None:
    step = max(1, round(ROOM_BLOCK_S * sample_rate)) * channels
    blocks = [
        _db(sum(x * x for x in samples[i : i + step]) / step)
        for i in range(0, len(samples) - step + 1, step)
    ]
    for length_s in ROOM_TONE_LENGTHS_S:
        size = round(length_s / ROOM_BLOCK_S)
        best: tuple[float, int] | None = None
        for first in range(len(blocks) - size + 1):
            window = blocks[first : first + size]
            low, high = min(window), max(window)
            if low <= DIGITAL_SILENCE_DB or high - low > ROOM_TONE_SPREAD_DB:
                continue
            level = _db(sum(10 ** (b / 10) for b in window) / size)
            if level <= ROOM_TONE_MAX_DB and (best is None or level < best[0]):
                best = (level, first)
        if best is None:
            continue
        level, first = best
        quiet = sorted(b for b in blocks if DIGITAL_SILENCE_DB < b <= level + FLOOR_RANGE_DB)
        return QuietStretch(
            first * ROOM_BLOCK_S, size * ROOM_BLOCK_S, level, quiet[len(quiet) // 2]
        )
    return None


def next_onset_loop(
    samples: Sequence[float], channels: int, sample_rate: int, from_s: float, threshold: float
) -> float:
    frames = max(1, round(0.01 * sample_rate))
    step = frames * channels
    total = len(samples) // channels
    first = max(0, math.floor(from_s * sample_rate / frames))
    for block in range(first, total // frames):
        chunk = samples[block * step : (block + 1) * step]
        if _db(sum(x * x for x in chunk) / step) > threshold:
            return block * frames / sample_rate
    return total / sample_rate


# A recording's opening in parts: (kind, seconds, level in dBFS).
Part = tuple[str, float, float]
parts = st.lists(
    st.tuples(
        st.sampled_from(["room", "words", "silence"]),
        st.floats(0.01, 0.8),
        st.floats(-75.0, -20.0),
    ),
    min_size=1,
    max_size=6,
)


def recording(spec: list[Part], channels: int, seed: int) -> array[float]:
    """Interleaved float32 PCM at the analysis rate: room tone (noise), words (a louder,
    modulated tone over it) and digital silence, as a phone recording's opening has them."""
    rng = np.random.default_rng(seed)
    pieces = []
    for kind, seconds, level_db in spec:
        n = max(1, round(seconds * ANALYSIS_RATE))
        if kind == "silence":
            piece = np.zeros((n, channels))
        else:
            piece = rng.standard_normal((n, channels)) * 10 ** (level_db / 20)
            if kind == "words":
                t = np.arange(n) / ANALYSIS_RATE
                tone = np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
                piece += (10 ** ((level_db + 30) / 20) * tone)[:, None]
        pieces.append(piece)
    return array("f", np.concatenate(pieces).astype(np.float32).reshape(-1).tobytes())


def close(a: float, b: float) -> bool:
    return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=60, deadline=None)
@given(parts, st.sampled_from([1, 2]), st.integers(0, 2**16))
def test_block_powers_and_peak_are_the_loops(spec: list[Part], channels: int, seed: int) -> None:
    samples = recording(spec, channels, seed)
    for rate in (ANALYSIS_RATE, 44100):
        fast = block_powers(samples, channels=channels, sample_rate=rate)
        slow = block_powers_loop(samples, channels, rate)
        assert len(fast) == len(slow)
        assert all(close(a, b) for a, b in zip(fast, slow, strict=True))
    assert close(peak_db(samples), peak_db_loop(samples))


@settings(max_examples=60, deadline=None)
@given(parts, st.sampled_from([1, 2]), st.integers(0, 2**16))
def test_the_quietest_stretch_is_the_loops(spec: list[Part], channels: int, seed: int) -> None:
    samples = recording(spec, channels, seed)
    fast = quietest_stretch(samples, channels=channels, sample_rate=ANALYSIS_RATE)
    slow = quietest_stretch_loop(samples, channels, ANALYSIS_RATE)
    assert (fast is None) == (slow is None)
    if fast and slow:
        assert (fast.start_s, fast.length_s) == (slow.start_s, slow.length_s)
        assert close(fast.level_db, slow.level_db) and close(fast.floor_db, slow.floor_db)


@settings(max_examples=60, deadline=None)
@given(
    parts,
    st.sampled_from([1, 2]),
    st.integers(0, 2**16),
    st.floats(0.0, 3.0),
    st.floats(-80.0, -30.0),
)
def test_the_next_onset_is_the_loops(
    spec: list[Part], channels: int, seed: int, from_s: float, floor_db: float
) -> None:
    samples = recording(spec, channels, seed)
    fast = next_onset_s(
        samples, channels=channels, sample_rate=ANALYSIS_RATE, from_s=from_s, floor_db=floor_db
    )
    threshold = max(-70.0, floor_db + 10.0)
    assert fast == next_onset_loop(samples, channels, ANALYSIS_RATE, from_s, threshold)


@pytest.mark.parametrize("samples", [array("f"), array("f", [0.0] * 100)])
def test_nothing_or_digital_silence(samples: array[float]) -> None:
    assert block_powers(samples, channels=1, sample_rate=ANALYSIS_RATE) == block_powers_loop(
        samples, 1, ANALYSIS_RATE
    )
    assert peak_db(samples) == -math.inf
    assert quietest_stretch(samples, channels=1, sample_rate=ANALYSIS_RATE) is None
