"""Stage `train`: fit the model on the cached MNIST split.

Reads  data/mnist/train.npz, data/mnist/val.npz and the training params.
Writes models/model.pt (self-describing checkpoint) and reports/train/ (dvclive: per-epoch
train/validation loss and accuracy under plots/metrics/; metrics.json: the kept model's
validation loss and accuracy, and for one model its kept epoch and epochs run; members.json:
each member's seed, kept epoch and epochs run; environment.json: the processor, precision and
library versions the numbers came from).

With ``ensemble: k`` > 1 the members are trained one after another on this split (which
``seed`` made), member i initialised, shuffled, augmented and dropped out from ``seed + i``
(so member 0 is the model of a single run). The curves run on through the members' epochs;
metrics.json holds the ensemble's validation loss and accuracy, members.json each member's.

Kill-safe: dvclive writes into a fresh hidden sibling of --live (``reports/.train.partial-<pid>``),
which replaces --live only after the checkpoint is saved, so a killed run leaves the previous
model and reports untouched; the next run removes the partial folder.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from dvclive import Live

from mnistgap import atomic
from mnistgap.cli import run_stage
from mnistgap.data import load_split
from mnistgap.device import select_device
from mnistgap.models import build_model, save_checkpoint
from mnistgap.params import Augment, ModelParams, TrainParams, load_params
from mnistgap.training import evaluate_loss_acc, train_members

log = logging.getLogger("stages.train")

# The network, how it is trained, on which device and with which augmentation.
PARAMS = (*ModelParams.model_fields, *TrainParams.model_fields, "device", "augment")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/mnist"), help="prepared MNIST folder")
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"), help="checkpoint out")
    ap.add_argument("--live", type=Path, default=Path("reports/train"), help="dvclive folder")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)

    p = load_params(args.params, PARAMS)
    model_cfg = ModelParams.pick(p)
    train_cfg = TrainParams.pick(p)
    augment = p["augment"]
    device = select_device(p["device"])

    train_x, train_y = load_split(args.data / "train.npz")
    val_x, val_y = load_split(args.data / "val.npz")
    log.info(
        "training %s on %d images (validation %d) on %s, %d threads",
        model_cfg.model,
        len(train_x),
        len(val_x),
        device,
        torch.get_num_threads(),
    )

    model = build_model(model_cfg, seed=p["seed"])  # weight initialisation (member i: seed + i)

    # Live() wipes its folder at start, so it never writes into --live itself: it fills a
    # fresh sibling that replaces --live at the very end (after the checkpoint). Work folders
    # of earlier killed runs are removed first. dvc.yaml is hand-written (dvcyaml=False).
    atomic.remove_stale_dirs(args.live)
    partial = atomic.partial_dir(args.live)
    try:
        summary = _train_and_log(
            partial, model, train_x, train_y, val_x, val_y, train_cfg, augment, device
        )
        save_checkpoint(args.model, model.cpu(), model_cfg, extra=summary)
        # A kill between the checkpoint and this swap leaves the new model beside the old
        # reports, each complete; dvc.lock is not updated then, so `dvc repro` reruns.
        atomic.replace_dir(partial, args.live)
    finally:
        # Only left when training or saving failed (an exception, Ctrl-C).
        shutil.rmtree(partial, ignore_errors=True)
    kept = summary.get("members", {"0": summary})
    log.info(
        "kept epoch(s) %s (val loss %.4f, acc %.4f) -> %s",
        ", ".join(f"{m['best_epoch']} of {m['epochs_run']}" for m in kept.values()),
        summary["best_val_loss"],
        summary["best_val_acc"],
        args.model,
    )


def _train_and_log(
    live_dir: Path,
    model: torch.nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    train_cfg: TrainParams,
    augment: Augment,
    device: torch.device,
) -> dict[str, Any]:
    """Train ``model`` (each member of an ensemble in turn) with dvclive logging into
    ``live_dir``; return the summary written to its metrics.json."""
    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False) as live:

        def on_epoch(row: dict[str, float]) -> None:
            for split in ("train", "val"):
                live.log_metric(f"{split}/loss", row[f"{split}_loss"])
                live.log_metric(f"{split}/acc", row[f"{split}_acc"])
            live.log_metric("lr", row["lr"], plot=True)
            live.next_step()

        results = train_members(
            model, train_x, train_y, val_x, val_y, train_cfg, augment, device, on_epoch
        )
        log.info("trained %d model(s) in %.1fs", len(results), sum(r.seconds for r in results))
        kept: dict[str, dict[str, Any]] = {}
        for i, result in enumerate(results):
            best = result.history[result.best_epoch - 1]
            kept[str(i)] = {
                "seed": train_cfg.seed + i,
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "best_val_loss": best["val_loss"],
                "best_val_acc": best["val_acc"],
            }
        atomic.write_json(live_dir / "environment.json", results[0].environment)
        atomic.write_json(live_dir / "members.json", kept)
        if len(kept) == 1:
            summary = {k: v for k, v in kept["0"].items() if k != "seed"}
        else:
            model.eval()
            # The ensemble's validation loss is training's, label-smoothed where training
            # smoothed: the same quantity as a single model's best_val_loss.
            loss, acc = evaluate_loss_acc(
                model, val_x, val_y, train_cfg.eval_batch_size, device, train_cfg.label_smoothing
            )
            summary = {"best_val_loss": loss, "best_val_acc": acc}
    # metrics.json holds the headline only (dvclive's own summary adds the last epoch's
    # figures, which are not the kept model's): written over dvclive's once it is done.
    atomic.write_json(live_dir / "metrics.json", summary)
    return summary | ({"members": kept} if len(kept) > 1 else {})


if __name__ == "__main__":
    sys.exit(run_stage("train", main))
