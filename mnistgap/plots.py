"""Static PNG figures (matplotlib, Agg): they stand on their own offline, unlike DVC's HTML."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on CI or servers; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np

from mnistgap import atomic


def _save(path: str | Path, fig: plt.Figure) -> None:
    atomic.save_figure(path, fig)
    plt.close(fig)


def confusion_figure(path: str | Path, cm: np.ndarray, title: str) -> None:
    """Confusion matrix with the count in every cell (rows actual, columns predicted)."""
    k = cm.shape[0]
    fig, ax = plt.subplots(figsize=(6, 5.2))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    threshold = cm.max() / 2 if cm.size and cm.max() > 0 else 0.5
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(int(cm[i, j])),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if cm[i, j] > threshold else "black",
            )
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="actual", title=title)
    _save(path, fig)


def per_class_loss_figure(path: str | Path, losses: Sequence[float | None], title: str) -> None:
    """The report's per-class mean loss table (Figure 7/9 style), as an image."""
    fig, ax = plt.subplots(figsize=(7, 1.3))
    ax.axis("off")
    cells = [["—" if v is None else f"{v:.3f}" for v in losses]]
    table = ax.table(
        cellText=cells,
        colLabels=[str(i) for i in range(len(losses))],
        loc="center",
        cellLoc="center",
    )
    table.scale(1, 1.4)
    ax.set_title(title, fontsize=10)
    _save(path, fig)


def group_bar_figure(
    path: str | Path, groups: Mapping[str, Mapping[str, float]], title: str
) -> None:
    """Per-group accuracy with 95% Wilson error bars, and mean loss, side by side."""
    ids = list(groups)
    acc = np.array([groups[g]["accuracy"] for g in ids])
    low = np.array([groups[g]["ci_low"] for g in ids])
    high = np.array([groups[g]["ci_high"] for g in ids])
    loss = np.array([groups[g]["loss"] for g in ids])
    n = [groups[g]["n"] for g in ids]
    x = np.arange(len(ids))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8, 0.7 * len(ids) + 4), 4))
    # Clip: matplotlib rejects negative error bars, which float rounding could produce.
    yerr = np.clip(np.stack([acc - low, high - acc]), 0.0, None)
    ax1.bar(x, acc, color="tab:blue", yerr=yerr, capsize=3)
    ax1.set(
        xticks=x,
        xticklabels=[f"{g}\n{k}" for g, k in zip(ids, n, strict=True)],
        ylim=(0, 1.05),
        ylabel="accuracy",
        title="accuracy (95% Wilson interval)",
    )
    ax2.bar(x, loss, color="tab:orange")
    ax2.set(xticks=x, xticklabels=ids, ylabel="mean cross-entropy", title="loss")
    ax1.set_xlabel("group (second line: number of digits)")
    ax2.set_xlabel("group")
    fig.suptitle(title)
    fig.tight_layout()
    _save(path, fig)


def heatmap_figure(
    path: str | Path, matrix: np.ndarray, row_labels: Sequence[str], title: str
) -> None:
    """Group x digit accuracy heatmap; NaN cells (no image) are left blank."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(row_labels) + 1.5))
    im = ax.imshow(matrix, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="accuracy")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if not np.isnan(matrix[i, j]):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set(
        xticks=range(matrix.shape[1]),
        yticks=range(len(row_labels)),
        yticklabels=row_labels,
        xlabel="digit",
        ylabel="group",
        title=title,
    )
    _save(path, fig)


def gallery_figure(
    path: str | Path,
    images: np.ndarray,
    captions: Sequence[str],
    title: str,
    cols: int = 10,
    max_images: int = 100,
) -> None:
    """A grid of 28x28 images with a caption under each (e.g. misclassified digits)."""
    images, captions = images[:max_images], list(captions[:max_images])
    count = max(len(images), 1)
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.35 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cap in zip(axes.flat, images, captions, strict=False):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        ax.set_title(cap, fontsize=7)
    if len(images) == 0:
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(path, fig)
