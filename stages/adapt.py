"""Stage `adapt`: the trained model adapted to the class, read out-of-fold on writers it never saw.

Reads  models/model.pt, data/class/digits.npz, reports/leakage/leakage.csv,
       data/mnist/train.npz (mixed into every fine-tuning) and data/mnist/test.npz.
Writes reports/adapt/metrics.json ({accuracy, ci_low, ci_high, loss, n: every class digit
read by the model of its fold, adapted on the other folds' groups; mnist_only_accuracy: the
trained model on the same digits; mnist_accuracy: MNIST test read by models/adapted.pt;
without_flagged: {accuracy, ci_low, ci_high, n}}), reports/adapt/predictions.csv (file, group,
fold, label, pred, confidence, mnist_only_pred, flagged), reports/adapt/groups.csv (per group:
MNIST-only vs adapted accuracy), reports/adapt/confusion.png, and models/adapted.pt (the trained
model fine-tuned on every group: `predict --model models/adapted.pt`).

With adapt.enabled false, or fewer than 2 groups, it says why in one line and writes
metrics.json {adapted: false, reason}, header-only tables, a figure saying so and, as
models/adapted.pt, the trained model unchanged (its ``extra`` says it was not adapted).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from mnistgap import atomic, plots, tables
from mnistgap.adapt import Recipe, fine_tune, out_of_fold
from mnistgap.cli import run_stage
from mnistgap.data import load_class, load_split, read_flags
from mnistgap.device import select_device
from mnistgap.metrics import confusion_matrix, evaluate_logits, summary, without_loss
from mnistgap.models import load_checkpoint, save_checkpoint
from mnistgap.params import ModelParams, load_params
from mnistgap.tta import predict_logits

log = logging.getLogger("stages.adapt")

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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    ap.add_argument("--data", type=Path, default=Path("data/class/digits.npz"))
    ap.add_argument("--leakage", type=Path, default=Path("reports/leakage/leakage.csv"))
    ap.add_argument("--mnist", type=Path, default=Path("data/mnist"), help="prepared MNIST")
    ap.add_argument("--out", type=Path, default=Path("reports/adapt"))
    ap.add_argument("--adapted", type=Path, default=Path("models/adapted.pt"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    p = load_params(args.params, PARAMS)
    cfg = p["adapt"]
    device = select_device(p["device"])
    batch, tta = p["eval_batch_size"], p["tta"]

    cs = load_class(args.data)
    flagged = read_flags(args.leakage, cs.files)
    model, ckpt = load_checkpoint(args.model, device)
    n_groups = len(np.unique(cs.groups))
    reason = (
        "adapt.enabled is false"
        if not cfg.enabled
        else f"{n_groups} group(s) of class digits: adaptation needs at least 2"
        if n_groups < 2
        else None
    )
    if reason is not None:
        _not_adapted(args, model, ckpt, reason)
        return

    recipe = Recipe(cfg, p["augment"], p["label_smoothing"], p["lr_schedule"], p["precision"])
    mnist_x, mnist_y = load_split(args.mnist / "train.npz")
    base = evaluate_logits(
        predict_logits(model, torch.from_numpy(cs.images), tta, batch, device), cs.labels
    )

    oof = out_of_fold(
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
    )
    ev = evaluate_logits(oof.logits, cs.labels)
    folds = int(oof.folds.max()) + 1
    log.info(
        "out-of-fold over %d folds of %d groups: %d digits read", folds, n_groups, len(ev.labels)
    )

    # The model the class uses: fine-tuned on every group (seed: one no fold used).
    adapted = fine_tune(
        model,
        torch.from_numpy(cs.images),
        torch.from_numpy(cs.labels),
        mnist_x,
        mnist_y,
        recipe,
        p["seed"] + 100 * folds,
        device,
    )
    test_x, test_y = load_split(args.mnist / "test.npz")
    mnist = evaluate_logits(predict_logits(adapted, test_x, tta, batch, device), test_y)
    mnist_accuracy = float((mnist.preds == mnist.labels).mean())

    block = summary(ev)
    block["mnist_only_accuracy"] = float((base.preds == base.labels).mean())
    block["mnist_accuracy"] = mnist_accuracy
    block["without_flagged"] = without_loss(summary(ev.subset(~flagged)))

    rows = [
        [f, int(g), int(k), int(y), int(q), f"{c:.4f}", int(b), int(fl)]
        for f, g, k, y, q, c, b, fl in zip(
            cs.files,
            cs.groups,
            oof.folds,
            ev.labels,
            ev.preds,
            ev.confidence,
            base.preds,
            flagged,
            strict=True,
        )
    ]
    atomic.write_csv(args.out / "predictions.csv", tables.ADAPT_PREDICTIONS_HEADER, rows)
    per_group = {}
    for g in np.unique(cs.groups):
        mask = cs.groups == g
        s = summary(ev.subset(mask))
        per_group[str(int(g))] = {
            "n": s["n"],
            "fold": int(oof.folds[mask][0]),
            "mnist_only_accuracy": float((base.preds[mask] == base.labels[mask]).mean()),
            **{k: s[k] for k in ("accuracy", "ci_low", "ci_high")},
        }
    atomic.write_csv(args.out / "groups.csv", *tables.adapt_groups_table(per_group))
    plots.confusion_figure(
        args.out / "confusion.png",
        confusion_matrix(ev.labels, ev.preds),
        f"adapted to this class (out-of-fold): {block['accuracy']:.2%} (n={block['n']})",
    )
    extra = {
        "adapted": True,
        "base": str(args.model),
        "adapt": cfg.model_dump(),
        "class_digits": len(cs.labels),
        "groups": int(n_groups),
        "mnist_accuracy": mnist_accuracy,
    }
    save_checkpoint(
        args.adapted, adapted.cpu(), ModelParams.model_validate(ckpt["model_config"]), extra
    )
    atomic.write_json(args.out / "metrics.json", block)  # last: it marks the stage complete
    log.info(
        "adapted (out-of-fold): accuracy %.4f [%.4f, %.4f] (MNIST-only %.4f, n=%d); without %d "
        "flagged %.4f; MNIST test read by %s: %.4f",
        block["accuracy"],
        block["ci_low"],
        block["ci_high"],
        block["mnist_only_accuracy"],
        block["n"],
        int(flagged.sum()),
        block["without_flagged"]["accuracy"] or float("nan"),
        args.adapted,
        mnist_accuracy,
    )


def _not_adapted(args: argparse.Namespace, model: torch.nn.Module, ckpt: dict, reason: str) -> None:
    """Every output, saying that adaptation was not possible and why."""
    log.info("no adaptation: %s", reason)
    atomic.write_csv(args.out / "predictions.csv", tables.ADAPT_PREDICTIONS_HEADER, [])
    atomic.write_csv(args.out / "groups.csv", tables.ADAPT_GROUPS_HEADER, [])
    plots.confusion_figure(
        args.out / "confusion.png", np.zeros((10, 10), dtype=np.int64), f"not adapted: {reason}"
    )
    extra = {"adapted": False, "reason": reason, "base": str(args.model)}
    save_checkpoint(
        args.adapted, model.cpu(), ModelParams.model_validate(ckpt["model_config"]), extra
    )
    atomic.write_json(args.out / "metrics.json", {"adapted": False, "reason": reason})


if __name__ == "__main__":
    sys.exit(run_stage("adapt", main))
