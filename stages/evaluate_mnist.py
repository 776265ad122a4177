"""Stage `evaluate_mnist`: the trained model on the MNIST test set.

Reads  models/model.pt and data/mnist/test.npz.
Writes reports/mnist/metrics.json ({accuracy, ci_low, ci_high, loss, n, per_class_loss}),
reports/mnist/predictions.csv (actual,predicted rows for DVC's confusion plot), and
reports/mnist/confusion.png, reports/mnist/per_class_loss.png.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mnistgap import atomic
from mnistgap.cli import run_stage
from mnistgap.data import load_split
from mnistgap.evaluation import evaluate_checkpoint, write_standard_outputs
from mnistgap.params import load_params

log = logging.getLogger("stages.evaluate_mnist")

PARAMS = ("device", "eval_batch_size")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    ap.add_argument("--data", type=Path, default=Path("data/mnist/test.npz"))
    ap.add_argument("--out", type=Path, default=Path("reports/mnist"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    p = load_params(args.params, PARAMS)

    images, labels = load_split(args.data)
    ev = evaluate_checkpoint(args.model, images, labels, p["device"], p["eval_batch_size"])
    block = write_standard_outputs(args.out, ev, "MNIST test")
    atomic.write_json(args.out / "metrics.json", block)  # last: it marks the stage complete
    log.info(
        "MNIST test: accuracy %.4f, loss %.4f (n=%d)", block["accuracy"], block["loss"], block["n"]
    )


if __name__ == "__main__":
    sys.exit(run_stage("evaluate_mnist", main))
