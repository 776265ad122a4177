"""Tests for mnistgap.plots: the gallery mosaic, and group figures at 5 and at 500 groups."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from mnistgap import plots
from mnistgap.plots import gallery_figure


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.int16)


def test_gallery_draws_every_image_in_its_cell(tmp_path: Path) -> None:
    # 12 images in 10 columns: two rows. Image k is a flat square of brightness 20 * k + 30.
    images = np.stack([np.full((28, 28), 20 * k + 30, np.uint8) for k in range(12)])
    path = tmp_path / "g.png"
    gallery_figure(path, images, [f"{k}→{k}" for k in range(12)], "title", cols=10)
    px = _read(path)
    h, w = px.shape
    assert w > 900 and 300 < h < 500  # 10 cells of 1.1 inch at 120 dpi; two rows and a title
    # Every flat grey level appears in a solid block (text and borders are thin lines).
    for k in range(12):
        level = 20 * k + 30
        assert (np.abs(px - level) <= 2).sum() > 1500, f"image {k} (level {level}) is missing"
    # Cells 12..19 of the second row are empty: white, not black (a black 28x28 cell would
    # be ~1,000 pixels; the captions' text gives a few dozen black pixels).
    assert (px == 0).sum() < 300


def test_gallery_caps_images_and_handles_none(tmp_path: Path) -> None:
    images = np.zeros((150, 28, 28), np.uint8)
    path = tmp_path / "many.png"
    gallery_figure(path, images, ["x"] * 150, "t", cols=10, max_images=20)
    assert _read(path).shape[0] < 500  # two rows, not fifteen
    empty = tmp_path / "none.png"
    gallery_figure(empty, np.zeros((0, 28, 28), np.uint8), [], "nothing misclassified")
    assert (_read(empty) == 0).sum() < 300  # no image cell was drawn, only text


def _groups(n: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(n)
    acc = rng.uniform(0.6, 1.0, n)
    return {
        str(g): {"accuracy": a, "ci_low": a - 0.08, "ci_high": min(1.0, a + 0.05), "n": 40}
        for g, a in enumerate(acc, 1)
    }


def _labels_overlap(fig: plt.Figure, ax: plt.Axes) -> bool:
    """Whether any two of the axis' y tick labels overlap once drawn."""
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.get_yticklabels() if t.get_text()]
    return any(a.overlaps(b) for a, b in itertools.pairwise(boxes))


@pytest.mark.parametrize("n, named", [(5, 5), (40, 40), (41, 30), (500, 30)])
def test_named_groups_all_up_to_40_then_the_30_worst(n: int, named: int) -> None:
    ranked = [str(i) for i in range(n, 0, -1)]
    assert plots.named_groups(ranked) == ranked[:named]


def test_group_figure_names_every_group_when_there_are_few() -> None:
    groups = _groups(5)
    fig = plots.group_accuracy(groups, "t")
    try:
        ranked_axis, histogram = fig.axes
        labels = [t.get_text() for t in ranked_axis.get_yticklabels()]
        worst = min(groups, key=lambda g: groups[g]["accuracy"])
        assert len(labels) == 5 and labels[0] == f"{worst} (n=40)"  # the worst on top
        assert not _labels_overlap(fig, ranked_axis)
        assert sum(p.get_height() for p in histogram.patches) == 5  # every group counted
        # The accuracy axis starts at the lowest interval, to the 10% below (here 0.6 - 0.08).
        assert ranked_axis.get_xlim()[0] == pytest.approx(0.5)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("n", [41, 500])
def test_group_figure_reads_at_hundreds_of_groups(tmp_path: Path, n: int) -> None:
    """Many groups: the 30 worst named in their own panel with labels that do not overlap,
    every group drawn in a sorted curve, and a page-sized PNG (not one that grows with the
    groups, like the old 11,388-pixel-wide bar chart at 130 groups)."""
    groups = _groups(n)
    fig = plots.group_accuracy(groups, "t")
    try:
        named, everyone, histogram = fig.axes
        labels = [t.get_text() for t in named.get_yticklabels()]
        ranked = sorted(groups, key=lambda g: groups[g]["accuracy"])
        assert labels == [f"{g} (n=40)" for g in ranked[: plots.WORST_SHOWN]]
        assert not _labels_overlap(fig, named)
        curve = everyone.lines[0].get_xdata()
        assert len(curve) == n and list(curve) == sorted(curve)  # every group, worst first
        assert sum(p.get_height() for p in histogram.patches) == n
    finally:
        plt.close(fig)
    plots.group_accuracy_figure(tmp_path / "g.png", groups, "t")
    with Image.open(tmp_path / "g.png") as im:
        grey = np.asarray(im.convert("L"))
    assert grey.shape[1] <= 1600 and grey.shape[0] <= 1400
    assert 0.01 < float((grey < 200).mean()) < 0.5  # ink, on a light page
