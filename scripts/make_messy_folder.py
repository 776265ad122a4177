"""Build a messy class-digit folder: good PNGs, every kind of bad entry, unusual valid files.

It demonstrates (and tests/test_robustness.py checks) that ``stages.prepare_class`` survives
whatever users upload: every bad entry ends up in ``rejected.csv`` with a reason, every
valid file is read, and the run completes without a traceback. The folder holds

* ``--good`` (default 40) PNGs copied unchanged, names kept, from the bundled sample
  (``data/class_digits``), spread evenly over its sorted file list (all digits occur);
* one entry of each bad kind, named so that the reason is obvious (groups 90 and up are
  not used by the sample, so no name collides with a copied file)::

    notes.txt      a text file                         7-1-99.pdf    JPEG bytes, not an image name
    x-1-1.png      non-numeric digit
    3-a-1.png      non-numeric group                   12-1-1.png    digit outside 0-9
    4-90-1.png     empty file                          5-90-1.png    first half of a PNG
    6-90-1.png     random bytes                        8-90-1.png    decompression bomb
    9-90-1.png/    a folder named like an image        0-90-1.png    all-black image
    1-90-1.png     constant grey image

  The bomb is a genuine, valid 20000x20000 1-bit PNG (400 Mpx) of ~50 KB: its zlib
  stream inflates to 50 MB, and decoded as 8-bit grey it would take 400 MB;

* unusual but valid files, each made from the sample's ``<d>-1-1.png`` of its digit ``d``
  (so its label is right), which must be accepted::

    2-91-1.png     16-bit grayscale
    3-91-1.png     RGBA with black RGB everywhere: strokes only in the alpha channel
    4-91-1.png     dark ink on white paper (RGB)
    5-91-1.png     280x280 pixels
    6-91-1.png     palette image, background index transparent, dark ink
    7-91-1.png     JPEG bytes with a .png name (read by content)
    8-91-1.jpg     JPEG, pixels stored rotated with an EXIF Orientation tag (6)

The output is deterministic (fixed choices, seeded random bytes, no PNG metadata).
``OUT`` must be missing or empty.

Usage::

    python scripts/make_messy_folder.py OUT [--good N] [--sample data/class_digits]
"""

from __future__ import annotations

import argparse
import io
import logging
import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

try:
    from mnistgap.atomic import write_bytes
except ImportError:  # pragma: no cover - only when the package is not pip-installed
    # `python scripts/x.py` puts scripts/ (not the repo root) on sys.path.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mnistgap.atomic import write_bytes

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "class_digits"
SAMPLE_NAME_RE = re.compile(r"^[0-9]-[0-9]+-[0-9]+\.png$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BOMB_SIDE = 20_000
SEED = 1234

#: Each bad entry and the start of the reason prepare_class gives for it.
BAD_ENTRIES: dict[str, str] = {
    "notes.txt": "not an image file name",
    "7-1-99.pdf": "not an image file name",
    "x-1-1.png": "name does not match",
    "3-a-1.png": "name does not match",
    "12-1-1.png": "digit outside 0-9",
    "4-90-1.png": "empty file",
    "5-90-1.png": "corrupt PNG",
    "6-90-1.png": "not an image file (unknown format)",
    "8-90-1.png": "too large",
    "9-90-1.png": "is a directory",
    "0-90-1.png": "blank: no ink",
    "1-90-1.png": "blank: no ink",
}

#: Each unusual but valid file and the sample file it was made from.
UNUSUAL_ENTRIES: dict[str, str] = {
    "2-91-1.png": "2-1-1.png",  # 16-bit grayscale
    "3-91-1.png": "3-1-1.png",  # strokes only in the alpha channel
    "4-91-1.png": "4-1-1.png",  # dark ink on white paper
    "5-91-1.png": "5-1-1.png",  # 280x280
    "6-91-1.png": "6-1-1.png",  # palette with transparency
    "7-91-1.png": "7-1-1.png",  # JPEG bytes, .png name
    "8-91-1.jpg": "8-1-1.png",  # EXIF-rotated JPEG
}


def png_bytes(image: Image.Image, **save_args: object) -> bytes:
    """Encode ``image`` as PNG (no text chunks or timestamps: reproducible bytes)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", **save_args)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb(side: int = BOMB_SIDE) -> bytes:
    """A valid ``side``x``side`` 1-bit all-black grey PNG; tiny on disk, huge when decoded."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, grey, no interlace
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte 0 + packed pixels
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _ink(sample: Path, name: str, size: int, margin: int) -> np.ndarray:
    """The sample digit ``name`` (light ink on black) upscaled to ``size``, with a black margin."""
    with Image.open(sample / name) as im:
        big = im.convert("L").resize((size, size), Image.Resampling.BICUBIC)
    out = np.zeros((size + 2 * margin, size + 2 * margin), dtype=np.uint8)
    out[margin : margin + size, margin : margin + size] = np.asarray(big)
    return out


def unusual_files(sample: Path) -> dict[str, bytes]:
    """The unusual-but-valid PNGs of :data:`UNUSUAL_ENTRIES`, name -> bytes."""
    src = UNUSUAL_ENTRIES
    files: dict[str, bytes] = {}

    ink = _ink(sample, src["2-91-1.png"], 56, 8)
    sixteen = ink.astype(np.uint16) * 257  # full 16-bit range, not 8 bits in a 16-bit box
    files["2-91-1.png"] = png_bytes(Image.fromarray(sixteen))  # mode I;16

    ink = _ink(sample, src["3-91-1.png"], 56, 8)
    rgba = np.zeros((*ink.shape, 4), dtype=np.uint8)
    rgba[..., 3] = ink  # RGB stays black: composited onto black the digit would vanish
    files["3-91-1.png"] = png_bytes(Image.fromarray(rgba))

    ink = _ink(sample, src["4-91-1.png"], 56, 8)
    paper = np.repeat((255 - ink)[..., None], 3, axis=2)
    files["4-91-1.png"] = png_bytes(Image.fromarray(paper))

    ink = _ink(sample, src["5-91-1.png"], 224, 28)  # 224 + 2 * 28 = 280
    files["5-91-1.png"] = png_bytes(Image.fromarray(ink))

    ink = _ink(sample, src["6-91-1.png"], 56, 8)
    # Index 0 is transparent white paper; indices 1..8 are opaque inks, darker for stronger
    # strokes. Faint anti-aliasing (< 64) becomes paper, as a two-colour drawing tool would.
    index = np.where(ink < 64, 0, 1 + (ink.astype(np.int32) - 64) * 8 // 192).astype(np.uint8)
    palette = [255, 255, 255]
    for level in range(1, 9):
        grey = 200 - 25 * level
        palette += [grey // 3, grey // 3, grey]  # dark blue ink
    height, width = index.shape
    pal = Image.frombytes("P", (width, height), index.tobytes())
    pal.putpalette(palette)
    files["6-91-1.png"] = png_bytes(pal, transparency=0)

    with Image.open(sample / src["7-91-1.png"]) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="JPEG", quality=90)
    files["7-91-1.png"] = buf.getvalue()
    with Image.open(sample / src["8-91-1.jpg"]) as im:
        # Stored turned a quarter counter-clockwise; Orientation 6 says "turn it back".
        turned = im.convert("RGB").rotate(90, expand=True)
        exif = Image.Exif()
        exif[0x0112] = 6
        buf = io.BytesIO()
        turned.save(buf, format="JPEG", quality=90, exif=exif.tobytes())
    files["8-91-1.jpg"] = buf.getvalue()
    return files


def bad_files(sample: Path, good_png: bytes) -> dict[str, bytes | None]:
    """The bad entries of :data:`BAD_ENTRIES`, name -> bytes (``None``: a folder)."""
    rng = np.random.default_rng(SEED)
    with Image.open(io.BytesIO(good_png)) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="JPEG", quality=90)
        jpeg = buf.getvalue()
    files: dict[str, bytes | None] = {
        "notes.txt": b"These are my digits, see the PNG files.\n",
        "7-1-99.pdf": jpeg,
        "x-1-1.png": good_png,
        "3-a-1.png": good_png,
        "12-1-1.png": good_png,
        "4-90-1.png": b"",
        "5-90-1.png": good_png[: len(good_png) // 2],
        "6-90-1.png": rng.bytes(2048),
        "8-90-1.png": decompression_bomb(),
        "9-90-1.png": None,
        "0-90-1.png": png_bytes(Image.new("L", (28, 28), 0)),
        "1-90-1.png": png_bytes(Image.new("L", (28, 28), 128)),
    }
    return files


def good_names(sample: Path, n: int) -> list[str]:
    """``n`` sample PNG names spread evenly over the sorted list (every digit occurs)."""
    names = sorted(p.name for p in sample.iterdir() if SAMPLE_NAME_RE.match(p.name))
    if n > len(names):
        raise ValueError(f"--good {n}: the sample {sample} has only {len(names)} PNGs")
    if n == 0:
        return []
    picks = np.linspace(0, len(names) - 1, n).round().astype(int)
    return [names[i] for i in picks]


def make_messy_folder(out: Path, n_good: int = 40, sample: Path = SAMPLE) -> None:
    """Write the messy folder described in the module docstring to ``out`` (missing or empty)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder")
    if not sample.is_dir():
        raise FileNotFoundError(f"sample folder not found: {sample}")
    out.mkdir(parents=True, exist_ok=True)
    for name in good_names(sample, n_good):
        write_bytes(out / name, (sample / name).read_bytes())
    good_png = (sample / UNUSUAL_ENTRIES["5-91-1.png"]).read_bytes()
    for name, data in bad_files(sample, good_png).items():
        if data is None:
            (out / name).mkdir()
        else:
            write_bytes(out / name, data)
    for name, data in unusual_files(sample).items():
        write_bytes(out / name, data)
    logger.info(
        "wrote %d good, %d bad and %d unusual-but-valid entries to %s",
        n_good,
        len(BAD_ENTRIES),
        len(UNUSUAL_ENTRIES),
        out,
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to create (missing or empty)")
    parser.add_argument("--good", type=int, default=40, help="good sample PNGs to copy (40)")
    parser.add_argument("--sample", type=Path, default=SAMPLE, help="bundled sample folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.good < 0:
        parser.error("--good must be >= 0")
    try:
        make_messy_folder(args.out, args.good, args.sample)
    except (OSError, ValueError) as err:
        parser.exit(1, f"make_messy_folder: error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
