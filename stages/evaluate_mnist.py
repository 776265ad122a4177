"""Stage `evaluate_mnist`: the trained model on the MNIST test set.

Reads  models/model.pt and data/mnist/test.npz.
Writes reports/mnist/metrics.json ({accuracy, ci_low, ci_high, loss, n, per_class_loss}),
reports/mnist/predictions.csv (actual,predicted rows for DVC's confusion plot), and
reports/mnist/per_class_loss.csv, confusion.png, per_class_loss.png.
"""

from __future__ import annotations

import sys

from mnistgap.cli import run_stage, split_eval_parser
from mnistgap.evaluation import evaluate_split
from mnistgap.params import load_params

PARAMS = ("device", "eval_batch_size", "tta")


def main(argv: list[str] | None = None) -> None:
    args = split_eval_parser(__doc__.splitlines()[0]).parse_args(argv)
    p = load_params(args.params, PARAMS)
    evaluate_split(
        args.model, args.data, args.out, "MNIST test", p["device"], p["eval_batch_size"], p["tta"]
    )


if __name__ == "__main__":
    sys.exit(run_stage("evaluate_mnist", main))
