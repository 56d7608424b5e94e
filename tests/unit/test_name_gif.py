"""A job's GIF drawn in the worker's process (flows/stages/name_gif.py), on frames built here
(no ffmpeg): the palette lookups, the name's blend, the encoder's output decoded back, and any
name of any script on frames of any shape. The same code on a real batch's frames, against what
ffmpeg's drawtext draws, is in test_thumbnails.py."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.stages import name_gif
from flows.stages.name_gif import FramesError, NameOverlay
from flows.stages.thumbnails import (
    MAX_THUMBNAIL_BYTES,
    ThumbnailBase,
    ThumbnailTooLarge,
    gif_from_base,
)

RNG = np.random.default_rng(7)
# 62 colours, as a batch's palette has (the first GIF step's 64, less what the footage lacks),
# with black and white among them as the name's box and letters bring them in.
PALETTE = np.unique(
    np.vstack([RNG.integers(0, 256, (60, 3)), [[0, 0, 0], [255, 255, 255]]]).astype(np.uint8),
    axis=0,
)


def moving_stripes(frames: int, height: int, width: int) -> np.ndarray:
    """Palette indices that move every frame, as footage does, and compress as footage does."""
    x = np.arange(width)[None, None, :]
    y = np.arange(height)[None, :, None]
    t = np.arange(frames)[:, None, None]
    return np.asarray((x // 12 + y // 40 + t) % len(PALETTE), dtype=np.uint8)


def saved_base(folder: Path, indices: np.ndarray, palette: np.ndarray = PALETTE) -> ThumbnailBase:
    path = folder / "frames.npz"
    np.savez(path, indices=indices, palette=palette, fps=np.array(10.0))
    return ThumbnailBase(frames=path, width=indices.shape[2])


def decoded(gif: Path) -> tuple[list[np.ndarray], list[float]]:
    """Every frame as RGB, and each frame's display time in seconds."""
    with av.open(str(gif)) as media:
        stream = media.streams.video[0]
        frames, times = [], []
        for frame in media.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.duration * stream.time_base) if frame.duration else 0.0)
    return frames, times


# --- the palette ---------------------------------------------------------------------------------


def test_frames_become_indices_into_their_palette_and_back() -> None:
    indices = moving_stripes(3, 20, 30)
    rgb = PALETTE[indices]
    found = name_gif.palette_indices(rgb, PALETTE)
    assert np.array_equal(PALETTE[found], rgb)


def test_a_colour_off_the_palette_is_refused() -> None:
    rgb = PALETTE[moving_stripes(2, 8, 8)]
    rgb[1, 3, 4] = [1, 2, 3] if [1, 2, 3] not in PALETTE.tolist() else [3, 2, 1]
    with pytest.raises(FramesError, match="not in their palette"):
        name_gif.palette_indices(rgb, PALETTE)


def test_saved_frames_that_point_past_their_palette_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "frames.npz"
    np.savez(path, indices=np.full((2, 4, 4), 200, np.uint8), palette=PALETTE, fps=np.array(10.0))
    with pytest.raises(FramesError, match="past its palette"):
        name_gif.load_frames(path)


def test_saved_frames_never_unpickle(tmp_path: Path) -> None:
    path = tmp_path / "frames.npz"
    np.savez(path, indices=np.array([object()]), palette=PALETTE, fps=np.array(10.0))
    with pytest.raises(ValueError, match="allow_pickle"):
        name_gif.load_frames(path)


# --- the name's blend ----------------------------------------------------------------------------


def nearest(colour: np.ndarray) -> int:
    return int(((PALETTE.astype(np.float64) - colour) ** 2).sum(axis=1).argmin())


def test_the_overlay_is_blended_and_mapped_to_the_nearest_colour_and_nowhere_else() -> None:
    indices = moving_stripes(4, 30, 40)
    pixels = np.zeros((6, 9, 4), np.uint8)
    pixels[..., 3] = 140  # the box
    pixels[2:4, 2:7] = [255, 255, 255, 255]  # letters
    pixels[4, 3] = [0, 0, 0, 179]  # a shadow
    out = name_gif.draw_overlay(indices, PALETTE, NameOverlay(pixels, left=20, top=21))
    outside = np.ones(indices.shape, bool)
    outside[:, 21:27, 20:29] = False
    assert np.array_equal(out[outside], indices[outside])
    for frame in (0, 3):
        for y, x in ((0, 0), (2, 2), (4, 3), (5, 8)):
            under = PALETTE[indices[frame, 21 + y, 20 + x]].astype(np.float64)
            alpha = pixels[y, x, 3] / 255
            blend = under * (1 - alpha) + pixels[y, x, :3] * alpha
            assert out[frame, 21 + y, 20 + x] == nearest(blend)


@pytest.mark.parametrize(("left", "top"), [(-5, 10), (35, 10), (10, -3), (10, 27), (-50, -50)])
def test_an_overlay_past_the_frames_edge_is_cut_there(left: int, top: int) -> None:
    indices = moving_stripes(2, 30, 40)
    pixels = np.full((6, 9, 4), [255, 255, 255, 255], np.uint8)
    out = name_gif.draw_overlay(indices, PALETTE, NameOverlay(pixels, left=left, top=top))
    white = nearest(np.array([255.0, 255.0, 255.0]))
    rows = slice(max(top, 0), max(top + 6, 0))
    cols = slice(max(left, 0), max(left + 9, 0))
    assert (out[:, rows, cols] == white).all()
    changed = int((out != indices).sum())
    assert changed <= 2 * out[0, rows, cols].size


# --- the GIF -------------------------------------------------------------------------------------


def test_the_gif_decodes_to_the_same_colours_frame_by_frame_and_loops(tmp_path: Path) -> None:
    indices = moving_stripes(30, 54, 96)
    gif = name_gif.encode_gif(indices, PALETTE, 10.0, tmp_path / "out.gif")
    frames, times = decoded(gif)
    assert len(frames) == 30
    for number, frame in enumerate(frames):
        assert np.array_equal(frame, PALETTE[indices[number]]), number
    assert all(abs(time - 0.1) < 1e-6 for time in times[:-1])
    assert b"NETSCAPE2.0\x03\x01\x00\x00" in gif.read_bytes()  # loops for ever


# Names of every script a rep's CSV brings, text a renderer must take as text, and characters
# the font lacks (then no name is drawn).
NAMES = st.one_of(
    st.sampled_from(
        [
            "Nguyễn Thị Ánh",
            "Αλέξανδρος",
            "Дмитрий",
            "محمد",
            "Zoë",
            "José María",
            "Maximiliana-Alexandrina Konstantinopoulou-Wójcik",
            "A',drawbox=t=fill:c=red",
            "%{pts} \\n [x]",
            "李小龙",
            "Anna 🎉",
        ]
    ),
    st.text(min_size=0, max_size=40),
)
SHAPES = st.sampled_from([(54, 96), (270, 480), (360, 480), (480, 480), (854, 480)])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=NAMES, shape=SHAPES)
def test_any_name_on_any_frame_shape_changes_only_the_bottom_and_stays_a_gif(
    name: str, shape: tuple[int, int], tmp_path: Path
) -> None:
    height, width = shape
    indices = moving_stripes(5, height, width)
    folder = tmp_path / f"{height}x{width}-{abs(hash(name))}"
    folder.mkdir()
    base = saved_base(folder, indices)
    gif = gif_from_base(base, name, folder / "out.gif")
    frames, _ = decoded(gif)
    assert len(frames) == 5
    shown = [name_gif.palette_indices(frame, PALETTE) for frame in frames]
    for number, frame in enumerate(shown):
        # The top 55 % of every frame is the footage's, whatever the name.
        keep = int(height * 0.55)
        assert np.array_equal(frame[:keep], indices[number, :keep]), (name, shape)
    assert gif.stat().st_size < MAX_THUMBNAIL_BYTES
    assert not list(folder.glob(".*.part"))


def test_a_drawn_name_changes_the_bottom_band(tmp_path: Path) -> None:
    indices = moving_stripes(3, 270, 480)
    base = saved_base(tmp_path, indices)
    frames, _ = decoded(gif_from_base(base, "Anna-Lena", tmp_path / "named.gif"))
    band = name_gif.palette_indices(frames[1], PALETTE)[200:260, 120:360]
    assert (band != indices[1, 200:260, 120:360]).mean() > 0.5


def test_a_gif_over_the_limit_is_refused_and_removed(tmp_path: Path) -> None:
    base = saved_base(tmp_path, moving_stripes(10, 270, 480))
    with pytest.raises(ThumbnailTooLarge):
        gif_from_base(base, "Anna", tmp_path / "big.gif", max_bytes=1000)
    assert list(tmp_path.glob("*.gif")) == [] and list(tmp_path.glob(".*.part")) == []
