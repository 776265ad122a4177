"""Photos of paper: remove the paper's uneven light before the MNIST recipe.

A phone photo of a digit on paper has no uniform background: light falls off across the
sheet, a hand or phone casts a shadow, the paper is grey or tinted and the ink may be blue or
pencil-grey. :func:`paper_ink` estimates the paper per colour channel at a large scale (a
morphological closing, which removes strokes thinner than the window, then a blur), divides
it out, and returns the ink's strength (the largest relative drop below the paper over the
channels, so coloured ink counts as much as its darkest channel) as light ink on black.

It only acts on images that look like photos (light paper whose estimated level varies, or
is grey or tinted); clean scans and drawings (uniform paper) get ``None`` and are read
exactly as before. Uses numpy and Pillow only.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

# Photos are worked on at this longer side for the paper estimate (cheap, and the
# background varies slowly); smaller images are never taken for photos.
_WORK_SIDE = 96
_MIN_PHOTO_SIDE = 64
# Closing window as a fraction of the working side: wider than any pen stroke.
_CLOSE_FRACTION = 0.3
# Below this border brightness the paper is dark (light ink on black): not a paper photo.
_LIGHT_BORDER = 0.5
# The paper estimate's spread (5th to 95th percentile) or level or tint above which the image
# is a photo rather than a clean drawing (fractions of full scale).
_SPREAD = 0.06
_GREY_PAPER = 0.88
_TINT = 0.06
_NOISE_SIGMAS = 5.0


def _odd(n: float) -> int:
    k = max(3, round(n))
    return k if k % 2 else k + 1


def _paper(rgb: np.ndarray) -> np.ndarray:
    """Per-channel large-scale paper estimate at full size, float32 (H, W, 3) in [0, 1]."""
    h, w = rgb.shape[:2]
    scale = _WORK_SIDE / max(h, w)
    small_size = (max(8, round(w * scale)), max(8, round(h * scale)))
    k = _odd(_CLOSE_FRACTION * _WORK_SIDE)
    planes = []
    for c in range(3):
        im = Image.fromarray(np.round(rgb[..., c] * 255).astype(np.uint8))
        # Box-averaged and median-filtered first, so the closing's max does not pick noise.
        small = im.resize(small_size, Image.Resampling.BOX).filter(ImageFilter.MedianFilter(3))
        closed = small.filter(ImageFilter.MaxFilter(k)).filter(ImageFilter.MinFilter(k))
        smooth = closed.filter(ImageFilter.GaussianBlur(k / 2))
        planes.append(np.asarray(smooth.resize((w, h), Image.Resampling.BILINEAR)))
    return np.stack(planes, axis=-1).astype(np.float32) / 255.0


def _border(a: np.ndarray) -> np.ndarray:
    t = max(1, min(a.shape[:2]) // 20)
    return np.concatenate([a[:t].ravel(), a[-t:].ravel(), a[:, :t].ravel(), a[:, -t:].ravel()])


def paper_ink(rgb: np.ndarray) -> np.ndarray | None:
    """Light-on-black ink strength (H, W) in [0, 1] of a photo of paper, or ``None`` when
    ``rgb`` (float (H, W, 3) in [0, 1]) does not look like one."""
    h, w = rgb.shape[:2]
    if min(h, w) < _MIN_PHOTO_SIDE:
        return None
    lum = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if float(np.median(_border(lum))) < _LIGHT_BORDER:
        return None
    paper = _paper(rgb)
    plum = paper @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lo, hi = np.percentile(plum, [5, 95])
    tint = float(np.median(paper.max(axis=-1) - paper.min(axis=-1)))
    if hi - lo < _SPREAD and float(np.median(plum)) >= _GREY_PAPER and tint < _TINT:
        return None  # uniform white paper: a clean drawing or scan, read as before
    drop = ((paper - rgb) / np.maximum(paper, 0.05)).max(axis=-1)
    # Most pixels are paper: their drop is noise (sensor, JPEG, paper texture). Take off its
    # level plus 5 robust sigmas, so only ink stands above 0.
    level = float(np.median(drop))
    sigma = 1.4826 * float(np.median(np.abs(drop - level)))
    return np.clip(drop - (level + _NOISE_SIGMAS * sigma), 0.0, 1.0).astype(np.float32)
