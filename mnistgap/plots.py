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
    """A grid of 28x28 images with a caption above each (e.g. misclassified digits).

    Drawn as ONE mosaic image with text on top, not one axes per digit: a hundred axes and
    ``tight_layout`` took about 4 s, most of evaluate_class's time.
    """
    images, captions = images[:max_images], list(captions[:max_images])
    count = max(len(images), 1)
    rows = (count + cols - 1) // cols
    size = images.shape[1] if len(images) else 28
    gap, band = 4, 14  # pixels between cells, and above each image for its caption
    cell_w, cell_h = size + gap, size + band
    mosaic = np.full((rows * cell_h, cols * cell_w), np.nan)  # NaN shows as white
    for k, img in enumerate(images):
        r, c = divmod(k, cols)
        mosaic[r * cell_h + band : (r + 1) * cell_h, c * cell_w : c * cell_w + size] = img
    inch = 1.1 / cell_w  # inches per mosaic pixel: 1.1 inch per cell, as before
    grid_h = rows * cell_h * inch
    fig = plt.figure(figsize=(cols * cell_w * inch, grid_h + 0.4))
    ax = fig.add_axes((0.0, 0.0, 1.0, grid_h / (grid_h + 0.4)))
    ax.axis("off")
    cmap = plt.get_cmap("gray").with_extremes(bad="white")
    ax.imshow(mosaic, cmap=cmap, vmin=0, vmax=255, interpolation="nearest", aspect="auto")
    for k, cap in enumerate(captions):
        r, c = divmod(k, cols)
        x, y = c * cell_w + size / 2 - 0.5, r * cell_h + band - 1.5
        ax.text(x, y, cap, ha="center", va="bottom", fontsize=7, linespacing=1.1)
    if len(images) == 0:
        ax.text(cols * cell_w / 2, cell_h / 2, "none", ha="center", va="center")
    fig.suptitle(title, fontsize=10, y=1.0 - 0.08 / (grid_h + 0.4))
    _save(path, fig)
