"""Seed noise: train the defaults with several seeds; MNIST test and class-digit accuracy of each.

    python benchmarks/seed_spread.py [--seeds 1 2 3 42] [--class-data data/class/digits.npz]

Trains the params.yaml model with each seed (the seed drives the split's shuffling, weight
init, dropout and augmentation; the validation split stays the pipeline's), then prints one
line per seed: MNIST test accuracy, class-digit accuracy (correct of n) and loss, training
seconds and kept epoch; then the range of each. A change to training "keeps accuracy" when its
numbers stay inside this spread. For another folder of digits, prepare it first:
``python -m stages.prepare_class --dir DIR --out /tmp/d/digits.npz --rejected /tmp/d/rej.csv``.
Needs data/mnist from `dvc repro`. To compare an older commit's training loop, run this file
(and defaults.py beside it) from a worktree of that commit with ``PYTHONPATH=.``: they only use
long-standing APIs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from defaults import train_defaults

from mnistgap.data import load_split
from mnistgap.params import load_params
from mnistgap.recipe import normalize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 42])
    ap.add_argument("--data", type=Path, default=Path("data/mnist"))
    ap.add_argument("--class-data", type=Path, default=Path("data/class/digits.npz"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args()

    p = load_params(args.params)
    test_x, test_y = load_split(args.data / "test.npz")
    digits = np.load(args.class_data)
    class_x = torch.from_numpy(digits["images"])
    class_y = torch.from_numpy(digits["labels"]).long()

    rows = []
    header = ("seed", "MNIST", "class", "correct", "loss", "train s", "kept")
    print("{:>5} {:>7} {:>7} {:>9} {:>7} {:>8} {:>5}".format(*header))
    for seed in args.seeds:
        t0 = time.perf_counter()
        model, result = train_defaults(p, args.data, torch.device("cpu"), seed=seed)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            mnist_acc = (model(normalize(test_x)).argmax(1) == test_y).double().mean().item()
            logits = model(normalize(class_x))
        correct = int((logits.argmax(1) == class_y).sum())
        loss = F.cross_entropy(logits, class_y).item()
        rows.append((mnist_acc, correct / len(class_y), correct))
        print(
            f"{seed:>5} {mnist_acc:>7.2%} {correct / len(class_y):>7.2%} "
            f"{correct:>4}/{len(class_y):<4} {loss:>7.4f} {seconds:>8.1f} {result.best_epoch:>5}"
        )
    mnist, cls, cor = zip(*rows, strict=True)
    print(
        f"range: MNIST {min(mnist):.2%}-{max(mnist):.2%}, class {min(cls):.2%}-{max(cls):.2%} "
        f"({min(cor)}-{max(cor)} of {len(class_y)})"
    )


if __name__ == "__main__":
    main()
