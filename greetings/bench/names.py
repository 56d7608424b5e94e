"""Forty real names on a real-sounding recording: how many fit, with no dead air, in sync.

A sales team's CSV holds full names with titles, hyphens, diacritics and three parts, and a rep
records on a phone in a room: 44.1 kHz AAC with a room-tone floor. This section renders each name
with the default greeting ("Hey {firstName},") over such a recording ("Hey there! I wanted to
show you...", the greeting's end found from the audio, as a job without greetingEndSecond gets
it) with the functions a job runs, and measures per name: did it fit, is any 20 ms of the slot
digital silence, and is every sample after the slot the original's, at its original time.
No stack is needed.
"""

from __future__ import annotations

import array
import math
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from flows.job import JobError
from flows.media import run_ffmpeg
from flows.stages.greeting_end import find_greeting_end
from flows.stages.render import render_greeting
from flows.stages.synthesize import EspeakVoice, synthesize_speech
from flows.stages.validate import greeting_text, spoken_name
from greetings.samples import make_recording
from greetings.settings import StackSettings

NARRATION = "Hey there! I wanted to show you what we built for teams like yours."
ROOM_TONE_DBFS = -60.0
WINDOW_S = 0.02
DIGITAL_SILENCE_DBFS = -90.0  # a 20 ms window this quiet is no room, it is zeros
RATE = 44100

# Full names as they stand in a CRM export, and what a person would call each of them.
REAL_NAMES = {
    "Christopher Montgomery": "Christopher",
    "Dr. Anna-Lena Smith": "Anna-Lena",
    "Oluwaseun Adebayo-Johnson": "Oluwaseun",
    "Mr. Jean-Luc Picard": "Jean-Luc",
    "Ms. Priya Raghunathan": "Priya",
    "Prof. Dr. Hans-Peter Müller": "Hans-Peter",
    "Sir Patrick Stewart": "Patrick",
    "Mrs. Zoë Saldaña-Perego": "Zoë",
    "José María García Márquez": "José",
    "Ludwig van Beethoven": "Ludwig",
    "Ngozi Okonjo-Iweala": "Ngozi",
    "Nguyễn Thị Minh Khai": "Nguyễn",
    "Søren Kierkegaard": "Søren",
    "Siobhán O'Sullivan": "Siobhán",
    "Mary Ann Smith-Jones": "Mary",
    "Dr. Smith": "Dr. Smith",
    "J. R. R. Tolkien": "J. R. R.",
    "van der Berg, Hans": "Hans",
    "Björk": "Björk",
    "Madonna": "Madonna",
    "Dr. Martin Luther King Jr.": "Martin",
    "Ms. Ana Lucía de la Cruz": "Ana",
    "Kwame Nkrumah": "Kwame",
    "Ayşe Gül Yılmaz": "Ayşe",  # noqa: RUF001 (a Turkish dotless i)
    "Łukasz Żółkiewski": "Łukasz",
    "François-Xavier Dupont": "François-Xavier",
    "Zhang Wei": "Zhang",
    "Mohammed bin Salman": "Mohammed",
    "Mr. John Q. Public": "John",
    "Rev. Desmond Tutu": "Desmond",
    "Capt. Jean Marie Dubois": "Jean",
    "Lt. Nyota Uhura": "Nyota",
    "Ines Sainz-de-Baranda": "Ines",
    "Aarav Patel": "Aarav",
    "Dr. Ólafur Ragnar Grímsson": "Ólafur",
    "Mx. Robin Taylor": "Robin",
    "Chiamaka Obi-Eze": "Chiamaka",
    "Hiroshi Tanaka": "Hiroshi",
    "Ms. Élodie Lefèvre": "Élodie",
    "Pieter de Vries": "Pieter",
}


def decode(path: Path) -> list[float]:
    """Mono float samples from the first one (no seeking: containers seek differently)."""
    raw = run_ffmpeg(["-i", str(path), "-ac", "1", "-ar", str(RATE), "-f", "f32le", "-"])
    samples = array.array("f")
    samples.frombytes(raw)
    return list(samples)


def quietest_window_dbfs(samples: Sequence[float], start: int, end: int) -> float:
    """The level of the quietest 20 ms window in samples[start:end]."""
    size = int(WINDOW_S * RATE)
    levels = []
    for at in range(start, max(start + 1, end - size + 1), size):
        window = samples[at : at + size]
        power = sum(x * x for x in window) / max(1, len(window))
        levels.append(10 * math.log10(power) if power > 0 else -200.0)
    return min(levels)


def audio_packets(path: Path) -> list[tuple[int, str]]:
    """(pts, data hash) of every audio packet, stream-copied, in the file's own time base."""
    listing = run_ffmpeg(
        ["-copyts", "-i", str(path), "-map", "0:a:0", "-c", "copy", "-f", "framemd5", "-"]
    ).decode()
    rows = [line.split(",") for line in listing.splitlines() if line and not line.startswith("#")]
    return [(int(row[2]), row[5].strip()) for row in rows]


def after_slot_exact(
    original: Path, rendered: Path, copy_point_s: float | None, samples: tuple[int, int]
) -> bool:
    """The track as long as the original's, and from the copy point on the original's own
    packets at their own times. (Decoded samples cannot be compared: AAC's noise substitution
    draws from a decoder state that the new head changes.)"""
    if samples[0] != samples[1]:
        return False
    if copy_point_s is None:  # the whole track was re-encoded: only its length can be held
        return True
    cut = round(copy_point_s * RATE)
    return [p for p in audio_packets(rendered) if p[0] >= cut] == [
        p for p in audio_packets(original) if p[0] >= cut
    ]


def speak(voice: EspeakVoice, text: str, voice_id: str, folder: Path, speed: float = 1.0) -> Path:
    speech = synthesize_speech(voice, text, voice_id, speed)
    path = folder / f"greeting-{speed}.{speech.extension}"
    path.write_bytes(speech.audio)
    return path


def run_names(settings: StackSettings, progress: Callable[[str], None]) -> dict[str, Any]:
    voice = EspeakVoice(settings.espeak_voice)
    voice_id = "espeak:" + settings.espeak_voice
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-names-") as tmp:
        folder = Path(tmp)
        clip = make_recording(
            folder / "hey-there.mp4", NARRATION, noise_dbfs=ROOM_TONE_DBFS, sample_rate=RATE
        )
        end_s = find_greeting_end(clip, "mov")
        original = decode(clip)
        slot = int(end_s * RATE)
        floor_dbfs = quietest_window_dbfs(original, 0, len(original))
        progress(f"names: slot ends at {end_s:.3f} s; the room's floor {floor_dbfs:.1f} dBFS")
        for name in REAL_NAMES:
            text = greeting_text(None, spoken_name(name))
            speech_file = speak(voice, text, voice_id, folder)
            out = folder / "out.mp4"
            row: dict[str, Any] = {"name": name, "said": text}
            try:
                report = render_greeting(
                    clip,
                    speech_file,
                    end_s,
                    out,
                    max_tempo=settings.max_tempo,
                    crossfade_ms=settings.crossfade_ms,
                    # As the worker does: the voice speaks faster before any time-stretch.
                    respeak=partial(speak, voice, text, voice_id, folder),
                )
            except JobError as error:
                row["error"] = str(error.code)
                results.append(row)
                continue
            rendered = decode(out)
            row.update(
                tempo=round(report.tempo, 3),
                provider_speed=report.provider_speed,
                path=report.path_taken,
                slot_quietest_dbfs=round(quietest_window_dbfs(rendered, 0, slot), 1),
                exact_after_slot=after_slot_exact(
                    clip, out, report.copy_point_s, (len(original), len(rendered))
                ),
            )
            results.append(row)
    done = [r for r in results if "error" not in r]
    return {
        "names": {
            "greeting_end_s": end_s,
            "room_floor_dbfs": round(floor_dbfs, 1),
            "names": len(results),
            "completed": len(done),
            "failed": {r["name"]: r["error"] for r in results if "error" in r},
            "digital_silence_in_slot": [
                r["name"] for r in done if r["slot_quietest_dbfs"] <= DIGITAL_SILENCE_DBFS
            ],
            "not_exact_after_slot": [r["name"] for r in done if not r["exact_after_slot"]],
            "max_tempo_used": max((r["tempo"] for r in done), default=None),
            "spoken_faster": sum(1 for r in done if r["provider_speed"] > 1.0),
            "rows": results,
        }
    }
