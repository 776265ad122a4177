"""The teacher's view of a class collecting digits: who saved what, probable copies, a QR code.

:func:`progress` builds the JSON of ``GET /api/progress``: per (group, member) the digits on
disk, the members holding a token, the files the pipeline's leakage check
(:func:`mnistgap.leakage.find_leaks`, the ``leakage`` stage's thresholds) would flag as
near-copies of MNIST training images, and the page's URL with its QR code (segno, SVG) for
the projector.

The leakage check needs MNIST's training images (``data/mnist/raw``, from ``dvc pull`` or
``dvc repro prepare_mnist``); without them the view says so and shows everything else. Each
file is checked once (cached by name, size and modification time).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import segno
import torch

from mnistgap.collect import loader
from mnistgap.leakage import find_leaks, reference_matrix
from mnistgap.mnist_source import read_idx
from mnistgap.params import Filter

log = logging.getLogger("mnistgap.collect")

IMAGES = "train-images-idx3-ubyte"
LABELS = "train-labels-idx1-ubyte"


def qr_svg_data_uri(url: str) -> str:
    """The QR code of ``url`` as an SVG ``data:`` URI (dark on white, for a projector)."""
    return segno.make(url, error="m").svg_data_uri(scale=8, border=2)


class LeakageFlags:
    """The leakage check on the collected files, against MNIST's training images."""

    def __init__(
        self,
        mnist_raw: Path | None,
        threshold: float,
        ratio_threshold: float,
        preprocess: str,
        filter_cfg: Filter,
    ) -> None:
        self.mnist_raw = mnist_raw
        self.threshold = threshold
        self.ratio_threshold = ratio_threshold
        self.preprocess = preprocess
        self.filter_cfg = filter_cfg
        self._lock = threading.Lock()
        self._mnist: tuple[np.ndarray, np.ndarray, torch.Tensor] | None = None
        self.note: str | None = None
        self._cache: dict[tuple[str, int, int], dict[str, Any] | None] = {}
        if mnist_raw is None:
            self.note = "no MNIST folder given: leakage check off"
        elif not all((Path(mnist_raw) / f).is_file() for f in (IMAGES, LABELS)):
            self.note = (
                f"no MNIST training images in {mnist_raw}: leakage check off "
                "(dvc pull, or dvc repro prepare_mnist)"
            )

    def _reference(self) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        # Loaded and normalised at the first check, once (~190 MB as float32, ~2 s).
        if self._mnist is None:
            raw = Path(self.mnist_raw)  # type: ignore[arg-type]
            images = read_idx(raw / IMAGES)
            self._mnist = (images, read_idx(raw / LABELS), reference_matrix(images))
        return self._mnist

    def flagged(self, folder: Path, files: Iterable[str]) -> list[dict[str, Any]]:
        """The files of ``folder`` (names) that the leakage check flags, by name."""
        if self.note is not None:
            return []
        with self._lock:
            keys: dict[str, tuple[str, int, int]] = {}
            for name in files:
                try:
                    st = (folder / name).stat()
                except FileNotFoundError:
                    continue
                keys[name] = (name, st.st_size, st.st_mtime_ns)
            todo = [k for k in keys.values() if k not in self._cache]
            if todo:
                self._check(folder, todo)
            return [row for k in keys.values() if (row := self._cache.get(k)) is not None]

    def _check(self, folder: Path, todo: list[tuple[str, int, int]]) -> None:
        images, readable = [], []
        for key in todo:
            try:
                images.append(loader.read_digit(folder / key[0], self.preprocess, self.filter_cfg))
                readable.append(key)
            except (loader.ImageRejected, OSError):
                self._cache[key] = None  # prepare_class rejects it: nothing to check
        if not readable:
            return
        mnist_images, mnist_labels, reference = self._reference()
        result = find_leaks(
            np.stack(images),
            mnist_images,
            mnist_labels,
            self.threshold,
            self.ratio_threshold,
            reference=reference,
        )
        for i, key in enumerate(readable):
            self._cache[key] = (
                {
                    "file": key[0],
                    "reason": str(result.reason[i]),
                    "distance": round(float(result.distance[i]), 4),
                    "ratio": round(float(result.ratio[i]), 4),
                    "nearest_label": int(result.nearest_label[i]),
                }
                if result.flagged[i]
                else None
            )


def progress(
    folder: Path,
    token_holders: set[tuple[int, int]],
    leakage: LeakageFlags,
    page_url: str,
) -> dict[str, Any]:
    """The teacher view's JSON: members and their digits, flagged files, the page's URL."""
    members: dict[tuple[int, int], dict[str, Any]] = {}
    saved = loader.saved_digits(folder)
    for file, n in saved:
        row = members.setdefault(
            (n.group, n.member), {"group": n.group, "member": n.member, "digits": {}}
        )
        row["digits"][str(n.digit)] = file
    for g, m in token_holders:
        members.setdefault((g, m), {"group": g, "member": m, "digits": {}})
    rows = []
    for key in sorted(members):
        row = members[key]
        row["has_token"] = key in token_holders
        row["count"] = len(row["digits"])
        rows.append(row)
    return {
        "files": len(saved),
        "members": rows,
        "flagged": leakage.flagged(folder, [file for file, _ in saved]),
        "leakage_note": leakage.note,
        "url": page_url,
        "qr_svg": qr_svg_data_uri(page_url),
    }
