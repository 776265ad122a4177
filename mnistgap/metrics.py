"""Batched inference and classification metrics, with no per-image Python.

Confusion matrices come from one ``bincount``, per-class losses from ``index_add_``,
and every accuracy carries a 95% Wilson score interval so that small groups are not
over-read.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnistgap.models import NUM_CLASSES
from mnistgap.recipe import normalize


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 4096,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Logits (float32, CPU) for uint8 images (N, 28, 28), in fp32 and eval mode, in big batches."""
    model.eval()
    out = [
        model(normalize(images[i : i + batch_size].to(device))).float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out) if out else torch.empty(0, NUM_CLASSES)


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n (well-behaved at 0, n and small n)."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 and k = n the exact bounds are 0 and 1; pin them against rounding.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return (low, high)


@dataclass(frozen=True)
class Evaluation:
    """Per-image results of one evaluation, from which every summary is computed."""

    labels: np.ndarray  # (N,) int64 true digits
    preds: np.ndarray  # (N,) int64 predicted digits
    losses: np.ndarray  # (N,) float64 cross-entropy per image
    confidence: np.ndarray  # (N,) float64 softmax probability of the predicted digit

    def subset(self, mask: np.ndarray) -> Evaluation:
        return Evaluation(
            self.labels[mask], self.preds[mask], self.losses[mask], self.confidence[mask]
        )


def evaluate_logits(logits: torch.Tensor, labels: torch.Tensor | np.ndarray) -> Evaluation:
    """Turn logits and true labels into per-image predictions, losses and confidences."""
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    losses = F.cross_entropy(logits.float(), y, reduction="none")
    probs = logits.float().softmax(dim=1)
    conf, preds = probs.max(dim=1)
    return Evaluation(
        labels=y.numpy(),
        preds=preds.numpy().astype(np.int64),
        losses=losses.double().numpy(),
        confidence=conf.double().numpy(),
    )


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, k: int = NUM_CLASSES) -> np.ndarray:
    """k x k counts, rows = actual, columns = predicted (one bincount)."""
    return np.bincount(labels * k + preds, minlength=k * k).reshape(k, k)


def per_class_loss(
    labels: np.ndarray, losses: np.ndarray, k: int = NUM_CLASSES
) -> list[float | None]:
    """Mean loss of the images of each true class (None for a class with no images)."""
    sums = np.bincount(labels, weights=losses, minlength=k)
    counts = np.bincount(labels, minlength=k)
    return [float(s / c) if c else None for s, c in zip(sums, counts, strict=True)]


def summary(ev: Evaluation) -> dict:
    """accuracy, 95% interval, mean loss and n: the headline block of every metrics file
    (per-digit and per-group numbers go to CSV files beside it)."""
    n = len(ev.labels)
    correct = int((ev.labels == ev.preds).sum())
    low, high = wilson_interval(correct, n)
    return {
        "accuracy": correct / n if n else None,
        "ci_low": low,
        "ci_high": high,
        "loss": float(ev.losses.mean()) if n else None,
        "n": n,
    }


def without_loss(block: dict) -> dict:
    """A :func:`summary` block without its loss: accuracy, interval and n (the
    "without MNIST look-alikes" figures, which the report reads against the full set's)."""
    return {k: v for k, v in block.items() if k != "loss"}


def group_summaries(ev: Evaluation, groups: np.ndarray) -> dict[str, dict]:
    """summary() of every group id, keyed by the id as a string, in numeric order."""
    return {str(int(g)): summary(ev.subset(groups == g)) for g in np.unique(groups)}


def predictions_csv(ev: Evaluation) -> str:
    """CSV text with one ``actual,predicted`` row per image: the input of DVC's ``confusion``
    template (written with numpy, not a Python loop over images)."""
    buf = io.StringIO()
    np.savetxt(
        buf,
        np.stack([ev.labels, ev.preds], axis=1),
        fmt="%d",
        delimiter=",",
        header="actual,predicted",
        comments="",
    )
    return buf.getvalue()


def group_digit_accuracy(ev: Evaluation, groups: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Accuracy per (group, digit) cell: group ids and a (groups, 10) matrix, NaN where empty."""
    ids, gidx = np.unique(groups, return_inverse=True)
    cell = gidx * NUM_CLASSES + ev.labels
    size = len(ids) * NUM_CLASSES
    totals = np.bincount(cell, minlength=size)
    hits = np.bincount(cell, weights=(ev.labels == ev.preds).astype(float), minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(totals > 0, hits / np.maximum(totals, 1), np.nan)
    return [str(int(g)) for g in ids], acc.reshape(len(ids), NUM_CLASSES)
