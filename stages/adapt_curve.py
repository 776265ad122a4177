"""Stage `adapt_curve`: how many of the class's groups adaptation takes, read on held-out groups.

Reads  models/model.pt, data/class/digits.npz, data/mnist/train.npz and
       reports/adapt/predictions.csv (stage adapt: its folds, the MNIST-only and the
       all-other-groups readings).
Writes reports/adapt/curve.csv (groups, digits, accuracy, ci_low, ci_high, n: one point per
number of other groups adapted on, each the mean over the folds of what a fold adapted on;
0 = the MNIST-only model, then each of adapt.curve, then all the other groups) and
reports/adapt/curve.png. Every point reads every class digit with the model of its fold, as in
stage adapt, the same folds; a point's groups are drawn at random from the fold's others
(nested: a smaller point's groups are among a larger one's), all of them where a fold has
fewer. A size not smaller than every fold's count of other groups is the last point already.

Where stage adapt did not adapt (its predictions.csv has no rows), the curve is the
MNIST-only point alone.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from mnistgap import atomic, plots, tables
from mnistgap.adapt import Recipe, assign_folds, curve_readings, mean_groups
from mnistgap.cli import StageError, run_stage
from mnistgap.data import load_class, load_split
from mnistgap.device import select_device
from mnistgap.metrics import Evaluation, evaluate_logits, summary
from mnistgap.models import load_checkpoint
from mnistgap.params import load_params
from mnistgap.tta import predict_logits

log = logging.getLogger("stages.adapt_curve")

PARAMS = (
    "seed",
    "adapt",
    "augment",
    "label_smoothing",
    "lr_schedule",
    "precision",
    "device",
    "eval_batch_size",
    "tta",
)


def _point(groups: float, digits: float, ev: Evaluation) -> dict:
    s = summary(ev)
    return {
        "groups": groups,
        "digits": digits,
        **{k: s[k] for k in ("accuracy", "ci_low", "ci_high", "n")},
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    ap.add_argument("--data", type=Path, default=Path("data/class/digits.npz"))
    ap.add_argument("--mnist", type=Path, default=Path("data/mnist"), help="prepared MNIST")
    ap.add_argument("--predictions", type=Path, default=Path("reports/adapt/predictions.csv"))
    ap.add_argument("--out", type=Path, default=Path("reports/adapt"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    p = load_params(args.params, PARAMS)
    cfg = p["adapt"]
    device = select_device(p["device"])
    batch, tta = p["eval_batch_size"], p["tta"]

    cs = load_class(args.data)
    with args.predictions.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and [r["file"] for r in rows] != [str(f) for f in cs.files]:
        raise StageError(f"{args.predictions} is not of these class digits: rerun stage adapt")

    model, _ = load_checkpoint(args.model, device)
    base = evaluate_logits(
        predict_logits(model, torch.from_numpy(cs.images), tta, batch, device), cs.labels
    )
    points = [_point(0, 0, base)]
    if rows:
        assignment = assign_folds(cs.groups, cfg.folds, p["seed"])
        fold = np.array([assignment[int(g)] for g in cs.groups])
        if not np.array_equal(fold, [int(r["fold"]) for r in rows]):
            raise StageError(f"{args.predictions} has other folds: rerun stage adapt")
        others = [
            sum(f != k for f in assignment.values()) for k in sorted(set(assignment.values()))
        ]
        sizes = [n for n in cfg.curve if n < max(others)]
        recipe = Recipe(cfg, p["augment"], p["label_smoothing"], p["lr_schedule"], p["precision"])
        mnist_x, mnist_y = load_split(args.mnist / "train.npz")
        subsets, readings = curve_readings(
            model,
            cs.images,
            cs.labels,
            cs.groups,
            mnist_x,
            mnist_y,
            recipe,
            p["seed"],
            tta,
            batch,
            device,
            sizes,
        )
        counts = dict(zip(*np.unique(cs.groups, return_counts=True), strict=True))
        for size in sizes:
            digits = np.mean([sum(counts[g] for g in by[size]) for by in subsets.values()])
            ev = evaluate_logits(readings[size], cs.labels)
            points.append(_point(mean_groups(subsets, size), float(digits), ev))
        # All the other groups: stage adapt's out-of-fold readings.
        oof = Evaluation(
            labels=cs.labels,
            preds=np.array([int(r["pred"]) for r in rows], dtype=np.int64),
            losses=np.zeros(len(rows)),
            confidence=np.array([float(r["confidence"]) for r in rows]),
        )
        all_digits = np.mean([int((fold != k).sum()) for k in sorted(set(assignment.values()))])
        points.append(_point(float(np.mean(others)), float(all_digits), oof))
    else:
        log.info("stage adapt did not adapt: the curve is the MNIST-only point alone")

    atomic.write_csv(args.out / "curve.csv", *tables.curve_table(points))
    plots.curve_figure(args.out / "curve.png", points, "adapted to this class: held-out groups")
    log.info(
        "learning curve: %s",
        ", ".join(f"{pt['groups']:g} groups {pt['accuracy']:.4f}" for pt in points),
    )


if __name__ == "__main__":
    sys.exit(run_stage("adapt_curve", main))
