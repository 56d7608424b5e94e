"""Thumbnails for the delivery email: a poster JPEG from a frame after the greeting, and a short
animated GIF (or WebP) of the opening with a play button and the prospect's first name on it.

The first name is data typed by a rep, never filter syntax: it reaches `drawtext` through a text
file written next to the output (`textfile=`, with `expansion=none`), so quotes, colons,
backslashes, brackets, commas and `%{...}` in it cannot change the filter graph. The graph itself
is built from numbers and from two paths, both escaped for the filter syntax (`filter_path`).

The name is drawn with DejaVu Sans Bold (Debian's fonts-dejavu-core), which covers Latin with
Vietnamese's stacked diacritics, Greek and Cyrillic. Its advance widths are read from the font
file itself (`FontMetrics`), so a long name is fitted to the frame by measuring rather than by
guessing from its length; a name the font cannot draw (CJK, emoji) is left off rather than drawn
as empty boxes.

Sizes measured here (ffmpeg 5.1; the first 3 s at 480 px wide, 10 fps, name and play button;
the GIF is the first of `GIF_STEPS` that fits, WebP at quality 60):
| source (H.264)                                 | GIF                  | WebP    |
| ---------------------------------------------- | -------------------- | ------- |
| `make_sample_video` 1280x720 (testsrc2)        | 0.24 MB (step 1)     | 0.24 MB |
| 1280x720 testsrc2 + moderate grain (noise=12)  | 0.85 MB (step 1)     | 0.24 MB |
| 1920x1080 testsrc2 + moderate grain            | 0.49 MB (step 1)     | 0.22 MB |
| 1080x1920 portrait testsrc2                    | 0.57 MB (step 1)     | 0.40 MB |
| 1280x720 testsrc2 + heavy grain (noise=40)     | 0.75 MB (step 2; 1: 1.5 MB) | 0.24 MB |
| 960x540 testsrc2 + heavy grain                 | 0.35 MB (step 3, 5 fps) | -    |
| 1280x720 mandelbrot + very heavy grain (60)    | 0.97 MB (step 2)     | 0.33 MB |
GIF spends its bytes on pixels that change between frames, so sensor grain is what costs: each
step of `GIF_STEPS` denoises harder and uses fewer colours (the last also halves the frame rate).
WebP stays at 0.2-0.4 MB whatever the grain, in full colour at the full frame rate, but email
clients' support tables list Outlook for Windows as showing no WebP at all, while every client
shows at least a GIF's first frame (which has the name and the play button; not tried here): GIF
is the email default, WebP the better picture where a client is known to show it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import struct
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from flows.media import (
    FfmpegError,
    MediaTimeout,
    ProbeError,
    meanwhile,
    probe_upload,
    run_ffmpeg,
    sniff_container,
    upload_input_options,
)
from flows.stages import name_gif

log = logging.getLogger(__name__)

FONT_PACKAGE = "fonts-dejavu-core"
FONT_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
# "Under 1 MB": what many mail clients and gateways start to clip or block above.
MAX_THUMBNAIL_BYTES = 1_000_000
# Longer names are cut and end in an ellipsis: past this the name would be too small to read at
# 480 px, and no first name is this long.
MAX_NAME_CHARS = 24
ELLIPSIS = "\u2026"
# The poster shows the rep talking, not the greeting's first frame: this long after the slot.
POSTER_AFTER_GREETING_S = 1.0
# A poster taken too near the end may find no frame at or after its time: ffmpeg then writes
# an empty file and still exits 0.
POSTER_END_MARGIN_S = 0.5
POSTER_QUALITY = 3  # mjpeg's -q:v: 2 is near-lossless, 5 starts to show blocks
WEBP_QUALITY = 60
# Decoding threads cost memory per thread, and a media process gets 1 GiB of address space
# (flows/media.py): one thread decodes a few seconds of 1080p in well under a second.
DECODE_THREADS = ["-threads", "1"]


class FontMissing(RuntimeError):
    """The font the name is drawn with is not installed."""


class ThumbnailError(RuntimeError):
    """ffmpeg made no usable thumbnail."""


class ThumbnailTooLarge(ThumbnailError):
    """Even the leanest GIF of this footage is over the size an email can carry."""

    def __init__(self, size: int, max_bytes: int) -> None:
        super().__init__(f"the GIF is {size} bytes even at its leanest, over {max_bytes}")
        self.size = size


@dataclass(frozen=True)
class GifStep:
    """How hard a GIF is squeezed: its frames denoised, its palette's size, its dithering."""

    denoise: str  # hqdn3d's luma:chroma spatial:temporal strengths
    colors: int
    dither: str
    fps_divisor: int = 1


# Tried in order until one fits. Temporal denoising is what keeps grain from changing every pixel
# of every frame; Bayer dithering is ordered, so a still area dithers the same way in each frame
# and stays out of the frame-to-frame difference (error diffusion shimmers and costs twice as much).
GIF_STEPS = (
    GifStep(denoise="4:3:6:6", colors=64, dither="bayer:bayer_scale=3"),
    GifStep(denoise="8:6:12:12", colors=48, dither="bayer:bayer_scale=4"),
    GifStep(denoise="10:8:15:15", colors=32, dither="none", fps_divisor=2),
)


# --- the font ------------------------------------------------------------------------------------


def font_path() -> Path:
    """The bundled font's path; `FontMissing` says which package installs it."""
    if not FONT_PATH.is_file():
        raise FontMissing(f"{FONT_PATH} is missing: install the Debian package {FONT_PACKAGE}")
    return FONT_PATH


@dataclass(frozen=True)
class FontMetrics:
    """What fitting a line of text needs from a TrueType font: which characters it has glyphs
    for and how far each advances, in ems (kerning only ever narrows a line of these)."""

    advances: dict[int, float]  # code point -> advance width in ems

    def has(self, char: str) -> bool:
        return ord(char) in self.advances

    def width_em(self, text: str) -> float:
        return sum(self.advances.get(ord(char), 0.0) for char in text)


@cache
def font_metrics(path: Path) -> FontMetrics:
    """Reads `cmap` (formats 4 and 12) and `hmtx` of a TrueType file."""
    data = path.read_bytes()
    tables = {
        data[at : at + 4].decode("latin-1"): struct.unpack_from(">II", data, at + 8)[0]
        for at in range(12, 12 + 16 * struct.unpack_from(">H", data, 4)[0], 16)
    }
    units_per_em = struct.unpack_from(">H", data, tables["head"] + 18)[0]
    metrics_count = struct.unpack_from(">H", data, tables["hhea"] + 34)[0]
    widths = [
        struct.unpack_from(">H", data, tables["hmtx"] + 4 * i)[0] for i in range(metrics_count)
    ]
    glyphs = _cmap(data, tables["cmap"])
    # Glyphs past the last full metric advance as far as it does.
    return FontMetrics(
        {
            code: widths[min(glyph, metrics_count - 1)] / units_per_em
            for code, glyph in glyphs.items()
            if glyph != 0
        }
    )


def _cmap(data: bytes, cmap: int) -> dict[int, int]:
    """Code point -> glyph id from the best Unicode subtable (full repertoire first)."""
    subtables = {
        struct.unpack_from(">HH", data, cmap + 4 + 8 * i): cmap
        + struct.unpack_from(">I", data, cmap + 8 + 8 * i)[0]
        for i in range(struct.unpack_from(">H", data, cmap + 2)[0])
    }
    found: dict[int, int] = {}
    if (3, 10) in subtables and struct.unpack_from(">H", data, subtables[3, 10])[0] == 12:
        at = subtables[3, 10]
        for group in range(struct.unpack_from(">I", data, at + 12)[0]):
            start, end, glyph = struct.unpack_from(">III", data, at + 16 + 12 * group)
            found.update((code, glyph + code - start) for code in range(start, end + 1))
        return found
    at = subtables.get((3, 1), subtables.get((0, 3)))
    if at is None or struct.unpack_from(">H", data, at)[0] != 4:
        raise ValueError("the font has no Unicode cmap of format 4 or 12")
    segments = struct.unpack_from(">H", data, at + 6)[0] // 2
    ends = struct.unpack_from(f">{segments}H", data, at + 14)
    starts = struct.unpack_from(f">{segments}H", data, at + 16 + 2 * segments)
    deltas = struct.unpack_from(f">{segments}h", data, at + 16 + 4 * segments)
    range_at = at + 16 + 6 * segments
    offsets = struct.unpack_from(f">{segments}H", data, range_at)
    for i in range(segments):
        for code in range(starts[i], ends[i] + 1):
            if code == 0xFFFF:
                continue
            if offsets[i] == 0:
                glyph = (code + deltas[i]) & 0xFFFF
            else:
                where = range_at + 2 * i + offsets[i] + 2 * (code - starts[i])
                glyph = struct.unpack_from(">H", data, where)[0]
                glyph = (glyph + deltas[i]) & 0xFFFF if glyph else 0
            found[code] = glyph
    return found


# --- the name (pure) -----------------------------------------------------------------------------


def name_to_draw(first_name: str, metrics: FontMetrics, max_chars: int = MAX_NAME_CHARS) -> str:
    """The text drawn for `first_name`: one line, composed, at most `max_chars` characters
    (cut with an ellipsis); "" when there is nothing the font can draw.

    Composed (NFC) so a name typed with combining accents uses the font's precomposed letters:
    drawtext places each code point on its own and stacks no marks. Control characters go
    (a newline would start a second line). A name with any letter the font lacks is not drawn:
    half a name, or boxes for letters, greet a prospect worse than no name.
    """
    text = unicodedata.normalize("NFC", first_name)
    text = "".join(" " if char.isspace() else char for char in text)
    text = "".join(char for char in text if unicodedata.category(char)[0] != "C")
    text = " ".join(text.split())
    if not all(metrics.has(char) for char in text if char != " "):
        log.info("the font cannot draw every letter of the name: the GIF shows no name")
        return ""
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + ELLIPSIS
    return text


def fit_font_size(text: str, metrics: FontMetrics, width: int, largest: int) -> int:
    """The largest font size up to `largest` at which `text` spans at most `width` pixels."""
    needed = metrics.width_em(text)
    if needed <= 0:
        return largest
    return max(1, min(largest, int(width / needed)))


# --- filter graphs (pure) ------------------------------------------------------------------------


def filter_path(path: Path) -> str:
    """`path` as a filter option value inside a filter graph: escaped once for the option's
    own parser (`'`, `\\`, `:`) and again for the graph's (`'`, `\\`, `[`, `]`, `,`, `;`)."""
    value = str(path)
    for special in "\\':":
        value = value.replace(special, "\\" + special)
    for special in "\\'[],;":
        value = value.replace(special, "\\" + special)
    return value


def scaled(width: int) -> str:
    """Scales to `width` keeping the displayed aspect (non-square pixels too), even height."""
    return f"scale={width:d}:2*round({width:d}/dar/2):flags=lanczos,setsar=1"


def play_button(diameter: int) -> str:
    """A source filter of one RGBA frame: a white triangle in a white-rimmed translucent black
    disc (drawn with geq: no image file to ship or to find)."""
    r = diameter / 2
    centre = f"hypot(X-{r:.2f},Y-{r:.2f})"
    # Equilateral, pointing right, its centroid (not its bounding box) on the disc's centre:
    # that is where the eye puts a triangle's middle.
    left, tip, half = 0.72 * r, 1.55 * r, 0.48 * r
    triangle = f"gte(X,{left:.2f})*lte(abs(Y-{r:.2f}),({tip:.2f}-X)*{half / (tip - left):.4f})"
    white = f"gt({triangle}+gt({centre},{r - max(2.0, r / 14):.2f}),0)"
    inside = f"lte({centre},{r - 1:.2f})"
    return (
        f"color=c=black@0:s={diameter:d}x{diameter:d}:r=1:d=1,format=rgba,"
        f"geq=r='255*{white}':g='255*{white}':b='255*{white}'"
        f":a='{inside}*if({white},255,115)'"
    )


@dataclass(frozen=True)
class NameLayout:
    """Where and how large the name is drawn; `textfile` holds the name itself."""

    textfile: Path
    font: Path
    font_size: int


def name_layout_for(
    name: str, textfile: Path, width: int, metrics: FontMetrics, font: Path
) -> NameLayout:
    return NameLayout(textfile, font, name_font_size(name, width, metrics))


def name_font_size(name: str, width: int, metrics: FontMetrics) -> int:
    """The size `name` is drawn at on a frame `width` wide."""
    # Headroom for the box's border on both sides and a margin from the frame's edges.
    largest = round(width * 0.075)
    room = round(width * 0.92) - 2 * _box_border(largest)
    return fit_font_size(name, metrics, room, largest)


def _box_border(font_size: int) -> int:
    return max(4, round(font_size * 0.3))


def _name_bottom(font_size: int) -> int:
    """How far above the frame's bottom the name's line starts (its ascent's top)."""
    # The box spans ascent to descent, about 1.2 font sizes, plus its border, clear of the edge.
    return _box_border(font_size) + round(font_size * 1.2) + max(6, round(font_size * 0.4))


def draw_name(layout: NameLayout) -> str:
    """drawtext for the name in `layout.textfile`: centred near the bottom, white on a
    translucent box with a shadow, readable on any footage. No part of the name is in it."""
    size = layout.font_size
    border = _box_border(size)
    # drawtext's y is the top of the line (the font's ascent), so the baseline stays put whatever
    # the letters.
    bottom = _name_bottom(size)
    return (
        f"drawtext=fontfile={filter_path(layout.font)}:textfile={filter_path(layout.textfile)}"
        f":expansion=none:fontsize={size:d}:fontcolor=white"
        f":box=1:boxcolor=black@0.55:boxborderw={border:d}"
        f":shadowcolor=black@0.7:shadowx=2:shadowy=2"
        f":x=(w-text_w)/2:y=h-{bottom:d}"
    )


def overlay_graph(width: int, fps: float, denoise: str, name: NameLayout | None) -> str:
    """Input 0's video at `fps`, `width` wide, denoised, with the play button and the name,
    labelled [drawn]."""
    button = max(24, round(width * 0.17)) // 2 * 2
    graph = (
        f"{play_button(button)}[button];"
        f"[0:v:0]fps={fps:g},{scaled(width)},hqdn3d={denoise}[video];"
        f"[video][button]overlay=x=(W-w)/2:y=(H-h)/2:format=auto"
    )
    if name is not None:
        graph += f",{draw_name(name)}"
    return graph + "[drawn]"


def gif_graph(width: int, fps: float, step: GifStep, name: NameLayout | None) -> str:
    """`overlay_graph` through one palette made for these frames (stats_mode=diff: from what
    changes, which is what costs), labelled [gif]."""
    return (
        f"{overlay_graph(width, fps, step.denoise, name)};"
        f"[drawn]split[frames][forpalette];"
        f"[forpalette]palettegen=max_colors={step.colors:d}:stats_mode=diff[palette];"
        f"[frames][palette]paletteuse=dither={step.dither}:diff_mode=rectangle[gif]"
    )


# --- making them ---------------------------------------------------------------------------------


def make_poster(video: Path, at_s: float, dest: Path, width: int = 960) -> Path:
    """A JPEG of the frame at `at_s` (kept inside the video), `width` wide."""
    info = probe_upload(video)
    at = min(max(at_s, 0.0), max(info.duration_s - POSTER_END_MARGIN_S, 0.0))
    run_ffmpeg(
        [
            *DECODE_THREADS,
            "-ss",
            f"{at:.3f}",
            *upload_input_options(info.container),
            "-i",
            str(video),
            "-map",
            "0:v:0",
            "-frames:v",
            "1",
            "-vf",
            scaled(width),
            "-q:v",
            str(POSTER_QUALITY),
            "-f",
            "image2",
            "-update",
            "1",
            str(dest),
        ]
    )
    return _made(dest)


def make_gif(
    video: Path,
    first_name: str,
    dest: Path,
    seconds: float = 3.0,
    width: int = 480,
    fps: int = 10,
    max_bytes: int = MAX_THUMBNAIL_BYTES,
) -> Path:
    """The video's first `seconds` as a looping GIF with a play button and `first_name`: the
    first of `GIF_STEPS` that fits in `max_bytes` (`ThumbnailTooLarge` if none does)."""
    with _name_file(first_name, dest, width) as name:
        for step in GIF_STEPS:
            graph = gif_graph(width, fps / step.fps_divisor, step, name)
            run_ffmpeg(
                [
                    *_opening(video, seconds),
                    "-filter_complex",
                    graph,
                    "-map",
                    "[gif]",
                    "-loop",
                    "0",
                    "-f",
                    "gif",
                    str(dest),
                ]
            )
            size = _made(dest).stat().st_size
            if size <= max_bytes:
                return dest
            log.info("GIF of %s is %d bytes at %s: squeezing harder", video.name, size, step)
    dest.unlink()
    raise ThumbnailTooLarge(size, max_bytes)


def make_webp(
    video: Path,
    first_name: str,
    dest: Path,
    seconds: float = 3.0,
    width: int = 480,
    fps: int = 10,
) -> Path:
    """`make_gif`'s picture as a looping animated WebP: a fraction of the size, for the clients
    that show WebP."""
    with _name_file(first_name, dest, width) as name:
        graph = overlay_graph(width, fps, GIF_STEPS[0].denoise, name)
        run_ffmpeg(
            [
                *_opening(video, seconds),
                "-filter_complex",
                graph,
                "-map",
                "[drawn]",
                "-c:v",
                "libwebp_anim",
                "-quality",
                str(WEBP_QUALITY),
                "-loop",
                "0",
                "-f",
                "webp",
                str(dest),
            ]
        )
    return _made(dest)


def _opening(video: Path, seconds: float) -> list[str]:
    """Input options reading no more than the video's first `seconds`, its audio left alone.

    Opened as the container its bytes claim, like an upload, so the same code serves the
    rendered MP4 and the rep's original."""
    return [
        *DECODE_THREADS,
        "-t",
        f"{seconds:.3f}",
        *upload_input_options(sniff_container(video)),
        "-i",
        str(video),
        "-an",
        "-sn",
        "-dn",
    ]


@contextlib.contextmanager
def _name_file(first_name: str, dest: Path, width: int) -> Iterator[NameLayout | None]:
    """The layout of `first_name`'s text, written to a file beside `dest` for as long as the
    context lasts (None: nothing to draw). Beside `dest` because a sandboxed job's ffmpeg sees
    its own folder and the system's files, and nothing else; its name is made of letters,
    digits and underscores, so only the folder's path needs escaping."""
    metrics = font_metrics(font_path())
    text = name_to_draw(first_name, metrics)
    if not text:
        yield None
        return
    fd, path = tempfile.mkstemp(prefix="name_", suffix=".txt", dir=dest.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        yield name_layout_for(text, Path(path), width, metrics, FONT_PATH)
    finally:
        Path(path).unlink(missing_ok=True)


def _made(dest: Path) -> Path:
    """`dest`, if ffmpeg wrote something into it (with no frame to encode it exits 0 anyway)."""
    if not dest.is_file() or dest.stat().st_size == 0:
        raise ThumbnailError(f"ffmpeg wrote no {dest.suffix} thumbnail")
    return dest


# --- a batch's shared part ----------------------------------------------------------------------

# A batch's GIFs share one palette, made from its frames with this name drawn on them: the name
# box's darkened colours and the white letters are then in it, whatever name a job draws.
PALETTE_SAMPLE_NAME = "Alexandra"


@dataclass(frozen=True)
class ThumbnailBase:
    """What every job of a batch shows alike, made once from the batch's upload.

    The jobs' videos differ only in the greeting's sound, so their posters are one frame, and
    their GIFs one opening with a different name at the bottom. Made per job from the rendered
    video, that opening is decoded, scaled, denoised and quantized again each time (0.58 CPU s
    on a 30 s 720p clip, the poster 0.18 s more). Here it is done once: `frames` holds the
    opening at the GIF's size, with its play button, as indices into one palette; a job draws
    its name on them in the worker's process (flows/stages/name_gif.py: 0.07 CPU s, where an
    ffmpeg per job took 0.14) and copies the poster.
    """

    poster: Path | None = None
    frames: Path | None = None  # name_gif.index_frames's .npz: palette indices, palette, fps
    width: int = 480


def make_thumbnail_base(
    video: Path,
    greeting_end_s: float,
    folder: Path,
    seconds: float = 3.0,
    width: int = 480,
    fps: int = 10,
    max_bytes: int = MAX_THUMBNAIL_BYTES,
) -> ThumbnailBase:
    """The batch's poster and GIF frames, made from its upload in `folder`. A part that cannot be
    made is None, and each job makes that part from its own video as a lone job does; so is the
    GIF's part when its frames would not make a GIF under `max_bytes` (grainy footage: each job
    then squeezes harder, `make_gif`)."""
    folder.mkdir(parents=True, exist_ok=True)
    poster = None
    try:
        poster = make_poster(video, greeting_end_s + POSTER_AFTER_GREETING_S, folder / "poster.jpg")
    except _THUMBNAIL_TROUBLE as exc:
        log.info("no shared poster of %s: %s", video.name, exc)
    nut, palette = folder / "frames.nut", folder / "palette.png"
    frames = folder / f"frames{name_gif.FRAMES_SUFFIX}"
    step = GIF_STEPS[0]
    try:
        with _name_file(PALETTE_SAMPLE_NAME, palette, width) as sample:
            # One pass: the opening with its button, a palette from it with the sample name on,
            # and the frames (without a name) mapped onto that palette with the first step's
            # dithering, the same as `make_gif` would.
            graph = (
                f"{overlay_graph(width, fps, step.denoise, None)};"
                f"[drawn]split[frames][forpalette];"
                f"[forpalette]{draw_name(sample) if sample else 'null'},"
                f"palettegen=max_colors={step.colors:d}:stats_mode=diff,split[palette][kept];"
                f"[frames][palette]paletteuse=dither={step.dither}:diff_mode=rectangle,"
                f"format=rgb24[mapped]"
            )
            run_ffmpeg(
                [
                    *_opening(video, seconds),
                    "-filter_complex",
                    graph,
                    "-map",
                    "[mapped]",
                    "-c:v",
                    "rawvideo",
                    "-f",
                    "nut",
                    str(nut),
                    "-map",
                    "[kept]",
                    "-frames:v",
                    "1",
                    "-update",
                    "1",
                    "-f",
                    "image2",
                    str(palette),
                ]
            )
        name_gif.index_frames(_made(nut), _made(palette), frames, fps)
        base = ThumbnailBase(poster, frames, width)
        # Tried once for the batch: footage too grainy for this step fails here, not per job.
        gif_from_base(base, PALETTE_SAMPLE_NAME, folder / "sample.gif", max_bytes).unlink()
        return base
    except _THUMBNAIL_TROUBLE as exc:
        log.info("no shared GIF frames of %s: %s", video.name, exc)
        frames.unlink(missing_ok=True)
        return ThumbnailBase(poster, width=width)
    finally:
        nut.unlink(missing_ok=True)
        palette.unlink(missing_ok=True)


def gif_from_base(
    base: ThumbnailBase, first_name: str, dest: Path, max_bytes: int = MAX_THUMBNAIL_BYTES
) -> Path:
    """A job's GIF from its batch's frames: `first_name` drawn on them in this process, mapped
    onto the batch's palette without dithering (the frames are dithered already; the name stays
    crisp). `ThumbnailTooLarge` (the file removed) if it is over `max_bytes`."""
    if base.frames is None:
        raise ThumbnailError("the batch has no GIF frames")
    indices, palette, fps = name_gif.load_frames(base.frames)
    metrics = font_metrics(font_path())
    text = name_to_draw(first_name, metrics)
    if text:
        size = name_font_size(text, base.width, metrics)
        overlay = name_gif.name_overlay(
            text,
            font=FONT_PATH,
            font_size=size,
            border=_box_border(size),
            bottom=_name_bottom(size),
            width=indices.shape[2],
            height=indices.shape[1],
        )
        indices = name_gif.draw_overlay(indices, palette, overlay)
    part = dest.with_name(f".{dest.name}.part")
    try:
        name_gif.encode_gif(indices, palette, fps, part)
        os.replace(_made(part), dest)
    finally:
        part.unlink(missing_ok=True)
    size = dest.stat().st_size
    if size > max_bytes:
        dest.unlink()
        raise ThumbnailTooLarge(size, max_bytes)
    return dest


# --- for a job -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thumbnails:
    """What `make_thumbnails` made in the job's folder: either may be missing."""

    poster: Path | None = None
    gif: Path | None = None


# What can go wrong making a thumbnail of the opening the render keeps: none of it is worth
# failing the video for (the render reads the same upload, and reports its own trouble).
_THUMBNAIL_TROUBLE = (
    ThumbnailError,
    FontMissing,
    FfmpegError,
    ProbeError,
    MediaTimeout,
    OSError,
    name_gif.FramesError,
)


def make_thumbnails(
    video: Path,
    first_name: str | None,
    greeting_end_s: float,
    work_dir: Path,
    base: ThumbnailBase | None = None,
) -> Thumbnails:
    """The rendered `video`'s poster (a frame after the greeting) and GIF (its opening with
    `first_name`, or only the play button when there is no name to call them by): from its
    batch's `base` where it has them, else from `video`.

    Never fails the job: a thumbnail that cannot be made is logged and left out, and the job
    completes without it. Being cancelled (`MediaCancelled`) still stops the job.
    """
    base = base or ThumbnailBase()
    # Two ffmpegs where there is no base (0.16 s and 0.52 s on the bench's short clip): side
    # by side. A batch's poster is a copy of its base's.
    with meanwhile(
        lambda: _poster(video, greeting_end_s, work_dir, base), beside=base.poster is None
    ) as making_poster:
        gif = _gif(video, first_name or "", work_dir / "thumbnail.gif", base)
        poster = making_poster.result()
    return Thumbnails(poster, gif)


def _poster(video: Path, greeting_end_s: float, work_dir: Path, base: ThumbnailBase) -> Path | None:
    try:
        if base.poster is not None:
            return Path(shutil.copyfile(base.poster, work_dir / "poster.jpg"))
        at_s = greeting_end_s + POSTER_AFTER_GREETING_S
        return make_poster(video, at_s, work_dir / "poster.jpg")
    except _THUMBNAIL_TROUBLE as exc:
        log.warning("no poster for %s: %s", video.name, exc)
        return None


def _gif(video: Path, first_name: str, dest: Path, base: ThumbnailBase) -> Path | None:
    if base.frames is not None:
        try:
            return gif_from_base(base, first_name, dest)
        except _THUMBNAIL_TROUBLE as exc:
            log.info("the batch's GIF frames did not serve %s: %s", video.name, exc)
    try:
        return make_gif(video, first_name, dest)
    except _THUMBNAIL_TROUBLE as exc:
        log.warning("no GIF thumbnail for %s: %s", video.name, exc)
        return None
