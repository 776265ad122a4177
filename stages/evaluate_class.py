"""Stage `evaluate_class`: the trained model on every usable class digit.

Reads  models/model.pt, data/class/digits.npz, reports/leakage/leakage.csv.
Writes reports/class/metrics.json ({accuracy, ci_low, ci_high, loss, n, without_flagged:
{accuracy, ci_low, ci_high, n}}), reports/class/predictions.csv (actual,predicted for DVC's
confusion plot), reports/class/per_class_loss.csv, confusion.png, per_class_loss.png and
reports/class/misclassified.png (every wrong digit with true/predicted label and confidence).
"""

from __future__ import annotations

import logging
import sys

import numpy as np

from mnistgap import atomic, plots
from mnistgap.cli import class_eval_parser, run_stage
from mnistgap.evaluation import evaluate_class_digits, write_standard_outputs
from mnistgap.metrics import summary, without_loss
from mnistgap.params import load_params

log = logging.getLogger("stages.evaluate_class")

PARAMS = ("device", "eval_batch_size", "tta")


def main(argv: list[str] | None = None) -> None:
    args = class_eval_parser(__doc__.splitlines()[0], "reports/class").parse_args(argv)
    p = load_params(args.params, PARAMS)

    cs, flagged, ev = evaluate_class_digits(
        args.model, args.data, args.leakage, p["device"], p["eval_batch_size"], p["tta"]
    )
    block = write_standard_outputs(args.out, ev, "class digits")
    block["without_flagged"] = without_loss(summary(ev.subset(~flagged)))

    wrong = np.flatnonzero(ev.preds != ev.labels)
    wrong = wrong[np.argsort(-ev.confidence[wrong], kind="stable")]  # most confident first
    plots.gallery_figure(
        args.out / "misclassified.png",
        cs.images[wrong],
        [
            f"{cs.files[i].removesuffix('.png')}\n"
            f"{ev.labels[i]}→{ev.preds[i]} {ev.confidence[i]:.0%}"
            for i in wrong[:100]
        ],
        f"misclassified class digits: {len(wrong)} of {len(ev.labels)} "
        "(file, true→predicted, confidence; most confident first)",
    )
    atomic.write_json(args.out / "metrics.json", block)  # last: it marks the stage complete
    log.info(
        "class digits: accuracy %.4f [%.4f, %.4f], loss %.4f (n=%d); without %d flagged: %.4f",
        block["accuracy"],
        block["ci_low"],
        block["ci_high"],
        block["loss"],
        block["n"],
        int(flagged.sum()),
        block["without_flagged"]["accuracy"] or float("nan"),
    )


if __name__ == "__main__":
    sys.exit(run_stage("evaluate_class", main))
