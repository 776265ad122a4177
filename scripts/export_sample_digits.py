"""Export the bundled sample of "class digits" from scikit-learn's copy of UCI optdigits.

The project ships ``data/class_digits/*.png`` so the pipeline runs anywhere without
anyone's private handwriting. This script regenerates that folder from
``sklearn.datasets.load_digits()`` (1,797 digits, 8x8, values 0..16; a copy of the
test set ``optdigits.tes`` of the UCI "Optical Recognition of Handwritten Digits" data,
CC BY 4.0, doi:10.24432/C50P49).

For each digit: 8x8 values / 16 -> float32 'F' image -> PIL bicubic resize to 28x28 ->
clip to [0, 1] -> x255, round -> 8-bit 'L' PNG (light strokes on black, digit filling
the whole frame, no margin). Files are named ``<digit>-<group>-<member>.png``; the real
writers are not published, so ``group`` is one of 13 contiguous blocks of the file order
(``np.array_split``), not a writer ID. ``member`` numbers each digit's occurrences within a
group, in file order, from 1. A ``MANIFEST.csv`` maps every file to its source row.

The output is byte-for-byte reproducible (no PNG metadata, fixed order). scikit-learn is
only needed to re-export, not to run the pipeline: ``pip install -e ".[sample]"``.

Usage::

    python scripts/export_sample_digits.py [--out data/class_digits]
"""

from __future__ import annotations

import argparse
import io
import logging
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

try:
    from mnistgap.atomic import write_bytes, write_csv
except ImportError:  # pragma: no cover - only when the package is not pip-installed
    # `python scripts/x.py` puts scripts/ (not the repo root) on sys.path, so fall back to
    # the checkout this script lives in.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mnistgap.atomic import write_bytes, write_csv

logger = logging.getLogger(__name__)

N_GROUPS = 13  # the UCI test set was written by 13 people (see load_digits().DESCR)
SIZE = 28  # MNIST frame size
SOURCE_MAX = 16.0  # optdigits pixels count "on" pixels in a 4x4 block: 0..16
# Only files this script could have written are removed as stale; anything else stays.
NAME_RE = re.compile(r"^[0-9]-[0-9]+-[0-9]+\.png$")
MANIFEST_HEADER = ("file", "digit", "group", "member", "source_index")


def to_png_bytes(image8: np.ndarray, size: int = SIZE) -> bytes:
    """Turn one 8x8 optdigits image (0..16) into the bytes of a ``size``x``size`` 'L' PNG."""
    scaled = np.asarray(image8, dtype=np.float32) / SOURCE_MAX
    # float32 -> mode 'F', uint8 -> mode 'L' (fromarray's `mode=` argument is deprecated).
    big = Image.fromarray(scaled).resize((size, size), Image.Resampling.BICUBIC)
    # Bicubic overshoots outside [0, 1] near edges; clip before quantising.
    pixels = np.rint(np.clip(np.asarray(big), 0.0, 1.0) * 255.0).astype(np.uint8)
    buf = io.BytesIO()
    # No pnginfo is passed, so PIL writes no text chunks or timestamps: reproducible bytes.
    Image.fromarray(pixels).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def assign_names(targets: np.ndarray, n_groups: int = N_GROUPS) -> list[tuple[str, int, int, int]]:
    """Return ``(file, digit, group, member)`` for each index, in file order.

    Groups are contiguous, near-equal blocks of the file order (1-based); members count each
    digit's occurrences within its group (1-based), so every name is unique.
    """
    names: list[tuple[str, int, int, int]] = []
    blocks = np.array_split(np.arange(len(targets)), n_groups)
    for group, block in enumerate(blocks, start=1):
        seen: Counter[int] = Counter()
        for idx in block:
            digit = int(targets[idx])
            seen[digit] += 1
            member = seen[digit]
            names.append((f"{digit}-{group}-{member}.png", digit, group, member))
    return names


def remove_stale(out_dir: Path) -> int:
    """Delete PNGs in ``out_dir`` that match the naming pattern; return how many."""
    removed = 0
    for path in sorted(out_dir.glob("*.png")):
        if NAME_RE.match(path.name):
            path.unlink()
            removed += 1
    return removed


def export(out_dir: Path) -> int:
    """Write every digit as a PNG plus ``MANIFEST.csv`` into ``out_dir``; return the count."""
    from sklearn.datasets import load_digits  # optional dependency: the [sample] extra

    digits = load_digits()
    images = np.asarray(digits.images)
    targets = np.asarray(digits.target)
    if images.shape[1:] != (8, 8) or images.min() < 0 or images.max() > SOURCE_MAX:
        raise ValueError(f"unexpected load_digits() images: {images.shape}, {images.max()}")

    out_dir.mkdir(parents=True, exist_ok=True)
    removed = remove_stale(out_dir)
    if removed:
        logger.info("Removed %d stale PNGs from %s", removed, out_dir)

    rows = []
    for source_index, (name, digit, group, member) in enumerate(assign_names(targets)):
        write_bytes(out_dir / name, to_png_bytes(images[source_index]))
        rows.append((name, digit, group, member, source_index))
    write_csv(out_dir / "MANIFEST.csv", MANIFEST_HEADER, rows)

    per_group = Counter(row[2] for row in rows)
    logger.info(
        "Wrote %d PNGs + MANIFEST.csv to %s; per group: %s",
        len(rows),
        out_dir,
        dict(sorted(per_group.items())),
    )
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/class_digits"),
        help="output folder (default: data/class_digits)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    export(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
