"""The head made in the worker (flows/stages/render/head.py): the mix graph run by libavfilter in
this process gives the samples ffmpeg's command gives for the same graph, on every sample rate,
channel count, voice file and fit step; its packets are cut and moved as the command cut them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from flows.media import FfmpegError
from flows.stages.render.ffmpeg_args import MixSpec, RoomTone, mix_graph
from flows.stages.render.head import encode_head, mixed, parse_graph
from flows.stages.render.timing import ENCODER_FRAME, ENCODER_PRIMING, HeadPlan
from greetings.samples import make_speech

pytestmark = pytest.mark.media


def spec(
    rate: int,
    channels: int,
    *,
    room: bool = False,
    tempo: float = 1.0,
    lead: int = 0,
    trim: int = 0,
    original_start: int = 0,
) -> MixSpec:
    slot = round(1.5 * rate)
    return MixSpec(
        sample_rate=rate,
        channels=channels,
        layout={1: "mono", 2: "stereo", 6: "5.1"}[channels],
        greeting_samples=round(1.2 * rate),
        greeting_start=trim,
        slot_samples=slot,
        crossfade_samples=round(0.04 * rate),
        tempo=tempo,
        gain_db=-4.25,
        start=-lead,
        original_start=original_start,
        end=slot + 3 * ENCODER_FRAME,
        room=RoomTone(start=round(2.1 * rate), length=round(0.3 * rate), gain_db=1.5)
        if room
        else None,
    )


def recording(rate: int, channels: int, seconds: float = 4.0) -> np.ndarray:
    """A voice-like tone over a room-tone floor (-55 dBFS noise), interleaved float32."""
    rng = np.random.default_rng(rate + channels)
    t = np.arange(round(seconds * rate)) / rate
    voice = 0.2 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    floor = rng.normal(0.0, 10 ** (-55 / 20), (len(t), channels))
    return (voice[:, None] + floor).astype("<f4").reshape(-1)


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """What the voices write: espeak-ng's 22.05 kHz WAV, a 44.1 kHz MP3 (ElevenLabs' default
    output), a 24 kHz MP3 and a 16 kHz WAV (Piper's low voices)."""
    folder = tmp_path_factory.mktemp("voices")
    text = "Hey Dr. Zoë Ångström-Nakamura,"
    return {
        "espeak.wav": make_speech(folder / "espeak.wav", text),
        "eleven.mp3": make_speech(folder / "eleven.mp3", text, sample_rate=44100),
        "low.mp3": make_speech(folder / "low.mp3", text, sample_rate=24000),
        "piper.wav": make_speech(folder / "piper.wav", text, sample_rate=16000),
    }


def ffmpeg_mix(original: np.ndarray, greeting: Path, mix: MixSpec, work: Path) -> np.ndarray:
    """The same graph run by the ffmpeg command (as the full re-encode runs it), over the same
    samples: the greeting as PyAV decodes it (Debian's ffmpeg 5.1 decodes 24 kHz MP3 up to 0.004
    apart from PyAV's 8.1: tests/unit/test_media.py), so only the graphs are compared."""
    import av

    with av.open(str(greeting)) as media:
        stream = media.streams.audio[0]
        rate, layout = stream.sample_rate, stream.layout.name
        # As floats (WAV decodes to int16): the exact conversion the graph's aformat makes.
        to_float = av.AudioResampler(format="flt", layout=layout, rate=rate)
        frames = [done for f in media.decode(stream) for done in to_float.resample(f)]
        frames += to_float.resample(None)
        voice = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    inputs = {
        "original.f32": (original, mix.sample_rate, mix.layout),
        "voice.f32": (voice, rate, layout),
    }
    args = ["ffmpeg", "-v", "error", "-y"]
    for name, (samples, sample_rate, channels) in inputs.items():
        samples.astype("<f4").tofile(work / name)
        args += ["-f", "f32le", "-ar", str(sample_rate), "-ch_layout", channels]
        args += ["-i", str(work / name)]
    out = work / "mix.f32"
    args += ["-filter_complex", mix_graph(mix), "-map", "[mix]"]
    subprocess.run([*args, "-c:a", "pcm_f32le", "-f", "f32le", str(out)], check=True)
    return np.fromfile(out, dtype="<f4")


def in_process_mix(original: np.ndarray, greeting: Path, mix: MixSpec) -> tuple[np.ndarray, list]:
    frames = list(mixed(original, greeting, mix))
    sizes = [f.samples for f in frames]
    samples = [f.to_ndarray().T.reshape(-1) for f in frames]  # planar: one row per channel
    return np.concatenate(samples), sizes


CASES = {
    "plain": {},
    "room tone": {"room": True},
    "faster": {"tempo": 1.23},
    "lead and trim": {"lead": 700, "trim": 2000},
    "original starts late": {"original_start": 1024, "room": True},
}


@pytest.mark.parametrize("rate", [16000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_the_head_mix_is_ffmpegs_mix_sample_for_sample(
    voices: dict[str, Path], tmp_path: Path, rate: int, channels: int, case: str
) -> None:
    mix = spec(rate, channels, **CASES[case])  # type: ignore[arg-type]
    original = recording(rate, channels)
    # Every voice file with every case would be 160 renders: each rate meets each voice.
    voice = list(voices.values())[[16000, 22050, 44100, 48000].index(rate)]
    ours, sizes = in_process_mix(original, voice, mix)
    theirs = ffmpeg_mix(original, voice, mix, tmp_path)
    assert len(ours) == len(theirs) == (mix.end - mix.start) * channels
    # The encoder's frames, as the command's sink hands them.
    assert set(sizes[:-1]) == {ENCODER_FRAME}
    assert float(np.max(np.abs(ours - theirs))) < 1e-6
    assert float(np.max(np.abs(ours))) > 0.05  # something was mixed, not silence vs silence


def test_the_head_is_cut_and_moved_as_the_command_cut_it(
    voices: dict[str, Path], tmp_path: Path
) -> None:
    import av

    mix = spec(48000, 2, room=True, lead=512)
    plan = HeadPlan(copy_point=74752, lead=512, encode_end=mix.end, first_packet=-1024)
    head = tmp_path / "head.nut"
    encode_head(
        original=recording(48000, 2),
        greeting_audio=voices["eleven.mp3"],
        spec=mix,
        plan=plan,
        bitrate=128_000,
        output=head,
    )
    with av.open(str(head)) as media:
        stream = media.streams.audio[0]
        assert (stream.codec_context.name, stream.sample_rate, stream.channels) == ("aac", 48000, 2)
        packets = [p for p in media.demux(stream) if p.size]
        pts = [p.pts for p in packets]
        frames = [f for p in packets for f in stream.codec_context.decode(p)]
        decoded = np.concatenate([f.to_ndarray().T.reshape(-1) for f in frames])
    stop = plan.copy_point + plan.offset
    # The priming packet at 0, one packet a frame, none from the copy point on.
    assert pts == list(range(0, stop, ENCODER_FRAME))
    assert plan.offset == ENCODER_PRIMING + 512
    # What plays is the mix (the AAC encoder's error is far below the signal), once the
    # decoder's output of the priming is skipped, as the MP4's edit list will skip it.
    ours, _ = in_process_mix(recording(48000, 2), voices["eleven.mp3"], mix)
    decoded = decoded[ENCODER_PRIMING * 2 :]
    n = min(len(ours), len(decoded)) - 4096
    error = decoded[:n] - ours[:n]
    assert 10 * np.log10(np.mean(ours[:n] ** 2) / np.mean(error**2)) > 15


def test_a_surround_head_is_mixed_as_ffmpeg_mixes_it(
    voices: dict[str, Path], tmp_path: Path
) -> None:
    """5.1 (a phone's or a camera's surround track): the greeting goes to every channel."""
    mix = spec(48000, 6, room=True)
    original = recording(48000, 6)
    ours, _ = in_process_mix(original, voices["eleven.mp3"], mix)
    theirs = ffmpeg_mix(original, voices["eleven.mp3"], mix, tmp_path)
    assert len(ours) == len(theirs) == (mix.end - mix.start) * 6
    assert float(np.max(np.abs(ours - theirs))) < 1e-6


def test_a_surround_recording_is_spliced_with_its_six_channels(
    voices: dict[str, Path], tmp_path: Path
) -> None:
    import av

    from flows.stages.render import render_greeting
    from greetings.samples import make_sample_video

    clip = make_sample_video(
        tmp_path / "surround.mp4", seconds=6, width=320, height=240, channels=6
    )
    report = render_greeting(clip, voices["espeak.wav"], 2.5, tmp_path / "out.mp4")
    assert report.path_taken == "head-reencode"
    with av.open(str(tmp_path / "out.mp4")) as media:
        audio = media.streams.audio[0]
        assert (audio.codec_context.name, audio.channels) == ("aac", 6)
        decoded = sum(f.samples for f in media.decode(audio))
    assert abs(decoded / 48000 - report.duration_s) < 0.03


def test_a_greeting_that_is_not_audio_fails_as_ffmpeg_would(tmp_path: Path) -> None:
    bad = tmp_path / "greeting.mp3"
    bad.write_bytes(b"<html>rate limited</html>" * 40)
    mix = spec(48000, 2)
    plan = HeadPlan(copy_point=74752, lead=0, encode_end=mix.end, first_packet=-1024)
    with pytest.raises(FfmpegError):
        encode_head(
            original=recording(48000, 2),
            greeting_audio=bad,
            spec=mix,
            plan=plan,
            bitrate=128_000,
            output=tmp_path / "head.nut",
        )


def test_the_graph_reader_reads_what_mix_graph_writes_and_nothing_else() -> None:
    for mix in (spec(48000, 2), spec(44100, 1, room=True, tempo=1.1, lead=3, trim=9)):
        text = mix_graph(mix, original="o", greeting="g")
        chains = parse_graph(text)
        rebuilt = ";".join(
            "".join(f"[{label}]" for label in chain.inputs)
            + ",".join(name if args is None else f"{name}={args}" for name, args in chain.filters)
            + "".join(f"[{label}]" for label in chain.outputs)
            for chain in chains
        )
        assert rebuilt == text
        assert chains[-1].outputs == ["mix"]
    for hostile in ("[a]volume='1,2'[b]", "[a]volume=1\\,2[b]", "[a[b]", "[a][b]"):
        with pytest.raises(ValueError):
            parse_graph(hostile)


@pytest.mark.parametrize("limit", ["decoded window", "channels"])
def test_a_head_past_its_decoded_samples_takes_the_full_reencode(
    voices: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: str
) -> None:
    """A head needing samples the analysis did not decode (a seam found far past the slot at a
    low rate), or more channels than the worker mixes, is re-encoded whole: never mixed short."""
    from flows.stages.render import ffmpeg_args, render_greeting, stage
    from greetings.samples import make_sample_video

    clip = make_sample_video(tmp_path / "clip.mp4", seconds=6, width=320, height=240)
    spliced = render_greeting(clip, voices["espeak.wav"], 2.5, tmp_path / "spliced.mp4")
    assert spliced.path_taken == "head-reencode"
    if limit == "channels":
        monkeypatch.setattr(stage, "HEAD_MAX_CHANNELS", 1)  # the clip is stereo
    else:  # the decoded head ends at 2.5 + 2.0 - 2.4 s, before the head's end (about 2.6 s)
        monkeypatch.setattr(ffmpeg_args, "HEAD_PCM_AFTER_S", -2.4)
    whole = render_greeting(clip, voices["espeak.wav"], 2.5, tmp_path / "whole.mp4")
    assert whole.path_taken == "full-audio-reencode"
    assert whole.duration_s == spliced.duration_s
