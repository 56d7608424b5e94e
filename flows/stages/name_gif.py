"""A job's GIF made in the worker's process from its batch's frames: the name drawn with Pillow,
mapped onto the batch's palette, encoded with PyAV. No ffmpeg process per job.

Every job of a batch shows the same opening (flows/stages/thumbnails.py `make_thumbnail_base`,
made once by a sandboxed ffmpeg from the upload); a job only adds its name at the bottom. An
ffmpeg for that cost 0.14 CPU s a job on a 30 s 720p clip, most of it starting Debian's ffmpeg;
this costs about 0.07 s and writes a GIF of the same size, the name drawn by the same font.

Nothing here reads the upload: only raw pixels and a palette the batch's ffmpeg wrote, and the
font. The name is text handed to a text renderer, never part of any command or filter graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

# The batch's frames as palette indices, its palette and frame rate, in one uncompressed .npz.
FRAMES_SUFFIX = ".npz"
# drawtext's box and shadow in `thumbnails.draw_name`: black at 0.55 and 0.7 opacity.
BOX_ALPHA = round(0.55 * 255)
SHADOW_ALPHA = round(0.7 * 255)
SHADOW_OFFSET = 2

Indices = npt.NDArray[np.uint8]
Palette = npt.NDArray[np.uint8]


class FramesError(ValueError):
    """The batch's frames could not be read, or a GIF not written from them (PyAV's errors
    become this one, so callers need not import PyAV to catch them)."""


def _keys(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    """Each RGB pixel as one number, so colours can be sorted and looked up."""
    wide = rgb.astype(np.uint32)
    return np.asarray((wide[..., 0] << 16) | (wide[..., 1] << 8) | wide[..., 2], dtype=np.uint32)


def palette_indices(frames: npt.NDArray[np.uint8], palette: Palette) -> Indices:
    """RGB `frames` (n, h, w, 3) as indices into `palette` (k, 3), every pixel being one of its
    colours (`FramesError` otherwise: the frames were not mapped onto this palette)."""
    keys = _keys(palette)
    order = np.argsort(keys)
    pixels = _keys(frames)
    found = np.clip(np.searchsorted(keys[order], pixels), 0, len(keys) - 1)
    if not np.array_equal(keys[order][found], pixels):
        raise FramesError("the frames have colours that are not in their palette")
    return order[found].astype(np.uint8)


def index_frames(nut: Path, palette_png: Path, dest: Path, fps: float) -> Path:
    """The batch's frames (raw RGB in NUT, on the palette's colours) and palette (palettegen's
    PNG) as `dest` (.npz): read once for the batch, so a job reads only indices."""
    import av  # the worker's only: the trigger and the CLI import this package without PyAV
    from PIL import Image

    try:
        with av.open(str(nut), format="nut") as media:
            decoded = [frame.to_ndarray(format="rgb24") for frame in media.decode(video=0)]
    except av.FFmpegError as exc:
        raise FramesError(f"{nut.name}: {exc}") from exc
    if not decoded:
        raise FramesError(f"{nut.name} holds no frames")
    frames = np.stack(decoded).astype(np.uint8)
    with Image.open(palette_png, formats=["PNG"]) as image:
        rgba = np.asarray(image.convert("RGBA")).reshape(-1, 4)
    # palettegen keeps one entry transparent (the GIF's "unchanged"): not a colour of the frames.
    palette = np.unique(rgba[rgba[:, 3] == 255][:, :3], axis=0).astype(np.uint8)
    if not 0 < len(palette) < 256:
        raise FramesError(f"a palette of {len(palette)} colours")
    np.savez(
        dest,
        indices=palette_indices(frames, palette),
        palette=palette,
        fps=np.array(fps, dtype=np.float64),
    )
    return dest


@dataclass(frozen=True)
class NameOverlay:
    """The name's box, shadow and letters as RGBA pixels, placed at (`left`, `top`)."""

    pixels: npt.NDArray[np.uint8]  # (h, w, 4), straight (not premultiplied) alpha
    left: int
    top: int


@cache
def _font(path: Path, size: int) -> object:
    from PIL import ImageFont

    return ImageFont.truetype(str(path), size)


def name_overlay(
    text: str, *, font: Path, font_size: int, border: int, bottom: int, width: int, height: int
) -> NameOverlay:
    """`text` as `thumbnails.draw_name` draws it with ffmpeg's drawtext: centred, white with a
    shadow, on a translucent box `border` pixels wider than its glyphs; the top of its tallest
    glyph `bottom` pixels above the frame's bottom, the box as tall as its glyphs reach."""
    from PIL import Image, ImageDraw, ImageFont

    face = _font(font, font_size)
    assert isinstance(face, ImageFont.FreeTypeFont)
    # drawtext measures the glyphs of this text, not the font's ascent and descent.
    _, top, _, below = (round(edge) for edge in face.getbbox(text, anchor="ls"))
    text_w = round(face.getlength(text))
    box_w, box_h = text_w + 2 * border, below - top + 2 * border
    size = (box_w + SHADOW_OFFSET, box_h + SHADOW_OFFSET)
    baseline = (border, border - top)
    letters = Image.new("L", size, 0)
    ImageDraw.Draw(letters).text(baseline, text, font=face, fill=255, anchor="ls")
    shadow = Image.new("L", size, 0)
    ImageDraw.Draw(shadow).text(
        (baseline[0] + SHADOW_OFFSET, baseline[1] + SHADOW_OFFSET),
        text,
        font=face,
        fill=SHADOW_ALPHA,
        anchor="ls",
    )
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle((0, 0, box_w - 1, box_h - 1), fill=(0, 0, 0, BOX_ALPHA))
    for colour, mask in (((0, 0, 0), shadow), ((255, 255, 255), letters)):
        paint = Image.new("RGBA", size, (*colour, 0))
        paint.putalpha(mask)
        layer = Image.alpha_composite(layer, paint)
    return NameOverlay(
        np.asarray(layer, dtype=np.uint8),
        left=(width - text_w) // 2 - border,
        top=height - bottom - border,
    )


def draw_overlay(indices: Indices, palette: Palette, overlay: NameOverlay) -> Indices:
    """`overlay` blended over every frame, each blended pixel mapped to the nearest palette
    colour (no dithering: the frames are dithered already and the name stays crisp).

    Under the overlay a pixel is one of k palette colours and the overlay one of a few hundred
    RGBA values, so every blend is computed once, as a table, instead of once per frame."""
    _, height, width = indices.shape
    y0, x0 = max(overlay.top, 0), max(overlay.left, 0)
    pixels = overlay.pixels[y0 - overlay.top :, x0 - overlay.left :]
    pixels = pixels[: height - y0, : width - x0]
    h, w = pixels.shape[:2]
    if h <= 0 or w <= 0:
        return indices
    values, which = np.unique(
        np.ascontiguousarray(pixels).view(np.uint32).reshape(h, w), return_inverse=True
    )
    rgba = values.view(np.uint8).reshape(-1, 4).astype(np.float64)
    alpha = rgba[:, 3:4, None] / 255  # (values, 1, 1)
    out = indices.copy()
    region = out[:, y0 : y0 + h, x0 : x0 + w]
    # Only the colours some frame has under the overlay are ever blended.
    under = np.flatnonzero(np.bincount(region.ravel(), minlength=len(palette)))
    colours = palette.astype(np.float64)
    blended = colours[under][None] * (1 - alpha) + rgba[:, None, :3] * alpha  # (values, u, 3)
    table = np.zeros((len(values), len(palette)), np.uint8)  # (value, index under) -> index
    table[:, under] = _nearest(blended.reshape(-1, 3), colours).reshape(len(values), len(under))
    out[:, y0 : y0 + h, x0 : x0 + w] = table[which.reshape(h, w)[None], region]
    return out


# Blends matched to the palette at a time: (rows, 255) distances of 8 bytes stay under 8 MB.
NEAREST_ROWS = 4096


def _nearest(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """The index of the palette colour nearest each colour (n, 3).

    |c - p|^2 = |c|^2 - 2 c.p + |p|^2, and |c|^2 is the same for every p: one matrix product
    instead of every blend's difference to every colour (values x 255 x 255 x 3 floats: 234 MB
    for 300 overlay values, the largest allocation of a job's GIF until 2026-12-06)."""
    norms = (palette**2).sum(axis=1)
    found = np.empty(len(colours), np.uint8)
    for start in range(0, len(colours), NEAREST_ROWS):
        part = colours[start : start + NEAREST_ROWS]
        found[start : start + NEAREST_ROWS] = (norms[None] - 2 * part @ palette.T).argmin(axis=1)
    return found


def load_frames(path: Path) -> tuple[Indices, Palette, float]:
    """What `index_frames` wrote: indices (n, h, w), palette (k, 3), frames per second."""
    with np.load(path, allow_pickle=False) as saved:
        indices, palette, fps = saved["indices"], saved["palette"], float(saved["fps"])
    if indices.ndim != 3 or palette.ndim != 2 or palette.shape[1] != 3 or not fps > 0:
        raise FramesError(f"{path.name} does not hold a batch's frames")
    if len(palette) > 255 or int(indices.max(initial=0)) >= len(palette):
        raise FramesError(f"{path.name}: indices past its palette")
    return indices.astype(np.uint8), palette.astype(np.uint8), fps


def encode_gif(indices: Indices, palette: Palette, fps: float, dest: Path) -> Path:
    """A looping GIF of the frames, with libavcodec's GIF encoder as the ffmpeg command uses it:
    each frame only the rectangle that changed, its unchanged pixels transparent."""
    import av

    frames, height, width = indices.shape
    # PyAV takes a pal8 palette as 256 ARGB entries; the unused ones stay fully transparent,
    # which is the index the encoder marks unchanged pixels with.
    argb = np.zeros((256, 4), dtype=np.uint8)
    argb[: len(palette), 0] = 255
    argb[: len(palette), 1:] = palette
    try:
        with av.open(str(dest), "w", format="gif", options={"loop": "0"}) as media:
            stream = media.add_stream("gif", rate=Fraction(fps).limit_denominator(100))
            stream.width, stream.height, stream.pix_fmt = width, height, "pal8"
            for number in range(frames):
                # PyAV's stubs leave out pal8's (image, palette) pair, which its docs describe.
                pair = (indices[number], argb)
                frame = av.VideoFrame.from_ndarray(pair, format="pal8")  # type: ignore[arg-type]
                frame.pts = number
                media.mux(stream.encode(frame))
            media.mux(stream.encode(None))
    except av.FFmpegError as exc:
        raise FramesError(f"{dest.name}: {exc}") from exc
    return dest
