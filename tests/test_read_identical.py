"""Guard: the 28x28 arrays read from the bundled sample and the development digits stay
bit-identical when the reading code changes (new formats, photo handling, ...).

Only sha256 digests are stored here, never the images. The digest covers every kept file's
name and its uint8 array, in load order; the rejected files are compared by name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mnistgap.class_folder import load_folder
from mnistgap.params import Filter

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "class_digits"
DEV = ROOT.parent / "shared" / "class_digits_dev"

# Recorded with the PNG-only reader (before reading by content), "mnist" recipe, Filter().
EXPECTED = {
    "sample": (1797, 2, "e76e8c232290b1234eaf801c46fa137cd46f4da606a026c2edf2c85002d5e72e"),
    "dev": (190, 1, "ce394eff4af5d9821760a92bf8cc21efa94ea9890a288d6b181ab58b68736ace"),
}


def _digest(folder: Path) -> tuple[int, int, str]:
    digits, rejected = load_folder(folder, "mnist", Filter(), workers=1)
    h = hashlib.sha256()
    for file, img in zip(digits.files, digits.images, strict=True):
        h.update(str(file).encode() + b"\0")
        h.update(img.tobytes())
    return len(digits.files), len(rejected), h.hexdigest()


def test_sample_arrays_unchanged() -> None:
    assert _digest(SAMPLE) == EXPECTED["sample"]


def test_dev_arrays_unchanged() -> None:
    if not DEV.is_dir():
        pytest.skip("development digits (../shared/class_digits_dev) not present")
    assert _digest(DEV) == EXPECTED["dev"]
