"""Leakage check: is a class digit a near-copy of an MNIST training image?

Both sides go through the same batched normalisation (:func:`normalize_batch`: contrast to
max 1, ink bounding box scaled to fit 20x20, centre of mass at the centre), then every class
digit gets its nearest MNIST training image by RMS pixel distance (:func:`nearest_neighbours`).
A distance below a threshold flags a probable copy (:func:`find_leaks`). The per-digit table
is written as CSV by the ``leakage`` stage; :func:`read_flags` reads the flags back aligned to
the class cache, so the evaluation stages can report results with and without them.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

SIZE = 28  # MNIST image side
BOX = 20  # the ink's longer side after normalisation (LeCun et al.'s 20x20 box)
CENTRE = 14  # pixel index the centre of mass lands on (as MNIST: index 14 of 0..27)
BBOX_LEVEL = 0.1  # after scaling to max 1, only pixels above this define the bounding box

CSV_HEADER = (
    "file",
    "digit",
    "group",
    "member",
    "nearest_index",
    "nearest_label",
    "distance",
    "flagged",
)


def _as_float_images(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(N, 28, 28) uint8 (0..255) or float -> float32 tensor; uint8 scaled to [0, 1]."""
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
    length = mask.shape[1]
    as_int = mask.to(torch.int8)
    # argmax returns the first maximum: the first True from the front, and from the back.
    first = as_int.argmax(dim=1)
    last = length - 1 - as_int.flip(1).argmax(dim=1)
    return torch.where(mask.any(dim=1), last - first + 1, torch.zeros_like(first))


def _normalize_chunk(x: torch.Tensor) -> torch.Tensor:
    """:func:`normalize_batch` on one chunk of float32 (n, 28, 28) images."""
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


def normalize_batch(images: torch.Tensor | np.ndarray, chunk: int = 8192) -> torch.Tensor:
    """MNIST-style normalisation of a batch, vectorised: (N, 28, 28) -> float32 in [0, 1].

    Per image: scale so the brightest pixel is 1; take the bounding box of pixels above 0.1;
    scale by ``s = 20 / max(box height, box width)`` about the ink's centre of mass and move
    that centre to pixel (14, 14) with one bilinear ``grid_sample`` (zeros outside). uint8
    input is read as 0..255. Blank images (max <= 0) come out all zero. ``chunk`` bounds the
    memory used at once; it does not change the result.
    """
    x = _as_float_images(images).cpu()
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    parts = [_normalize_chunk(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
    return torch.cat(parts) if parts else x.new_zeros((0, SIZE, SIZE))


def nearest_neighbours(
    query: torch.Tensor, reference: torch.Tensor, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest reference row of every query row by Euclidean distance, reported as RMS.

    ``query`` (Q, D) and ``reference`` (R, D) float32. Squared distances come from
    ``|a|^2 + |b|^2 - 2 a.b`` matmuls over chunks of ``chunk`` reference rows (clamped at 0);
    ties go to the lowest index. The winner's distance is then recomputed directly from the
    difference, so an exact copy reports 0 rather than the expansion's rounding error.
    Returns ``(rms_distance (Q,) float32, index (Q,) int64)``, RMS = sqrt(d2 / D).
    """
    if query.ndim != 2 or reference.ndim != 2 or query.shape[1] != reference.shape[1]:
        raise ValueError(
            f"query (Q, D) and reference (R, D) must share D, got {tuple(query.shape)} "
            f"and {tuple(reference.shape)}"
        )
    if reference.shape[0] == 0:
        raise ValueError("reference is empty")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    q = query.to(torch.float32).contiguous()
    r = reference.to(torch.float32).contiguous()
    n_query, dim = q.shape
    started = time.perf_counter()
    q2 = (q * q).sum(dim=1)
    best = torch.full((n_query,), float("inf"), dtype=torch.float32)
    best_idx = torch.zeros(n_query, dtype=torch.int64)
    for start in range(0, r.shape[0], chunk):
        block = r[start : start + chunk]
        d2 = torch.addmm(q2[:, None] + (block * block).sum(dim=1)[None, :], q, block.T, alpha=-2)
        # argmin returns the first minimum: lowest index within the chunk.
        arg = d2.argmin(dim=1)
        val = d2.gather(1, arg[:, None])[:, 0]
        # Strictly smaller only: on a tie the earlier chunk (lower index) keeps its place.
        better = val < best
        best = torch.where(better, val, best)
        best_idx = torch.where(better, arg + start, best_idx)
    diff = q - r[best_idx]
    rms = ((diff * diff).sum(dim=1) / dim).sqrt()
    log.info(
        "nearest neighbours: %d queries x %d references (D=%d) in %.2f s",
        n_query,
        r.shape[0],
        dim,
        time.perf_counter() - started,
    )
    return rms, best_idx


@dataclass(frozen=True)
class LeakageResult:
    """Per class digit: its nearest MNIST training image and whether it is a near-copy."""

    distance: np.ndarray  # float32 (N,) RMS pixel distance on a 0..1 scale
    index: np.ndarray  # int64 (N,) index into the MNIST training set (IDX order)
    nearest_label: np.ndarray  # int64 (N,) that image's MNIST label
    flagged: np.ndarray  # bool (N,) distance < threshold
    threshold: float


def find_leaks(
    class_images: torch.Tensor | np.ndarray,
    mnist_images: torch.Tensor | np.ndarray,
    mnist_labels: torch.Tensor | np.ndarray,
    threshold: float,
) -> LeakageResult:
    """Match every class digit to its nearest MNIST training image; flag distance < threshold.

    Images are (N, 28, 28) uint8 or float; both sides go through :func:`normalize_batch`
    before the RMS distance is measured.
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    labels = np.asarray(mnist_labels).astype(np.int64)
    if labels.ndim != 1 or len(labels) != len(mnist_images):
        raise ValueError(
            f"mnist_labels must be ({len(mnist_images)},), got shape {labels.shape}"
        )
    query = normalize_batch(class_images).reshape(len(class_images), -1)
    reference = normalize_batch(mnist_images).reshape(len(mnist_images), -1)
    distance, index = nearest_neighbours(query, reference)
    dist = distance.numpy().astype(np.float32)
    idx = index.numpy().astype(np.int64)
    return LeakageResult(
        distance=dist,
        index=idx,
        nearest_label=labels[idx],
        flagged=dist < threshold,
        threshold=float(threshold),
    )


def flagged_order(result: LeakageResult, max_pairs: int = 40) -> np.ndarray:
    """Positions of the flagged digits, closest first (stable), at most ``max_pairs``."""
    positions = np.flatnonzero(result.flagged)
    order = np.argsort(result.distance[positions], kind="stable")
    return positions[order][:max_pairs]


def leakage_rows(
    files: Sequence[str],
    digits: Sequence[int],
    groups: Sequence[int],
    members: Sequence[int],
    result: LeakageResult,
) -> list[list[object]]:
    """CSV rows (see :data:`CSV_HEADER`), one per class digit, in the given order."""
    return [
        [
            str(files[i]),
            int(digits[i]),
            int(groups[i]),
            int(members[i]),
            int(result.index[i]),
            int(result.nearest_label[i]),
            f"{float(result.distance[i]):.4f}",
            int(bool(result.flagged[i])),
        ]
        for i in range(len(files))
    ]


def leakage_metrics(result: LeakageResult, groups: Sequence[int]) -> dict:
    """Summary for ``metrics.json``: counts, fraction, flagged count per group, median distance."""
    n = len(result.distance)
    if n == 0:
        raise ValueError("no class digits to summarise")
    groups_arr = np.asarray(groups)
    by_group = {
        str(int(g)): int(result.flagged[groups_arr == g].sum()) for g in np.unique(groups_arr)
    }
    flagged = int(result.flagged.sum())
    return {
        "threshold": result.threshold,
        "n": n,
        "flagged": flagged,
        "flagged_fraction": flagged / n,
        "flagged_by_group": by_group,
        "median_distance": float(np.median(result.distance)),
    }


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
