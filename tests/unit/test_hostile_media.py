"""Uploads that are not what they claim: opened only as their container, under limits.

Real ffmpeg/ffprobe on real files. An HLS playlist named `.mp4` once made a render read another
user's video by absolute path; a PNG-in-MOV of huge frames took a worker to gigabytes.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from flows.job import ErrorCode, JobError
from flows.media import (
    MediaCancelled,
    MediaTimeout,
    MediaTooLarge,
    ProbeError,
    ProcessLimits,
    UserSlots,
    for_user,
    limited,
    meanwhile,
    probe_upload,
    run_ffmpeg,
    sniff_container,
)
from flows.stages.validate import check_media, inspect_video
from greetings.samples import make_sample_video

pytestmark = pytest.mark.media


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another user's video on the worker's disk, as a result or a batch's download is."""
    return make_sample_video(tmp_path_factory.mktemp("victim") / "result.mp4", seconds=4)


def hls_playlist(path: Path, target: Path) -> Path:
    path.write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        f"#EXTINF:4.0,\n{target}\n#EXT-X-ENDLIST\n"
    )
    return path


def test_a_playlist_named_mp4_is_no_video_and_opens_nothing(tmp_path: Path, victim: Path) -> None:
    upload = hls_playlist(tmp_path / "x.mp4", victim)
    with pytest.raises(ProbeError, match="first bytes"):
        sniff_container(upload)
    with pytest.raises(JobError) as refused:
        inspect_video.fn(upload)
    assert refused.value.code == ErrorCode.INPUT_NOT_VIDEO
    assert "MP4, MOV or WebM" in refused.value.message


def test_a_playlist_behind_an_mp4_header_is_read_as_mp4_only(tmp_path: Path, victim: Path) -> None:
    # First bytes that claim MP4, the rest a playlist: the mov demuxer alone reads it, and finds
    # no media; ffmpeg's guess would have followed the playlist.
    upload = tmp_path / "x.mp4"
    upload.write_bytes(b"\x00\x00\x00\x08ftyp" + hls_playlist(tmp_path / "p", victim).read_bytes())
    with pytest.raises(ProbeError):
        probe_upload(upload)


def test_containers_are_named_by_their_first_bytes(tmp_path: Path) -> None:
    mp4 = make_sample_video(tmp_path / "a.mp4", seconds=2)
    webm = make_sample_video(
        tmp_path / "a.webm",
        seconds=2,
        container="webm",
        video_codec="libvpx-vp9",
        audio_codec="libopus",
    )
    assert sniff_container(mp4) == "mov"
    assert sniff_container(webm) == "matroska"
    assert probe_upload(mp4).container == "mov"
    assert probe_upload(webm).container == "matroska"
    renamed = tmp_path / "webm-named.mp4"  # the name says nothing; the bytes do
    renamed.write_bytes(webm.read_bytes())
    assert probe_upload(renamed).container == "matroska"


def test_frames_too_large_to_decode_are_read_from_the_header_under_the_limit(
    tmp_path: Path,
) -> None:
    huge = tmp_path / "huge.mov"  # 8000x8000 rgba64: 512 MB a frame, a few MB a file
    making = ["-f", "lavfi", "-i", "color=c=red:s=8000x8000:r=1:d=2", "-f", "lavfi", "-i", "sine"]
    frame = ["-t", "2", "-c:v", "png", "-pix_fmt", "rgba64be", "-c:a", "aac"]
    with limited(ProcessLimits(memory_bytes=8 << 30)):
        run_ffmpeg([*making, *frame, "-f", "mov", str(huge)])
    # Unlimited, ffprobe decodes the frame (550 MB here, 2 GB at 16000x16000); under the limit
    # the decode fails, the header's sizes are still read, and the job is refused on them.
    with limited(ProcessLimits(memory_bytes=600 << 20)):
        info = probe_upload(huge)
    assert info.video is not None and (info.video.width, info.video.height) == (8000, 8000)
    with pytest.raises(JobError) as refused:
        check_media(info, 0.5, 600)
    assert refused.value.code == ErrorCode.INPUT_TOO_LARGE


PROBE_PEAK = """
import resource, sys
from pathlib import Path
from flows.media import probe_upload
info = probe_upload(Path(sys.argv[1]))
print(info.video.width, info.video.height, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def test_a_frame_that_decodes_to_768_mb_is_probed_in_under_300_mb(tmp_path: Path) -> None:
    huge = tmp_path / "16k.mov"  # one 16000x16000 RGB frame: 768 MB decoded, 0.8 MB stored
    making = ["-f", "lavfi", "-i", "color=c=red:s=16000x16000:r=1:d=1", "-frames:v", "1"]
    with limited(ProcessLimits(memory_bytes=8 << 30)):
        run_ffmpeg([*making, "-c:v", "png", "-pix_fmt", "rgb24", "-f", "mov", str(huge)])
    # The worker's default limits, in a fresh process: its children's peak is this probe's.
    out = subprocess.run(
        [sys.executable, "-c", PROBE_PEAK, str(huge)], capture_output=True, text=True, check=True
    ).stdout.split()
    width, height, peak_kb = (int(word) for word in out)
    print(f"ffprobe of a 16000x16000 PNG frame peaked at {peak_kb / 1024:.0f} MB")
    assert (width, height) == (16000, 16000)
    assert peak_kb < 300 * 1024


def test_a_probe_killed_for_memory_is_too_large_not_a_crash(tmp_path: Path) -> None:
    video = make_sample_video(tmp_path / "v.mp4", seconds=2)
    # Too little address space even to load ffprobe's libraries: the process dies.
    with limited(ProcessLimits(memory_bytes=64 << 20)), pytest.raises(MediaTooLarge):
        probe_upload(video)
    with limited(ProcessLimits(memory_bytes=64 << 20)), pytest.raises(JobError) as refused:
        inspect_video.fn(video)
    assert refused.value.code == ErrorCode.INPUT_TOO_LARGE


def test_what_a_header_says_is_checked_before_anything_is_decoded(tmp_path: Path) -> None:
    big = tmp_path / "big.mov"
    making = ["-f", "lavfi", "-i", "color=c=red:s=5000x300:d=2", "-f", "lavfi", "-i", "sine=d=2"]
    run_ffmpeg([*making, "-c:v", "png", "-c:a", "aac", "-f", "mov", str(big)])
    info = probe_upload(big)
    with pytest.raises(JobError) as refused:
        check_media(info, 0.5, 600)
    assert refused.value.code == ErrorCode.INPUT_TOO_LARGE
    assert "5000x300" in refused.value.message


def test_many_audio_tracks_are_refused(tmp_path: Path) -> None:
    source = make_sample_video(tmp_path / "one.mp4", seconds=3)
    many = tmp_path / "many.mp4"
    maps = [arg for _ in range(6) for arg in ("-map", "0:a:0")]
    run_ffmpeg(["-i", str(source), "-map", "0:v:0", *maps, "-c", "copy", str(many)])
    with pytest.raises(JobError) as refused:
        check_media(probe_upload(many), 1.0, 600)
    assert refused.value.code == ErrorCode.INPUT_NOT_VIDEO
    assert "6 audio tracks" in refused.value.message


def test_a_sound_track_of_dozens_of_channels_is_refused(tmp_path: Path) -> None:
    """An Opus track may carry 255 channels: its slot, decoded for measurement in every one of
    them, would be hundreds of MB in the worker. A recording has at most 7.1."""
    many = tmp_path / "channels.mp4"
    making = ["-f", "lavfi", "-i", "color=c=blue:s=320x240:d=2"]
    making += [
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=d=2:a=0.1:r=48000",
        "-filter:a",
        "pan=16c|" + "|".join(f"c{i}=c0" for i in range(16)),
    ]
    run_ffmpeg([*making, "-c:v", "libx264", "-c:a", "libopus", "-mapping_family", "255", str(many)])
    info = probe_upload(many)
    assert info.audio is not None and info.audio.channels == 16
    with pytest.raises(JobError) as refused:
        check_media(info, 1.0, 600)
    assert refused.value.code == ErrorCode.INPUT_NOT_VIDEO
    assert "16 channels" in refused.value.message
    # 7.1 is a recording's most: it passes.
    surround = tmp_path / "surround.mp4"
    run_ffmpeg(
        ["-i", str(many), "-map", "0", "-c:v", "copy", "-c:a", "aac", "-ac", "8", str(surround)]
    )
    check_media(probe_upload(surround), 1.0, 600)


def test_hundreds_of_tracks_are_counted_from_the_header_before_ffprobe_opens_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_sample_video(tmp_path / "one.mp4", seconds=3)
    many = tmp_path / "many.mp4"
    maps = [arg for _ in range(998) for arg in ("-map", "0:a:0")]
    run_ffmpeg(["-i", str(source), "-map", "0:v:0", *maps, "-c", "copy", str(many)])
    started: list[object] = []
    real = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a) or real(*a, **k))
    with pytest.raises(JobError) as refused:
        inspect_video.fn(many)
    assert refused.value.code == ErrorCode.INPUT_NOT_VIDEO
    assert "999 tracks" in refused.value.message and "at most 4 audio" in refused.value.message
    assert started == []  # no ffprobe ran


def test_a_media_process_past_its_time_is_stopped() -> None:
    began = time.monotonic()
    with limited(ProcessLimits(timeout_s=1.0)), pytest.raises(MediaTimeout):
        run_ffmpeg(["-re", "-f", "lavfi", "-i", "anullsrc", "-t", "30", "-f", "null", "-"])
    assert time.monotonic() - began < 5


def test_a_cancelled_jobs_media_processes_stop_at_once() -> None:
    cancelled = threading.Event()
    threading.Timer(0.5, cancelled.set).start()
    began = time.monotonic()
    with limited(ProcessLimits(), cancelled), pytest.raises(MediaCancelled):
        run_ffmpeg(["-re", "-f", "lavfi", "-i", "anullsrc", "-t", "30", "-f", "null", "-"])
    assert time.monotonic() - began < 2


SLOW_FFMPEG = ["-re", "-f", "lavfi", "-i", "anullsrc", "-t", "30", "-f", "null", "-"]


def test_work_meanwhile_is_stopped_and_awaited_when_the_job_fails() -> None:
    # The thumbnails run beside the render: a render that fails must not leave their ffmpeg
    # running into the job's removed folder.
    side: list[Future[bytes]] = []
    began = time.monotonic()
    with (
        limited(ProcessLimits()),
        pytest.raises(ValueError, match="the render failed"),
        meanwhile(lambda: run_ffmpeg(SLOW_FFMPEG)) as making,
    ):
        side.append(making)
        time.sleep(0.3)  # its ffmpeg is running
        raise ValueError("the render failed")
    assert side[0].done()  # the block ended after the thread, not before
    assert isinstance(side[0].exception(), MediaCancelled)
    assert time.monotonic() - began < 3


def test_work_meanwhile_stops_when_the_job_is_cancelled() -> None:
    cancelled = threading.Event()
    threading.Timer(0.5, cancelled.set).start()
    began = time.monotonic()
    with (
        limited(ProcessLimits(), cancelled),
        meanwhile(lambda: run_ffmpeg(SLOW_FFMPEG)) as making,
        pytest.raises(MediaCancelled),
    ):
        making.result()
    assert time.monotonic() - began < 3


def test_work_meanwhile_runs_beside_the_block_with_the_jobs_limits() -> None:
    # Under the job's limits (here a 1 s timeout), on its own thread, while the block works.
    threads: list[str] = []

    def work() -> bytes:
        threads.append(threading.current_thread().name)
        return run_ffmpeg(SLOW_FFMPEG)

    began = time.monotonic()
    with (
        limited(ProcessLimits(timeout_s=1.0)),
        meanwhile(work) as making,
        pytest.raises(MediaTimeout),
    ):
        making.result()
    assert time.monotonic() - began < 5
    assert threads and threads[0] != threading.current_thread().name


def test_work_not_beside_runs_in_the_blocks_thread_when_asked() -> None:
    threads: list[str] = []

    def work() -> int:
        threads.append(threading.current_thread().name)
        return 5

    with meanwhile(work, beside=False) as later:
        assert threads == []  # nothing ran before it was asked for
        assert later.result() == 5
    assert threads == [threading.current_thread().name]


def test_one_users_media_work_never_holds_up_anothers() -> None:
    slots = UserSlots(per_user=1)
    slow = ["-re", "-f", "lavfi", "-i", "anullsrc", "-t", "3", "-f", "null", "-"]
    quick = ["-f", "lavfi", "-i", "anullsrc", "-t", "0.1", "-f", "null", "-"]
    finished: dict[str, float] = {}
    began = time.monotonic()

    def run(user: str, label: str, args: list[str]) -> None:
        with for_user(slots.of(user)):
            run_ffmpeg(args)
        finished[label] = time.monotonic() - began

    threads = [threading.Thread(target=run, args=("mallory", "mallory-1", slow))]
    threads[0].start()
    time.sleep(0.5)  # mallory's first process holds her only slot
    threads += [
        threading.Thread(target=run, args=("mallory", "mallory-2", quick)),
        threading.Thread(target=run, args=("alice", "alice", quick)),
    ]
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join()
    assert finished["alice"] < 2.0  # at once, beside mallory's
    assert finished["mallory-2"] > finished["mallory-1"]  # after her first one
