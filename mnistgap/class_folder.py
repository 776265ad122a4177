"""Scan a folder of class digits named ``<digit>-<group>-<member>.<ext>`` (any image format).

Loading never raises for a bad *entry*: each one is either turned into a 28x28 ``uint8``
image by :func:`mnistgap.recipe.read_digit` and kept by the quality filter, or recorded in
``rejected`` with a one-line reason (other files, bad names, bad or blank PNGs, filtered
images, a second file with the same digit, group and member). Only a folder that is missing,
not a directory, or holds no usable image at all raises :class:`ClassFolderError`.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistgap.data import ClassSet
from mnistgap.params import Filter, Preprocess, check_preprocess
from mnistgap.png import MAX_PIXELS, one_line, read_digit_info
from mnistgap.recipe import ImageError, quality_reason

logger = logging.getLogger(__name__)

#: File-name pattern ``<digit>-<group>-<member>.png``. ``re.ASCII`` so that ``\d`` means 0-9
#: only (not e.g. Arabic-Indic digits); use ``NAME_RE.fullmatch`` — ``$`` alone would also
#: accept a trailing newline.
NAME_RE = re.compile(
    r"^(\d)-(\d+)-(\d+)\.(png|jpe?g|webp|bmp|tiff?|gif|heic|heif)$", re.IGNORECASE | re.ASCII
)
#: Extensions a class digit's file may have; the content decides the format, not the name.
EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif")

_NAME_HINT = "<digit>-<group>-<member>.<image extension>"
# Group and member numbers end up in int64 arrays; 18 decimal digits always fit.
_MAX_NUMBER_DIGITS = 18


class ClassFolderError(RuntimeError):
    """The folder as a whole cannot be used (missing, not a directory, no usable image)."""

    def __init__(self, message: str, rejected: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        #: ``(file, reason)`` for every entry that was rejected before giving up.
        self.rejected: list[tuple[str, str]] = list(rejected or [])


@dataclass(frozen=True)
class ReadInfo:
    """How one kept file was read: ``format`` sniffed from its bytes (``png``, ``jpeg``, ...),
    ``rotated`` (an EXIF orientation applied), ``photo`` (paper background removed)."""

    file: str
    format: str
    rotated: bool
    photo: bool = False


@dataclass(frozen=True)
class DigitName:
    """The label and author encoded in a file name ``<digit>-<group>-<member>.png``."""

    digit: int
    group: int
    member: int


def parse_name(filename: str) -> DigitName:
    """Parse ``<digit>-<group>-<member>.<ext>`` (an image extension, case-insensitive).

    Raises ``ValueError`` with a one-line reason when the name does not fit.
    """
    match = NAME_RE.fullmatch(filename)
    if match is None:
        stem, dot, ext = filename.rpartition(".")
        if not dot or f".{ext.lower()}" not in EXTENSIONS:
            raise ValueError(f"not an image file name (expected {_NAME_HINT})")
        parts = stem.split("-")
        if len(parts) == 3 and all(p.isascii() and p.isdigit() for p in parts):
            # Only the digit can be at fault: the pattern accepts any group/member number.
            raise ValueError("digit outside 0-9")
        raise ValueError(f"name does not match {_NAME_HINT}")
    digit_s, group_s, member_s = match.groups()[:3]
    for label, text in (("group", group_s), ("member", member_s)):
        if len(text.lstrip("0")) > _MAX_NUMBER_DIGITS:
            raise ValueError(f"{label} number too large")
    return DigitName(int(digit_s), int(group_s), int(member_s))


def folder_digest(folder: Path) -> str:
    """The folder named by its content: ``sha256:`` of every regular file's name and bytes
    (not recursive, in name order). The same wherever the folder lies, so a seed-spread record
    measured on it matches a run on a copy elsewhere; any added, removed, renamed or changed
    file changes it."""
    outer = hashlib.sha256()
    for entry in sorted(Path(folder).iterdir(), key=lambda p: p.name):
        if not entry.is_file():
            continue
        inner = hashlib.sha256()
        with entry.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                inner.update(block)
        outer.update(entry.name.encode("utf-8", "surrogateescape") + b"\0")
        outer.update(inner.digest())
    return f"sha256:{outer.hexdigest()}"


def _load_entry(
    entry: Path,
    preprocess: Preprocess,
    filter_cfg: Filter,
    max_pixels: int,
) -> tuple[DigitName, np.ndarray, ReadInfo]:
    """Turn one folder entry into (name, 28×28 image, how it was read) or raise ImageError."""
    if entry.is_dir():
        raise ImageError("is a directory")
    try:
        name = parse_name(entry.name)
    except ValueError as err:
        raise ImageError(str(err)) from err
    img, opened = read_digit_info(entry, preprocess, max_pixels)
    reason = quality_reason(img, filter_cfg)
    if reason is not None:
        raise ImageError(reason)
    return name, img, ReadInfo(entry.name, opened.format, opened.rotated, opened.photo)


Outcome = tuple[DigitName, np.ndarray, ReadInfo] | str  # a digit, or why the entry is not used


def _read(entry: Path, preprocess: Preprocess, cfg: Filter, max_pixels: int) -> Outcome:
    """One entry's outcome; never raises (runs in worker processes too)."""
    try:
        return _load_entry(entry, preprocess, cfg, max_pixels)
    except ImageError as err:
        return one_line(str(err))
    except Exception as err:
        # Last resort: user uploads must never stop the pipeline; log the traceback.
        logger.warning("unexpected error reading %s", entry, exc_info=True)
        return one_line(f"unreadable: {type(err).__name__}: {err}")


def _read_chunk(args: tuple[list[Path], Preprocess, Filter, int]) -> list[Outcome]:
    entries, preprocess, cfg, max_pixels = args
    return [_read(e, preprocess, cfg, max_pixels) for e in entries]


#: From this many entries on, the folder is read by one process per core: decoding is
#: per-file Python (about 0.3 ms a file), and a pool costs ~0.2 s to start.
PARALLEL_FROM = 4000


def _read_all(
    entries: list[Path], preprocess: Preprocess, cfg: Filter, max_pixels: int, workers: int
) -> list[Outcome]:
    """Every entry's outcome, in the entries' order, whatever the number of workers."""
    if workers <= 1 or len(entries) < PARALLEL_FROM:
        return _read_chunk((entries, preprocess, cfg, max_pixels))
    size = -(-len(entries) // (workers * 8))  # a few chunks per worker: even load, few pickles
    chunks = [
        (entries[i : i + size], preprocess, cfg, max_pixels) for i in range(0, len(entries), size)
    ]
    context = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return [outcome for part in pool.map(_read_chunk, chunks) for outcome in part]


def load_folder(
    folder: Path,
    preprocess: Preprocess = "mnist",
    filter_cfg: Filter | None = None,
    *,
    max_pixels: int = MAX_PIXELS,
    workers: int | None = None,
    read_log: list[ReadInfo] | None = None,
) -> tuple[ClassSet, list[tuple[str, str]]]:
    """Load every ``<digit>-<group>-<member>.<ext>`` image in ``folder`` (not recursive).

    Any format :func:`mnistgap.png.open_image` reads, sniffed from the bytes; a list given as
    ``read_log`` receives one :class:`ReadInfo` per kept file, in the digits' order.

    Returns the usable digits (sorted by file name) and ``rejected``: ``(entry, reason)`` for
    every entry that is not used (other files, dotfiles, subfolders, bad or blank PNGs,
    filtered images, a second file with the same digit, group and member), never raised.
    ``filter_cfg=None`` means ``Filter()`` (filter on, the study's thresholds). A large
    folder is read by ``workers`` processes (default: one per available core); the result is
    the same, entry for entry and byte for byte.

    Raises :class:`ClassFolderError` (one-line message) when the folder is missing or not a
    directory, or when no image is usable.
    """
    check_preprocess(preprocess)
    cfg = Filter() if filter_cfg is None else filter_cfg
    folder = Path(folder)
    if not folder.exists():
        raise ClassFolderError(f"class digit folder not found: {folder}")
    if not folder.is_dir():
        raise ClassFolderError(f"class digit folder is not a directory: {folder}")
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as err:
        raise ClassFolderError(
            one_line(f"cannot list class digit folder {folder}: {err.strerror or err}")
        ) from err

    images: list[np.ndarray] = []
    names: list[DigitName] = []
    files: list[str] = []
    rejected: list[tuple[str, str]] = []
    seen: dict[DigitName, str] = {}
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    outcomes = _read_all(entries, preprocess, cfg, max_pixels, workers)
    for entry, outcome in zip(entries, outcomes, strict=True):
        if isinstance(outcome, str):
            rejected.append((entry.name, outcome))
            continue
        name, img, info = outcome
        if name in seen:
            # e.g. 3-1-1.png and 3-01-1.PNG or 3-1-1.jpg: one author's digit must not count twice.
            rejected.append((entry.name, f"duplicate of {seen[name]} (same digit-group-member)"))
            continue
        seen[name] = entry.name
        images.append(img)
        names.append(name)
        files.append(entry.name)
        if read_log is not None:
            read_log.append(info)

    for file, reason in rejected:
        logger.debug("rejected %s: %s", file, reason)
    if not images:
        if not entries:
            detail = "folder is empty"
        else:
            file, reason = rejected[0]
            detail = f"{len(rejected)} entries rejected, e.g. {file}: {reason}; see rejected list"
        raise ClassFolderError(
            one_line(f"no usable class digit images in {folder} ({detail})", limit=400),
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
    digits = ClassSet(
        images=np.stack(images).astype(np.uint8),
        labels=np.array([n.digit for n in names], dtype=np.int64),
        groups=np.array([n.group for n in names], dtype=np.int64),
        members=np.array([n.member for n in names], dtype=np.int64),
        files=np.asarray(files, dtype=str),
    )
    return digits, rejected
