"""The generating-video stage: timing maths and ffmpeg arguments (pure), then real renders.

Media tests render generated clips once per module and check what a viewer would notice: the
video untouched packet for packet, the audio after the greeting at its original time sample for
sample, the greeting where the old one was, and an MP4 that starts playing before it is all
downloaded.
"""

from __future__ import annotations

import math
import subprocess
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flows.job import ErrorCode, JobError
from flows.media import ProbeError, mp4_duration_s, probe, run_ffmpeg
from flows.stages.render import RenderReport, analyze_input, ffmpeg_args, render_greeting
from flows.stages.render.ffmpeg_args import (
    COPY_VIDEO,
    MixSpec,
    Upload,
    concat_list,
    mix_graph,
    mux_args,
)
from flows.stages.render.loudness import (
    block_powers,
    gated_level_db,
    match_gain_db,
    peak_db,
    speech_end_s,
)
from flows.stages.render.timing import (
    HeadPlan,
    adts_window_sequences,
    copy_point,
    fit_greeting,
    lead_in,
    plan_head,
    seconds_arg,
    tempo_needed,
)
from greetings.samples import DEFAULT_NARRATION, make_sample_video, make_speech, make_tone
from tests.support.mediacheck import (
    Pcm,
    correlation,
    decode_pcm,
    lagged,
    make_narrated_clip,
    max_abs_diff,
    packets,
    rms_db,
    shifted,
    top_level_boxes,
)

GREETING_END_S = 1.5
CROSSFADE_MS = 40


def job_error(call: Any, *args: Any, **kwargs: Any) -> JobError:
    with pytest.raises(JobError) as caught:
        call(*args, **kwargs)
    return caught.value


# --- timing maths -----------------------------------------------------------------------------


def test_tempo_needed_is_one_when_the_greeting_fits() -> None:
    assert tempo_needed(0.8, 1.5) == 1.0
    assert tempo_needed(1.5, 1.5) == 1.0
    assert tempo_needed(1.8, 1.5) == pytest.approx(1.2)


def test_fit_greeting_speeds_up_to_the_limit_and_no_further() -> None:
    assert fit_greeting(1.3, 1.0, 1.3) == pytest.approx(1.3)
    error = job_error(fit_greeting, 2.0, 1.0, 1.3)
    assert error.code == ErrorCode.GREETING_TOO_LONG
    assert not error.retryable
    # The message says how long each is and what to change.
    assert "2.00 s" in error.message and "1.00 s" in error.message
    assert "greetingEndSecond to 1.54 s or later" in error.message
    assert "shorter greeting text" in error.message


def test_copy_point_is_the_first_packet_boundary_at_or_after_the_minimum() -> None:
    # ffmpeg-made AAC: a priming packet at -1024, then every 1024 samples.
    assert copy_point(-1024, 1024, 74752) == 74752
    assert copy_point(-1024, 1024, 74753) == 75776
    # Apple's 2112-sample priming puts the grid off multiples of 1024.
    assert copy_point(-2112, 1024, 72000) == -2112 + 73 * 1024
    assert copy_point(0, 1024, -5) == 0


def test_lead_in_puts_the_head_on_the_original_grid() -> None:
    assert lead_in(74752, 1024) == 0
    assert lead_in(-2112 + 73 * 1024, 1024) == 64
    assert (-lead_in(70000, 1024) - 70000) % 1024 == 0


def test_plan_head_keeps_two_frames_of_original_before_the_cut() -> None:
    plan = plan_head(slot_end=72000, first_packet_pts=-1024, frame_size=1024, audio_end=480000)
    assert plan == HeadPlan(copy_point=74752, lead=0, encode_end=76800, first_packet=-1024)
    assert plan.copy_point >= 72000 + 2 * 1024
    assert plan.offset == 1024  # the priming packet
    # Nothing to copy when the slot ends at the end of the audio.
    assert (
        plan_head(slot_end=72000, first_packet_pts=-1024, frame_size=1024, audio_end=77000) is None
    )


def test_plan_head_moves_the_cut_off_window_switches() -> None:
    long, start, short, stop = 0, 1, 2, 3
    windows: list[int | None] = [long] * 100
    windows[73:76] = [start, short, stop]  # packet i starts at -1024 + 1024 * i
    plan = plan_head(
        slot_end=72000, first_packet_pts=-1024, frame_size=1024, audio_end=480000, windows=windows
    )
    assert plan is not None
    index = (plan.copy_point + 1024) // 1024
    assert windows[index - 1] == windows[index] == long
    assert index == 77
    # Unknown windows (another codec's first element, say): the first boundary, as without.
    unknown = plan_head(
        slot_end=72000,
        first_packet_pts=-1024,
        frame_size=1024,
        audio_end=480000,
        windows=[None] * 100,
    )
    assert unknown is not None and unknown.copy_point == 74752


def adts_frame(first_bits: str, *, crc: bool = False) -> bytes:
    payload = int(first_bits.ljust(32, "0"), 2).to_bytes(4, "big") + bytes(4)
    length = (9 if crc else 7) + len(payload)
    header = bytearray(7)
    header[0], header[1] = 0xFF, 0xF0 | (0 if crc else 1)
    header[3] = (length >> 11) & 0x03
    header[4] = (length >> 3) & 0xFF
    header[5] = (length & 0x07) << 5
    return bytes(header) + (bytes(2) if crc else b"") + payload


def test_adts_window_sequences_reads_mono_and_stereo_frames() -> None:
    sce_short = "000" + "0000" + "10000000" + "0" + "10"  # SCE, gain, reserved, EIGHT_SHORT
    cpe_common_start = "001" + "0000" + "1" + "0" + "01"  # CPE, common_window, LONG_START
    cpe_own_stop = "001" + "0000" + "0" + "10000000" + "0" + "11"  # CPE, own ICS, LONG_STOP
    fill = "110" + "0000"
    stream = b"".join(
        [
            adts_frame(sce_short),
            adts_frame(cpe_common_start, crc=True),
            adts_frame(cpe_own_stop),
            adts_frame(fill),
        ]
    )
    assert adts_window_sequences(stream) == [2, 1, 3, None]
    assert adts_window_sequences(b"not adts at all") == []


def test_seconds_arg_round_trips_to_the_same_sample() -> None:
    for rate in (8000, 22050, 44100, 48000, 96000):
        for samples in (0, 1, 1023, 1024, 74752, 2_879_488, 28_800_000):
            assert round(float(seconds_arg(samples, rate)) * rate) == samples
            assert round(float(seconds_arg(-samples, rate)) * rate) == -samples
    assert seconds_arg(75776, 48000) == "1.578667"


def test_concat_list_starts_the_tail_exactly_at_its_own_time() -> None:
    plan = HeadPlan(copy_point=68608, lead=64, encode_end=70656, first_packet=-1088)
    listing = concat_list(plan, sample_rate=44100)
    lines = listing.splitlines()
    assert lines[0] == "ffconcat version 1.0"
    assert lines[1:] == [
        f"file {ffmpeg_args.HEAD_NAME}",
        f"duration {seconds_arg(68608 + 1024 + 64, 44100)}",
        f"file {ffmpeg_args.TAIL_NAME}",
        f"inpoint {seconds_arg(68608 + 1088, 44100)}",
    ]
    # The copied track was stored from its first packet (-1088) on, as if that were 0. The
    # concat moves it by (its start in the list - its inpoint), the mux by -offset: in all,
    # back by exactly those 1088 samples.
    start, inpoint = float(lines[2].split()[1]), float(lines[4].split()[1])
    assert round((start - inpoint) * 44100) - plan.offset == -1088


def spec(**overrides: Any) -> MixSpec:
    fields: dict[str, Any] = {
        "sample_rate": 48000,
        "channels": 2,
        "layout": "stereo",
        "greeting_samples": 40000,
        "slot_samples": 72000,
        "crossfade_samples": 1920,
        "tempo": 1.0,
        "gain_db": -3.5,
        "start": 0,
        "original_start": 0,
        "end": 77824,
    }
    return MixSpec(**{**fields, **overrides})


def test_mix_graph_places_everything_by_sample_counts() -> None:
    graph = mix_graph(spec())
    assert "atempo" not in graph and "adelay" not in graph
    assert "atrim=end_sample=40000" in graph  # greeting cut after its speech
    assert "apad=whole_len=72000,atrim=end_sample=72000" in graph  # padded to the slot
    assert "afade=t=out:start_sample=70080:nb_samples=1920" in graph
    assert "afade=t=in:start_sample=70080:nb_samples=1920" in graph
    assert "volume=-3.50dB" in graph
    assert "pan=2c|c0=c0|c1=c0" in graph
    assert graph.endswith("amix=inputs=2:duration=longest:normalize=0,atrim=end_sample=77824[mix]")


def test_mix_graph_with_tempo_and_lead_in() -> None:
    graph = mix_graph(
        spec(tempo=1.2, start=-64, original_start=0, end=70656, channels=1, layout="mono")
    )
    assert "atempo=1.200000" in graph
    # Both branches start 64 samples early, so every position moves by 64.
    assert graph.count("adelay=delays=64S:all=1") == 2
    assert "atrim=end_sample=72064" in graph and "start_sample=70144" in graph
    assert graph.endswith("atrim=end_sample=70720[mix]")
    assert "pan=1c|c0=c0" in graph


def test_mix_graph_is_numbers_only() -> None:
    # Paths and user text never enter a filter graph: only these characters do.
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789_=:,;|[]().-/NSRTB")
    assert set(mix_graph(spec(tempo=1.25, start=-100, layout="stereo"))) <= allowed


def test_mux_arguments() -> None:
    plan = HeadPlan(copy_point=75776, lead=0, encode_end=77824, first_packet=-1024)
    work, video = Path("/w"), Path("/in/v'; rm -rf x.mp4")
    mux = mux_args(
        upload=Upload(video, "mov", 20.0),
        work=work,
        plan=plan,
        sample_rate=48000,
        output=Path("/o.mp4"),
        video=COPY_VIDEO,
    )
    assert mux[mux.index("-itsoffset") + 1] == "-0.021333"
    assert mux[mux.index("-c") : mux.index("-c") + 2] == ["-c", "copy"]
    assert "+faststart" in mux and mux[-2:] == ["mp4", "/o.mp4"]
    assert str(video) in mux  # a whole argument, never part of a shell string


# --- loudness ---------------------------------------------------------------------------------


def tone(amplitude: float, seconds: float, rate: int = 24000, hz: float = 300.0) -> array[float]:
    return array(
        "f", (amplitude * math.sin(2 * math.pi * hz * i / rate) for i in range(int(seconds * rate)))
    )


def test_gated_level_ignores_pauses() -> None:
    speech = tone(0.1, 1.0)
    with_pause = speech + array("f", bytes(4 * 24000)) + speech
    level = gated_level_db(block_powers(speech, channels=1, sample_rate=24000))
    assert level == pytest.approx(20 * math.log10(0.1 / math.sqrt(2)), abs=0.1)
    assert gated_level_db(block_powers(with_pause, channels=1, sample_rate=24000)) == pytest.approx(
        level, abs=0.1
    )
    assert (
        gated_level_db(block_powers(array("f", bytes(4 * 2400)), channels=1, sample_rate=24000))
        is None
    )


def test_speech_end_skips_trailing_silence() -> None:
    samples = tone(0.3, 0.8) + array("f", bytes(4 * 12000))
    assert speech_end_s(block_powers(samples, channels=1, sample_rate=24000)) == pytest.approx(0.8)
    assert speech_end_s([]) == 0.0
    assert speech_end_s(block_powers(tone(1e-4, 0.5), channels=1, sample_rate=24000)) == 0.0


def test_match_gain_moves_toward_the_original_without_clipping() -> None:
    assert match_gain_db(-20.0, -26.0, -10.0) == 6.0
    assert match_gain_db(-20.0, -14.0, -3.0) == -6.0
    # A boost that would clip stops 1 dB under full scale.
    assert match_gain_db(-10.0, -20.0, -4.0) == 3.0
    assert match_gain_db(-60.0, -10.0, -1.0) == -20.0  # limited
    assert match_gain_db(None, -20.0, -6.0) == 0.0
    assert peak_db(array("f", [0.5, -1.0])) == 0.0


# --- real renders -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    source: Path
    output: Path
    report: RenderReport
    original: Pcm  # the source's audio, decoded
    result: Pcm  # the output's audio, decoded


CASES: dict[str, dict[str, Any]] = {
    "mp4-h264-aac-stereo-48k": {},
    "mp4-h264-aac-mono-44k": {"sample_rate": 44100, "channels": 1},
    "mov-rotated-stereo-44k": {"container": "mov", "rotation": 90, "sample_rate": 44100},
    "webm-vp9-opus": {"container": "webm", "video_codec": "libvpx-vp9", "audio_codec": "libopus"},
    # Audio packets 64 samples off the 1024 grid, like encoders with other priming (Apple: 2112).
    "mp4-offset-grid": {},
}
HEAD_CASES = [name for name in CASES if not name.startswith("webm")]


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("render")


@pytest.fixture(scope="module")
def greeting(media_dir: Path) -> Path:
    return make_speech(media_dir / "greeting.wav", "Hey John,")


@pytest.fixture(scope="module")
def base_clip(media_dir: Path) -> Path:
    return make_sample_video(media_dir / "base.mp4", seconds=6, width=640, height=360)


@pytest.fixture(scope="module")
def rendered(media_dir: Path, greeting: Path, base_clip: Path) -> dict[str, Rendered]:
    done = {}
    for name, options in CASES.items():
        if name == "mp4-offset-grid":
            source = media_dir / f"{name}.mp4"
            shift = ["-bsf:a", "setts=ts=TS-64"]
            run_ffmpeg(["-i", str(base_clip), "-map", "0", "-c", "copy", *shift, str(source)])
        elif name == "mp4-h264-aac-stereo-48k":
            source = base_clip
        else:
            suffix = options.get("container", "mp4")
            source = make_sample_video(
                media_dir / f"{name}.{suffix}", seconds=6, width=640, height=360, **options
            )
        output = media_dir / f"{name}-out.mp4"
        report = render_greeting(
            source, greeting, GREETING_END_S, output, crossfade_ms=CROSSFADE_MS
        )
        result = decode_pcm(output)
        done[name] = Rendered(
            source, output, report, decode_pcm(source, sample_rate=result.sample_rate), result
        )
    return done


@pytest.mark.media
@pytest.mark.parametrize("name", CASES)
def test_render_report(rendered: dict[str, Rendered], name: str) -> None:
    case = rendered[name]
    assert case.report.path == case.output and case.output.is_file()
    assert case.report.path_taken == (
        "full-audio-reencode" if name.startswith("webm") else "head-reencode"
    )
    assert case.report.tempo == 1.0
    assert -20 <= case.report.gain_db <= 20
    assert case.report.seconds > 0


@pytest.mark.media
@pytest.mark.parametrize("name", CASES)
def test_video_packets_are_the_inputs(rendered: dict[str, Rendered], name: str) -> None:
    case = rendered[name]
    before, after = packets(case.source), packets(case.output)
    assert len(after) == len(before) > 100
    assert [(p.md5, p.size) for p in after] == [(p.md5, p.size) for p in before]
    assert [p.pts for p in after] == [p.pts for p in before]


@pytest.mark.media
@pytest.mark.parametrize("name", CASES)
def test_output_lasts_as_long_as_the_input(rendered: dict[str, Rendered], name: str) -> None:
    case = rendered[name]
    info_in, info_out = probe(case.source), probe(case.output)
    assert info_out.audio is not None and info_out.audio.codec == "aac"
    frame_s = 1024 / info_out.audio.sample_rate
    assert abs(info_out.duration_s - info_in.duration_s) <= frame_s
    assert abs(case.result.frames - case.original.frames) <= 1024
    assert "mp4" in info_out.format_name


@pytest.mark.media
@pytest.mark.parametrize("name", HEAD_CASES)
def test_copied_audio_is_sample_exact_at_its_original_time(
    rendered: dict[str, Rendered], name: str
) -> None:
    case = rendered[name]
    assert case.report.copy_point_s is not None
    copied_from = case.report.copy_point_s + 1024 / case.result.sample_rate
    # Past the first copied packet (which overlaps the head's last one) every sample decodes
    # to exactly what the input's does, at zero lag.
    out, ref = case.result.window(copied_from), case.original.window(copied_from)
    assert len(out) == len(ref)
    assert max_abs_diff(out, ref) == 0.0
    # Between the crossfade and the cut the original was re-encoded: codec noise, no seam.
    seam_from = GREETING_END_S + 0.01
    out, ref = (
        case.result.window(seam_from, copied_from),
        case.original.window(seam_from, copied_from),
    )
    error = array("f", (a - b for a, b in zip(out, ref, strict=True)))
    assert rms_db(error) - rms_db(ref) < -25


@pytest.mark.media
def test_the_check_catches_a_21_ms_shift(rendered: dict[str, Rendered]) -> None:
    case = rendered["mp4-h264-aac-stereo-48k"]
    channels, start = case.result.channels, 2.0
    late = shifted(case.original.samples, 1024, channels)  # the naive render's 21.3 ms
    first = round(start * case.result.sample_rate) * channels
    assert max_abs_diff(case.result.window(start), late[first:]) > 0.05
    assert correlation(case.result.window(start, 3.0), late[first : first + 48000 * channels]) < 0.5


@pytest.mark.media
def test_naive_concat_would_fail_the_check(rendered: dict[str, Rendered], media_dir: Path) -> None:
    """The render from stack-facts: AAC head, copied packets appended, timestamps left to ffmpeg."""
    case = rendered["mp4-h264-aac-stereo-48k"]
    assert case.report.copy_point_s is not None
    cut = seconds_arg(round(case.report.copy_point_s * 48000), 48000)
    head, tail = media_dir / "naive-head.m4a", media_dir / "naive-tail.m4a"
    run_ffmpeg(["-i", str(case.source), "-map", "0:a", "-t", cut, "-c:a", "aac", str(head)])
    run_ffmpeg(["-i", str(case.source), "-map", "0:a", "-c", "copy", str(tail)])
    listing = media_dir / "naive.ffconcat"
    listing.write_text(f"ffconcat version 1.0\nfile {head.name}\nfile {tail.name}\ninpoint {cut}\n")
    naive = media_dir / "naive.mp4"
    run_ffmpeg(["-f", "concat", "-i", str(listing), "-c", "copy", str(naive)])
    out = decode_pcm(naive)
    start = case.report.copy_point_s + 0.1
    assert max_abs_diff(out.window(start), case.original.window(start)) > 0.05


@pytest.mark.media
def test_reencoded_audio_stays_in_sync(rendered: dict[str, Rendered]) -> None:
    """Opus in WebM takes the whole-track path: not sample-exact, but at zero lag."""
    case = rendered["webm-vp9-opus"]
    channels = case.result.channels
    out = case.result.window(GREETING_END_S + 0.1, GREETING_END_S + 0.6)
    ref = case.original.window(GREETING_END_S + 0.1, GREETING_END_S + 0.6)
    at = {lag: lagged(out, ref, lag, channels) for lag in (-1024, -2, -1, 0, 1, 2, 1024)}
    assert at[0] > 0.99
    assert at[0] > max(at[-1], at[1]) > max(at[-2], at[2])
    assert max(at[-1024], at[1024]) < 0.5


@pytest.mark.media
@pytest.mark.parametrize("name", CASES)
def test_greeting_slot_holds_the_new_greeting(
    rendered: dict[str, Rendered], greeting: Path, name: str
) -> None:
    case = rendered[name]
    spoken = decode_pcm(
        greeting, sample_rate=case.result.sample_rate, channels=case.result.channels
    )
    slot_end = GREETING_END_S - CROSSFADE_MS / 1000
    out = case.result.window(0.0, slot_end)
    assert correlation(out, spoken.window(0.0, slot_end)) > 0.95
    assert correlation(out, case.original.window(0.0, slot_end)) < 0.6


@pytest.mark.media
@pytest.mark.parametrize("name", CASES)
def test_rotation_and_faststart(rendered: dict[str, Rendered], name: str) -> None:
    case = rendered[name]
    info_in, info_out = probe(case.source), probe(case.output)
    assert info_in.video is not None and info_out.video is not None
    assert info_out.video.rotation == info_in.video.rotation
    if name.startswith("mov"):
        assert info_out.video.rotation == 90
    boxes = top_level_boxes(case.output)
    assert boxes.index("moov") < boxes.index("mdat")


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.mark.media
def test_greeting_too_long_leaves_nothing_behind(base_clip: Path, tmp_path: Path) -> None:
    long_greeting = make_tone(tmp_path / "long.wav", 1.2)
    out_dir, work = tmp_path / "out", tmp_path / "work"
    out_dir.mkdir()
    work.mkdir()
    previous = out_dir / "result.mp4"
    previous.write_bytes(b"an earlier result")
    error = job_error(
        render_greeting, base_clip, long_greeting, 0.8, previous, max_tempo=1.3, work_dir=work
    )
    assert error.code == ErrorCode.GREETING_TOO_LONG
    assert "1.20 s" in error.message and "0.80 s" in error.message and "0.93 s" in error.message
    assert previous.read_bytes() == b"an earlier result"
    assert leftovers(out_dir, {"result.mp4"}) == []
    assert leftovers(work, set()) == []


@pytest.mark.media
def test_slightly_long_greeting_is_sped_up(base_clip: Path, tmp_path: Path) -> None:
    greeting = make_tone(tmp_path / "tone.wav", 1.2, sample_rate=48000)
    report = render_greeting(base_clip, greeting, 1.0, tmp_path / "out.mp4", max_tempo=1.3)
    assert report.tempo == pytest.approx(1.2, abs=0.01)
    assert report.path_taken == "head-reencode"
    out = decode_pcm(report.path)
    tone_440 = decode_pcm(
        make_tone(tmp_path / "ref.wav", 1.0, sample_rate=48000), sample_rate=48000, channels=2
    )
    # atempo keeps the pitch: the slot holds the same tone, 1.2 s of it in 1.0 s.
    assert abs(correlation(out.window(0.1, 0.9), tone_440.window(0.1, 0.9))) > 0.9


@pytest.fixture(scope="module")
def floorless_clip(media_dir: Path) -> Path:
    """Narration whose pauses are digital silence (espeak's), with no bed under it: a recording
    without a noise floor, where silence in the slot's gaps is what the original has too."""
    narration = make_speech(media_dir / "narration.wav", DEFAULT_NARRATION)
    aac = ["-c:a", "aac", "-aac_pns", "0", "-b:a", "128k"]
    return make_narrated_clip(
        media_dir / "floorless.mp4",
        narration,
        seconds=6,
        sample_rate=48000,
        channels=2,
        audio_args=aac,
    )


@pytest.mark.media
def test_short_greeting_is_padded_with_silence(floorless_clip: Path, tmp_path: Path) -> None:
    """Where the original has no floor. (This test used `base_clip`, whose bed is a -50 dBFS
    floor: there the slot's gaps now carry its room tone, see the test below.)"""
    greeting = make_tone(tmp_path / "short.wav", 0.5, sample_rate=48000)
    report = render_greeting(floorless_clip, greeting, GREETING_END_S, tmp_path / "out.mp4")
    assert report.tempo == 1.0
    assert report.room_tone_db is None
    out = decode_pcm(report.path)
    assert rms_db(out.window(0.05, 0.45)) > -30  # the greeting, at the start
    assert rms_db(out.window(0.6, GREETING_END_S - 0.1)) < -60  # then silence, not the original


@pytest.mark.media
def test_short_greeting_is_padded_with_the_originals_room_tone(
    base_clip: Path, tmp_path: Path
) -> None:
    """`base_clip`'s bed (pink noise and a hum) is a floor near -50 dBFS: after a short
    greeting the slot holds that floor, not digital silence and not the original's speech."""
    greeting = make_tone(tmp_path / "short.wav", 0.5, sample_rate=48000)
    report = render_greeting(base_clip, greeting, GREETING_END_S, tmp_path / "out.mp4")
    assert report.room_tone_db is not None and -56 < report.room_tone_db < -45
    out, original = decode_pcm(report.path), decode_pcm(base_clip)
    assert rms_db(out.window(0.05, 0.45)) > -30  # the greeting, at the start
    gap = rms_db(out.window(0.6, GREETING_END_S - 0.1))
    spoken = rms_db(original.window(0.6, GREETING_END_S - 0.1))
    assert -56 < gap < -44 and gap < spoken - 15  # the room's floor, not the old words
    windows = [out.window(t / 100, t / 100 + 0.02) for t in range(0, 148, 2)]
    assert min(rms_db(w) for w in windows) > -75  # never digital silence


@pytest.mark.media
def test_quiet_greeting_is_brought_to_the_originals_level(base_clip: Path, tmp_path: Path) -> None:
    greeting = make_tone(tmp_path / "quiet.wav", 1.0, sample_rate=48000, amplitude=0.01)
    report = render_greeting(base_clip, greeting, GREETING_END_S, tmp_path / "out.mp4")
    assert report.gain_db > 10
    out, original = (
        decode_pcm(report.path, sample_rate=24000),
        decode_pcm(base_clip, sample_rate=24000),
    )

    def level(pcm: Pcm, end_s: float) -> float | None:
        return gated_level_db(block_powers(pcm.window(0.0, end_s), channels=2, sample_rate=24000))

    new, old = level(out, 1.0), level(original, GREETING_END_S)
    assert new is not None and old is not None
    assert abs(new - old) < 1.5


@pytest.mark.media
def test_loud_greeting_is_kept_off_clipping(base_clip: Path, tmp_path: Path) -> None:
    greeting = make_tone(tmp_path / "loud.wav", 1.0, sample_rate=48000, amplitude=0.99)
    report = render_greeting(base_clip, greeting, GREETING_END_S, tmp_path / "out.mp4")
    assert report.gain_db <= -1.0
    out = decode_pcm(report.path)
    assert max(map(abs, out.window(0.0, 1.0))) < 1.0


@pytest.mark.media
@pytest.mark.parametrize(
    ("make_input", "end_s", "code"),
    [
        ("text", 1.5, ErrorCode.INPUT_NOT_VIDEO),
        ("silent-video", 1.5, ErrorCode.INPUT_NO_AUDIO_STREAM),
        ("clip", 6.5, ErrorCode.INVALID_GREETING_END),
        ("clip", 0.0, ErrorCode.INVALID_GREETING_END),
        ("bad-greeting", 1.5, ErrorCode.RENDER_FAILED),
    ],
)
def test_bad_inputs_fail_cleanly(
    base_clip: Path, greeting: Path, tmp_path: Path, make_input: str, end_s: float, code: ErrorCode
) -> None:
    video, speech = base_clip, greeting
    if make_input == "text":
        video = tmp_path / "notes.mp4"
        video.write_text("not a video")
    elif make_input == "silent-video":
        video = make_sample_video(
            tmp_path / "silent.mp4", seconds=3, width=320, height=180, audio=False
        )
    elif make_input == "bad-greeting":
        speech = tmp_path / "greeting.mp3"
        speech.write_bytes(b"\x00" * 100)
    out_dir = tmp_path / "out"
    error = job_error(
        render_greeting, video, speech, end_s, out_dir / "result.mp4", work_dir=tmp_path
    )
    assert error.code == code
    assert not out_dir.exists() or leftovers(out_dir, set()) == []
    assert not any(p.name.startswith("render-") for p in tmp_path.iterdir())


@pytest.mark.media
def test_mp3_greeting_renders(base_clip: Path, tmp_path: Path) -> None:
    """ElevenLabs sends MP3: its decoder delay and 44.1 kHz rate must not matter."""
    mp3 = tmp_path / "greeting.mp3"
    run_ffmpeg(["-i", str(make_speech(tmp_path / "g.wav", "Hey Jo,")), "-ar", "44100", str(mp3)])
    report = render_greeting(base_clip, mp3, GREETING_END_S, tmp_path / "out.mp4")
    assert report.path_taken == "head-reencode"
    assert subprocess.run(["ffprobe", "-v", "error", str(report.path)], check=False).returncode == 0


@pytest.mark.media
def test_greeting_near_the_end_reencodes_the_whole_track(base_clip: Path, tmp_path: Path) -> None:
    """No packets left to copy after the slot: the slower path, still sample-aligned video."""
    greeting = make_tone(tmp_path / "tone.wav", 0.5, sample_rate=48000)
    report = render_greeting(base_clip, greeting, 5.95, tmp_path / "out.mp4")
    assert report.path_taken == "full-audio-reencode" and report.copy_point_s is None
    assert [p.md5 for p in packets(report.path)] == [p.md5 for p in packets(base_clip)]


@pytest.mark.media
@pytest.mark.parametrize("name", CASES)
def test_movie_header_duration_is_what_ffprobe_reports(
    rendered: dict[str, Rendered], name: str
) -> None:
    """The pipeline checks each output's length from its mvhd box instead of running ffprobe."""
    output = rendered[name].output
    assert mp4_duration_s(output) == pytest.approx(probe(output).duration_s, abs=0.001)


@pytest.mark.media
def test_movie_header_duration_refuses_a_file_without_one(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    data = rendered["mp4-h264-aac-stereo-48k"].output.read_bytes()
    moov = data.index(b"moov") - 4
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:moov])
    with pytest.raises(ProbeError, match="no moov"):
        mp4_duration_s(cut)
    (tmp_path / "text.mp4").write_text("not a video at all")
    with pytest.raises(ProbeError):
        mp4_duration_s(tmp_path / "text.mp4")


@pytest.mark.media
@pytest.mark.parametrize("name", CASES)
def test_a_shared_input_analysis_renders_the_same_video(
    rendered: dict[str, Rendered], greeting: Path, tmp_path: Path, name: str
) -> None:
    """A batch analyses its video once; each job's render must not differ for it."""
    case = rendered[name]
    shared = analyze_input(case.source, GREETING_END_S, tmp_path)
    output = tmp_path / "out.mp4"
    report = render_greeting(
        case.source, greeting, GREETING_END_S, output, crossfade_ms=CROSSFADE_MS, shared=shared
    )
    assert (report.path_taken, report.tempo, report.gain_db, report.copy_point_s) == (
        case.report.path_taken,
        case.report.tempo,
        case.report.gain_db,
        case.report.copy_point_s,
    )
    assert packets(output) == packets(case.output)
    assert decode_pcm(output).samples == case.result.samples


@pytest.mark.media
def test_a_shared_analysis_of_another_slot_is_not_used(
    rendered: dict[str, Rendered], greeting: Path, tmp_path: Path
) -> None:
    case = rendered["mp4-h264-aac-stereo-48k"]
    other_slot = analyze_input(case.source, GREETING_END_S + 0.5, tmp_path / "shared")
    output = tmp_path / "out.mp4"
    report = render_greeting(
        case.source,
        greeting,
        GREETING_END_S,
        output,
        crossfade_ms=CROSSFADE_MS,
        shared=other_slot,
    )
    assert report.copy_point_s == case.report.copy_point_s
    assert decode_pcm(output).samples == case.result.samples
