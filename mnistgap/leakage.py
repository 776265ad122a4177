"""Leakage check: is a class digit a near-copy of an MNIST training image?

Both sides go through the same batched normalisation
(:func:`mnistgap.recipe.renormalize_batch`: contrast to max 1, ink bounding box scaled to fit
20x20, centre of mass at the centre), then every class digit gets its two nearest MNIST
training images by RMS pixel distance (:func:`two_nearest_neighbours`). A probable copy is
flagged (:func:`find_leaks`) when the nearest distance is below a threshold, or when the
nearest is much closer than the second nearest (ratio below a second threshold: a degraded
copy, e.g. binarised, is far from its original in absolute terms but still far closer to it
than to anything else). Both thresholds are calibrated on genuine MNIST test digits
(``benchmarks/leakage_calibration.py``). The per-digit table is written as CSV by the
``leakage`` stage; :func:`mnistgap.data.read_flags` reads the flags back aligned to the class
cache, so the evaluation stages can report results with and without them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mnistgap.recipe import renormalize_batch

log = logging.getLogger(__name__)

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

#: Query rows compared with the whole reference set at once: the search's working memory is
#: QUERY_CHUNK x references x 4 bytes (123 MB against MNIST's 60,000), whatever the number of
#: class digits.
QUERY_CHUNK = 512
#: Class digits normalised at once by :func:`find_leaks` (8 search chunks, 25 MB as float32).
QUERY_BLOCK = 8 * QUERY_CHUNK


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
    rms = torch.empty(n_query, k, dtype=torch.float32)
    index = torch.empty(n_query, k, dtype=torch.int64)
    for start in range(0, n_query, chunk):
        block = q[start : start + chunk]
        # (|a - b|^2 - |a|^2) / 2 for every pair, in one BLAS call: the same order as the
        # distance, since |a|^2 is the same for every candidate of a query.
        score = torch.addmm(half_r2[None, :], block, r.T, alpha=-1)
        picks = []
        for _ in range(k):
            # argmin returns the first minimum: on a tie the lowest index. (torch.topk does
            # not: on ties it returned other indices in every trial.) Masking the winner
            # with +inf makes the next pass return a different column.
            pick = score.argmin(dim=1, keepdim=True)
            picks.append(pick)
            if k > 1:
                score.scatter_(1, pick, float("inf"))
        idx = torch.cat(picks, dim=1)
        # Exact distances of the winners from the differences: a sum of squares is never
        # negative, and an exact copy reports 0 rather than the expansion's rounding error.
        diff = block[:, None, :] - r[idx]
        rms[start : start + chunk] = ((diff * diff).sum(dim=2) / dim).sqrt()
        index[start : start + chunk] = idx
    if k == 2:
        # The ranking's rounding can order two near-equal candidates the wrong way round;
        # the exact distances decide (a strict swap, so exact ties keep the lower index first).
        swap = rms[:, 1] < rms[:, 0]
        rms[swap] = rms[swap].flip(1)
        index[swap] = index[swap].flip(1)
    log.info(
        "%d nearest neighbour(s): %d queries x %d references (D=%d) in %.2f s",
        k,
        n_query,
        r.shape[0],
        dim,
        time.perf_counter() - started,
    )
    return rms, index


def nearest_neighbours(
    query: torch.Tensor, reference: torch.Tensor, chunk: int = QUERY_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest reference row of every query row by Euclidean distance, reported as RMS.

    ``query`` (Q, D) and ``reference`` (R, D) float32. ``chunk`` query rows at a time are
    ranked against every reference row with the expansion ``|a - b|^2 = |a|^2 + |b|^2 - 2 a.b``
    as one matmul (by ``|b|^2 / 2 - a.b``: same order, one full-size addition less), so the
    memory used is bounded by ``chunk``, not by Q. Ties go to the lowest index. The winner's
    distance is then recomputed directly from the difference. Returns
    ``(rms_distance (Q,) float32, index (Q,) int64)``, RMS = sqrt(d2 / D).
    """
    rms, idx = _k_nearest(query, reference, 1, chunk)
    return rms[:, 0], idx[:, 0]


def two_nearest_neighbours(
    query: torch.Tensor, reference: torch.Tensor, chunk: int = QUERY_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest and second-nearest reference rows of every query row (distinct indices).

    Same search as :func:`nearest_neighbours`. Needs at least two reference rows. Returns
    ``(rms_distance (Q, 2) float32, index (Q, 2) int64)``; column 0 is the nearest, column 1
    the second nearest, so ``rms[:, 0] <= rms[:, 1]``; exact ties keep the lower index first.
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


def reference_matrix(mnist_images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The MNIST side of :func:`find_leaks`, normalised: (N, 784) float32.

    Normalising MNIST's 60,000 training images takes most of a search for a few digits; a
    caller that checks digits again and again (the collect page's teacher view) computes this
    once and passes it as ``find_leaks(..., reference=...)``.
    """
    return renormalize_batch(mnist_images).reshape(len(mnist_images), -1)


def find_leaks(
    class_images: torch.Tensor | np.ndarray,
    mnist_images: torch.Tensor | np.ndarray,
    mnist_labels: torch.Tensor | np.ndarray,
    threshold: float,
    ratio_threshold: float,
    *,
    reference: torch.Tensor | None = None,
) -> LeakageResult:
    """Match every class digit to its two nearest MNIST training images and flag near-copies.

    A digit is flagged when its RMS distance to the nearest training image is below
    ``threshold`` (a copy that survived the preprocessing almost unchanged) or when the ratio
    nearest / second-nearest distance is below ``ratio_threshold`` (Lowe's ratio test: a copy
    degraded by e.g. binarisation is no longer close in absolute terms, but still much closer
    to its own original than to any other training image, which genuine handwriting is not).
    ``ratio_threshold`` = 0 switches the ratio criterion off. Images are (N, 28, 28) uint8 or
    float; both sides go through :func:`mnistgap.recipe.renormalize_batch` first (``reference``:
    :func:`reference_matrix` of ``mnist_images``, computed earlier). Needs >= 2 training images.
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if not 0 <= ratio_threshold <= 1:
        raise ValueError(f"ratio_threshold must be in [0, 1], got {ratio_threshold}")
    labels = np.asarray(mnist_labels).astype(np.int64)
    if labels.ndim != 1 or len(labels) != len(mnist_images):
        raise ValueError(f"mnist_labels must be ({len(mnist_images)},), got shape {labels.shape}")
    if reference is None:
        reference = reference_matrix(mnist_images)
    elif reference.shape != (len(mnist_images), 28 * 28):
        raise ValueError(
            f"reference must be ({len(mnist_images)}, 784), got {tuple(reference.shape)}"
        )
    # The class digits are normalised and searched a block at a time (a multiple of the
    # search's own chunk, so every matmul is the same as in one call): memory stays bounded
    # by the block whatever the number of class digits, apart from the uint8 input.
    dist = np.empty((len(class_images), 2), dtype=np.float32)
    idx = np.empty((len(class_images), 2), dtype=np.int64)
    for start in range(0, len(class_images), QUERY_BLOCK):
        block = class_images[start : start + QUERY_BLOCK]
        query = renormalize_batch(block).reshape(len(block), -1)
        distances, indices = two_nearest_neighbours(query, reference)
        dist[start : start + len(block)] = distances.numpy()
        idx[start : start + len(block)] = indices.numpy()
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


def leakage_metrics(result: LeakageResult) -> dict:
    """The headline for ``metrics.json``: how many class digits, how many flagged. Per digit
    (distances, ratios, reasons, groups) is leakage.csv, which the report reads."""
    n = len(result.distance)
    if n == 0:
        raise ValueError("no class digits to summarise")
    return {"n": n, "flagged": int(result.flagged.sum())}
