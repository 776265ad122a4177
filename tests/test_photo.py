"""mnistgap/photo.py: photos of paper with what phones really see (a hard shadow, specks of
dirt, the table beyond the sheet, pencil ink) read like the clean digit; the digit is kept,
specks and bands are not."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from mnistgap.photo import keep_digit, paper_ink
from mnistgap.png import read_digit, read_digit_info

SIDE = 280
PENCIL = (0.45, 0.45, 0.47)
BLACK = (0.12, 0.12, 0.14)


def _digit(side: int = SIDE) -> np.ndarray:
    """A '4' drawn with two strokes of about a tenth of the side, ink in [0, 1]."""
    im = Image.new("L", (side, side), 0)
    d = ImageDraw.Draw(im)
    w = side // 12
    d.line(
        [(0.55 * side, 0.15 * side), (0.25 * side, 0.62 * side), (0.75 * side, 0.62 * side)], 255, w
    )
    d.line([(0.62 * side, 0.4 * side), (0.62 * side, 0.85 * side)], 255, w)
    return np.asarray(im.filter(ImageFilter.GaussianBlur(1.5))) / 255.0


def _photo(
    ink: np.ndarray,
    colour: tuple[float, float, float],
    *,
    shadow: bool = True,
    specks: bool = True,
    table: bool = True,
    seed: int = 0,
) -> bytes:
    """``ink`` as a JPEG phone photo: cream paper, light falling off, optionally a hard shadow
    over the lower right corner, specks far from the digit and the table along the left."""
    rng = np.random.default_rng(seed)
    h, w = ink.shape
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    light = 0.95 - 0.25 * x - 0.1 * y
    if shadow:
        light = light * np.where(x + 0.6 * y > 1.15, 0.65, 1.0)
    light = light[..., None]
    a = ink[..., None]
    img = light * np.array([0.97, 0.95, 0.9]) * (1 - a) + light * np.array(colour) * a
    if specks:
        for cy, cx in ((0.08, 0.9), (0.93, 0.3), (0.1, 0.12)):
            img[(y - cy) ** 2 + (x - cx) ** 2 <= (2.5 / SIDE) ** 2] *= 0.3
    if table:
        img[:, : int(0.05 * w)] = np.array([0.25, 0.2, 0.15])
    img = img + rng.normal(0, 0.015, img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=70)
    return buf.getvalue()


def _clean(ink: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.round(255 * (1 - ink)).astype(np.uint8)).save(buf, "PNG")
    return read_digit(buf.getvalue())


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(float), b.astype(float)
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _box(img: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero((img > 25).any(1)), np.flatnonzero((img > 25).any(0))
    return rows[0], rows[-1], cols[0], cols[-1]


@pytest.mark.parametrize("colour", [BLACK, PENCIL], ids=["black", "pencil"])
def test_shadow_specks_and_table_are_not_ink(colour: tuple[float, float, float]) -> None:
    ink = _digit()
    img, opened = read_digit_info(_photo(ink, colour))
    plain = read_digit(_photo(ink, colour, shadow=False, specks=False, table=False))
    clean = _clean(ink)
    assert opened.photo
    # The plain photo (light falling off, noise, JPEG) is read close to the clean digit...
    assert _corr(plain, clean) > 0.8
    assert np.abs(np.subtract(_box(plain), _box(clean))).max() <= 1
    # ...and a shadow's edge, specks or the table's edge are not taken for ink: the same box
    # (any of them taken for ink would widen it by several pixels) and the same strokes as the
    # plain photo, give or take a pixel (JPEG's ringing along the shadow's edge, where it
    # meets a stroke, stays as faint ink).
    assert np.abs(np.subtract(_box(img), _box(plain))).max() <= 1
    assert _corr(img, plain) > 0.85


def test_stroke_running_off_the_border_is_ink() -> None:
    """The fill's border seed is closed along the border, so a stroke cut by the picture's
    edge is not taken for a shadow that reaches the border."""
    ink = np.zeros((SIDE, SIDE))
    ink[:200, 130:155] = 1.0  # a '1' whose top runs off the picture
    out = paper_ink(
        np.asarray(Image.open(io.BytesIO(_photo(ink, PENCIL, specks=False, table=False)))) / 255.0
    )
    assert out is not None
    top = out[:10, 130:155]
    middle = out[90:100, 130:155]
    assert top.mean() > 0.5 * middle.mean() > 0


def test_keep_digit_keeps_the_digit_and_its_strokes_only() -> None:
    ink = np.zeros((100, 100), dtype=np.float32)
    ink[30:80, 45:50] = 1.0  # the main stroke
    ink[30:34, 55:70] = 1.0  # a separate second stroke (a 5's bar): 60/250 of the main...
    ink[30:40, 55:70] = 1.0  # ...made 150/250, above the share that always stays
    ink[84:87, 40:43] = 1.0  # a small dot just below: near, kept
    ink[5:7, 90:92] = 1.0  # a speck far away: dropped
    ink[0:3, 10:13] = 1.0  # a speck on the border: dropped
    ink[:, 96:100] = 0.5  # the table along the right side: a band, dropped
    out = keep_digit(ink)
    assert out[30:80, 45:50].min() == 1.0
    assert out[30:40, 55:70].min() == 1.0
    assert out[84:87, 40:43].min() == 1.0
    assert out[5:7, 90:92].max() == 0.0
    assert out[0:3, 10:13].max() == 0.0
    assert out[:, 96:].max() == 0.0


def test_a_large_photo_is_worked_on_at_a_bounded_size() -> None:
    ink = _digit(1200)
    rgb = np.asarray(Image.open(io.BytesIO(_photo(ink, BLACK)))) / 255.0
    out = paper_ink(rgb)
    assert out is not None and max(out.shape) == 400
    assert _corr(read_digit(_photo(ink, BLACK)), _clean(_digit())) > 0.9
