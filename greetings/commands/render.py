"""`greetings render`: stages 1-3 on local files, without the stack (previews, benchmarks).

It runs the same functions the flow's tasks wrap: validation, synthesis, rendering.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from flows.job import JobError
from flows.media import ProbeError, probe_upload, sniff_container
from flows.stages.greeting_end import find_greeting_end
from flows.stages.render import render_greeting
from flows.stages.synthesize import (
    EspeakVoice,
    build_voice,
    piper_voice,
    synthesize_speech,
    voice_for,
)
from flows.stages.validate import check_media, check_size, clean_name, greeting_end, greeting_text
from greetings.settings import get_settings


def render_command(args: argparse.Namespace) -> int:
    settings = get_settings()
    video, out = Path(args.video), Path(args.out)
    try:
        if not video.is_file():
            print(f"error: no such file: {video}", file=sys.stderr)
            return 2
        name = clean_name(args.name)
        end_s = None if args.greeting_end is None else greeting_end(args.greeting_end)
        text = greeting_text(args.greeting_text, name)
        check_size(video.stat().st_size, settings.max_input_bytes)
        try:
            info = probe_upload(video)  # as the worker opens an upload
        except ProbeError:
            print(f"error: {video} is not a video ffmpeg can read", file=sys.stderr)
            return 1
        check_media(info, end_s, settings.max_input_seconds)
        if end_s is None:
            end_s = find_greeting_end(video, info.container or sniff_container(video))
            check_media(info, end_s, settings.max_input_seconds)
            print(f"the greeting ends at {end_s:.3f} s (found from the recording)")
        began = time.monotonic()
        local, piper = EspeakVoice(settings.espeak_voice), piper_voice(settings)
        voice = voice_for(args.voice, build_voice(settings), local, piper)
        speech = synthesize_speech(voice, text, args.voice)
        synth_s = time.monotonic() - began
        with tempfile.TemporaryDirectory(prefix="greetings-render-") as tmp:
            speech_file = Path(tmp) / f"greeting.{speech.extension}"
            speech_file.write_bytes(speech.audio)

            def respeak(speed: float) -> Path:
                # As the worker does: a greeting too long for its slot is spoken faster first.
                faster = synthesize_speech(voice, text, args.voice, speed)
                path = Path(tmp) / f"greeting-{speed}.{faster.extension}"
                path.write_bytes(faster.audio)
                return path

            report = render_greeting(
                video,
                speech_file,
                end_s,
                out,
                max_tempo=settings.max_tempo,
                crossfade_ms=settings.crossfade_ms,
                upload=info,
                respeak=respeak,
            )
    except JobError as error:
        print(f"error: {error.code}: {error.message}", file=sys.stderr)
        return 1
    print(
        f"wrote {report.path} ({report.duration_s:.2f} s): said {text!r} with {speech.provider}; "
        f"synthesis {synth_s:.2f} s, render {report.seconds:.2f} s ({report.path_taken}, "
        f"voice speed {report.provider_speed:.2f}x, tempo {report.tempo:.2f}x, "
        f"gain {report.gain_db:+.1f} dB)"
    )
    return 0
