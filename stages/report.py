"""Stage `report`: write reports/report.md from every metrics file and the params used.

Reads  reports/{mnist,class,groups,train,leakage}/metrics.json, the tables beside them
(per_class_loss.csv of every evaluated set, groups/groups.csv, leakage/leakage.csv),
reports/class/{rejected.csv,folder.json}, reports/train/{environment,members}.json,
reports/adapt/{metrics.json,groups.csv,curve.csv} (the model adapted to the class),
reports/external/<set>/metrics.json for every set in params' `external`, the seed-spread
records reports/seeds/*.json (written by scripts/seed_spread.py) and params.yaml.
Writes reports/report.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

from mnistgap import atomic, tables
from mnistgap.cli import run_stage
from mnistgap.params import Params, load_params
from mnistgap.report import ReportInputs, render_report

log = logging.getLogger("stages.report")

PARAMS = None  # the report prints every parameter, so it depends on the whole params.yaml


def _json(path: Path) -> dict:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=Path, default=Path("reports"))
    ap.add_argument("--seeds", type=Path, default=Path("reports/seeds"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--out", type=Path, default=Path("reports/report.md"))
    args = ap.parse_args(argv)
    params = Params.pick(load_params(args.params, PARAMS))
    r = args.reports
    with (r / "class" / "rejected.csv").open(encoding="utf-8", newline="") as fh:
        rejected = [(row["file"], row["reason"]) for row in csv.DictReader(fh)]
    evaluated = {"mnist": r / "mnist", "class": r / "class"} | {
        name: r / "external" / name for name in params.external
    }
    inputs = ReportInputs(
        mnist=_json(r / "mnist" / "metrics.json"),
        klass=_json(r / "class" / "metrics.json"),
        groups=tables.read_groups(r / "groups" / "groups.csv"),
        group_spread=_json(r / "groups" / "metrics.json"),
        train=_json(r / "train" / "metrics.json"),
        members=_json(r / "train" / "members.json"),
        leakage=_json(r / "leakage" / "metrics.json")
        | tables.read_leakage(r / "leakage" / "leakage.csv"),
        rejected=rejected,
        environment=_json(r / "train" / "environment.json"),
        external={name: _json(r / "external" / name / "metrics.json") for name in params.external},
        seeds=[_json(p) for p in sorted(args.seeds.glob("*.json"))],
        folder=_json(r / "class" / "folder.json"),
        adapt=_json(r / "adapt" / "metrics.json"),
        adapt_groups=tables.read_adapt_groups(r / "adapt" / "groups.csv"),
        curve=tables.read_curve(r / "adapt" / "curve.csv"),
        per_class_loss={
            name: tables.read_per_class_loss(folder / "per_class_loss.csv")
            for name, folder in evaluated.items()
        },
    )
    atomic.write_text(args.out, render_report(inputs, params))
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    sys.exit(run_stage("report", main))
