"""Shared by the evaluate_* stages: run a checkpoint on images and write the standard outputs."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from mnistgap import atomic, plots, tables
from mnistgap.data import ClassSet, load_class, load_split, read_flags
from mnistgap.device import select_device
from mnistgap.metrics import (
    Evaluation,
    confusion_matrix,
    evaluate_logits,
    per_class_loss,
    predictions_csv,
    summary,
)
from mnistgap.models import load_checkpoint
from mnistgap.tta import predict_logits

log = logging.getLogger(__name__)


def evaluate_checkpoint(
    model_path: str | Path,
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    device: str = "auto",
    batch_size: int = 4096,
    tta: str = "none",
) -> Evaluation:
    """Load ``model_path`` (weights_only) and evaluate it on uint8 images (N, 28, 28), each
    read with the test-time views ``tta`` (:mod:`mnistgap.tta`)."""
    dev = select_device(device)
    model, _ = load_checkpoint(model_path, dev)
    logits = predict_logits(model, torch.as_tensor(images), tta, batch_size, dev)
    return evaluate_logits(logits, labels)


def write_standard_outputs(out_dir: str | Path, ev: Evaluation, title: str) -> dict:
    """predictions.csv (DVC confusion plot), per_class_loss.csv, confusion.png, per_class_loss.png;
    returns the headline block (the caller writes metrics.json last, marking completion)."""
    out = Path(out_dir)
    block = summary(ev)
    losses = per_class_loss(ev.labels, ev.losses)
    atomic.write_text(out / "predictions.csv", predictions_csv(ev))
    atomic.write_csv(out / "per_class_loss.csv", *tables.per_class_loss_table(losses))
    plots.confusion_figure(
        out / "confusion.png",
        confusion_matrix(ev.labels, ev.preds),
        f"{title}: accuracy {block['accuracy']:.2%} (n={block['n']})",
    )
    plots.per_class_loss_figure(
        out / "per_class_loss.png", losses, f"{title}: mean loss per true digit"
    )
    return block


def evaluate_split(
    model_path: str | Path,
    data_path: str | Path,
    out_dir: str | Path,
    title: str,
    device: str = "auto",
    batch_size: int = 4096,
    tta: str = "none",
) -> dict:
    """The checkpoint on a prepared split (.npz of images and labels): the standard outputs,
    then ``metrics.json`` last (its presence marks the folder complete); returns the block."""
    images, labels = load_split(data_path)
    ev = evaluate_checkpoint(model_path, images, labels, device, batch_size, tta)
    block = write_standard_outputs(out_dir, ev, title)
    atomic.write_json(Path(out_dir) / "metrics.json", block)
    log.info(
        "%s: accuracy %.4f [%.4f, %.4f], loss %.4f (n=%d)",
        title,
        block["accuracy"],
        block["ci_low"],
        block["ci_high"],
        block["loss"],
        block["n"],
    )
    return block


def evaluate_class_digits(
    model_path: str | Path,
    data_path: str | Path,
    leakage_csv: str | Path,
    device: str = "auto",
    batch_size: int = 4096,
    tta: str = "none",
) -> tuple[ClassSet, np.ndarray, Evaluation]:
    """The cached class digits, their leakage flags (aligned by file) and the model's results."""
    cs = load_class(data_path)
    flagged = read_flags(leakage_csv, cs.files)
    ev = evaluate_checkpoint(model_path, cs.images, cs.labels, device, batch_size, tta)
    return cs, flagged, ev
