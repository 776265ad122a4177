"""Stages `evaluate_mnist` and `evaluate_external@<set>`: the trained model on a prepared split.

One module for both, as they are the same code: the MNIST test set (``--set mnist``) and each
independent real-handwriting set (``--set usps``, ...; evaluation only, training never sees
them) are each a prepared .npz of 28x28 images and labels.
Reads  models/model.pt and the split (data/mnist/test.npz, data/external/<set>.npz).
Writes into --out (reports/mnist/, reports/external/<set>/): metrics.json ({accuracy, ci_low,
ci_high, loss, n}), predictions.csv (actual,predicted rows for DVC's confusion plot),
per_class_loss.csv, confusion.png and per_class_loss.png.
"""

from __future__ import annotations

import sys

from mnistgap.cli import run_stage, split_eval_parser
from mnistgap.evaluation import evaluate_split
from mnistgap.external import SETS
from mnistgap.params import load_params

PARAMS = ("device", "eval_batch_size", "tta")
#: The MNIST test set beside the independent sets, by the title the figures carry.
TITLES = {"mnist": "MNIST test"} | {name: s.title for name, s in SETS.items()}


def main(argv: list[str] | None = None) -> None:
    ap = split_eval_parser(__doc__.splitlines()[0])
    ap.add_argument("--set", required=True, choices=sorted(TITLES), dest="name")
    args = ap.parse_args(argv)
    p = load_params(args.params, PARAMS)
    evaluate_split(
        args.model,
        args.data,
        args.out,
        TITLES[args.name],
        p["device"],
        p["eval_batch_size"],
        p["tta"],
    )


if __name__ == "__main__":
    sys.exit(run_stage("evaluate_split", main))
