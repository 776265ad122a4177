"""Accuracy of checkpoints alone, averaged (an ensemble), and with test-time augmentation.

    python benchmarks/ensemble_eval.py CKPT [CKPT ...] [--sets mnist class usps ...]
        [--extra NAME=path/to/digits.npz ...] [--tta rot|scale|none] [--errors DIR]

Reads each checkpoint (a single model or an ensemble), then prints per evaluation set: every
checkpoint's accuracy, their mean, and the accuracy of the average of their probabilities.
The sets are the prepared caches `dvc repro` writes: MNIST test (data/mnist/test.npz), the class
folder (data/class/digits.npz), each independent set (data/external/<set>.npz), and any
``--extra`` cache (``python -m stages.prepare_class --dir DIR --out X/digits.npz --rejected
X/rej.csv``). ``--errors DIR`` draws each set's digits that the averaged models misread
(DIR/<set>_errors.png, up to 100, captioned "index: label>read"), to look at them before
blaming the model. ``--tta`` reads every image with the test-time views of
:mod:`mnistgap.tta` (params.yaml's ``tta``; default ``none`` here): ``rot`` the identity and
rotations by ±7°, ``scale`` the identity and zooms of 0.9 and 1.1.
A seed-spread record's models (``scripts/seed_spread.py``) stay in the DVC cache: `git show
<exp ref>:dvc.lock` gives each model.pt's md5, its file is .dvc/cache/files/md5/<2>/<30>.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch

from mnistgap.data import load_split
from mnistgap.models import load_checkpoint
from mnistgap.plots import gallery_figure
from mnistgap.tta import VIEWS, predict_logits


def probabilities(model: torch.nn.Module, images: torch.Tensor, tta: str) -> torch.Tensor:
    """Mean softmax of ``model`` over the ``tta`` views of ``images`` (the pipeline's reading)."""
    return predict_logits(model, images, tta).softmax(dim=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--sets", nargs="+", default=["mnist", "class", "usps"])
    ap.add_argument("--extra", nargs="*", default=[], metavar="NAME=NPZ")
    ap.add_argument("--tta", choices=list(VIEWS), default="none")
    ap.add_argument("--errors", type=Path, metavar="DIR")
    args = ap.parse_args()

    paths = {"mnist": Path("data/mnist/test.npz"), "class": Path("data/class/digits.npz")}
    paths |= {s: Path(f"data/external/{s}.npz") for s in args.sets if s not in paths}
    paths |= {k: Path(v) for k, v in (e.split("=", 1) for e in args.extra)}
    models = [load_checkpoint(p)[0] for p in args.checkpoints]
    print(f"{len(models)} checkpoint(s), test-time augmentation: {args.tta}")
    for name, path in paths.items():
        if name == "mnist":
            x, y = load_split(path)
        else:
            d = np.load(path)
            x, y = torch.from_numpy(d["images"]), torch.from_numpy(d["labels"]).long()
        probs = [probabilities(m, x, args.tta) for m in models]
        single = [float((p.argmax(1) == y).double().mean()) for p in probs]
        read = sum(probs).argmax(1)
        averaged = float((read == y).double().mean())
        if args.errors:
            wrong = (read != y).nonzero().squeeze(1).numpy()
            args.errors.mkdir(parents=True, exist_ok=True)
            gallery_figure(
                args.errors / f"{name}_errors.png",
                x.numpy()[wrong],
                [f"{i}: {y[i]}>{read[i]}" for i in wrong],
                f"{name}: {len(wrong)} of {len(y)} misread (index: label>read)",
            )
        print(
            f"{name:<8} n={len(y):>6}  each "
            + " ".join(f"{a:.2%}" for a in single)
            + f"  mean {statistics.mean(single):.2%}  averaged {averaged:.2%}"
        )


if __name__ == "__main__":
    main()
