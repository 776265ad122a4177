"""Stage `evaluate_groups`: the trained model on each group of writers of the class digits.

Reads  models/model.pt, data/class/digits.npz, reports/leakage/leakage.csv.
Writes reports/groups/metrics.json (the spread of the groups, a few numbers at any number of
groups: {groups, median_accuracy, worst_accuracy, below_90}), reports/groups/groups.csv (one row
per group: accuracy, interval, loss, n, flagged look-alikes and the accuracy without them; DVC's
bar plot and the report read it), reports/groups/groups.png (every group's accuracy with its
95% Wilson interval, sorted from the worst, and their distribution) and
reports/groups/group_digit_accuracy.png (group x digit heatmap: every group when there are
few, else the worst ones).
"""

from __future__ import annotations

import logging
import sys

from mnistgap import atomic, plots
from mnistgap.cli import class_eval_parser, run_stage
from mnistgap.evaluation import evaluate_class_digits
from mnistgap.groups import group_spread, rank_groups
from mnistgap.metrics import group_digit_accuracy, group_summaries
from mnistgap.params import load_params
from mnistgap.tables import groups_table

log = logging.getLogger("stages.evaluate_groups")

PARAMS = ("device", "eval_batch_size", "tta")


def main(argv: list[str] | None = None) -> None:
    args = class_eval_parser(__doc__.splitlines()[0], "reports/groups").parse_args(argv)
    p = load_params(args.params, PARAMS)

    cs, flagged, ev = evaluate_class_digits(
        args.model, args.data, args.leakage, p["device"], p["eval_batch_size"], p["tta"]
    )
    groups = group_summaries(ev, cs.groups)
    clean = group_summaries(ev.subset(~flagged), cs.groups[~flagged])
    for gid, block in groups.items():
        block["flagged"] = int(flagged[cs.groups == int(gid)].sum())
        block["without_flagged"] = {
            k: clean.get(gid, {"accuracy": None, "n": 0})[k] for k in ("accuracy", "n")
        }

    atomic.write_csv(args.out / "groups.csv", *groups_table(groups))
    plots.group_accuracy_figure(args.out / "groups.png", groups, "class digits per group")
    ids, matrix = group_digit_accuracy(ev, cs.groups)
    ranked = rank_groups(groups)
    shown = plots.named_groups(ranked)
    rows = [ids.index(g) for g in shown]
    title = "accuracy per group and digit" + (
        "" if len(shown) == len(ranked) else f": the {len(shown)} worst of {len(ranked)} groups"
    )
    plots.heatmap_figure(
        args.out / "group_digit_accuracy.png", matrix[rows], [f"{g}" for g in shown], title
    )
    spread = group_spread(groups)
    atomic.write_json(args.out / "metrics.json", spread)  # last: marks completion
    log.info(
        "%d groups: median accuracy %.4f (worst %.4f), %d below 90%%; worst: %s",
        spread["groups"],
        spread["median_accuracy"],
        spread["worst_accuracy"],
        spread["below_90"],
        ", ".join(f"{g} {groups[g]['accuracy']:.3f} (n={groups[g]['n']})" for g in ranked[:5]),
    )
    for gid in ranked:
        b = groups[gid]
        log.debug(
            "group %s: accuracy %.4f, loss %.4f (n=%d)", gid, b["accuracy"], b["loss"], b["n"]
        )


if __name__ == "__main__":
    sys.exit(run_stage("evaluate_groups", main))
