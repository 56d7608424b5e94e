"""The render opens the user's upload only as its container, and only as far as it claims.

Every ffmpeg/ffprobe command line of a render that names the upload passes
`upload_input_options` (one demuxer, the file protocol alone) and a read limit right before it:
checked on the argument builders (pure) and on the command lines real renders run. A header that
claims less than the file holds (a WebM's Segment Duration, an MP4's movie header) bounds what is
decoded and copied: the render ends at the claim, not hours later.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.job import ErrorCode, JobError
from flows.media import (
    UPLOAD_CONTAINERS,
    ProbeError,
    mp4_duration_s,
    probe_upload,
    probe_with_first_packets,
)
from flows.settings import Settings
from flows.stages.render import analyze_input, render_greeting, render_video
from flows.stages.render.ffmpeg_args import (
    HEAD_PCM_AFTER_S,
    READ_MARGIN_S,
    MixSpec,
    Upload,
    analysis_args,
    count_args,
    full_args,
    mux_args,
    video_plan,
)
from flows.stages.render.timing import HeadPlan
from greetings.samples import make_sample_video, make_speech
from tests.support.mediacheck import (
    claim_duration,
    decode_pcm,
    input_groups,
    opened_as,
    packets,
)

UPLOAD = Path("/uploads/user/clip.webm")
GREETING = Path("/work/greeting.mp3")
WORK = Path("/work")


def spec() -> MixSpec:
    return MixSpec(
        sample_rate=48000,
        channels=2,
        layout="stereo",
        greeting_samples=40000,
        slot_samples=72000,
        crossfade_samples=1920,
        tempo=1.0,
        gain_db=-3.5,
        start=0,
        original_start=0,
        end=77824,
    )


def all_command_lines(upload: Upload) -> dict[str, list[str]]:
    plan = HeadPlan(copy_point=75776, lead=0, encode_end=77824, first_packet=-1024)
    lines = {
        "mux": mux_args(
            upload=upload,
            work=WORK,
            plan=plan,
            sample_rate=48000,
            output=Path("/o.mp4"),
            video=video_plan("vp8", 1280, 720),
        ),
        "full": full_args(
            upload=upload,
            greeting_audio=GREETING,
            spec=spec(),
            bitrate=1,
            output=Path("/o.mp4"),
            video=video_plan("vp8", 1280, 720),
        ),
        "count": count_args(upload, WORK),
    }
    for greeting in (GREETING, None):
        for copy in (True, False):
            lines[f"analysis-{greeting is not None}-{copy}"] = analysis_args(
                greeting_audio=greeting,
                upload=upload,
                seconds=1.5,
                work=WORK,
                copy_tail=copy,
                scan_s=4.0,
            )
    return lines


def upload_opening_problems(args: list[str], upload: Path, container: str, limit_s: float) -> list:
    """What is wrong with how an ffmpeg command line opens `upload` (empty: nothing)."""
    problems: list[Any] = []
    for options, path in input_groups(args):
        if path != str(upload):
            continue
        said = opened_as(options)
        if said.get("-f") != container:
            problems.append(("-f", said.get("-f")))
        if said.get("-format_whitelist") != UPLOAD_CONTAINERS[container]:
            problems.append(("-format_whitelist", said.get("-format_whitelist")))
        if said.get("-protocol_whitelist") != "file":
            problems.append(("-protocol_whitelist", said.get("-protocol_whitelist")))
        if "-t" not in said or float(said["-t"]) > limit_s + 1e-6:
            problems.append(("-t", said.get("-t")))
    return problems


@pytest.mark.parametrize("container", ["mov", "matroska"])
def test_every_command_line_opens_the_upload_only_as_its_container(container: str) -> None:
    upload = Upload(UPLOAD, container, 8.0)
    for name, args in all_command_lines(upload).items():
        opened = [path for _, path in input_groups(args) if path == str(UPLOAD)]
        assert opened, name
        assert upload_opening_problems(args, UPLOAD, container, 8.0 + READ_MARGIN_S) == [], name
        # The options come right before the upload's -i, in this order.
        i = args.index(str(UPLOAD))
        assert args[i - 9 : i - 3] == [
            "-f",
            container,
            "-format_whitelist",
            UPLOAD_CONTAINERS[container],
            "-protocol_whitelist",
            "file",
        ], name
        # Our own inputs (greeting, concat list) are opened as they are.
        for options, path in input_groups(args):
            if path != str(UPLOAD):
                assert "-format_whitelist" not in options, (name, path)


def test_the_read_limit_is_the_claim_plus_a_margin_or_less() -> None:
    upload = Upload(UPLOAD, "matroska", 8.0)
    assert opened_as(upload.input())["-t"] == f"{8.0 + READ_MARGIN_S:.6f}"
    assert opened_as(upload.input(1.5))["-t"] == "1.500000"  # the greeting slot's decode
    assert opened_as(upload.input(60.0))["-t"] == f"{8.0 + READ_MARGIN_S:.6f}"
    # Under the output check's tolerance: a file cut at its claim still passes that check.
    assert READ_MARGIN_S < 0.25
    # The head's samples are decoded as far as the seam search may look past the slot ...
    analysis = all_command_lines(Upload(UPLOAD, "mov", 60.0))["analysis-False-True"]
    limits = [opened_as(options)["-t"] for options, _ in input_groups(analysis)]
    assert limits == ["1.500000", f"{60.0 + READ_MARGIN_S:.6f}", f"{1.5 + HEAD_PCM_AFTER_S:.6f}"]
    # ... and never past the claim.
    analysis = all_command_lines(Upload(UPLOAD, "mov", 1.0))["analysis-False-True"]
    assert opened_as(input_groups(analysis)[-1][0])["-t"] == f"{1.0 + READ_MARGIN_S:.6f}"


# --- real renders -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("render-hostile")


@pytest.fixture(scope="module")
def greeting(media_dir: Path) -> Path:
    return make_speech(media_dir / "greeting.wav", "Hey John,")


@pytest.fixture(scope="module")
def clips(media_dir: Path) -> dict[str, Path]:
    return {
        "mp4": make_sample_video(media_dir / "clip.mp4", seconds=4, width=320, height=180),
        "webm": make_sample_video(
            media_dir / "clip.webm",
            seconds=4,
            width=320,
            height=180,
            container="webm",
            video_codec="libvpx-vp9",
            audio_codec="libopus",
        ),
    }


@pytest.fixture
def command_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """Every process started while the test runs, as its command line."""
    seen: list[list[str]] = []
    real = subprocess.Popen

    def spy(cmd: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append([str(a) for a in cmd])
        return real(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spy)
    yield seen


def check_every_opening(commands: list[list[str]], upload: Path, container: str) -> int:
    """Asserts each command naming `upload` opens it only as `container`; how many did."""
    naming = [cmd for cmd in commands if str(upload) in cmd]
    claim = probe_upload(upload).duration_s + READ_MARGIN_S
    for cmd in naming:
        program = next(Path(a).name for a in cmd if Path(a).name in ("ffmpeg", "ffprobe"))
        if program == "ffprobe":
            said = opened_as(cmd[: cmd.index(str(upload))])
            assert said.get("-f") == container, cmd
            assert said.get("-format_whitelist") == UPLOAD_CONTAINERS[container], cmd
            assert said.get("-protocol_whitelist") == "file", cmd
        else:
            assert upload_opening_problems(cmd, upload, container, claim) == [], cmd
    return len(naming)


@pytest.mark.media
@pytest.mark.parametrize(("name", "container"), [("mp4", "mov"), ("webm", "matroska")])
def test_a_render_opens_the_upload_only_as_its_container(
    clips: dict[str, Path],
    greeting: Path,
    tmp_path: Path,
    command_lines: list[list[str]],
    name: str,
    container: str,
) -> None:
    upload = clips[name]
    render_greeting(upload, greeting, 1.5, tmp_path / "out.mp4")
    # probe, analysis, mux (MP4: the head is made in the worker from the analysis's samples);
    # probe, analysis, count, full re-encode (WebM)
    alone = {"mp4": 3, "webm": 4}[name]
    assert check_every_opening(command_lines, upload, container) == alone
    command_lines.clear()
    shared = analyze_input(upload, 1.5, tmp_path / "shared")
    render_greeting(upload, greeting, 1.5, tmp_path / "again.mp4", shared=shared)
    # the shared analysis (its probe and decode), then the render's own commands
    assert check_every_opening(command_lines, upload, container) == alone
    command_lines.clear()
    # With the pipeline's probe (one more opening, `probe_upload` here) the analysis runs beside
    # the render's own probe: the same openings.
    render_greeting(upload, greeting, 1.5, tmp_path / "third.mp4", upload=probe_upload(upload))
    assert check_every_opening(command_lines, upload, container) == alone + 1


@pytest.mark.media
def test_the_renders_probe_opens_only_the_container_given(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    info, first = probe_with_first_packets(clips["webm"], container="matroska")
    assert info.container == "matroska" and first
    with pytest.raises(ProbeError):
        probe_with_first_packets(clips["webm"], container="mov")
    # A playlist behind an MP4 header: only the mov demuxer reads it, and finds no media.
    playlist = tmp_path / "x.mp4"
    playlist.write_bytes(
        b"\x00\x00\x00\x08ftyp#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\n"
        + str(clips["mp4"]).encode()
        + b"\n#EXT-X-ENDLIST\n"
    )
    with pytest.raises(ProbeError):
        probe_with_first_packets(playlist, container="mov")


@pytest.mark.media
@pytest.mark.parametrize("first_bytes", ["playlist", "mp4-header-then-playlist"])
def test_a_render_of_a_disguised_playlist_fails_as_no_video(
    clips: dict[str, Path], greeting: Path, tmp_path: Path, first_bytes: str
) -> None:
    body = f"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\n{clips['mp4']}\n#EXT-X-ENDLIST\n"
    upload = tmp_path / "x.mp4"
    header = b"\x00\x00\x00\x08ftyp" if first_bytes != "playlist" else b""
    upload.write_bytes(header + body.encode())
    with pytest.raises(JobError) as refused:
        render_greeting(upload, greeting, 1.5, tmp_path / "out.mp4")
    assert refused.value.code == ErrorCode.INPUT_NOT_VIDEO
    assert not (tmp_path / "out.mp4").exists()


# --- a header that claims less than the file holds --------------------------------------------

LONG_S, CLAIM_S = 60, 8.0


@pytest.fixture(scope="module")
def long_clips(media_dir: Path) -> dict[str, Path]:
    """60 s clips (small frames, quick to make): as written, and claiming 8 s in their header."""
    made = {}
    for name, options in {
        "webm": {"container": "webm", "video_codec": "libvpx-vp9", "audio_codec": "libopus"},
        "mp4": {},
    }.items():
        honest = make_sample_video(
            media_dir / f"long.{name}", seconds=LONG_S, width=160, height=90, **options
        )
        made[f"{name}-honest"] = honest
        made[name] = claim_duration(honest, media_dir / f"claims-8s.{name}", CLAIM_S)
    return made


@pytest.mark.media
@pytest.mark.parametrize("name", ["webm", "mp4"])
def test_a_header_claiming_8_s_of_60_renders_8_s(
    long_clips: dict[str, Path], greeting: Path, tmp_path: Path, name: str
) -> None:
    lying, honest = long_clips[name], long_clips[f"{name}-honest"]
    info = probe_upload(lying)
    assert info.duration_s == pytest.approx(CLAIM_S)
    assert probe_upload(honest).duration_s == pytest.approx(LONG_S, abs=0.1)
    # The file really holds 60 s: its last packets say so.
    assert max(p.pts for p in packets(lying, "a:0")) > LONG_S - 1

    began = time.perf_counter()
    report = render_greeting(lying, greeting, 1.5, tmp_path / "out.mp4", upload=info)
    took = time.perf_counter() - began
    limit = CLAIM_S + READ_MARGIN_S
    frame = 1 / 30
    assert mp4_duration_s(report.path) <= limit + frame
    video = packets(report.path, "v:0")
    assert len(video) <= round(limit * 30) + 1
    audio = decode_pcm(report.path)
    assert audio.frames <= (limit + frame) * audio.sample_rate
    # ... and the pipeline's check of the output against the claim passes.
    settings = Settings()
    work = tmp_path / "pipeline"
    work.mkdir()
    output = render_video(lying, info, greeting, 1.5, work, settings).path
    assert mp4_duration_s(output) == pytest.approx(CLAIM_S, abs=0.25)
    # The honest file renders whole, as long as it is.
    whole = render_greeting(honest, greeting, 1.5, tmp_path / "whole.mp4")
    assert mp4_duration_s(whole.path) == pytest.approx(LONG_S, abs=0.05)
    print(f"{name}: 8 s claim rendered in {took:.2f} s, the honest 60 s in {whole.seconds:.2f} s")
