"""A job's media processes in a bubblewrap sandbox of its own folder (flows/media.py `confined_to`).

Real bwrap, ffmpeg and ffprobe. Each escape is tried with ffmpeg's own guards opened wide (every
extension, unsafe concat paths, the `file` protocol whitelisted), and first shown to work without
the sandbox, so that only the sandbox stands in its way.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.unit.test_hostile_media as hostile
from flows import media
from flows.media import (
    FfmpegError,
    MediaCancelled,
    ProbeError,
    ProcessLimits,
    confined_instead_to,
    confined_to,
    limited,
    probe,
    run_ffmpeg,
    run_ffprobe,
)
from flows.stages.render import render_greeting
from greetings.samples import make_sample_video, make_speech
from tests.support.mediacheck import decode_pcm, packets

SETUP = media.bwrap_setup()
pytestmark = [
    pytest.mark.media,
    pytest.mark.skipif(
        not isinstance(SETUP, media._Bwrap), reason=f"no sandbox on this machine: {SETUP}"
    ),
]

# Both ways bwrap sandboxes: with a fresh /proc, and without one (inside a container whose runtime
# masks parts of /proc, the kernel refuses a new one).
PROC_VARIANTS = {"fresh-proc": True, "no-proc": False}


@pytest.fixture(params=PROC_VARIANTS)
def proc_variant(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(SETUP, media._Bwrap)
    bwrap = media._Bwrap(SETUP.executable, fresh_proc=PROC_VARIANTS[request.param])
    monkeypatch.setattr(media, "sandboxing", lambda mode: bwrap)


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another job's result on the worker's disk."""
    return make_sample_video(tmp_path_factory.mktemp("other-job") / "result.mp4", seconds=4)


@pytest.fixture
def job(tmp_path: Path) -> Path:
    folder = tmp_path / "job"
    folder.mkdir(mode=0o700)
    return folder


def opened_wide(listing: Path) -> list[str]:
    """ffprobe arguments that follow a playlist or concat list wherever it points."""
    return [
        "-protocol_whitelist",
        "file",
        "-allowed_extensions",
        "ALL",
        "-safe",
        "0",
        "-show_streams",
        str(listing),
    ]


def hls_playlist(job: Path, target: Path) -> Path:
    return hostile.hls_playlist(job / "upload.m3u8", target)


def concat_list(job: Path, target: Path) -> Path:
    listing = job / "upload.ffconcat"
    listing.write_text(f"ffconcat version 1.0\nfile '{target}'\n")
    return listing


@pytest.mark.usefixtures("proc_variant")
@pytest.mark.parametrize("listing", [hls_playlist, concat_list])
def test_a_list_naming_another_jobs_result_opens_nothing(
    job: Path, victim: Path, listing: Any
) -> None:
    args = opened_wide(listing(job, victim))
    opened = run_ffprobe(args)  # unsandboxed, ffprobe follows the list to the other result
    assert {stream["codec_type"] for stream in opened["streams"]} == {"video", "audio"}
    # In the sandbox the named file is not there: HLS then says its segment is no media.
    with confined_to(job), pytest.raises(ProbeError):
        run_ffprobe(args)


@pytest.mark.usefixtures("proc_variant")
def test_a_file_named_on_the_command_line_is_shown_read_only_and_alone(
    job: Path, victim: Path
) -> None:
    beside = make_sample_video(victim.parent / "another.mp4", seconds=2)
    before = victim.read_bytes()
    with confined_to(job):
        assert probe(victim).duration_s > 3
        with pytest.raises(FfmpegError, match="Read-only file system"):
            run_ffmpeg(["-i", str(beside), "-c", "copy", "-f", "mp4", str(victim)])
        # Its folder's other files are not there: only what a command names is shown.
        listing = concat_list(job, beside)
        both = ["-i", str(victim), "-safe", "0", "-f", "concat", "-i", str(listing)]
        with pytest.raises(FfmpegError, match="No such file"):
            run_ffmpeg([*both, "-map", "1", "-f", "null", "-"])
    assert victim.read_bytes() == before


@pytest.fixture
def listener() -> Iterator[tuple[int, list[socket.socket]]]:
    """A local TCP port, and the connections it accepted."""
    accepted: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.2)
        done = threading.Event()

        def accept() -> None:
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    accepted.append(server.accept()[0])
                    accepted[-1].close()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield server.getsockname()[1], accepted
        done.set()
        thread.join()


def test_no_network(job: Path, listener: tuple[int, list[socket.socket]]) -> None:
    port, accepted = listener
    url = ["-i", f"http://127.0.0.1:{port}/greeting.mp4", "-f", "null", "-"]
    with pytest.raises(FfmpegError):
        run_ffmpeg(url)
    time.sleep(0.3)
    assert len(accepted) == 1  # unsandboxed, ffmpeg reached the listener
    with confined_to(job), pytest.raises(FfmpegError):
        run_ffmpeg(url)
    time.sleep(0.3)
    assert len(accepted) == 1


def marked_processes(marker: str) -> list[int]:
    """Processes whose command line names `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and marker in (entry / "cmdline").read_text():
                found.append(int(entry.name))
    return found


def test_a_cancel_kills_the_sandboxed_ffmpeg_at_once(job: Path) -> None:
    output = job / f"marker-{os.getpid()}-{time.monotonic_ns()}.nut"
    slow = ["-re", "-f", "lavfi", "-i", "anullsrc", "-t", "30", "-f", "nut", str(output)]
    cancelled = threading.Event()
    threading.Timer(0.5, cancelled.set).start()
    began = time.monotonic()
    with confined_to(job), limited(ProcessLimits(), cancelled), pytest.raises(MediaCancelled):
        run_ffmpeg(slow)
    assert time.monotonic() - began < 2
    # Killing bwrap's process group killed ffmpeg inside it (--die-with-parent), not only bwrap.
    assert marked_processes(output.name) == []


def test_cancel_timeout_and_memory_limits_hold_in_the_sandbox(job: Path) -> None:
    with confined_to(job):
        hostile.test_a_media_process_past_its_time_is_stopped()
        hostile.test_a_cancelled_jobs_media_processes_stop_at_once()
        hostile.test_a_probe_killed_for_memory_is_too_large_not_a_crash(job)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A batch's shared download and a cached greeting: outside the job's folder."""
    folder = tmp_path_factory.mktemp("shared")
    video = make_sample_video(folder / "input.mp4", seconds=4, width=320, height=240)
    return video, make_speech(folder / "greeting.wav", "Hey John,")


@pytest.mark.usefixtures("proc_variant")
def test_a_render_in_the_sandbox_is_the_same_render(
    tmp_path: Path, job: Path, inputs: tuple[Path, Path]
) -> None:
    video, greeting = inputs
    plain = render_greeting(video, greeting, 1.5, tmp_path / "plain.mp4")
    with confined_to(job):
        boxed = render_greeting(video, greeting, 1.5, job / "out.mp4", work_dir=job)
    assert boxed.path_taken == plain.path_taken == "head-reencode"
    assert packets(boxed.path) == packets(plain.path)
    assert decode_pcm(boxed.path).samples == decode_pcm(plain.path).samples


@pytest.mark.usefixtures("proc_variant")
def test_a_batchs_shared_work_is_confined_to_the_batchs_folder(
    tmp_path: Path, job: Path, victim: Path
) -> None:
    shared = tmp_path / "batch" / "analysis-0"
    shared.mkdir(parents=True)
    copy = ["-i", str(victim), "-c", "copy"]
    with confined_to(job), confined_instead_to(shared):
        run_ffmpeg([*copy, str(shared / "audio.mp4")])
        # The asking job's own folder is not there.
        with pytest.raises(FfmpegError, match="No such file"):
            run_ffmpeg([*copy, str(job / "audio.mp4")])
    assert (shared / "audio.mp4").stat().st_size > 0
    assert not (job / "audio.mp4").exists()
