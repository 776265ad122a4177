"""Load a folder of user-uploaded handwritten digit PNGs as MNIST-like 28×28 images.

The files come from dozens of people and drawing tools, so every PNG mode occurs (L, LA,
RGB, RGBA with strokes drawn only through the alpha channel, palette with and without
transparency, 16-bit grey, 1-bit), with either polarity, any size and any stroke position.
Loading never raises for a bad *entry*: each file is either turned into a 28×28 ``uint8``
image (light strokes on black, like MNIST) or recorded in ``rejected`` with a one-line reason.
Only a folder that is missing, not a directory, or holds no usable image at all raises
:class:`ClassFolderError`.

Two preprocessing recipes are offered:

* ``"seed"`` reproduces the reference report exactly:
  ``np.array(Image.open(p).convert("L").resize((28, 28)))`` — no inversion, no centring.
* ``"mnist"`` follows the recipe MNIST itself was made with: light ink on a black
  background, contrast normalised, the ink's bounding box scaled to fit 20×20 with its
  aspect ratio kept (anti-aliased), then placed in a 28×28 field so that the ink's centre of
  mass lies at the centre.

An optional quality filter (:class:`FilterConfig`, :func:`quality_reason`) implements the
reference report's rule for discarding near-empty images.
"""

from __future__ import annotations

import logging
import re
import struct
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = [
    "NAME_RE",
    "ClassDigits",
    "ClassFolderError",
    "ClassImageError",
    "DigitName",
    "FilterConfig",
    "load_folder",
    "load_grayscale",
    "load_image",
    "open_png",
    "parse_name",
    "pil_to_gray",
    "preprocess_mnist",
    "preprocess_seed",
    "quality_reason",
]

#: File-name pattern ``<digit>-<group>-<member>.png``. ``re.ASCII`` so that ``\d`` means 0-9
#: only (not e.g. Arabic-Indic digits); use ``NAME_RE.fullmatch`` — ``$`` alone would also
#: accept a trailing newline.
NAME_RE = re.compile(r"^(\d)-(\d+)-(\d+)\.png$", re.IGNORECASE | re.ASCII)

_NAME_HINT = "<digit>-<group>-<member>.png"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Group and member numbers end up in int64 arrays; 18 decimal digits always fit.
_MAX_NUMBER_DIGITS = 18
# Reasons are shown in tables and logs, one per line; long library messages are cut.
_MAX_REASON_CHARS = 160

#: Side of the output image and of the box the ink is scaled into (LeCun et al.: the NIST
#: digits were size-normalised to fit a 20×20 box, then centred in a 28×28 field).
MNIST_SIZE = 28
MNIST_BOX = 20

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
_BBOX_LEVEL = 0.1
# 16-bit samples are scaled to [0, 1] by the full 16-bit range.
_UINT16_MAX = 65535.0
# Alpha-channel handling (see pil_to_gray): "fully opaque" tolerance and the spread of the
# visible colour below which the colour carries no drawing (the stroke is in alpha alone).
_OPAQUE = 254 / 255
_FLAT_COLOUR = 0.1

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
# Exceptions Pillow (and the zlib/struct layers below it) raise for damaged files.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    KeyError,
    struct.error,
    zlib.error,
)


class ClassImageError(ValueError):
    """One image cannot be used; ``str(err)`` is a short one-line reason."""


class ClassFolderError(RuntimeError):
    """The folder as a whole cannot be used (missing, not a directory, no usable image)."""

    def __init__(self, message: str, rejected: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        #: ``(file, reason)`` for every entry that was rejected before giving up.
        self.rejected: list[tuple[str, str]] = list(rejected or [])


@dataclass(frozen=True)
class DigitName:
    """The label and author encoded in a file name ``<digit>-<group>-<member>.png``."""

    digit: int
    group: int
    member: int


@dataclass(frozen=True)
class FilterConfig:
    """The reference report's quality filter on the final 28×28 ``uint8`` image."""

    enabled: bool = True
    min_max_pixel: int = 70
    bright_level: int = 60
    min_bright_pixels: int = 10
    min_contrast: int = 30

    def __post_init__(self) -> None:
        for name in ("min_max_pixel", "bright_level", "min_contrast"):
            value = getattr(self, name)
            if not 0 <= value <= 255:
                raise ValueError(f"FilterConfig.{name} must be in 0..255, got {value}")
        if not 0 <= self.min_bright_pixels <= MNIST_SIZE * MNIST_SIZE:
            raise ValueError(
                f"FilterConfig.min_bright_pixels must be in 0..{MNIST_SIZE * MNIST_SIZE}, "
                f"got {self.min_bright_pixels}"
            )


@dataclass
class ClassDigits:
    """Loaded class digits, sorted by file name, plus every entry that was not used."""

    images: np.ndarray  # (N, 28, 28) uint8, light strokes on black
    digits: np.ndarray  # (N,) int64
    groups: np.ndarray  # (N,) int64
    members: np.ndarray  # (N,) int64
    files: list[str]  # (N,) file names, relative to the folder
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (entry name, reason)

    def __len__(self) -> int:
        return len(self.files)


def _one_line(text: str, limit: int = _MAX_REASON_CHARS) -> str:
    """Collapse whitespace (including newlines) and cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def parse_name(filename: str) -> DigitName:
    """Parse ``<digit>-<group>-<member>.png`` (extension case-insensitive).

    Raises ``ValueError`` with a one-line reason when the name does not fit.
    """
    match = NAME_RE.fullmatch(filename)
    if match is None:
        if not filename.lower().endswith(".png"):
            raise ValueError(f"not a PNG file name (expected {_NAME_HINT})")
        parts = filename[:-4].split("-")
        if len(parts) == 3 and all(p.isascii() and p.isdigit() for p in parts):
            # Only the digit can be at fault: the pattern accepts any group/member number.
            raise ValueError("digit outside 0-9")
        raise ValueError(f"name does not match {_NAME_HINT}")
    digit_s, group_s, member_s = match.groups()
    for label, text in (("group", group_s), ("member", member_s)):
        if len(text.lstrip("0")) > _MAX_NUMBER_DIGITS:
            raise ValueError(f"{label} number too large")
    return DigitName(int(digit_s), int(group_s), int(member_s))


def open_png(path: Path, max_pixels: int = 4_000_000) -> Image.Image:
    """Open, size-check and fully decode a PNG file; return the decoded image.

    Raises :class:`ClassImageError` with a one-line reason for an empty file, a file that is
    not a PNG, a decompression bomb (more than ``max_pixels`` pixels, checked before any
    pixel data is decoded) and a truncated or corrupt PNG.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ClassImageError("empty file")
        with path.open("rb") as fh:
            head = fh.read(len(_PNG_SIGNATURE))
    except OSError as err:
        raise ClassImageError(_one_line(f"cannot read file: {err.strerror or err}")) from err
    if head != _PNG_SIGNATURE:
        raise ClassImageError("not a PNG file (bad signature)")
    try:
        # Pillow warns above Image.MAX_IMAGE_PIXELS and raises above twice that; make the
        # warning an error too, locally (the global limit and filters stay untouched).
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=["PNG"]) as im:
                width, height = im.size
                # Checked on the header, BEFORE load(): the pixels are never decompressed.
                if width * height > max_pixels:
                    raise ClassImageError(
                        f"too large: {width}x{height} pixels > limit {max_pixels} "
                        "(possible decompression bomb)"
                    )
                if width == 0 or height == 0:
                    raise ClassImageError(f"corrupt PNG: empty size {width}x{height}")
                im.load()
                # A detached copy: valid after the file is closed, whatever Pillow does there.
                return im.copy()
    except ClassImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ClassImageError(_one_line(f"too large (decompression bomb): {err}")) from err
    except _DECODE_ERRORS as err:
        # Pillow quotes the full path in some messages; the table already names the file.
        detail = (str(err) or type(err).__name__).replace(f"'{path}'", "").replace(str(path), "")
        raise ClassImageError(_one_line(f"corrupt PNG: {detail}")) from err


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of an (H, W, 3) array in [0, 1], the weights PIL's ``convert('L')`` uses."""
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)


def _apply_alpha(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Turn a grey ``colour`` plane plus ``alpha`` (both in [0, 1]) into one ink image.

    Rule, in order:

    1. Fully opaque everywhere: alpha carries nothing, return the colour.
    2. The colour of the visible pixels (alpha > 0.5) is nearly constant (spread
       < ``_FLAT_COLOUR``): the stroke is drawn *only* in the alpha channel (e.g. black or
       white RGB everywhere, opacity = stroke), so alpha itself is the ink image. Compositing
       onto black would erase black-RGB strokes, onto white white-RGB ones.
    3. Otherwise the colour carries the drawing and transparent pixels are "nothing drawn",
       i.e. paper. If most of the image is visible, the visible part includes the paper
       (an opaque sheet with some transparent margin): transparent pixels take the paper's
       colour, the median visible colour. If little is visible, it is ink on a transparent
       sheet: composite onto the backdrop that contrasts with the ink — black for light ink,
       white for dark ink.

    No inversion happens here; polarity is decided later by :func:`preprocess_mnist`.
    """
    if float(alpha.min()) >= _OPAQUE:
        return colour
    visible = alpha > 0.5
    if not visible.any():
        # Nothing is more than half visible: the faint opacity pattern is all there is.
        return alpha
    shown = colour[visible]
    if float(shown.max() - shown.min()) < _FLAT_COLOUR:
        return alpha
    if float(visible.mean()) >= 0.5:
        paper = float(np.median(shown))
    else:
        paper = 0.0 if float(np.average(colour, weights=alpha)) >= 0.5 else 1.0
    return (colour * alpha + paper * (1.0 - alpha)).astype(np.float32)


def pil_to_gray(im: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any PNG mode to float32 (H, W) grey in [0, 1].

    Luminance as PIL's ``L`` (ITU-R 601); 16-bit samples scaled by 1/65535; alpha (including
    palette/colour-key transparency) resolved by :func:`_apply_alpha`. No inversion.
    """
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES:
        # 16-bit grey ("I;16*" in current Pillow, "I" in older ones). A tRNS colour key on a
        # 16-bit file is ignored: it is vanishingly rare and has no 16-bit alpha mode in PIL.
        arr = np.asarray(im).astype(np.float64) / _UINT16_MAX
        return np.clip(arr, 0.0, 1.0).astype(np.float32)
    if mode == "F":
        return np.clip(np.nan_to_num(np.asarray(im, dtype=np.float32)), 0.0, 1.0)
    if mode in _ALPHA_MODES or "transparency" in im.info:
        # convert("RGBA") un-premultiplies La/RGBa and turns palette or colour-key tRNS
        # transparency into a real alpha channel.
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        return _apply_alpha(_luminance(rgba[..., :3]), rgba[..., 3])
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    # RGB, P without transparency, and anything exotic (CMYK, YCbCr, ...) go through RGB.
    return _luminance(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)


def load_grayscale(path: Path, max_pixels: int = 4_000_000) -> np.ndarray:
    """Read a PNG as float32 (H, W) grey in [0, 1], whatever its mode; ink polarity as stored.

    Raises :class:`ClassImageError` (one-line reason) for a file that cannot be used.
    """
    im = open_png(path, max_pixels=max_pixels)
    try:
        return pil_to_gray(im)
    except (ValueError, OSError, TypeError) as err:
        raise ClassImageError(_one_line(f"unsupported image mode {im.mode}: {err}")) from err


def preprocess_seed(im: Image.Image | np.ndarray) -> np.ndarray:
    """The reference report's preprocessing: ``convert('L')`` then a plain 28×28 resize.

    Takes the decoded PIL image (what :func:`open_png` returns). For 8-bit modes this is
    literally ``np.array(im.convert("L").resize((28, 28)))`` — Pillow's default resampling,
    and ``convert('L')`` ignoring alpha, exactly as the report did. 16-bit grey is first
    scaled to 8 bits (/257). A float array in [0, 1] (e.g. from :func:`load_grayscale`) is
    accepted too and rounded to 8 bits first. Returns (28, 28) uint8; no inversion, no centring.
    """
    if isinstance(im, np.ndarray):
        arr = np.clip(np.nan_to_num(np.asarray(im, dtype=np.float64)), 0.0, 1.0)
        if arr.ndim != 2 or arr.size == 0:
            raise ClassImageError(f"expected a non-empty 2-D grey image, got shape {arr.shape}")
        im = Image.fromarray(np.round(arr * 255.0).astype(np.uint8))
    elif im.mode in _SIXTEEN_BIT_MODES:
        scaled = np.round(np.asarray(im).astype(np.float64) / 257.0)
        im = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8))
    return np.array(im.convert("L").resize((MNIST_SIZE, MNIST_SIZE)), dtype=np.uint8)


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
    centre = size // 2  # index 14 of 0..27, as in the MNIST description
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
       ``ClassImageError("blank: no ink")``.
    4. Stretch so the ink's robust peak (99th percentile) is 1; faint but legible strokes
       come out bright.
    5. Crop to the ink's bounding box (pixels above 0.1), scale it to fit 20×20 keeping the
       aspect ratio (anti-aliased), and place it in a black 28×28 field with the ink's centre
       of mass at the centre. The peak is renormalised to 255 (MNIST digits reach full ink).
    """
    arr = np.asarray(gray, dtype=np.float32)
    if arr.ndim != 2 or arr.size == 0:
        raise ClassImageError(f"expected a non-empty 2-D grey image, got shape {arr.shape}")
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
        raise ClassImageError("blank: no ink")
    # Below the detection threshold ink cannot be told from paper noise: make it exact 0,
    # like MNIST's background, so the stretch does not amplify the noise.
    ink[~above] = 0.0
    peak = float(np.percentile(ink[above], _PEAK_PERCENTILE))
    ink = np.clip(ink / peak, 0.0, 1.0)

    rows = np.flatnonzero((ink > _BBOX_LEVEL).any(axis=1))
    cols = np.flatnonzero((ink > _BBOX_LEVEL).any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    fitted = _fit_box(crop, MNIST_BOX)
    top = float(fitted.max())
    if top <= 0.0:  # cannot happen for a non-empty crop, but never divide by zero
        raise ClassImageError("blank: no ink")
    # A thin pen shrunk from a big image greys out; MNIST digits all reach full intensity.
    fitted = fitted / top
    canvas = _centre_by_mass(fitted, MNIST_SIZE)
    return np.round(canvas * 255.0).astype(np.uint8)


def quality_reason(img28: np.ndarray, cfg: FilterConfig) -> str | None:
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


def load_image(
    path: Path, preprocess: Literal["mnist", "seed"] = "mnist", max_pixels: int = 4_000_000
) -> np.ndarray:
    """One PNG file (any name) -> 28×28 ``uint8`` with the chosen recipe; ClassImageError if bad."""
    # is_file() follows symlinks and is False for FIFOs, sockets and devices, which could
    # block or be endless; a broken symlink lands here too.
    if not path.is_file():
        raise ClassImageError("is a directory" if path.is_dir() else "not a regular file")
    im = open_png(path, max_pixels=max_pixels)
    if preprocess == "seed":
        return preprocess_seed(im)
    try:
        gray = pil_to_gray(im)
    except (ValueError, OSError, TypeError) as err:
        raise ClassImageError(_one_line(f"unsupported image mode {im.mode}: {err}")) from err
    return preprocess_mnist(gray)


def _load_entry(
    entry: Path,
    preprocess: Literal["mnist", "seed"],
    filter_cfg: FilterConfig,
    max_pixels: int,
) -> tuple[DigitName, np.ndarray]:
    """Turn one folder entry into (name, 28×28 image) or raise ClassImageError."""
    if entry.is_dir():
        raise ClassImageError("is a directory")
    try:
        name = parse_name(entry.name)
    except ValueError as err:
        raise ClassImageError(str(err)) from err
    img = load_image(entry, preprocess, max_pixels)
    reason = quality_reason(img, filter_cfg)
    if reason is not None:
        raise ClassImageError(reason)
    return name, img


def load_folder(
    folder: Path,
    preprocess: Literal["mnist", "seed"] = "mnist",
    filter_cfg: FilterConfig | None = None,
    *,
    max_pixels: int = 4_000_000,
) -> ClassDigits:
    """Load every ``<digit>-<group>-<member>.png`` in ``folder`` (not recursive).

    Entries are visited sorted by name; every entry that is not used (other files, dotfiles,
    subfolders, bad or blank PNGs, filtered images, a second file with the same digit, group
    and member) is recorded in ``rejected`` with a one-line reason, never raised.
    ``filter_cfg=None`` means ``FilterConfig()`` (filter on, report thresholds).

    Raises :class:`ClassFolderError` (one-line message) when the folder is missing or not a
    directory, or when no image is usable.
    """
    if preprocess not in ("mnist", "seed"):
        raise ValueError(f"preprocess must be 'mnist' or 'seed', got {preprocess!r}")
    cfg = FilterConfig() if filter_cfg is None else filter_cfg
    folder = Path(folder)
    if not folder.exists():
        raise ClassFolderError(f"class digit folder not found: {folder}")
    if not folder.is_dir():
        raise ClassFolderError(f"class digit folder is not a directory: {folder}")
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as err:
        raise ClassFolderError(
            _one_line(f"cannot list class digit folder {folder}: {err.strerror or err}")
        ) from err

    images: list[np.ndarray] = []
    names: list[DigitName] = []
    files: list[str] = []
    rejected: list[tuple[str, str]] = []
    seen: dict[DigitName, str] = {}
    for entry in entries:
        try:
            name, img = _load_entry(entry, preprocess, cfg, max_pixels)
        except ClassImageError as err:
            rejected.append((entry.name, _one_line(str(err))))
            continue
        except Exception as err:
            # Last resort: user uploads must never stop the pipeline; log the traceback.
            logger.warning("unexpected error reading %s", entry, exc_info=True)
            rejected.append((entry.name, _one_line(f"unreadable: {type(err).__name__}: {err}")))
            continue
        if name in seen:
            # e.g. 3-1-1.png and 3-01-1.PNG: one author's digit must not count twice.
            rejected.append((entry.name, f"duplicate of {seen[name]} (same digit-group-member)"))
            continue
        seen[name] = entry.name
        images.append(img)
        names.append(name)
        files.append(entry.name)

    for file, reason in rejected:
        logger.debug("rejected %s: %s", file, reason)
    if not images:
        if not entries:
            detail = "folder is empty"
        else:
            file, reason = rejected[0]
            detail = f"{len(rejected)} entries rejected, e.g. {file}: {reason}; see rejected list"
        raise ClassFolderError(
            _one_line(f"no usable class digit images in {folder} ({detail})", limit=400),
            rejected=rejected,
        )
    if rejected:
        tally = Counter(reason.split(":")[0] for _, reason in rejected)
        logger.info(
            "loaded %d class digits from %s (%s mode); rejected %d: %s",
            len(images),
            folder,
            preprocess,
            len(rejected),
            ", ".join(f"{k} x{v}" for k, v in tally.most_common()),
        )
    else:
        logger.info("loaded %d class digits from %s (%s mode)", len(images), folder, preprocess)
    return ClassDigits(
        images=np.stack(images).astype(np.uint8),
        digits=np.array([n.digit for n in names], dtype=np.int64),
        groups=np.array([n.group for n in names], dtype=np.int64),
        members=np.array([n.member for n in names], dtype=np.int64),
        files=files,
        rejected=rejected,
    )
