"""Read a class folder and its photo versions (scripts/make_photo_folder.py): files read and
rejected, and the model's accuracy on the originals against each variant.

    python benchmarks/photo_reading.py SRC PHOTOS [--model models/model.pt]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mnistgap.class_folder import ClassFolderError, load_folder
from mnistgap.models import load_checkpoint
from mnistgap.params import Filter
from mnistgap.tta import predict_logits


def measure(folder: Path, model: torch.nn.Module) -> tuple[int, int, float, int]:
    log: list = []
    try:
        digits, rejected = load_folder(folder, "mnist", Filter(), read_log=log, workers=1)
    except ClassFolderError as err:
        return 0, len(err.rejected), float("nan"), 0
    pred = predict_logits(model, torch.from_numpy(digits.images)).argmax(1).numpy()
    acc = float((pred == digits.labels).mean())
    return len(digits.files), len(rejected), acc, sum(r.photo for r in log)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("photos", type=Path)
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    args = ap.parse_args(argv)
    model, _ = load_checkpoint(args.model, "cpu")
    print(f"{'set':10} {'read':>5} {'rejected':>8} {'photo':>5} {'accuracy':>8}")
    variants = sorted((p.name, p) for p in args.photos.iterdir() if p.is_dir())
    for name, folder in [("original", args.src), *variants]:
        n, rej, acc, photo = measure(folder, model)
        print(f"{name:10} {n:5d} {rej:8d} {photo:5d} {100 * acc:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
