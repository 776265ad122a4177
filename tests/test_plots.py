"""Tests for mnistgap.plots: the misclassified-digit gallery drawn as one mosaic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

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
