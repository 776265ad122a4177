"""Static PNG figures (matplotlib, Agg): they stand on their own offline, unlike DVC's HTML."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on CI or servers; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np

from mnistgap import atomic
from mnistgap.groups import rank_groups


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


#: Up to this many groups every group is named in the figures; above it, only the worst ones
#: (rows of a figure stay >= ~0.25 inch, a readable 9-point label, at any number of groups).
LABEL_ALL_GROUPS = 40
#: How many of the worst groups are named, and shown in the heatmap, when there are more.
WORST_SHOWN = 30


def named_groups(ranked: Sequence[str]) -> list[str]:
    """The groups a figure names, from ``ranked`` (worst first): all of them up to
    :data:`LABEL_ALL_GROUPS`, else the :data:`WORST_SHOWN` worst."""
    return list(ranked if len(ranked) <= LABEL_ALL_GROUPS else ranked[:WORST_SHOWN])


def group_accuracy_figure(
    path: str | Path, groups: Mapping[str, Mapping[str, float]], title: str
) -> None:
    """:func:`group_accuracy` saved as a PNG."""
    _save(path, group_accuracy(groups, title))


def group_accuracy(groups: Mapping[str, Mapping[str, float]], title: str) -> plt.Figure:
    """Every group's accuracy with its 95% Wilson interval, sorted from the worst, beside the
    distribution of the group accuracies. Readable at 5 groups and at 500: up to
    :data:`LABEL_ALL_GROUPS` groups every row is named (id and digits); above, the
    :data:`WORST_SHOWN` worst get a panel of named rows, and all groups are drawn unnamed as
    one sorted curve with their intervals as a band. The accuracy axes start at the lowest
    interval (to the 10% below), so differences between groups stay visible."""
    ids = rank_groups(groups)
    acc = np.array([groups[g]["accuracy"] for g in ids])
    low = np.array([groups[g]["ci_low"] for g in ids])
    high = np.array([groups[g]["ci_high"] for g in ids])
    n = len(ids)
    named = len(named_groups(ids))
    few = named == n
    x_lo = max(0.0, np.floor(float(low.min()) * 10) / 10)
    x_lim = (x_lo, 1.005)
    widths = [3, 2] if few else [3, 3, 2]
    fig, axes = plt.subplots(
        1, len(widths), figsize=(11 if few else 13, max(3.2, 0.25 * named + 1.8)),
        gridspec_kw={"width_ratios": widths},
    )  # fmt: skip
    ax_named, ax_hist = axes[0], axes[-1]

    y = np.arange(named)
    # Clip: matplotlib rejects negative error bars, which float rounding could produce.
    xerr = np.clip(np.stack([acc[:named] - low[:named], high[:named] - acc[:named]]), 0.0, None)
    ax_named.errorbar(acc[:named], y, xerr=xerr, fmt="o", ms=4, lw=1, color="tab:blue", capsize=2)
    ax_named.set_yticks(list(y))
    ax_named.set_yticklabels([f"{ids[i]} (n={groups[ids[i]]['n']})" for i in y], fontsize=8)
    ax_named.set_ylim(named - 0.5, -0.5)  # the worst at the top
    ax_named.set_xlim(*x_lim)
    ax_named.set_xlabel("accuracy (95% Wilson interval)")
    ax_named.set_ylabel("group (digits)")
    ax_named.grid(axis="x", alpha=0.3)
    ax_named.set_title(
        f"{n} groups, sorted from the worst" if few else f"the {named} worst of {n} groups"
    )

    if not few:
        ax_all = axes[1]
        rank = np.arange(1, n + 1)
        ax_all.fill_betweenx(
            rank, low, high, color="tab:blue", alpha=0.2, lw=0, label="95% interval"
        )
        ax_all.plot(acc, rank, color="tab:blue", lw=1.2, label="accuracy")
        ax_all.axhspan(0.5, named + 0.5, color="tab:red", alpha=0.08, label=f"the {named} named")
        ax_all.set_ylim(n + 0.5, 0.5)
        ax_all.set_xlim(*x_lim)
        ax_all.set_xlabel("accuracy")
        ax_all.set_ylabel("rank, worst first")
        ax_all.grid(axis="x", alpha=0.3)
        ax_all.legend(loc="lower left", fontsize=8)
        ax_all.set_title(f"all {n} groups, sorted")

    bins = np.histogram_bin_edges(acc, bins="auto", range=(x_lo, 1.0))
    if len(bins) > 41:
        bins = np.linspace(x_lo, 1.0, 41)
    ax_hist.hist(acc, bins=bins, color="tab:blue", alpha=0.8)
    median = float(np.median(acc))
    ax_hist.axvline(median, color="black", ls="--", lw=1, label=f"median {median:.1%}")
    ax_hist.set_xlim(*x_lim)
    ax_hist.set_xlabel("group accuracy")
    ax_hist.set_ylabel("groups")
    ax_hist.legend(loc="upper left", fontsize=8)
    ax_hist.set_title("distribution of group accuracies")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def heatmap_figure(
    path: str | Path, matrix: np.ndarray, row_labels: Sequence[str], title: str
) -> None:
    """Group x digit accuracy heatmap; NaN cells (no image) are left blank. Rows come in the
    order given; the caller passes at most :data:`LABEL_ALL_GROUPS` of them."""
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(row_labels) + 1.6))
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


def curve_figure(path: str | Path, points: Sequence[Mapping[str, float]], title: str) -> None:
    """Accuracy on held-out groups (with 95% intervals) against the number of other groups
    adapted on (0 = the MNIST-only model)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.array([p["groups"] for p in points], dtype=float)
    acc = np.array([p["accuracy"] for p in points], dtype=float)
    low = acc - np.array([p["ci_low"] for p in points], dtype=float)
    high = np.array([p["ci_high"] for p in points], dtype=float) - acc
    ax.errorbar(x, 100 * acc, yerr=100 * np.stack([low, high]), marker="o", capsize=3)
    for p in points:
        ax.annotate(
            f"{100 * p['accuracy']:.1f}%",
            (p["groups"], 100 * p["accuracy"]),
            textcoords="offset points",
            xytext=(6, -12),
            ha="left",
            fontsize=8,
        )
    ax.set(
        xlabel="other groups adapted on (0 = MNIST only)",
        ylabel="accuracy on held-out groups (%)",
        title=title,
    )
    ax.grid(alpha=0.3)
    _save(path, fig)
