"""Where the spoken greeting ends, found from the recording when the client does not say.

A rep who records "Hey there! I wanted to show you..." should not have to find 1.08 s on a
timeline. When a job omits `greetingEndSecond`, the validating stage decodes the first seconds
of the upload's audio and finds the end of the first phrase and its pause: the slot runs up to
just before the next phrase starts, so the new greeting may use the pause too. Speech is told
from room tone by webrtcvad (WebRTC's voice activity detector, MIT), not by a level threshold:
a noisy room and a quiet voice have the same level.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import webrtcvad

from flows.job import ErrorCode, JobError
from flows.media import FfmpegError, run_ffmpeg, upload_input_options

SAMPLE_RATE = 16000  # webrtcvad takes 8, 16, 32 or 48 kHz, 16-bit mono
FRAME_S = 0.03  # 10, 20 or 30 ms frames
SEARCH_S = 4.0  # a greeting is the first words of the recording
MIN_PHRASE_S = 0.24  # speech shorter than this is a click or a breath, not "Hey there"
MIN_PAUSE_S = 0.12  # the pause after a greeting (webrtcvad hangs on ~90 ms past speech)
GUARD_S = 0.05  # the slot ends this far before the next phrase starts
AGGRESSIVENESS = 3  # 0-3: the most readily calls a frame not speech: pauses come out whole


def speech_frames(pcm: bytes, *, aggressiveness: int = AGGRESSIVENESS) -> list[bool]:
    """Per 30 ms frame of 16 kHz mono s16le audio: whether it is speech."""
    vad = webrtcvad.Vad(aggressiveness)
    size = int(SAMPLE_RATE * FRAME_S) * 2
    return [
        bool(vad.is_speech(pcm[start : start + size], SAMPLE_RATE))
        for start in range(0, len(pcm) - size + 1, size)
    ]


def greeting_end_s(frames: Sequence[bool]) -> float | None:
    """The end of the first phrase's pause (seconds), or None if the first seconds have none.

    A phrase is a run of speech (gaps shorter than MIN_PAUSE_S belong to it) of at least
    MIN_PHRASE_S; its pause is the silence after it, which must last MIN_PAUSE_S and be
    followed by speech within the frames given.
    """
    ends = phrase_ends_s(frames)
    return ends[0] if ends else None


def phrase_ends_s(frames: Sequence[bool]) -> list[float]:
    """Every place a greeting could end: the end of each pause (less GUARD_S) that follows a
    phrase and comes before more speech, in order. The first is `greeting_end_s`'s."""
    min_gap, min_phrase = round(MIN_PAUSE_S / FRAME_S), round(MIN_PHRASE_S / FRAME_S)
    ends: list[float] = []
    phrase_start: int | None = None
    silence = 0
    for index, speech in enumerate(frames):
        if speech:
            if phrase_start is not None and silence >= min_gap:
                if index - silence - phrase_start >= min_phrase:
                    ends.append(max(0.0, index * FRAME_S - GUARD_S))
                phrase_start = index  # the next phrase (or, after a click, this one) starts
            if phrase_start is None:
                phrase_start = index
            silence = 0
        elif phrase_start is not None:
            silence += 1
    return ends


def find_phrase_ends(video: Path, container: str, search_s: float) -> list[float]:
    """`phrase_ends_s` of the first `search_s` of `video`'s sound (an upload, as `container`)."""
    frames = speech_frames(_first_seconds_pcm(video, container, search_s))
    return [round(end, 3) for end in phrase_ends_s(frames)]


def find_greeting_end(video: Path, container: str) -> float:
    """Where the greeting of `video` (an upload, opened only as `container`) ends."""
    pcm = _first_seconds_pcm(video, container, SEARCH_S)
    found = greeting_end_s(speech_frames(pcm))
    if found is None:
        raise JobError(
            ErrorCode.INVALID_GREETING_END,
            f"No pause after a first phrase was found in the first {SEARCH_S:g} s of the "
            "recording: set greetingEndSecond to the second where the spoken greeting ends.",
        )
    return round(found, 3)


def _first_seconds_pcm(video: Path, container: str, seconds: float) -> bytes:
    """The first `seconds` of the upload's first sound track, 16 kHz mono s16le for webrtcvad."""
    try:
        return run_ffmpeg(
            [
                *upload_input_options(container),
                "-t",
                f"{seconds:g}",
                "-i",
                str(video),
                "-map",
                "0:a:0",
                "-ac",
                "1",
                "-ar",
                str(SAMPLE_RATE),
                "-f",
                "s16le",
                "-",
            ]
        )
    except FfmpegError as exc:
        # A corrupt sound track (ffmpeg gives up on too many bad packets): the upload's fault.
        raise JobError(
            ErrorCode.INPUT_NOT_VIDEO,
            "The video's sound track could not be decoded (the file looks damaged): upload the "
            "recording again.",
        ) from exc
