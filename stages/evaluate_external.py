"""Stage `evaluate_external`: the trained model on one independent real-handwriting set.

Reads  models/model.pt and data/external/<set>.npz.
Writes reports/external/<set>/metrics.json ({accuracy, ci_low, ci_high, loss, n,
per_class_loss}), predictions.csv (actual,predicted rows for DVC's confusion plot),
per_class_loss.csv, confusion.png and per_class_loss.png: what evaluate_mnist writes.
"""

from __future__ import annotations

import sys

from mnistgap.cli import run_stage, split_eval_parser
from mnistgap.evaluation import evaluate_split
from mnistgap.external import SETS
from mnistgap.params import load_params

PARAMS = ("device", "eval_batch_size", "tta")


def main(argv: list[str] | None = None) -> None:
    ap = split_eval_parser(__doc__.splitlines()[0])
    ap.add_argument("--set", required=True, choices=sorted(SETS), dest="name")
    args = ap.parse_args(argv)
    p = load_params(args.params, PARAMS)
    title = SETS[args.name].title
    evaluate_split(
        args.model, args.data, args.out, title, p["device"], p["eval_batch_size"], p["tta"]
    )


if __name__ == "__main__":
    sys.exit(run_stage("evaluate_external", main))
