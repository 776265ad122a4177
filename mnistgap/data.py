"""The cached arrays the stages hand to each other (uint8 images, int64 labels)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mnistgap import atomic

if TYPE_CHECKING:  # torch is imported where it is used: prepare_class needs none of it
    import torch


def save_split(path: str | Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Atomically save one split: images uint8 (N, 28, 28), labels int64 (N,)."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"images must be uint8 (N, 28, 28), got {images.dtype} {images.shape}")
    if len(labels) != len(images):
        raise ValueError("images and labels differ in length")
    atomic.save_npz(path, images=images, labels=labels.astype(np.int64))


def load_split(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a split saved by :func:`save_split` as (uint8 images, int64 labels) tensors."""
    import torch  # ~2 s to import; only the stages that train or evaluate pay for it

    arrays = atomic.load_npz(path)
    return torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"])


@dataclass(frozen=True)
class ClassSet:
    """The usable class digits as cached by prepare_class, in file-name order."""

    images: np.ndarray  # uint8 (N, 28, 28)
    labels: np.ndarray  # int64 (N,) the digit in the file name
    groups: np.ndarray  # int64 (N,)
    members: np.ndarray  # int64 (N,)
    files: np.ndarray  # str (N,) file names


def save_class(path: str | Path, cs: ClassSet) -> None:
    """Atomically cache the class digits (no pickled objects: file names are a unicode array)."""
    atomic.save_npz(
        path,
        images=cs.images.astype(np.uint8),
        labels=cs.labels.astype(np.int64),
        groups=cs.groups.astype(np.int64),
        members=cs.members.astype(np.int64),
        files=np.asarray(cs.files, dtype=str),
    )


def load_class(path: str | Path) -> ClassSet:
    """Load what :func:`save_class` wrote."""
    a = atomic.load_npz(path)
    return ClassSet(a["images"], a["labels"], a["groups"], a["members"], a["files"])


def read_flags(csv_path: str | Path, files: Sequence[str]) -> np.ndarray:
    """The ``flagged`` column of a leakage CSV as a bool array aligned to ``files``.

    Raises ValueError when the CSV's file column is not exactly ``files`` in the same order
    (a stale report from another class-digit set must not be applied silently).
    """
    with Path(csv_path).open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"file", "flagged"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {', '.join(sorted(missing))}")
        rows = [(row["file"], row["flagged"]) for row in reader]
    csv_files = [f for f, _ in rows]
    expected = [str(f) for f in files]
    if csv_files != expected:
        first = next(
            (i for i, (a, b) in enumerate(zip(csv_files, expected, strict=False)) if a != b),
            min(len(csv_files), len(expected)),
        )
        raise ValueError(
            f"{csv_path}: files do not match the class digits ({len(csv_files)} rows vs "
            f"{len(expected)} digits; first difference at row {first}); rerun the leakage stage"
        )
    flags = []
    for name, value in rows:
        if value not in ("0", "1"):
            raise ValueError(f"{csv_path}: flagged must be 0 or 1, got {value!r} for {name}")
        flags.append(value == "1")
    return np.array(flags, dtype=bool)
