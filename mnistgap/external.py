"""Independent real-handwriting digit sets, for evaluation only: get the files, read them.

A set is named in ``params.yaml`` (``external``) by the torchvision dataset that distributes
it; each reader here knows that set's files, their checksums and formats. Acquisition, like
MNIST's: valid files already in the set's folder (checksums verified), else torchvision's own
downloader, else one line saying what to put where. Reading returns grey images in [0, 1] with
the ink bright, which :func:`to_mnist` turns into 28x28 ``uint8`` digits with exactly the
class digits' recipe (:func:`mnistgap.recipe.preprocess_mnist`). Training never sees them.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistgap.params import Preprocess
from mnistgap.recipe import ImageError, preprocess_mnist, preprocess_study

log = logging.getLogger(__name__)


class ExternalDataError(RuntimeError):
    """A set cannot be acquired or read; the message is one line saying what to do."""


@dataclass(frozen=True)
class SourceFile:
    """One accepted file of a set: its name, MD5, and the parser of its format."""

    name: str
    md5: str
    parse: Callable[[Path], tuple[np.ndarray, np.ndarray]]
    format: str  # said in logs and metrics: which of the accepted files was read


@dataclass(frozen=True)
class DigitSet:
    """A set's accepted files (in order of preference), its downloader and its story."""

    name: str
    files: tuple[SourceFile, ...]
    download: Callable[[Path], None]
    size: int  # digits in the split evaluated
    writers: str  # who wrote them, as far as published
    pad: int  # background pixels added around each image before the recipe (see to_mnist)
    title: str  # as the report names it
    published: tuple[tuple[str, str], ...] = ()  # (what, accuracy) reference points


# --------------------------------------------------------------------------- USPS
def _usps_esl(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ESL text format (``zip.test.gz``): per line a label 0-9, then 256 values in
    [-1, 1] row by row, -1 the background."""
    with gzip.open(path, "rt", encoding="ascii") as fh:
        rows = [line.split() for line in fh if line.strip()]
    return _usps_rows([float(r[0]) for r in rows], [r[1:] for r in rows], offset=0)


def _usps_libsvm(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """LIBSVM's format (``usps.t.bz2``, what torchvision downloads): per line a label 1-10,
    then ``index:value`` pairs 1..256 with values in [-1, 1]."""
    with bz2.open(path, "rt", encoding="ascii") as fh:
        rows = [line.split() for line in fh if line.strip()]
    pixels = []
    for r in rows:
        line = np.full(256, -1.0)
        for pair in r[1:]:
            index, value = pair.split(":")
            line[int(index) - 1] = float(value)
        pixels.append(line)
    return _usps_rows([float(r[0]) for r in rows], pixels, offset=1)


def _usps_rows(labels: list[float], pixels: list, offset: int) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(pixels, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != 256 or len(values) != len(labels):
        raise ValueError(f"expected 256 values per digit, got shape {values.shape}")
    y = np.asarray(labels, dtype=np.float64) - offset
    if not np.all((y >= 0) & (y <= 9) & (y == np.round(y))):
        raise ValueError("labels outside 0-9")
    # [-1, 1] with -1 the background -> [0, 1] with the ink bright, like MNIST.
    images = np.clip((values.reshape(-1, 16, 16) + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)
    return images, y.astype(np.int64)


def _download_usps(folder: Path) -> None:
    from torchvision.datasets import USPS

    USPS(str(folder), train=False, download=True)


USPS = DigitSet(
    name="usps",
    files=(
        SourceFile("zip.test.gz", "f9350e940232b89f1dc8f8eacac88625", _usps_esl, "ESL text"),
        SourceFile("usps.t.bz2", "8ea070ee2aca1ac39742fdd1ef5ed118", _usps_libsvm, "LIBSVM"),
    ),
    download=_download_usps,
    size=2007,
    writers="not published (US Postal Service envelopes)",
    title="USPS test",
    published=(
        ("MNIST-trained, no adaptation (ADDA paper's source-only baseline)", "75.2% ± 1.6"),
        ("MNIST-trained with domain adaptation: ADDA / CyCADA", "89.4% / 95.6%"),
        ("trained on USPS itself", "96.5%"),
        # zip.info.txt, beside the ESL copy: "The test set is notoriously 'difficult', and a
        # 2.5% error rate is excellent."
        ("an error rate the set's own notes call excellent (2.5%)", "97.5%"),
        # Chaaban & Scheessele, "Human Performance on the USPS Database" (Indiana University
        # South Bend, 2007): "the human error rate in recognition of individual handwritten
        # digits is 2.37%".
        ("human readers (Chaaban & Scheessele 2007: 2.37% error)", "97.6%"),
    ),
    # The 16x16 digits are size-normalised to touch the frame: a 2-pixel margin of
    # background lets the recipe see the paper at the border, as it does in a class upload.
    pad=2,
)


# --------------------------------------------------------------------------- Semeion
def _semeion(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """UCI's ``semeion.data``: per line 256 values 0/1 (16x16, row by row, ink 1), then the
    label one-hot in 10 values."""
    rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if rows.shape[1] != 266 or not np.all(rows[:, 256:].sum(axis=1) == 1):
        raise ValueError(f"expected 256 pixels and a one-hot label per line, got {rows.shape}")
    images = np.clip(rows[:, :256], 0.0, 1.0).reshape(-1, 16, 16).astype(np.float32)
    return images, rows[:, 256:].argmax(axis=1).astype(np.int64)


def _download_semeion(folder: Path) -> None:
    from torchvision.datasets import SEMEION

    SEMEION(str(folder), download=True)


SEMEION = DigitSet(
    name="semeion",
    files=(SourceFile("semeion.data", "cb545d371d2ce14ec121470795a77432", _semeion, "UCI"),),
    download=_download_semeion,
    size=1593,
    writers="about 80 (Semeion Research Center, Rome; each wrote every digit twice)",
    pad=2,
    title="Semeion",
)

#: The sets params.yaml's ``external`` may name (mnistgap.params.ExternalSetName lists them).
SETS: dict[str, DigitSet] = {USPS.name: USPS, SEMEION.name: SEMEION}


# --------------------------------------------------------------------------- acquisition
def md5sum(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _valid_file(folder: Path, digit_set: DigitSet) -> SourceFile | None:
    """The first accepted file present in ``folder`` with the right checksum."""
    for f in digit_set.files:
        path = folder / f.name
        if path.is_file():
            if md5sum(path) == f.md5:
                return f
            log.warning("%s: MD5 mismatch, ignored", path)
    return None


def _hint(folder: Path, digit_set: DigitSet) -> str:
    accepted = " or ".join(f"{f.name} (md5 {f.md5})" for f in digit_set.files)
    return f"put {accepted} in {folder}"


def acquire(
    folder: Path, digit_set: DigitSet, cache: Path | None = None, use_network: bool = True
) -> SourceFile:
    """Make sure ``folder`` holds a valid file of ``digit_set``; return which one.

    In order: a valid file already there; a valid copy in ``cache`` (a folder outside the
    repository, kept between runs, so that ``dvc exp run --temp`` and queued experiments
    work offline); else torchvision's downloader (into a temporary folder beside, so nothing
    half-downloaded is left in ``folder``), whose file is then also copied to ``cache``.
    Raises :class:`ExternalDataError` with one line saying what to put where.
    """
    folder.mkdir(parents=True, exist_ok=True)
    found = _valid_file(folder, digit_set)
    if found is None and cache is not None and cache.is_dir():
        cached = _valid_file(cache, digit_set)
        if cached is not None:
            shutil.copyfile(cache / cached.name, folder / cached.name)
            found = cached
    if found is not None:
        _keep(folder / found.name, cache)
        return found
    if not use_network:
        raise ExternalDataError(f"{digit_set.name}: no valid file; {_hint(folder, digit_set)}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{digit_set.name}-download-", dir=folder.parent))
    try:
        digit_set.download(tmp)
        got = _valid_file(tmp, digit_set)
        if got is None:
            raise ExternalDataError("the download gave no file with a known checksum")
        shutil.move(str(tmp / got.name), folder / got.name)
        _keep(folder / got.name, cache)
        return got
    except ExternalDataError as err:
        raise ExternalDataError(f"{digit_set.name}: {err}; {_hint(folder, digit_set)}") from None
    except Exception as err:  # torchvision raises URLError, OSError, RuntimeError, ...
        reason = " ".join(str(err).split())[:160] or type(err).__name__
        raise ExternalDataError(
            f"{digit_set.name}: not in {folder} and torchvision's download failed ({reason}); "
            f"{_hint(folder, digit_set)}"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _keep(path: Path, cache: Path | None) -> None:
    """A copy of a verified file in ``cache`` (best effort: a read-only cache is no error)."""
    if cache is None or (cache / path.name).is_file():
        return
    try:
        cache.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, cache / path.name)
    except OSError as err:
        log.info("not cached in %s: %s", cache, err.strerror or err)


def read(folder: Path, digit_set: DigitSet) -> tuple[np.ndarray, np.ndarray, SourceFile]:
    """Grey images (N, H, W) float32 in [0, 1] (ink bright), labels (N,) int64, and the
    file read. Raises :class:`ExternalDataError` for a missing or malformed file."""
    found = _valid_file(folder, digit_set)
    if found is None:
        raise ExternalDataError(f"{digit_set.name}: no valid file; {_hint(folder, digit_set)}")
    try:
        images, labels = found.parse(folder / found.name)
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as err:
        raise ExternalDataError(
            f"{digit_set.name}: cannot read {folder / found.name}: {' '.join(str(err).split())}"
        ) from None
    if len(images) != digit_set.size:
        raise ExternalDataError(
            f"{digit_set.name}: {folder / found.name} holds {len(images)} digits, "
            f"expected {digit_set.size}"
        )
    return images, labels, found


def to_mnist(
    images: np.ndarray, pad: int, preprocess: Preprocess = "mnist"
) -> tuple[np.ndarray, list[int]]:
    """Each grey image (ink bright) through the class digits' recipe: ``mnist`` after ``pad``
    pixels of background around it (the recipe reads the paper at the border), ``seed`` as
    it is (the study's plain resize). Returns (N', 28, 28) uint8 and the positions of the
    images the recipe refused (blank), which are left out."""
    out, refused = [], []
    for i, img in enumerate(images):
        try:
            if preprocess == "study":
                out.append(preprocess_study(img))
            else:
                out.append(preprocess_mnist(np.pad(img, pad)))
        except ImageError:
            refused.append(i)
    stacked = np.stack(out) if out else np.zeros((0, 28, 28), np.uint8)
    return stacked, refused
