"""Where the greeting ends, found from the recording: real speech, with and without room tone."""

from __future__ import annotations

import array
from pathlib import Path

import pytest

from flows.job import ErrorCode, JobError
from flows.media import probe_upload, run_ffmpeg
from flows.stages.greeting_end import FRAME_S, find_greeting_end, greeting_end_s
from flows.stages.validate import settle_greeting_end, validate_request
from greetings.cli import seconds_or_auto
from greetings.samples import make_recording, speech_wav

S, Q = True, False  # a 30 ms frame of speech, of quiet


def test_the_end_is_the_start_of_the_next_phrase_less_a_guard() -> None:
    frames = [Q] * 3 + [S] * 20 + [Q] * 10 + [S] * 30
    assert greeting_end_s(frames) == pytest.approx(33 * FRAME_S - 0.05)


def test_gaps_inside_a_phrase_and_clicks_before_it_do_not_end_it() -> None:
    short_gap = [S] * 10 + [Q] * 2 + [S] * 10 + [Q] * 8 + [S] * 10
    assert greeting_end_s(short_gap) == pytest.approx(30 * FRAME_S - 0.05)
    click = [S] * 2 + [Q] * 10 + [S] * 12 + [Q] * 6 + [S] * 5
    assert greeting_end_s(click) == pytest.approx(30 * FRAME_S - 0.05)


def test_no_pause_or_no_next_phrase_finds_nothing() -> None:
    assert greeting_end_s([S] * 130) is None
    assert greeting_end_s([S] * 20 + [Q] * 100) is None
    assert greeting_end_s([Q] * 130) is None


def pause_after_first_phrase(text: str) -> tuple[float, float]:
    """Where espeak-ng's first phrase stops and the next starts, from its own (clean) samples."""
    wav = speech_wav(text)
    pcm = run_ffmpeg(["-i", "pipe:0", "-ac", "1", "-ar", "16000", "-f", "s16le", "-"], stdin=wav)
    samples = array.array("h")
    samples.frombytes(pcm)
    step = 160  # 10 ms
    loud = [
        max(map(abs, samples[i : i + step]), default=0) > 300 for i in range(0, len(samples), step)
    ]
    start = loud.index(True)
    end = next(i for i in range(start, len(loud)) if not any(loud[i : i + 12]))
    onset = next(i for i in range(end, len(loud)) if loud[i])
    return end * 0.01, onset * 0.01


@pytest.mark.media
@pytest.mark.parametrize(
    "text",
    [
        "Hey there! I wanted to show you something today.",
        "Hi Sam, quick question about your team.",
        "Hello everyone. This is our new product.",
    ],
)
@pytest.mark.parametrize("noise_dbfs", [None, -60.0])
def test_found_in_the_pause_after_the_first_phrase(
    tmp_path: Path, text: str, noise_dbfs: float | None
) -> None:
    phrase_end, next_onset = pause_after_first_phrase(text)
    found = find_greeting_end(
        make_recording(tmp_path / "clip.mp4", text, noise_dbfs=noise_dbfs), "mov"
    )
    assert phrase_end < found < next_onset, (phrase_end, found, next_onset)


@pytest.mark.media
def test_a_job_without_an_end_gets_the_one_found(tmp_path: Path) -> None:
    video = make_recording(
        tmp_path / "clip.mp4", "Hey there! I wanted to show you something today."
    )
    request = validate_request(
        {
            "userId": "u1",
            "inputVideo": "user-uploads/u1/v.mp4",
            "prospectName": "Dr. Anna-Lena Smith",
            "voiceId": "espeak:en-us",
        }
    )
    assert request.greeting_end_s is None
    settled = settle_greeting_end(request, video, probe_upload(video), 600)
    assert settled.greeting_end_s is not None and 0.8 < settled.greeting_end_s < 1.1
    monotone = tmp_path / "tone.mp4"
    sources = ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:d=6", "-f", "lavfi", "-i"]
    run_ffmpeg([*sources, "sine=d=6", "-c:v", "libx264", "-preset", "ultrafast", str(monotone)])
    with pytest.raises(JobError) as refused:
        settle_greeting_end(request, monotone, probe_upload(monotone), 600)
    assert refused.value.code == ErrorCode.INVALID_GREETING_END
    assert "set greetingEndSecond" in refused.value.message


def test_the_command_takes_seconds_or_auto() -> None:
    assert seconds_or_auto("auto") is None
    assert seconds_or_auto("1.25") == 1.25
    with pytest.raises(Exception, match="neither seconds nor auto"):
        seconds_or_auto("soon")
