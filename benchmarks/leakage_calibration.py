"""Calibrate the leakage check's two thresholds on MNIST itself (not on class digits).

The leakage stage flags a class digit as a near-copy of an MNIST training image when, after
``renormalize_batch`` on both sides, its RMS distance to the nearest training image is below
``leakage.threshold`` or the ratio nearest / second-nearest distance is below
``leakage.ratio_threshold`` (see ``mnistgap/leakage.py``). This script measures:

1. **False positives.** The 10,000 MNIST test digits are genuine new handwriting that is in no
   way a copy of a training image (apart from the few duplicates MNIST is known to contain).
   Their nearest-distance and ratio quantiles (0.1 %, 1 %, 5 %, median) say which thresholds
   flag what fraction of genuine digits; the params defaults are the 0.1 % quantiles, rounded.
   The false-positive rate of the thresholds in ``params.yaml`` is printed too.
2. **Recall on known copies.** 1,000 random training images are turned into copies by a few
   transformations and searched against all 60,000 training images, their own originals
   included (that is the point: a copy's nearest neighbour is its original). The table gives
   how often the nearest is the original and what fraction each criterion flags.

Transformations: ``binarise`` (0/255 at level 127, which is what a bilevel export does),
``png+loader`` (PNG round trip, then the project's class-digit loader
``mnistgap.class_digits.preprocess_mnist``), ``bicubic x10`` (bicubic up to 280 px and back to
28), and the loader applied after each of the other two (``binarise+loader``,
``bicubic 280+loader``: a copy saved big and read back the way class digits are read).

Run: ``python benchmarks/leakage_calibration.py --raw data/mnist/raw`` (about a minute on two
CPU cores; ``--device cuda`` runs the searches on a GPU).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mnistgap.leakage import distance_ratio, two_nearest_neighbours
from mnistgap.mnist_source import read_idx
from mnistgap.params import load_params
from mnistgap.recipe import ImageError, preprocess_mnist, renormalize_batch

QUANTILES = (0.001, 0.01, 0.05, 0.5)
RATIO_SWEEP = (0.5, 0.55, 0.575, 0.6, 0.65, 0.7, 0.75)
DISTANCE_SWEEP = (0.01, 0.015, 0.02, 0.0225, 0.025, 0.03)


def binarise(img: np.ndarray) -> np.ndarray:
    """0/255 at level 127 (a bilevel export of the digit)."""
    return np.where(img > 127, 255, 0).astype(np.uint8)


def png_loader(img: np.ndarray) -> np.ndarray:
    """Save as PNG, read it back and run the project's class-digit preprocessing."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    buf.seek(0)
    gray = np.asarray(Image.open(buf).convert("L"), dtype=np.float32) / 255.0
    return preprocess_mnist(gray)


def bicubic_280(img: np.ndarray) -> np.ndarray:
    """Bicubic up to 280x280 (uint8, as a saved image would be)."""
    return np.asarray(Image.fromarray(img).resize((280, 280), Image.Resampling.BICUBIC))


def bicubic_round_trip(img: np.ndarray) -> np.ndarray:
    """Bicubic up to 280x280 and back down to 28x28."""
    big = Image.fromarray(bicubic_280(img))
    return np.asarray(big.resize((28, 28), Image.Resampling.BICUBIC))


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "binarise": binarise,
    "png+loader": png_loader,
    "bicubic x10": bicubic_round_trip,
    "binarise+loader": lambda img: png_loader(binarise(img)),
    "bicubic 280+loader": lambda img: preprocess_mnist(bicubic_280(img) / 255.0),
}


def _search(
    query: torch.Tensor, reference: torch.Tensor, device: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(nearest distance, ratio, nearest index) of every query row against the reference."""
    dist, idx = two_nearest_neighbours(query.to(device), reference.to(device))
    d = dist.cpu().numpy()
    return d[:, 0], distance_ratio(d[:, 0], d[:, 1]), idx[:, 0].cpu().numpy()


def _pct(x: float) -> str:
    return f"{100 * x:6.2f}%"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, default=Path("data/mnist/raw"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--n-copies", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    p = load_params(args.params, ("leakage",))["leakage"]
    threshold, ratio_threshold = p.threshold, p.ratio_threshold
    train = read_idx(args.raw / "train-images-idx3-ubyte")
    test = read_idx(args.raw / "t10k-images-idx3-ubyte")
    started = time.perf_counter()
    reference = renormalize_batch(train).reshape(len(train), -1)
    query = renormalize_batch(test).reshape(len(test), -1)
    dist, ratio, _ = _search(query, reference, args.device)
    print(
        f"MNIST test ({len(test)}) vs train ({len(train)}) after renormalize_batch: "
        f"{time.perf_counter() - started:.1f} s on {args.device}\n"
    )

    print("Genuine new handwriting (MNIST test digits), quantiles:")
    print(f"{'':<28}{'min':>8}" + "".join(f"{100 * q:>7g}%" for q in QUANTILES))
    for name, values in (("nearest RMS distance", dist), ("ratio nearest/second", ratio)):
        qs = np.quantile(values, QUANTILES)
        print(f"{name:<28}{values.min():8.4f}" + "".join(f"{v:8.4f}" for v in qs))
    suggested_d = float(np.quantile(dist, 0.001))
    suggested_r = float(np.quantile(ratio, 0.001))
    print(f"\n0.1% quantiles: threshold {suggested_d:.4f}, ratio_threshold {suggested_r:.4f}")

    by_d, by_r = dist < threshold, ratio < ratio_threshold
    print(
        f"\nFalse positives of params.yaml (threshold {threshold:g}, ratio_threshold "
        f"{ratio_threshold:g}) on MNIST test: distance {_pct(by_d.mean())} ({by_d.sum()}), "
        f"ratio {_pct(by_r.mean())} ({by_r.sum()}), either {_pct((by_d | by_r).mean())} "
        f"({(by_d | by_r).sum()})"
    )

    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(train), size=args.n_copies, replace=False)
    print(f"\nCopies of {args.n_copies} random training images (seed {args.seed}), searched")
    print("against all training images (originals included):")
    header = (
        f"{'transformation':<20}{'n':>6}{'nn=orig':>9}{'med d':>8}{'med r':>8}"
        f"{'by d':>9}{'by r':>9}{'either':>9}"
    )
    print(header)
    copy_results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, fn in TRANSFORMS.items():
        copies, kept = [], []
        for i in picks:
            try:
                copies.append(fn(train[i]))
                kept.append(i)
            except ImageError:  # the loader rejected it (cannot happen for real digits)
                continue
        q = renormalize_batch(np.stack(copies)).reshape(len(copies), -1)
        d, r, nn = _search(q, reference, args.device)
        copy_results[name] = (d, r)
        fd, fr = d < threshold, r < ratio_threshold
        print(
            f"{name:<20}{len(copies):>6}{_pct(float((nn == np.array(kept)).mean())):>9}"
            f"{np.median(d):8.4f}{np.median(r):8.3f}{_pct(fd.mean()):>9}{_pct(fr.mean()):>9}"
            f"{_pct((fd | fr).mean()):>9}"
        )

    print("\nSweep of ratio_threshold (ratio criterion alone): false positives on MNIST test,")
    print("fraction of each kind of copy flagged:")
    names = list(TRANSFORMS)
    print(f"{'ratio <':<9}{'FP test':>9}" + "".join(f"{n[:18]:>20}" for n in names))
    for t in RATIO_SWEEP:
        row = f"{t:<9g}{_pct((ratio < t).mean()):>9}"
        row += "".join(f"{_pct((copy_results[n][1] < t).mean()):>20}" for n in names)
        print(row)
    print("\nSweep of threshold (distance criterion alone):")
    print(f"{'d <':<9}{'FP test':>9}" + "".join(f"{n[:18]:>20}" for n in names))
    for t in DISTANCE_SWEEP:
        row = f"{t:<9g}{_pct((dist < t).mean()):>9}"
        row += "".join(f"{_pct((copy_results[n][0] < t).mean()):>20}" for n in names)
        print(row)


if __name__ == "__main__":
    main()
