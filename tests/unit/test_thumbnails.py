"""Email thumbnails: the poster JPEG and the animated GIF/WebP with the prospect's name.

Real ffmpeg on generated clips. What a recipient would notice is checked on decoded pixels: the
poster shows the moment asked for, the name is really drawn where it should be and nowhere else,
and no name, however hostile, changes the filter graph (the graph never holds it, and a name
that would add a filled box if it were syntax leaves the rest of the frame alone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from flows.job import ErrorCode, JobError
from flows.media import bwrap_setup, confined_to, run_ffmpeg, run_ffprobe
from flows.stages import thumbnails, upload
from flows.stages.thumbnails import (
    ELLIPSIS,
    MAX_NAME_CHARS,
    MAX_THUMBNAIL_BYTES,
    FontMissing,
    ThumbnailBase,
    Thumbnails,
    ThumbnailTooLarge,
    filter_path,
    fit_font_size,
    font_metrics,
    font_path,
    gif_from_base,
    make_gif,
    make_poster,
    make_thumbnail_base,
    make_thumbnails,
    make_webp,
    name_to_draw,
)
from greetings.samples import make_sample_video

HOSTILE_NAMES = [
    'it\'s 50% "off": \\ ; [x] %{pts}',
    "Nguyễn Thị Ánh",
    "Αλέξανδρος",
    "Дмитрий",
    "Maximiliana-Alexandrina Konstantinopoulou-Wójcik-Smithson-Van",  # 60 characters
    # As syntax this would close the option's quoting and fill the frame with a box.
    "A',drawbox=t=fill:c=red",
]
GIF_W = 480


# --- pure helpers ---------------------------------------------------------------------------------


def test_the_font_covers_the_scripts_of_our_prospects() -> None:
    metrics = font_metrics(font_path())
    for name in HOSTILE_NAMES[1:4]:
        assert name_to_draw(name, metrics) == name
    assert metrics.has(ELLIPSIS)
    assert metrics.width_em("W") > metrics.width_em("i") > 0


def test_names_are_composed_put_on_one_line_and_cut() -> None:
    metrics = font_metrics(font_path())
    decomposed = "Nguye\u0302\u0303n"  # what a Mac keyboard may send
    assert name_to_draw(decomposed, metrics) == "Nguyễn"
    assert name_to_draw("  Anna\n\tLena\x00 ", metrics) == "Anna Lena"
    long = name_to_draw("x" * 60, metrics)
    assert len(long) == MAX_NAME_CHARS and long.endswith(ELLIPSIS)


def test_a_name_the_font_cannot_draw_is_left_off() -> None:
    metrics = font_metrics(font_path())
    assert name_to_draw("王小明", metrics) == ""
    assert name_to_draw("Anna 👋", metrics) == ""


def test_long_names_shrink_to_fit() -> None:
    metrics = font_metrics(font_path())
    assert fit_font_size("Anna", metrics, 400, 36) == 36
    for text in ("W" * 23 + ELLIPSIS, "Maximiliana-Alexandrina…"):
        size = fit_font_size(text, metrics, 400, 36)
        assert size < 36 and metrics.width_em(text) * size <= 400


def test_paths_are_escaped_for_both_levels_of_the_filter_syntax() -> None:
    assert filter_path(Path("/w/a'b:c,d[e];f\\g")) == ("/w/a\\\\\\'b\\\\:c\\,d\\[e\\]\\;f\\\\\\\\g")
    assert filter_path(Path("/plain/name_x1.txt")) == "/plain/name_x1.txt"


def test_a_missing_font_names_its_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(thumbnails, "FONT_PATH", tmp_path / "absent.ttf")
    with pytest.raises(FontMissing, match="fonts-dejavu-core"):
        font_path()


# --- media ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("thumbnails")


@pytest.fixture(scope="module")
def sample(media_dir: Path) -> Path:
    """The demo's moving test pattern, a little longer than the GIF."""
    return make_sample_video(media_dir / "sample.mp4", seconds=3.5, narration=None)


@pytest.fixture(scope="module")
def small(media_dir: Path) -> Path:
    """A short, small clip for the many name renders."""
    return make_sample_video(
        media_dir / "small.mp4", seconds=1.2, width=640, height=360, narration=None
    )


@pytest.fixture(scope="module")
def turning(media_dir: Path) -> Path:
    """Colours that turn all the time: any two moments a second apart look different."""
    path = media_dir / "turning.mp4"
    run_ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30,hue=H=t*PI/2",
            "-t",
            "4",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ]
    )
    return path


@pytest.fixture(scope="module")
def grainy(media_dir: Path) -> Path:
    """Heavy sensor grain: too much change for the first of `GIF_STEPS` to fit a megabyte."""
    path = media_dir / "grainy.mp4"
    run_ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=960x540:rate=30,noise=alls=40:allf=t+u",
            "-t",
            "3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "18",
            str(path),
        ]
    )
    return path


@pytest.fixture(scope="module")
def gif(sample: Path, media_dir: Path) -> Path:
    return make_gif(sample, "Anna-Lena", media_dir / "anna.gif")


@pytest.fixture(scope="module")
def nameless_gif(sample: Path, media_dir: Path) -> Path:
    return make_gif(sample, "", media_dir / "nameless.gif")


@pytest.fixture(scope="module")
def nameless_small(small: Path, media_dir: Path) -> Path:
    return make_gif(small, "", media_dir / "nameless-small.gif", seconds=1.0)


def gray_frame(
    path: Path, *, index: int = 0, at_s: float | None = None, width: int, pix_fmt: str = "gray"
) -> bytes:
    """One frame as 8-bit luma (or `pix_fmt`), `width` wide: what a viewer sees."""
    seek = ["-ss", f"{at_s:.3f}"] if at_s is not None else []
    scale = f"scale={width}:2*round({width}/dar/2),setsar=1"
    return run_ffmpeg(
        [
            *seek,
            "-i",
            str(path),
            "-vf",
            f"select=eq(n\\,{index}),{scale}",
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            pix_fmt,
            "pipe:1",
        ]
    )


def mean_abs_diff(a: bytes, b: bytes, width: int, rows: range, cols: range) -> float:
    assert len(a) == len(b)
    total = sum(abs(a[row * width + col] - b[row * width + col]) for row in rows for col in cols)
    return total / (len(rows) * len(cols))


def stream(path: Path, *entries: str) -> dict[str, Any]:
    data = run_ffprobe([*entries, "-select_streams", "v:0", "-show_streams", str(path)])
    found: dict[str, Any] = data["streams"][0]
    return found


def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Sequence[str]]:
    """The ffmpeg command lines the thumbnails module runs from now on (still run)."""
    commands: list[Sequence[str]] = []
    real: Callable[..., bytes] = thumbnails.run_ffmpeg

    def recording(args: Sequence[str], **kwargs: Any) -> bytes:
        commands.append(list(args))
        return real(args, **kwargs)

    monkeypatch.setattr(thumbnails, "run_ffmpeg", recording)
    return commands


def height_of(path: Path) -> int:
    return int(stream(path)["height"])


def name_band(height: int) -> tuple[range, range]:
    """Where the name is: the middle of the frame's bottom fifth."""
    return range(height - height // 5, height - 4), range(GIF_W // 4, 3 * GIF_W // 4)


def top_band(height: int) -> tuple[range, range]:
    """Clear of both the name and the play button (centred)."""
    return range(0, height // 3), range(0, GIF_W)


def test_the_poster_is_the_frame_after_the_greeting(turning: Path, media_dir: Path) -> None:
    poster = make_poster(turning, 1.7, media_dir / "poster.jpg")
    assert poster.read_bytes()[:3] == b"\xff\xd8\xff"
    info = stream(poster)
    assert (info["width"], info["height"]) == (960, 540)

    # In colour: the clip's colours turn, its brightness hardly changes.
    def rgb(path: Path, at_s: float | None = None) -> bytes:
        return gray_frame(path, at_s=at_s, width=960, pix_fmt="rgb24")

    shown, everything = rgb(poster), (range(0, 540, 2), range(0, 960 * 3, 5))
    at_time = mean_abs_diff(shown, rgb(turning, 1.7), 960 * 3, *everything)
    in_greeting = mean_abs_diff(shown, rgb(turning, 0.4), 960 * 3, *everything)
    assert at_time < 3 < 20 < in_greeting


def test_a_poster_asked_for_past_the_end_comes_from_inside_the_video(
    turning: Path, media_dir: Path
) -> None:
    poster = make_poster(turning, 60.0, media_dir / "late.jpg", width=320)
    assert (stream(poster)["width"], stream(poster)["height"]) == (320, 180)


def test_the_gif_is_three_looping_seconds_at_480_px_under_a_megabyte(gif: Path) -> None:
    info = stream(gif, "-count_frames")
    assert info["codec_name"] == "gif" and info["width"] == GIF_W
    assert abs(int(info["nb_read_frames"]) - 30) <= 1
    assert gif.stat().st_size < MAX_THUMBNAIL_BYTES
    # The NETSCAPE2.0 application block with a loop count of 0: for ever.
    assert b"NETSCAPE2.0\x03\x01\x00\x00" in gif.read_bytes()


def test_the_name_is_drawn_at_the_bottom_and_nowhere_else(gif: Path, nameless_gif: Path) -> None:
    height = height_of(gif)
    for index in (0, 15):
        named = gray_frame(gif, index=index, width=GIF_W)
        plain = gray_frame(nameless_gif, index=index, width=GIF_W)
        assert mean_abs_diff(named, plain, GIF_W, *name_band(height)) > 20
        assert mean_abs_diff(named, plain, GIF_W, *top_band(height)) < 6


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_any_name_is_drawn_as_text_and_never_becomes_filter_syntax(
    name: str,
    small: Path,
    nameless_small: Path,
    media_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commands = recorded(monkeypatch)
    out = make_gif(small, name, media_dir / f"hostile-{HOSTILE_NAMES.index(name)}.gif", seconds=1)

    pieces = [piece for piece in name.split() if len(piece) >= 3]
    assert commands and not any(piece in arg for arg in commands[0] for piece in pieces)
    height = height_of(out)
    named = gray_frame(out, width=GIF_W)
    plain = gray_frame(nameless_small, width=GIF_W)
    assert mean_abs_diff(named, plain, GIF_W, *name_band(height)) > 20
    assert mean_abs_diff(named, plain, GIF_W, *top_band(height)) < 6


def test_a_work_folder_with_filter_syntax_in_its_path_works(small: Path, media_dir: Path) -> None:
    folder = media_dir / "it's a [job]; 50%, a:b \\ c"
    folder.mkdir()
    out = make_gif(small, "Anna", folder / "anna.gif", seconds=1)
    assert stream(out)["width"] == GIF_W
    assert [path.name for path in folder.iterdir()] == ["anna.gif"]  # the name file is gone


@pytest.mark.skipif(isinstance(bwrap_setup(), str), reason="bwrap cannot sandbox here")
def test_thumbnails_are_made_in_a_jobs_sandbox(sample: Path, media_dir: Path) -> None:
    """A sandboxed ffmpeg sees the job's folder and the system's files: the name file is
    written in the one, the font read from the other."""
    job = media_dir / "job"
    job.mkdir()
    with confined_to(job):
        gif = make_gif(sample, "Anna", job / "anna.gif", seconds=1)
        poster = make_poster(sample, 1.0, job / "poster.jpg")
    assert stream(gif)["width"] == GIF_W and stream(poster)["width"] == 960


def test_grainy_footage_is_squeezed_under_a_megabyte(
    grainy: Path, media_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sensor grain changes every pixel of every frame, which is what a GIF pays for: the first
    try is over a megabyte, a harder squeeze fits."""
    commands = recorded(monkeypatch)
    out = make_gif(grainy, "Anna-Lena", media_dir / "grainy.gif")
    assert out.stat().st_size < MAX_THUMBNAIL_BYTES and len(commands) > 1
    assert stream(out)["width"] == GIF_W


def test_a_gif_that_cannot_fit_is_refused_and_removed(small: Path, media_dir: Path) -> None:
    dest = media_dir / "tiny.gif"
    with pytest.raises(ThumbnailTooLarge):
        make_gif(small, "Anna", dest, seconds=0.5, max_bytes=1000)
    assert not dest.exists()


def test_the_webp_is_an_animated_loop_under_a_megabyte(sample: Path, media_dir: Path) -> None:
    # ffmpeg 5.1 cannot decode an animated WebP: its chunks are checked instead of its pixels.
    webp = make_webp(sample, "Anna-Lena", media_dir / "anna.webp")
    data = webp.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    anim = data.index(b"ANIM")
    assert data[anim + 12 : anim + 14] == b"\x00\x00"  # loop count 0: for ever
    assert data.count(b"ANMF") >= 29
    assert webp.stat().st_size < MAX_THUMBNAIL_BYTES


# --- for a job ------------------------------------------------------------------------------------


def test_a_job_gets_a_poster_and_a_gif_of_its_video(small: Path, tmp_path: Path) -> None:
    made = make_thumbnails(small, "Anna-Lena", 0.4, tmp_path)
    assert made.poster == tmp_path / "poster.jpg" and made.gif == tmp_path / "thumbnail.gif"
    assert made.poster.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG
    assert made.gif.read_bytes()[:6] == b"GIF89a"
    assert made.gif.stat().st_size <= MAX_THUMBNAIL_BYTES


def test_without_a_first_name_the_gif_has_only_the_play_button(small: Path, tmp_path: Path) -> None:
    made = make_thumbnails(small, None, 0.4, tmp_path)
    assert made.gif is not None
    nameless = make_gif(small, "", tmp_path / "nameless.gif")
    assert made.gif.read_bytes() == nameless.read_bytes()
    named = make_gif(small, "Anna", tmp_path / "named.gif")
    assert made.gif.read_bytes() != named.read_bytes()


def test_thumbnails_that_cannot_be_made_never_fail_the_job(tmp_path: Path) -> None:
    broken = tmp_path / "output.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64)  # an MP4 with nothing in it
    assert make_thumbnails(broken, "Anna", 1.0, tmp_path) == Thumbnails(None, None)
    assert make_thumbnails(tmp_path / "missing.mp4", "Anna", 1.0, tmp_path) == Thumbnails()
    assert not list(tmp_path.glob("*.jpg")) and not list(tmp_path.glob("*.gif"))


class FlakyStorage:
    """`store_file` for `upload.upload_result`, refusing the GIF as told: `transient` times with
    a retryable Storage error (None: every time), or for good."""

    def __init__(self, transient: int | None = None, *, for_good: bool = False) -> None:
        self.transient, self.for_good = transient, for_good
        self.stored: list[str] = []
        self.refused = 0

    def __call__(
        self, bucket: Any, local: Path, path: str, url: str, content_type: str = ""
    ) -> str:
        if content_type == "image/gif":
            if self.for_good:
                refused = "Cloud Storage refused it: 403"
                raise JobError(ErrorCode.STORAGE_UNAVAILABLE, refused, retryable=False)
            if self.transient is None or self.refused < self.transient:
                self.refused += 1
                raise JobError(ErrorCode.STORAGE_UNAVAILABLE, "Cloud Storage failed: 503")
        self.stored.append(path)
        return f"https://storage.test/{path}"


MADE = Thumbnails(Path("/w/poster.jpg"), Path("/w/thumbnail.gif"))
VIDEO = "greeting-results/u-1/job-1.mp4"
POSTER = "greeting-results/u-1/job-1.poster.jpg"
GIF = "greeting-results/u-1/job-1.gif"


@pytest.mark.parametrize("storage", [FlakyStorage(for_good=True), FlakyStorage(transient=None)])
def test_a_thumbnail_storage_refuses_is_left_off_the_job(
    monkeypatch: pytest.MonkeyPatch, storage: FlakyStorage
) -> None:
    """Refused for good, or still failing on the task's last attempt (outside a task run there
    is no other): the video and poster stay, the GIF is left out."""
    monkeypatch.setattr(upload, "store_file", storage)
    stored = upload.upload_result.fn(None, Path("/w/o.mp4"), MADE, "u-1", "job-1", "")
    assert storage.stored == [VIDEO, POSTER]
    assert stored.path == VIDEO and stored.url == f"https://storage.test/{VIDEO}"
    assert stored.images == {"posterPath": POSTER, "posterUrl": f"https://storage.test/{POSTER}"}


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize(("transient", "kept"), [(1, True), (None, False)])
def test_a_transient_thumbnail_failure_retries_the_task_then_leaves_it_out(
    monkeypatch: pytest.MonkeyPatch, transient: int | None, kept: bool
) -> None:
    """One task run stores the video and its thumbnails. A 503 on the GIF retries the whole
    task (the same paths again); still failing on the last attempt, the GIF is left out and
    the stored video is the job's result."""
    from prefect import flow

    storage = FlakyStorage(transient)
    monkeypatch.setattr(upload, "store_file", storage)
    task = upload.upload_result.with_options(retries=2, retry_delay_seconds=0)

    @flow(name="store-flaky")
    def store() -> upload.StoredResult:
        return task(None, Path("/w/o.mp4"), MADE, "u-1", "job-1", "")

    stored = store()
    attempts = 2 if kept else 3
    assert storage.refused == (1 if kept else 3)
    assert storage.stored == [VIDEO, POSTER] * (attempts - 1) + [VIDEO, POSTER] + (
        [GIF] if kept else []
    )
    assert ("thumbnailPath" in stored.images) is kept
    assert stored.images["posterPath"] == POSTER and stored.path == VIDEO


# --- a batch's shared part -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(sample: Path, media_dir: Path) -> ThumbnailBase:
    return make_thumbnail_base(sample, 1.0, media_dir / "batch")


def test_a_batch_makes_its_opening_once_and_a_job_only_draws_its_name(
    base: ThumbnailBase,
    sample: Path,
    nameless_gif: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert base.poster and base.frames
    commands = recorded(monkeypatch)
    made = make_thumbnails(sample, "Anna-Lena", 1.0, tmp_path, base)
    # No ffmpeg for the job: the GIF is drawn in this process from the batch's frames, and the
    # poster is the batch's.
    assert commands == []
    assert made.poster and made.poster.read_bytes() == base.poster.read_bytes()
    assert made.gif and made.gif.stat().st_size < MAX_THUMBNAIL_BYTES
    info = stream(made.gif, "-count_frames")
    assert info["width"] == GIF_W and abs(int(info["nb_read_frames"]) - 30) <= 1
    assert b"NETSCAPE2.0\x03\x01\x00\x00" in made.gif.read_bytes()
    # What a recipient sees: the GIF a lone job makes of its own video, with the name at the
    # bottom and nowhere else.
    height = height_of(made.gif)
    for index in (0, 15):
        named = gray_frame(made.gif, index=index, width=GIF_W)
        plain = gray_frame(nameless_gif, index=index, width=GIF_W)
        assert mean_abs_diff(named, plain, GIF_W, *name_band(height)) > 20
        assert mean_abs_diff(named, plain, GIF_W, *top_band(height)) < 6


def test_the_batchs_poster_is_the_one_a_lone_job_would_make(
    base: ThumbnailBase, sample: Path, tmp_path: Path
) -> None:
    assert base.poster is not None
    own = make_poster(sample, 1.0 + thumbnails.POSTER_AFTER_GREETING_S, tmp_path / "own.jpg")
    everything = (range(0, 540, 2), range(0, 960, 3))
    shared, alone = (gray_frame(p, width=960) for p in (base.poster, own))
    assert mean_abs_diff(shared, alone, 960, *everything) < 1


@pytest.mark.parametrize("name", [HOSTILE_NAMES[0], HOSTILE_NAMES[-1]])
def test_a_hostile_name_on_the_batchs_frames_stays_text(
    name: str,
    base: ThumbnailBase,
    nameless_gif: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commands = recorded(monkeypatch)
    out = gif_from_base(base, name, tmp_path / "hostile.gif")
    # The name goes to a text renderer in this process: no command line, no filter graph.
    assert commands == []
    named, plain = gray_frame(out, width=GIF_W), gray_frame(nameless_gif, width=GIF_W)
    height = height_of(out)
    assert mean_abs_diff(named, plain, GIF_W, *name_band(height)) > 20
    assert mean_abs_diff(named, plain, GIF_W, *top_band(height)) < 6


def test_grainy_footage_gets_no_shared_frames_and_each_job_squeezes_its_own(
    grainy: Path, tmp_path: Path
) -> None:
    batch = make_thumbnail_base(grainy, 0.5, tmp_path / "batch")
    # Too much grain for the shared frames' megabyte: found once, for the batch.
    assert batch.poster is not None and batch.frames is None
    assert not list((tmp_path / "batch").glob("*.gif"))
    job = tmp_path / "job"
    job.mkdir()
    made = make_thumbnails(grainy, "Anna", 0.5, job, batch)
    assert made.gif and made.gif.stat().st_size < MAX_THUMBNAIL_BYTES


def test_a_batch_whose_upload_cannot_be_read_leaves_each_job_its_own(
    small: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "upload.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64)
    batch = make_thumbnail_base(broken, 0.4, tmp_path / "batch")
    assert batch == ThumbnailBase()
    made = make_thumbnails(small, "Anna", 0.4, tmp_path, batch)
    assert made.poster and made.gif


@pytest.mark.skipif(isinstance(bwrap_setup(), str), reason="bwrap cannot sandbox here")
def test_the_batchs_frames_are_read_from_a_jobs_sandbox(sample: Path, tmp_path: Path) -> None:
    """The batch's part is made in the batch's folder; a sandboxed job sees only the files of it
    that its command names."""
    batch_dir, job = tmp_path / "batch", tmp_path / "job"
    batch_dir.mkdir()
    job.mkdir()
    with confined_to(batch_dir):
        batch = make_thumbnail_base(sample, 1.0, batch_dir)
    assert batch.frames is not None
    with confined_to(job):
        made = make_thumbnails(sample, "Anna", 1.0, job, batch)
    assert made.gif and stream(made.gif)["width"] == GIF_W
