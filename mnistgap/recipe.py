"""The MNIST recipe: how any digit image becomes a 28x28 MNIST-like input, in one place.

Used by every reader of digits (the class folder, the external sets, the collection page,
``predict``), by the leakage check, and by training and evaluation (normalisation). It
decodes nothing itself (:mod:`mnistgap.png` does) and imports torch only inside the tensor
functions, so reading a folder of PNGs needs none of it.


* :func:`mnistgap.png.read_digit` decodes a PNG and applies one of the two recipes below.
* :func:`preprocess_mnist` follows the recipe MNIST itself was made with (LeCun et al.):
  light ink on a black background, contrast normalised, the ink's bounding box scaled to fit
  20x20 with its aspect ratio kept (anti-aliased), then placed in a 28x28 field so that the
  ink's centre of mass lies at the centre. :func:`preprocess_study` is the study's
  plain ``convert("L").resize((28, 28))``.
* :func:`quality_reason` is the study's filter on the final 28x28 image.
* :func:`renormalize_batch` applies the geometric part of the recipe (stretch, fit 20x20,
  centre of mass) to batches of 28x28 images that are already MNIST-like, vectorised: the
  leakage check puts both class digits and MNIST through it before comparing them.
* :func:`normalize` maps pixels to the model's input scale (the study's
  ``Normalize((0.5,), (0.5,))``), for training and evaluation alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from mnistgap.params import Filter

if TYPE_CHECKING:
    import torch


class ImageError(ValueError):
    """One image cannot be used; ``str(err)`` is a short one-line reason."""


#: Side of the output image and of the box the ink is scaled into (LeCun et al.: the NIST
#: digits were size-normalised to fit a 20×20 box, then centred in a 28×28 field).
SIZE = 28
BOX = 20
#: Pixel index the ink's centre of mass lands on (index 14 of 0..27, as in MNIST).
CENTRE = SIZE // 2

# --- Thresholds of the MNIST recipe (fractions of full scale, not tuned to any data set) ---
# Background brightness above which the paper is clearly light (dark ink: invert) or below
# which it is clearly dark (light ink: keep). Between the two (grey paper) the polarity is
# decided by which side of the background holds more deviating "ink mass".
_LIGHT_PAPER = 0.6
_DARK_PAPER = 0.4
# Smallest ink contrast over the background that counts as ink: 10/255 is above 8-bit
# quantisation and typical sensor/compression noise (a few levels), yet well below the
# faintest legible pen or pencil strokes (tens of levels).
_MIN_INK_LEVEL = 10 / 255
# Noise-aware detection: ink must also stand this many robust standard deviations (MAD of
# the border ring) above the paper, the usual 5-sigma detection rule.
_NOISE_SIGMAS = 5.0
# Fewer pixels than this above the ink level are dust or hot pixels, not a digit.
_MIN_INK_PIXELS = 3
# Robust peak of the ink for the contrast stretch: one hot pixel must not set the scale.
_PEAK_PERCENTILE = 99.0
# After stretching, only pixels above this fraction of the peak define the bounding box,
# so faint haze or antialiasing fringes do not inflate it.
BBOX_LEVEL = 0.1
#: The model's input scale: the study's Normalize((0.5,), (0.5,)), pixels [0, 1] -> [-1, 1].
NORM_MEAN = 0.5
NORM_STD = 0.5


def preprocess_study(im: Image.Image | np.ndarray) -> np.ndarray:
    """The study's preprocessing: ``convert('L')`` then a plain 28×28 resize.

    Takes the decoded PIL image (what :func:`mnistgap.png.open_png` returns). For 8-bit modes
    this is literally ``np.array(im.convert("L").resize((28, 28)))`` — Pillow's default
    resampling, and ``convert('L')`` ignoring alpha, exactly as the study did. 16-bit grey
    (Pillow's "I;16*" modes, "I" in older Pillow) is first scaled to 8 bits (/257). A float
    array in [0, 1] is accepted too and rounded to 8 bits first. Returns (28, 28) uint8; no
    inversion, no centring.
    """
    if isinstance(im, np.ndarray):
        arr = np.clip(np.nan_to_num(np.asarray(im, dtype=np.float64)), 0.0, 1.0)
        if arr.ndim != 2 or arr.size == 0:
            raise ImageError(f"expected a non-empty 2-D grey image, got shape {arr.shape}")
        im = Image.fromarray(np.round(arr * 255.0).astype(np.uint8))
    elif im.mode.startswith("I"):
        scaled = np.round(np.asarray(im).astype(np.float64) / 257.0)
        im = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8))
    return np.array(im.convert("L").resize((SIZE, SIZE)), dtype=np.uint8)


def _border_ring(gray: np.ndarray) -> np.ndarray:
    """Pixels of the outer ring: 2 px at MNIST scale, proportionally wider on big images."""
    height, width = gray.shape
    ring = max(1, min(height, width) // 14)
    if 2 * ring >= min(height, width):
        return gray.ravel()
    mask = np.ones_like(gray, dtype=bool)
    mask[ring:-ring, ring:-ring] = False
    return gray[mask]


def _dark_ink(gray: np.ndarray, background: float, threshold: float) -> bool:
    """Is the ink darker than the paper (so the image must be inverted)?"""
    if background > _LIGHT_PAPER:
        return True
    if background < _DARK_PAPER:
        return False
    # Grey paper: the ink is whichever side of the background deviates with more mass.
    light = float(np.clip(gray - background - threshold, 0.0, None).sum())
    dark = float(np.clip(background - gray - threshold, 0.0, None).sum())
    if light == dark:
        return background > 0.5
    return dark > light


def _fit_box(ink: np.ndarray, box: int) -> np.ndarray:
    """Scale ``ink`` so its longer side is ``box`` px, aspect kept, anti-aliased (Lanczos)."""
    height, width = ink.shape
    scale = box / max(height, width)
    new_w = min(box, max(1, round(width * scale)))
    new_h = min(box, max(1, round(height * scale)))
    # Pillow's Lanczos widens its kernel by the scale factor when shrinking, so this is a
    # proper area-aware (anti-aliased) reduction; reducing_gap pre-shrinks huge crops with a
    # box filter for speed, as the brief suggests.
    resized = Image.fromarray(ink.astype(np.float32)).resize(
        (new_w, new_h), Image.Resampling.LANCZOS, reducing_gap=3.0
    )
    # Lanczos rings slightly below 0 and above 1 at sharp edges.
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _centre_by_mass(fitted: np.ndarray, size: int) -> np.ndarray:
    """Paste ``fitted`` into a black ``size``×``size`` canvas, ink centre of mass at the centre.

    Integer shift (rounded), clipped so the whole digit stays inside the canvas.
    """
    height, width = fitted.shape
    total = float(fitted.sum())
    ys, xs = np.indices(fitted.shape)
    com_y = float((ys * fitted).sum()) / total
    com_x = float((xs * fitted).sum()) / total
    centre = CENTRE
    top = int(np.clip(round(centre - com_y), 0, size - height))
    left = int(np.clip(round(centre - com_x), 0, size - width))
    canvas = np.zeros((size, size), dtype=np.float32)
    canvas[top : top + height, left : left + width] = fitted
    return canvas


def preprocess_mnist(gray: np.ndarray) -> np.ndarray:
    """MNIST's own recipe on a float grey image in [0, 1]; returns (28, 28) uint8.

    1. Polarity: background = median of the outer border ring; light paper is inverted so the
       ink is light on dark.
    2. Subtract the background level, clip at 0.
    3. No-ink test (before any stretching): fewer than 3 pixels at least
       max(10/255, 5 robust sigma of the border) above the background raises
       ``ImageError("blank: no ink")``.
    4. Stretch so the ink's robust peak (99th percentile) is 1; faint but legible strokes
       come out bright.
    5. Crop to the ink's bounding box (pixels above 0.1), scale it to fit 20×20 keeping the
       aspect ratio (anti-aliased), and place it in a black 28×28 field with the ink's centre
       of mass at the centre. The peak is renormalised to 255 (MNIST digits reach full ink).
    """
    arr = np.asarray(gray, dtype=np.float32)
    if arr.ndim != 2 or arr.size == 0:
        raise ImageError(f"expected a non-empty 2-D grey image, got shape {arr.shape}")
    arr = np.clip(np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)

    ring = _border_ring(arr)
    background = float(np.median(ring))
    sigma = 1.4826 * float(np.median(np.abs(ring - background)))  # robust std (MAD)
    threshold = max(_MIN_INK_LEVEL, _NOISE_SIGMAS * sigma)
    if _dark_ink(arr, background, threshold):
        arr = 1.0 - arr
        background = 1.0 - background
    ink = np.clip(arr - background, 0.0, None)

    above = ink >= threshold
    if int(above.sum()) < _MIN_INK_PIXELS:
        raise ImageError("blank: no ink")
    # Below the detection threshold ink cannot be told from paper noise: make it exact 0,
    # like MNIST's background, so the stretch does not amplify the noise.
    ink[~above] = 0.0
    peak = float(np.percentile(ink[above], _PEAK_PERCENTILE))
    ink = np.clip(ink / peak, 0.0, 1.0)

    rows = np.flatnonzero((ink > BBOX_LEVEL).any(axis=1))
    cols = np.flatnonzero((ink > BBOX_LEVEL).any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    fitted = _fit_box(crop, BOX)
    top = float(fitted.max())
    if top <= 0.0:  # cannot happen for a non-empty crop, but never divide by zero
        raise ImageError("blank: no ink")
    # A thin pen shrunk from a big image greys out; MNIST digits all reach full intensity.
    fitted = fitted / top
    canvas = _centre_by_mass(fitted, SIZE)
    return np.round(canvas * 255.0).astype(np.uint8)


def quality_reason(img28: np.ndarray, cfg: Filter) -> str | None:
    """The report's quality filter: ``None`` to keep, else the first failing rule as a reason.

    Rules, in order: max pixel >= ``min_max_pixel``; at least ``min_bright_pixels`` pixels
    above ``bright_level``; max - min >= ``min_contrast``.
    """
    if not cfg.enabled:
        return None
    arr = np.asarray(img28)
    high = int(arr.max())
    if high < cfg.min_max_pixel:
        return f"filter: max pixel {high} < {cfg.min_max_pixel}"
    bright = int((arr > cfg.bright_level).sum())
    if bright < cfg.min_bright_pixels:
        return f"filter: {bright} pixels above {cfg.bright_level} < {cfg.min_bright_pixels}"
    contrast = high - int(arr.min())
    if contrast < cfg.min_contrast:
        return f"filter: contrast {contrast} < {cfg.min_contrast}"
    return None


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) or float in [0, 1] (N, 28, 28) / (N, 1, 28, 28) -> float32
    (N, 1, 28, 28) on the model's input scale. A new tensor; the input is never modified."""
    import torch

    x = images.float().div(255.0) if images.dtype == torch.uint8 else images.float()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    return (x - NORM_MEAN) / NORM_STD


def _as_float_images(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(N, 28, 28) uint8 (0..255) or float -> float32 tensor; uint8 scaled to [0, 1]."""
    import torch

    t = torch.as_tensor(images)
    if t.ndim != 3 or tuple(t.shape[1:]) != (SIZE, SIZE):
        raise ValueError(f"images must be (N, {SIZE}, {SIZE}), got {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return t.to(torch.float32) / 255.0
    if not t.is_floating_point():
        raise ValueError(f"images must be uint8 or float, got {t.dtype}")
    return t.to(torch.float32)


def _bbox_extent(mask: torch.Tensor) -> torch.Tensor:
    """Number of rows from the first to the last True entry of each (N, L) mask (0 if none)."""
    import torch

    length = mask.shape[1]
    as_int = mask.to(torch.int8)
    # argmax returns the first maximum: the first True from the front, and from the back.
    first = as_int.argmax(dim=1)
    last = length - 1 - as_int.flip(1).argmax(dim=1)
    return torch.where(mask.any(dim=1), last - first + 1, torch.zeros_like(first))


def _renormalize_chunk(x: torch.Tensor) -> torch.Tensor:
    """:func:`renormalize_batch` on one chunk of float32 (n, 28, 28) images."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    x = x.clamp_min(0.0)
    peak = x.amax(dim=(1, 2))
    ink = peak > 0
    # Blank images: divide by 1 (they stay 0) instead of by 0.
    x = x / torch.where(ink, peak, torch.ones_like(peak))[:, None, None]

    above = x > BBOX_LEVEL
    height = _bbox_extent(above.any(dim=2))
    width = _bbox_extent(above.any(dim=1))
    longest = torch.maximum(height, width).to(torch.float32)
    scale = BOX / longest.clamp_min(1.0)

    mass = x.sum(dim=(1, 2)).clamp_min(torch.finfo(torch.float32).tiny)
    coords = torch.arange(SIZE, dtype=torch.float32)
    cy = (x.sum(dim=2) * coords).sum(dim=1) / mass
    cx = (x.sum(dim=1) * coords).sum(dim=1) / mass

    # Output pixel p samples input q = c + (p - CENTRE) / s (pixel indices). With
    # align_corners=False, index i sits at normalised u = (2i + 1) / SIZE - 1, so in normalised
    # coordinates u_in = u_out / s + b with b = (2c + 1) / SIZE - 1 + (SIZE - 2 CENTRE - 1) /
    # (SIZE s). (For s = 1, c = 14 this is the identity.)
    inv = 1.0 / scale
    offset = (SIZE - 2 * CENTRE - 1) / SIZE * inv
    bx = (2 * cx + 1) / SIZE - 1 + offset
    by = (2 * cy + 1) / SIZE - 1 + offset
    theta = torch.zeros(n, 2, 3, dtype=torch.float32)
    theta[:, 0, 0] = inv  # row 0 yields the x (column) coordinate
    theta[:, 0, 2] = bx
    theta[:, 1, 1] = inv
    theta[:, 1, 2] = by
    grid = F.affine_grid(theta, [n, 1, SIZE, SIZE], align_corners=False)
    out = F.grid_sample(
        x[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )[:, 0]
    out = out * ink[:, None, None]  # blank in, blank out (exactly)
    return out.clamp_(0.0, 1.0)


def renormalize_batch(images: torch.Tensor | np.ndarray, chunk: int = 8192) -> torch.Tensor:
    """MNIST-style normalisation of a batch, vectorised: (N, 28, 28) -> float32 in [0, 1].

    Per image: scale so the brightest pixel is 1; take the bounding box of pixels above 0.1;
    scale by ``s = 20 / max(box height, box width)`` about the ink's centre of mass and move
    that centre to pixel (14, 14) with one bilinear ``grid_sample`` (zeros outside). uint8
    input is read as 0..255. Blank images (max <= 0) come out all zero. ``chunk`` bounds the
    memory used at once; it does not change the result.
    """
    import torch

    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    x = torch.as_tensor(images)
    _as_float_images(x[:0])  # checks the shape and dtype without converting anything
    # Converted and normalised a chunk at a time into one output: the memory used beyond
    # the input and the output is bounded by the chunk, not by N.
    out = torch.empty((x.shape[0], SIZE, SIZE), dtype=torch.float32)
    for i in range(0, x.shape[0], chunk):
        out[i : i + chunk] = _renormalize_chunk(_as_float_images(x[i : i + chunk]).cpu())
    return out
