"""Loudness maths for the render (pure): block powers of decoded samples, a gated level and
the peak, where the synthesized speech ends (TTS pads its output with silence), and the gain
that brings the greeting to the level of the original audio it replaces without clipping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BLOCK_S = 0.05
ABSOLUTE_GATE_DB = -60.0
RELATIVE_GATE_DB = -10.0
# Speech ends where blocks stay this far below the loudest block; TTS pads its output with silence.
SPEECH_END_DROP_DB = 35.0
MAX_GAIN_DB = 20.0
HEADROOM_DB = 1.0


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
