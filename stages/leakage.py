"""Stage `leakage`: flag class digits that are near-copies of MNIST training images.

Reads  data/class/digits.npz (the class cache) and train-images-idx3-ubyte,
       train-labels-idx1-ubyte from data/mnist/raw (all 60,000 training images, IDX order).
Writes reports/leakage/leakage.csv (file,digit,group,member,nearest_index,nearest_label,
       distance,flagged,second_distance,ratio,reason; one row per class digit, in the
       cache's order),
       reports/leakage/flagged_pairs.png (flagged digits beside their MNIST neighbours) and
       reports/leakage/metrics.json ({n, flagged}: the headline; per digit is leakage.csv).
Params leakage.threshold (nearest RMS distance) and leakage.ratio_threshold (nearest /
       second-nearest distance): a digit below either is flagged.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from mnistgap import atomic
from mnistgap.cli import run_stage
from mnistgap.data import load_class
from mnistgap.leakage import (
    CSV_HEADER,
    LeakageResult,
    find_leaks,
    flagged_order,
    leakage_metrics,
    leakage_rows,
)
from mnistgap.mnist_source import read_idx
from mnistgap.params import load_params
from mnistgap.plots import gallery_figure
from mnistgap.recipe import renormalize_batch

log = logging.getLogger("stages.leakage")

PARAMS = ("leakage",)
MAX_PAIRS = 40


def _pairs_figure(
    path: Path,
    class_images: np.ndarray,
    mnist_images: np.ndarray,
    files: np.ndarray,
    result: LeakageResult,
) -> None:
    """Each flagged class digit beside its MNIST neighbour (as compared), closest first."""
    order = flagged_order(result, MAX_PAIRS)
    images: list[np.ndarray] = []
    captions: list[str] = []
    if len(order):
        # Show what was compared: both sides after renormalize_batch, on the 0..255 scale.
        ours = renormalize_batch(class_images[order]).numpy() * 255.0
        theirs = renormalize_batch(mnist_images[result.index[order]]).numpy() * 255.0
        for k, i in enumerate(order):
            images += [ours[k], theirs[k]]
            captions += [
                f"{files[i]}\nd={result.distance[i]:.3f} r={result.ratio[i]:.2f}",
                f"MNIST #{result.index[i]}\nlabel {result.nearest_label[i]}",
            ]
    n_flagged = int(result.flagged.sum())
    rule = (
        f"RMS distance d < {result.threshold:g} or nearest/second-nearest ratio "
        f"r < {result.ratio_threshold:g}"
    )
    if n_flagged == 0:
        title = f"No class digit is a near-copy of an MNIST training image ({rule})"
    else:
        shown = f"closest {len(order)} of {n_flagged}" if n_flagged > len(order) else "all"
        title = (
            f"Near-copies of MNIST ({rule}), {shown}:\nclass digit | nearest MNIST training image"
        )
    stack = np.stack(images) if images else np.zeros((0, 28, 28))
    gallery_figure(path, stack, captions, title, cols=10, max_images=2 * MAX_PAIRS)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--class-data", type=Path, default=Path("data/class/digits.npz"))
    ap.add_argument("--mnist-raw", type=Path, default=Path("data/mnist/raw"))
    ap.add_argument("--out", type=Path, default=Path("reports/leakage"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    p = load_params(args.params, PARAMS)["leakage"]
    threshold, ratio_threshold = p.threshold, p.ratio_threshold

    cs = load_class(args.class_data)
    mnist_images = read_idx(args.mnist_raw / "train-images-idx3-ubyte")
    mnist_labels = read_idx(args.mnist_raw / "train-labels-idx1-ubyte")
    if mnist_images.ndim != 3 or mnist_images.shape[1:] != (28, 28):
        raise ValueError(f"MNIST training images must be (N, 28, 28), got {mnist_images.shape}")
    if mnist_labels.shape != (len(mnist_images),):
        raise ValueError(
            f"MNIST training labels {mnist_labels.shape} do not match {len(mnist_images)} images"
        )
    if len(cs.files) == 0:
        raise ValueError(f"{args.class_data} holds no class digits")

    result = find_leaks(cs.images, mnist_images, mnist_labels, threshold, ratio_threshold)
    atomic.write_csv(
        args.out / "leakage.csv",
        CSV_HEADER,
        leakage_rows(cs.files, cs.labels, cs.groups, cs.members, result),
    )
    _pairs_figure(args.out / "flagged_pairs.png", cs.images, mnist_images, cs.files, result)
    metrics = leakage_metrics(result)
    atomic.write_json(args.out / "metrics.json", metrics)  # last: it marks the stage complete
    log.info(
        "leakage: %d of %d class digits flagged (RMS distance < %g or ratio < %g); "
        "median distance %.4f, median ratio %.3f",
        metrics["flagged"],
        metrics["n"],
        threshold,
        ratio_threshold,
        float(np.median(result.distance)),
        float(np.median(result.ratio)),
    )


if __name__ == "__main__":
    sys.exit(run_stage("leakage", main))
