"""Leakage check: is a class digit a near-copy of an MNIST training image?

Both sides go through the same batched normalisation (:func:`normalize_batch`: contrast to
max 1, ink bounding box scaled to fit 20x20, centre of mass at the centre), then every class
digit gets its two nearest MNIST training images by RMS pixel distance
(:func:`two_nearest_neighbours`). A probable copy is flagged (:func:`find_leaks`) when the
nearest distance is below a threshold, or when the nearest is much closer than the second
nearest (ratio below a second threshold: a degraded copy, e.g. binarised, is far from its
original in absolute terms but still far closer to it than to anything else). Both thresholds
are calibrated on genuine MNIST test digits (``benchmarks/leakage_calibration.py``). The
per-digit table is written as CSV by the ``leakage`` stage; :func:`mnistgap.data.read_flags`
reads the flags back aligned to the class cache, so the evaluation stages can report results
with and without them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

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
    # Appended after the original columns: read_flags and the evaluate stages use file/flagged.
    "second_distance",
    "ratio",
    "reason",
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


def _check_search_inputs(query: torch.Tensor, reference: torch.Tensor, chunk: int, k: int) -> None:
    if query.ndim != 2 or reference.ndim != 2 or query.shape[1] != reference.shape[1]:
        raise ValueError(
            f"query (Q, D) and reference (R, D) must share D, got {tuple(query.shape)} "
            f"and {tuple(reference.shape)}"
        )
    if reference.shape[0] == 0:
        raise ValueError("reference is empty")
    if reference.shape[0] < k:
        raise ValueError(f"need at least {k} reference rows, got {reference.shape[0]}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")


def _k_nearest(
    query: torch.Tensor, reference: torch.Tensor, k: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` (1 or 2) nearest distinct reference rows of every query row; see the callers."""
    _check_search_inputs(query, reference, chunk, k)
    q = query.to(torch.float32).contiguous()
    r = reference.to(torch.float32).contiguous()
    n_query, dim = q.shape
    started = time.perf_counter()
    half_r2 = 0.5 * (r * r).sum(dim=1)
    # Running best k per query, kept sorted by (score, index).
    best = torch.full((n_query, k), float("inf"), dtype=torch.float32)
    best_idx = torch.full((n_query, k), r.shape[0], dtype=torch.int64)  # placeholder > any index
    for start in range(0, r.shape[0], chunk):
        block = r[start : start + chunk]
        # (|a - b|^2 - |a|^2) / 2 for every pair of the chunk, in one BLAS call.
        score = torch.addmm(half_r2[None, start : start + chunk], q, block.T, alpha=-1)
        vals, args = [], []
        for _ in range(min(k, block.shape[0])):
            # argmin returns the first minimum: on a tie the lowest index within the chunk.
            # (torch.topk gives no such guarantee.) Masking the winner with +inf makes the
            # next pass return a different column, so the k indices are distinct.
            arg = score.argmin(dim=1, keepdim=True)
            vals.append(score.gather(1, arg))
            args.append(arg + start)
            if k > 1:
                score.scatter_(1, arg, float("inf"))
        cand = torch.cat([best, *vals], dim=1)
        cand_idx = torch.cat([best_idx, *args], dim=1)
        # Merge: sort by index, then stably by score, so equal scores keep the lower index.
        by_index = cand_idx.argsort(dim=1, stable=True)
        cand, cand_idx = cand.gather(1, by_index), cand_idx.gather(1, by_index)
        by_score = cand.argsort(dim=1, stable=True)[:, :k]
        best, best_idx = cand.gather(1, by_score), cand_idx.gather(1, by_score)
    # Exact distances of the winners from the differences: a sum of squares is never
    # negative, and an exact copy reports 0 rather than the expansion's rounding error.
    diff = q[:, None, :] - r[best_idx]
    rms = ((diff * diff).sum(dim=2) / dim).sqrt()
    if k == 2:
        # The ranking's rounding can order two near-equal candidates the wrong way round;
        # the exact distances decide (a strict swap, so exact ties keep the lower index first).
        swap = rms[:, 1] < rms[:, 0]
        rms[swap] = rms[swap].flip(1)
        best_idx[swap] = best_idx[swap].flip(1)
    log.info(
        "%d nearest neighbour(s): %d queries x %d references (D=%d) in %.2f s",
        k,
        n_query,
        r.shape[0],
        dim,
        time.perf_counter() - started,
    )
    return rms, best_idx


def nearest_neighbours(
    query: torch.Tensor, reference: torch.Tensor, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest reference row of every query row by Euclidean distance, reported as RMS.

    ``query`` (Q, D) and ``reference`` (R, D) float32. The search uses the expansion
    ``|a - b|^2 = |a|^2 + |b|^2 - 2 a.b`` as one matmul per chunk of ``chunk`` reference rows;
    since ``|a|^2`` is the same for every candidate of a query, it ranks by
    ``|b|^2 / 2 - a.b`` (same order, one full-size addition less). Ties go to the lowest index.
    The winner's distance is then recomputed directly from the difference (a sum of squares,
    so never negative, and an exact copy reports 0 rather than the expansion's rounding error).
    Returns ``(rms_distance (Q,) float32, index (Q,) int64)``, RMS = sqrt(d2 / D).
    """
    rms, idx = _k_nearest(query, reference, 1, chunk)
    return rms[:, 0], idx[:, 0]


def two_nearest_neighbours(
    query: torch.Tensor, reference: torch.Tensor, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest and second-nearest reference rows of every query row (distinct indices).

    Same search as :func:`nearest_neighbours` (chunked matmul ranking, ties to the lowest
    index, distances recomputed exactly), keeping the best two per chunk and merging them
    across chunks. Needs at least two reference rows. Returns ``(rms_distance (Q, 2) float32,
    index (Q, 2) int64)``; column 0 is the nearest, column 1 the second nearest, so
    ``rms[:, 0] <= rms[:, 1]`` up to float32 rounding of the ranking.
    """
    return _k_nearest(query, reference, 2, chunk)


REASONS = ("distance", "ratio", "both")  # a flagged digit's reason; "" when not flagged


@dataclass(frozen=True)
class LeakageResult:
    """Per class digit: its two nearest MNIST training images and whether it is a near-copy."""

    distance: np.ndarray  # float32 (N,) RMS pixel distance (0..1 scale) to the nearest image
    index: np.ndarray  # int64 (N,) index of the nearest image in the MNIST training set
    nearest_label: np.ndarray  # int64 (N,) that image's MNIST label
    second_distance: np.ndarray  # float32 (N,) RMS distance to the second-nearest image
    second_index: np.ndarray  # int64 (N,) its index (always != index)
    ratio: np.ndarray  # float32 (N,) distance / second_distance (1.0 when both are 0)
    flagged: np.ndarray  # bool (N,) distance < threshold or ratio < ratio_threshold
    reason: np.ndarray  # str (N,) "distance", "ratio", "both" or "" (not flagged)
    threshold: float
    ratio_threshold: float


def distance_ratio(distance: np.ndarray, second_distance: np.ndarray) -> np.ndarray:
    """``distance / second_distance`` as float32, with 1.0 where ``second_distance`` is 0.

    A second distance of 0 means the nearest is 0 too (the query equals two identical
    training images): the ratio carries no information there, and 1.0 ("not closer to one
    image than to another") leaves such a digit to the distance criterion, which flags it.
    """
    d = np.asarray(distance, dtype=np.float64)
    d2 = np.asarray(second_distance, dtype=np.float64)
    ratio = np.ones_like(d)
    np.divide(d, d2, out=ratio, where=d2 > 0)
    return ratio.astype(np.float32)


def flag_reasons(
    distance: np.ndarray, ratio: np.ndarray, threshold: float, ratio_threshold: float
) -> np.ndarray:
    """Per digit: "distance", "ratio", "both" or "" from the two criteria (strict ``<``)."""
    by_distance = np.asarray(distance) < threshold
    by_ratio = np.asarray(ratio) < ratio_threshold
    reason = np.full(by_distance.shape, "", dtype="<U8")
    reason[by_distance] = "distance"
    reason[by_ratio] = "ratio"
    reason[by_distance & by_ratio] = "both"
    return reason


def find_leaks(
    class_images: torch.Tensor | np.ndarray,
    mnist_images: torch.Tensor | np.ndarray,
    mnist_labels: torch.Tensor | np.ndarray,
    threshold: float,
    ratio_threshold: float,
) -> LeakageResult:
    """Match every class digit to its two nearest MNIST training images and flag near-copies.

    A digit is flagged when its RMS distance to the nearest training image is below
    ``threshold`` (a copy that survived the preprocessing almost unchanged) or when the ratio
    nearest / second-nearest distance is below ``ratio_threshold`` (Lowe's ratio test: a copy
    degraded by e.g. binarisation is no longer close in absolute terms, but still much closer
    to its own original than to any other training image, which genuine handwriting is not).
    ``ratio_threshold`` = 0 switches the ratio criterion off. Images are (N, 28, 28) uint8 or
    float; both sides go through :func:`normalize_batch` first. Needs >= 2 training images.
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if not 0 <= ratio_threshold <= 1:
        raise ValueError(f"ratio_threshold must be in [0, 1], got {ratio_threshold}")
    labels = np.asarray(mnist_labels).astype(np.int64)
    if labels.ndim != 1 or len(labels) != len(mnist_images):
        raise ValueError(f"mnist_labels must be ({len(mnist_images)},), got shape {labels.shape}")
    query = normalize_batch(class_images).reshape(len(class_images), -1)
    reference = normalize_batch(mnist_images).reshape(len(mnist_images), -1)
    distances, indices = two_nearest_neighbours(query, reference)
    dist = distances.numpy().astype(np.float32)
    idx = indices.numpy().astype(np.int64)
    ratio = distance_ratio(dist[:, 0], dist[:, 1])
    reason = flag_reasons(dist[:, 0], ratio, threshold, ratio_threshold)
    return LeakageResult(
        distance=dist[:, 0],
        index=idx[:, 0],
        nearest_label=labels[idx[:, 0]],
        second_distance=dist[:, 1],
        second_index=idx[:, 1],
        ratio=ratio,
        flagged=reason != "",
        reason=reason,
        threshold=float(threshold),
        ratio_threshold=float(ratio_threshold),
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
            f"{float(result.second_distance[i]):.4f}",
            f"{float(result.ratio[i]):.4f}",
            str(result.reason[i]),
        ]
        for i in range(len(files))
    ]


def leakage_metrics(result: LeakageResult, groups: Sequence[int]) -> dict:
    """Summary for ``metrics.json``: counts, fraction, flagged per group and per reason, medians."""
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
        "ratio_threshold": result.ratio_threshold,
        "n": n,
        "flagged": flagged,
        "flagged_fraction": flagged / n,
        "flagged_by_group": by_group,
        "flagged_by_reason": {r: int((result.reason == r).sum()) for r in REASONS},
        "median_distance": float(np.median(result.distance)),
        "median_ratio": float(np.median(result.ratio)),
    }
