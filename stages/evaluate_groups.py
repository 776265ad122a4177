"""Stage `evaluate_groups`: the trained model on each group of writers of the class digits.

Reads  models/model.pt, data/class/digits.npz, reports/leakage/leakage.csv.
Writes reports/groups/metrics.json ({"groups": {"<id>": {accuracy, ci_low, ci_high, loss, n,
without_flagged}}}), reports/groups/groups.csv (one row per group, for DVC's bar plot),
reports/groups/groups.png (accuracy with 95% Wilson error bars, and loss) and
reports/groups/group_digit_accuracy.png (group x digit heatmap).
"""

from __future__ import annotations

import logging
import sys

from mnistgap import atomic, plots
from mnistgap.cli import class_eval_parser, run_stage
from mnistgap.evaluation import evaluate_class_digits
from mnistgap.metrics import group_digit_accuracy, group_summaries
from mnistgap.params import load_params

log = logging.getLogger("stages.evaluate_groups")

PARAMS = ("device", "eval_batch_size")


def main(argv: list[str] | None = None) -> None:
    args = class_eval_parser(__doc__.splitlines()[0], "reports/groups").parse_args(argv)
    p = load_params(args.params, PARAMS)

    cs, flagged, ev = evaluate_class_digits(
        args.model, args.data, args.leakage, p["device"], p["eval_batch_size"]
    )
    groups = group_summaries(ev, cs.groups)
    clean = group_summaries(ev.subset(~flagged), cs.groups[~flagged])
    for gid, block in groups.items():
        block["without_flagged"] = clean.get(gid, {"accuracy": None, "n": 0})

    atomic.write_csv(
        args.out / "groups.csv",
        ["group", "accuracy", "ci_low", "ci_high", "loss", "n"],
        [
            [
                f"group {g}",
                f"{b['accuracy']:.4f}",
                f"{b['ci_low']:.4f}",
                f"{b['ci_high']:.4f}",
                f"{b['loss']:.4f}",
                b["n"],
            ]
            for g, b in groups.items()
        ],
    )
    plots.group_bar_figure(args.out / "groups.png", groups, "class digits per group")
    ids, matrix = group_digit_accuracy(ev, cs.groups)
    plots.heatmap_figure(
        args.out / "group_digit_accuracy.png", matrix, ids, "accuracy per group and digit"
    )
    atomic.write_json(args.out / "metrics.json", {"groups": groups})  # last: marks completion
    for gid, b in groups.items():
        log.info(
            "group %s: accuracy %.4f [%.4f, %.4f], loss %.4f (n=%d)",
            gid,
            b["accuracy"],
            b["ci_low"],
            b["ci_high"],
            b["loss"],
            b["n"],
        )


if __name__ == "__main__":
    sys.exit(run_stage("evaluate_groups", main))
