"""Photos of paper: remove the paper's uneven light and keep only the digit, before the MNIST
recipe.

A phone photo of a digit on paper has no uniform background: light falls off across the
sheet, a hand or phone casts a shadow, the paper is grey or tinted and the ink may be blue or
pencil-grey. :func:`paper_ink` decides whether an image is such a photo, estimates the paper
per colour channel, divides it out, and returns the ink's strength (the largest relative drop
below the paper over the channels, so coloured ink counts as much as its darkest channel) as
light ink on black, with specks and borders away from the digit removed.

The paper estimate is the lower of two estimates, each of which is at least the image:

* a **large closing** (max then min filter, wider than any stroke) at low resolution: follows
  light that varies slowly, including a dim region in the middle of the sheet;
* a **fill**: the image, first closed with a window a little wider than a pen stroke (so strokes
  are gone and cannot connect one region to another), then with every dark region that does
  not reach the image's border raised to the level around it (grey reconstruction by erosion,
  seeded from the border). A shadow reaches the border and keeps its sharp edge; ink does
  not. A stroke that touches the border is no shadow: the border's seed is its own profile
  closed along the border with the large window.

A shadow's narrow tip, which the large closing fills, is kept by the fill; a dim valley, which
the fill raises, is kept by the large closing.

Ink is what stands 5 robust sigmas of the paper's noise above it, grown by hysteresis into
what stands 3 sigmas above; then :func:`keep_digit` keeps the digit's components only.

It only acts on images that look like photos (dark ink on paper that is light somewhere, whose
estimated level varies, or is grey or tinted); clean scans and drawings (uniform paper) get
``None`` and are read exactly as before.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage
from skimage.filters import apply_hysteresis_threshold
from skimage.morphology import reconstruction

# Photos are judged at this longer side (cheap, and the background varies slowly); smaller
# images are never taken for photos.
_WORK_SIDE = 96
_MIN_PHOTO_SIDE = 64
# A photo is worked on at most at this longer side: the digit ends up in a 20 px box, and a
# 4 MP photo would otherwise cost seconds.
_MAX_PHOTO_SIDE = 400
# Large closing window as a fraction of the longer side: wider than any pen stroke.
_CLOSE_FRACTION = 0.3
# Stroke-removing closing of the fill, as a fraction of the longer side: a little wider than
# the stroke of a digit that fills the picture (MNIST's strokes are about 1/10 of the digit).
_STROKE_FRACTION = 0.1
# Below this side brightness the paper is dark (light ink on black): not a paper photo.
_LIGHT_BORDER = 0.5
# The paper estimate's spread (5th to 95th percentile) or level or tint above which the image
# is a photo rather than a clean drawing (fractions of full scale).
_SPREAD = 0.06
_GREY_PAPER = 0.88
_TINT = 0.06
# Ink detection (paper_ink): seeds this many robust sigmas above the paper, grown into this many.
_NOISE_SIGMAS = 5.0
_GROW_SIGMAS = 3.0
# Keeping the digit: another ink component stays when it carries this share of the largest
# one's ink (a second stroke), or a smaller share, down to _NEAR_SHARE, and lies within
# _NEAR_REACH of the largest one's box side from that box, without touching the border.
_MAIN_SHARE = 0.25
_NEAR_SHARE = 0.02
_NEAR_REACH = 0.1
# A band: touches a side over at least this share of its length, at most this deep.
_BAND_LENGTH = 0.5
_BAND_DEPTH = 0.15

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_EIGHT = np.ones((3, 3), dtype=bool)


def _odd(n: float) -> int:
    k = max(3, round(n))
    return k if k % 2 else k + 1


def _closed_small(rgb8: np.ndarray) -> list[np.ndarray]:
    """Per channel of ``rgb8`` (uint8 (H, W, 3)): box-downscaled to the working side,
    median-filtered (so the closing's max does not pick noise), then closed with the large
    window. uint8 arrays."""
    h, w = rgb8.shape[:2]
    scale = _WORK_SIDE / max(h, w)
    small_size = (max(8, round(w * scale)), max(8, round(h * scale)))
    k = _odd(_CLOSE_FRACTION * _WORK_SIDE)
    planes = []
    for c in range(3):
        small = Image.fromarray(rgb8[..., c]).resize(small_size, Image.Resampling.BOX)
        small = small.filter(ImageFilter.MedianFilter(3))
        # Pillow's MaxFilter then MinFilter (edges replicated), separable: exactly equal.
        closed = ndimage.grey_closing(np.asarray(small), size=(k, k), mode="nearest")
        planes.append(closed)
    return planes


def _up(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    im = Image.fromarray(np.asarray(plane, dtype=np.float32))
    return np.asarray(im.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def _looks_like_photo(rgb: np.ndarray, closed: list[np.ndarray]) -> bool:
    """Light paper whose large-scale level varies, or is grey or tinted."""
    h, w = rgb.shape[:2]
    k = _odd(_CLOSE_FRACTION * _WORK_SIDE)
    smooth = [
        np.asarray(
            Image.fromarray(p)
            .filter(ImageFilter.GaussianBlur(k / 2))
            .resize((w, h), Image.Resampling.BILINEAR)
        )
        for p in closed
    ]
    paper = np.stack(smooth, axis=-1).astype(np.float32) / 255.0
    plum = paper @ _LUMA
    lo, hi = np.percentile(plum, [5, 95])
    tint = float(np.median(paper.max(axis=-1) - paper.min(axis=-1)))
    return not (hi - lo < _SPREAD and float(np.median(plum)) >= _GREY_PAPER and tint < _TINT)


def _closed_border(plane: np.ndarray, k: int) -> np.ndarray:
    """``plane`` with its four border lines closed along themselves by ``k``: a stroke that
    touches the border (short there) is gone, a shadow or the table beyond the sheet (long
    there) stays."""
    out = plane.copy()
    out[0] = ndimage.grey_closing(plane[0], size=k, mode="nearest")
    out[-1] = ndimage.grey_closing(plane[-1], size=k, mode="nearest")
    out[1:-1, 0] = ndimage.grey_closing(plane[:, 0], size=k, mode="nearest")[1:-1]
    out[1:-1, -1] = ndimage.grey_closing(plane[:, -1], size=k, mode="nearest")[1:-1]
    return out


def _fill(plane: np.ndarray, k_stroke: int, k_close: int) -> np.ndarray:
    """Strokes closed away (the picture first extended beyond its border by the closed border,
    so a shadow or a band along the border is not), then dark regions that do not reach the
    border raised to their surroundings (reconstruction by erosion, seeded from the border)."""
    edge = _closed_border(plane, k_close)
    padded = np.pad(edge, k_stroke, mode="edge")
    padded[k_stroke:-k_stroke, k_stroke:-k_stroke] = plane
    closed = ndimage.grey_closing(padded, size=(k_stroke, k_stroke))
    no_strokes = closed[k_stroke:-k_stroke, k_stroke:-k_stroke]
    seed = np.full_like(no_strokes, no_strokes.max())
    seed[0], seed[-1], seed[:, 0], seed[:, -1] = edge[0], edge[-1], edge[:, 0], edge[:, -1]
    seed = np.maximum(seed, no_strokes)
    return reconstruction(seed, no_strokes, method="erosion", footprint=_EIGHT)


def _paper(rgb8: np.ndarray, closed: list[np.ndarray]) -> np.ndarray:
    """Per-channel paper estimate (H, W, 3) in [0, 1] of ``rgb8`` (uint8): the lower of the
    large closing and the fill (module docstring)."""
    h, w = rgb8.shape[:2]
    side = max(h, w)
    k_stroke, k_close = _odd(_STROKE_FRACTION * side), _odd(_CLOSE_FRACTION * side)
    planes = []
    for c in range(3):
        large = _up(ndimage.gaussian_filter(closed[c].astype(np.float32), 1.0), (w, h))
        full = np.asarray(
            Image.fromarray(rgb8[..., c]).filter(ImageFilter.MedianFilter(3)), dtype=np.float32
        )
        planes.append(np.minimum(large, _fill(full, k_stroke, k_close)))
    return np.clip(np.stack(planes, axis=-1) / 255.0, 0.0, 1.0).astype(np.float32)


def _dark_on_light(lum: np.ndarray) -> bool:
    """Dark ink on light paper: some side of the picture is light (the others may be in a
    shadow or show the table beyond the sheet), and the darkest pixels lie further below the
    median than the brightest above it (ink is the minority, darker than the paper)."""
    t = max(1, min(lum.shape) // 20)
    sides = [lum[:t], lum[-t:], lum[:, :t], lum[:, -t:]]
    if max(float(np.median(a)) for a in sides) < _LIGHT_BORDER:
        return False
    low, mid, high = np.percentile(lum, [1, 50, 99])
    return mid - low > high - mid


def _is_band(box: tuple[slice, slice], h: int, w: int) -> bool:
    """A component along one side of the picture, most of its length and thin across: the
    table or the sheet's edge beyond the paper, never a digit."""
    by, bx = box
    bh, bw = by.stop - by.start, bx.stop - bx.start
    across = (by.start == 0 or by.stop == h) and bw >= _BAND_LENGTH * w and bh <= _BAND_DEPTH * h
    down = (bx.start == 0 or bx.stop == w) and bh >= _BAND_LENGTH * h and bw <= _BAND_DEPTH * w
    return across or down


def keep_digit(ink: np.ndarray) -> np.ndarray:
    """Only the digit of an ink map (light on black): bands along the picture's sides (the
    table beyond the sheet) go, then the largest 8-connected component by ink stays with the
    components that belong to it (a second stroke, a dot near it); specks, a shadow's edge and
    borders elsewhere become 0."""
    labels, n = ndimage.label(ink > 0, structure=_EIGHT)
    if n == 0:
        return ink
    h, w = ink.shape
    boxes = ndimage.find_objects(labels)
    mass = ndimage.sum_labels(ink, labels, index=np.arange(1, n + 1))
    band = np.array([_is_band(b, h, w) for b in boxes])
    if band.all():
        return ink  # nothing but bands: let the recipe judge it
    mass[band] = 0.0
    main = int(np.argmax(mass))
    my, mx = boxes[main]
    reach = _NEAR_REACH * max(my.stop - my.start, mx.stop - mx.start)
    keep = np.zeros(n + 1, dtype=bool)
    for i, (by, bx) in enumerate(boxes):
        share = mass[i] / mass[main]
        if i == main or share >= _MAIN_SHARE:
            keep[i + 1] = True
        elif share >= _NEAR_SHARE:
            on_border = by.start == 0 or bx.start == 0 or by.stop == h or bx.stop == w
            gap = max(
                my.start - by.stop, by.start - my.stop, mx.start - bx.stop, bx.start - mx.stop
            )
            keep[i + 1] = not on_border and gap <= reach
    return np.where(keep[labels], ink, 0.0).astype(np.float32)


def paper_ink(rgb: np.ndarray) -> np.ndarray | None:
    """Light-on-black ink strength in [0, 1] of a photo of paper (at most
    :data:`_MAX_PHOTO_SIDE` a side), or ``None`` when ``rgb`` (float (H, W, 3) in [0, 1])
    does not look like one."""
    h, w = rgb.shape[:2]
    if min(h, w) < _MIN_PHOTO_SIDE:
        return None
    if not _dark_on_light(rgb @ _LUMA):
        return None
    rgb8 = np.round(rgb * 255).astype(np.uint8)
    closed = _closed_small(rgb8)
    if not _looks_like_photo(rgb, closed):
        return None  # uniform white paper: a clean drawing or scan, read as before
    if max(h, w) > _MAX_PHOTO_SIDE:
        scale = _MAX_PHOTO_SIDE / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb8 = np.asarray(Image.fromarray(rgb8).resize(size, Image.Resampling.BOX))
        rgb = rgb8.astype(np.float32) / 255.0
    paper = _paper(rgb8, closed)
    drop = ((paper - rgb) / np.maximum(paper, 0.05)).max(axis=-1)
    # Most pixels are paper: their drop is noise (sensor, JPEG, paper texture) of this level
    # and robust sigma. Ink is what stands 5 sigmas above it, grown (hysteresis) into what
    # stands 3 sigmas above and touches it, so a faint stroke's soft edge is kept whole.
    level = float(np.median(drop))
    sigma = 1.4826 * float(np.median(np.abs(drop - level)))
    above = drop - level
    strokes = apply_hysteresis_threshold(above, _GROW_SIGMAS * sigma, _NOISE_SIGMAS * sigma)
    ink = np.where(strokes, np.clip(above, 0.0, 1.0), 0.0).astype(np.float32)
    return keep_digit(ink)
