"""Decode an image file (PNG of any mode, JPEG, WebP, BMP, TIFF, GIF, HEIC) into one grey image
in [0, 1], or say in one line why not.

The format is sniffed from the bytes, never taken from the name, and EXIF orientation is applied.

Class uploads come from dozens of people and drawing tools, so every PNG mode occurs (L, LA,
RGB, RGBA with strokes drawn only through the alpha channel, palette with and without
transparency, 16-bit grey, 1-bit), with either polarity and any size. :func:`open_image`
refuses empty, non-image, truncated, corrupt and decompression-bomb files with a
:class:`ImageError`; :func:`pil_to_gray` turns the decoded image into float32 grey, alpha
resolved, ink polarity as stored; :func:`read_digit` then applies the MNIST recipe
(:mod:`mnistgap.recipe`), which decides the polarity.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mnistgap.params import Preprocess
from mnistgap.photo import paper_ink
from mnistgap.recipe import ImageError, preprocess_mnist, preprocess_study

_EXIF_ORIENTATION = 0x0112
# Reasons are shown in tables and logs, one per line; long library messages are cut.
_MAX_REASON_CHARS = 160
#: Decoded pixels above which a file is refused before its pixel data is decompressed.
MAX_PIXELS = 4_000_000
# 16-bit samples are scaled to [0, 1] by the full 16-bit range.
_UINT16_MAX = 65535.0
# Alpha-channel handling (see pil_to_gray): "fully opaque" tolerance and the spread of the
# visible colour below which the colour carries no drawing (the stroke is in alpha alone).
_OPAQUE = 254 / 255
_FLAT_COLOUR = 0.1

SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
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


def one_line(text: str, limit: int = _MAX_REASON_CHARS) -> str:
    """Collapse whitespace (including newlines) and cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


#: Formats read (sniffed from the bytes, never from the name): Pillow's names. HEIF covers
#: HEIC/HEIF through pillow-heif. GIF and multi-frame TIFF/WebP give their first frame.
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "HEIF")
_HEIF_READY = False
# Signatures that name a damaged file's format in its reason (Pillow cannot open it at all).
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(16)
    except OSError:
        return b""


def _register_heif() -> None:
    """Let Pillow open HEIC/HEIF (pillow-heif), once; without the package HEIC is refused."""
    global _HEIF_READY
    if _HEIF_READY:
        return
    _HEIF_READY = True
    try:
        from pillow_heif import register_heif_opener
    except ImportError:  # pragma: no cover - declared dependency
        return
    register_heif_opener()


@dataclass(frozen=True)
class Opened:
    """A decoded upload and how it was read: ``format`` sniffed from the bytes (Pillow's name,
    lower case, e.g. ``png``, ``jpeg``, ``heif``) and ``rotated``: an EXIF orientation was
    applied."""

    image: Image.Image
    format: str
    rotated: bool
    #: Read as a photo of paper (background removed, :mod:`mnistgap.photo`).
    photo: bool = False


def open_image(source: Path | bytes, max_pixels: int = MAX_PIXELS) -> Opened:
    """Open, size-check, fully decode and EXIF-orient an image file (a path, or its bytes).

    The format is sniffed from the content (a JPEG named ``.png`` is read as JPEG). Raises
    :class:`ImageError` with a one-line reason for an empty file, a file that is not an image
    in one of :data:`FORMATS`, a decompression bomb (more than ``max_pixels`` pixels, checked
    on the header before any pixel data is decoded, for every format) and a truncated or
    corrupt file.
    """
    _register_heif()
    if isinstance(source, bytes | bytearray):
        data: bytes | None = bytes(source)
        path = Path("<upload>")
        if not data:
            raise ImageError("empty file")
    else:
        data, path = None, Path(source)
        try:
            if path.stat().st_size == 0:
                raise ImageError("empty file")
        except OSError as err:
            raise ImageError(one_line(f"cannot read file: {err.strerror or err}")) from err
    fmt = "image"
    try:
        # Pillow warns above Image.MAX_IMAGE_PIXELS and raises above twice that; make the
        # warning an error too, locally (the global limit and filters stay untouched).
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                im = Image.open(io.BytesIO(data) if data is not None else path, formats=FORMATS)
            except Image.UnidentifiedImageError as err:
                head = data[:16] if data is not None else _head(path)
                known = next((f for sig, f in _SIGNATURES if head.startswith(sig)), None)
                if known is None:
                    raise ImageError("not an image file (unknown format)") from err
                raise ImageError(f"corrupt {known}: cannot identify image data") from err
            with im:
                fmt = str(im.format or "image").lower()
                width, height = im.size
                # Checked on the header, BEFORE load(): the pixels are never decompressed.
                if width * height > max_pixels:
                    raise ImageError(
                        f"too large: {width}x{height} pixels > limit {max_pixels} "
                        "(possible decompression bomb)"
                    )
                if width == 0 or height == 0:
                    raise ImageError(f"corrupt {fmt.upper()}: empty size {width}x{height}")
                im.load()
                orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
                # A detached copy: valid after the file is closed, whatever Pillow does there.
                out = im.copy()
            if orientation not in (None, 1):
                out = ImageOps.exif_transpose(out)
            return Opened(out, fmt, orientation not in (None, 1))
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(one_line(f"too large (decompression bomb): {err}")) from err
    except _DECODE_ERRORS as err:
        # Pillow quotes the full path in some messages; the table already names the file.
        detail = (str(err) or type(err).__name__).replace(f"'{path}'", "").replace(str(path), "")
        raise ImageError(one_line(f"corrupt {fmt.upper()}: {detail}")) from err


def open_png(source: Path | bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The decoded, EXIF-oriented image of :func:`open_image` (any format, despite the name)."""
    return open_image(source, max_pixels).image


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

    No inversion happens here; polarity is decided later by
    :func:`mnistgap.recipe.preprocess_mnist`.
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
    if mode in SIXTEEN_BIT_MODES:
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


def to_gray(im: Image.Image) -> np.ndarray:
    """:func:`pil_to_gray`, with a mode Pillow cannot convert reported as :class:`ImageError`."""
    try:
        return pil_to_gray(im)
    except (ValueError, OSError, TypeError) as err:
        raise ImageError(one_line(f"unsupported image mode {im.mode}: {err}")) from err


def read_digit(
    source: Path | bytes, preprocess: Preprocess = "mnist", max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """One image (a path of any name, or its bytes) -> 28x28 ``uint8`` with the chosen recipe.

    Raises :class:`mnistgap.recipe.ImageError` with a one-line reason when it cannot be used.
    """
    return read_digit_info(source, preprocess, max_pixels)[0]


def read_digit_info(
    source: Path | bytes, preprocess: Preprocess = "mnist", max_pixels: int = MAX_PIXELS
) -> tuple[np.ndarray, Opened]:
    """:func:`read_digit`, with how the file was read (format, EXIF rotation)."""
    if isinstance(source, Path) and not source.is_file():
        # is_file() follows symlinks and is False for FIFOs, sockets and devices, which could
        # block or be endless; a broken symlink lands here too.
        raise ImageError("is a directory" if source.is_dir() else "not a regular file")
    opened = open_image(source, max_pixels=max_pixels)
    im = opened.image
    if preprocess == "study":
        return preprocess_study(im), opened
    gray = to_gray(im)
    ink = None
    # Photos are opaque colour or grey images; alpha and 16-bit files are drawings.
    if im.mode in ("RGB", "L", "P", "YCbCr", "CMYK") and "transparency" not in im.info:
        ink = paper_ink(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
    if ink is not None:
        opened = replace(opened, photo=True)
        return preprocess_mnist(ink), opened
    return preprocess_mnist(gray), opened
