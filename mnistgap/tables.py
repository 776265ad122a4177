"""The CSV tables beside the metrics files: per-digit and per-group numbers, written and read.

Metrics files hold headline numbers only (accuracy, interval, loss and n of each set; the spread
of the groups), so that ``dvc exp show`` and ``dvc metrics diff`` stay readable whatever the
number of groups. What varies with the data, a row per digit or per group, lives in these tables,
which ``dvc plots`` draws and the report reads. Plain Python (no torch): the report stage stays
light.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PER_CLASS_LOSS_HEADER = ("digit", "loss")
#: groups.csv: a group's results, then the same without its flagged MNIST look-alikes.
GROUPS_HEADER = (
    "group",
    "accuracy",
    "ci_low",
    "ci_high",
    "loss",
    "n",
    "flagged",
    "accuracy_without_flagged",
    "n_without_flagged",
)
_GROUP_PREFIX = "group "  # the label DVC's bar plot shows ("group 3", not a bare number)


def per_class_loss_table(losses: Sequence[float | None]) -> tuple[tuple[str, ...], list[list]]:
    """(header, rows) of per_class_loss.csv: one row per digit 0-9, empty where no image."""
    rows = [[f"digit {c}", "" if v is None else f"{v:.5f}"] for c, v in enumerate(losses)]
    return PER_CLASS_LOSS_HEADER, rows


def read_per_class_loss(path: str | Path) -> list[float | None]:
    """The mean loss of each true digit 0-9 from a per_class_loss.csv (None where empty)."""
    with Path(path).open(encoding="utf-8", newline="") as fh:
        rows = {row["digit"]: row["loss"] for row in csv.DictReader(fh)}
    return [float(rows[f"digit {c}"]) if rows.get(f"digit {c}") else None for c in range(10)]


def groups_table(
    groups: Mapping[str, Mapping[str, Any]],
) -> tuple[tuple[str, ...], list[list]]:
    """(header, rows) of groups.csv from ``{id: {accuracy, ci_low, ci_high, loss, n, flagged,
    without_flagged: {accuracy, n}}}``."""

    def num(x: float | None) -> str:
        return "" if x is None else f"{x:.6f}"

    rows = []
    for gid, b in groups.items():
        wf = b["without_flagged"]
        rows.append(
            [
                f"{_GROUP_PREFIX}{gid}",
                num(b["accuracy"]),
                num(b["ci_low"]),
                num(b["ci_high"]),
                num(b["loss"]),
                b["n"],
                b["flagged"],
                num(wf["accuracy"]),
                wf["n"],
            ]
        )
    return GROUPS_HEADER, rows


def read_groups(path: str | Path) -> dict[str, dict[str, Any]]:
    """groups.csv back as ``{id: {accuracy, ci_low, ci_high, loss, n, flagged,
    without_flagged: {accuracy, n}}}`` (numbers as written: 6 decimals)."""

    def num(text: str) -> float | None:
        return float(text) if text else None

    out: dict[str, dict[str, Any]] = {}
    with Path(path).open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            gid = row["group"].removeprefix(_GROUP_PREFIX)
            out[gid] = {
                "accuracy": num(row["accuracy"]),
                "ci_low": num(row["ci_low"]),
                "ci_high": num(row["ci_high"]),
                "loss": num(row["loss"]),
                "n": int(row["n"]),
                "flagged": int(row["flagged"]),
                "without_flagged": {
                    "accuracy": num(row["accuracy_without_flagged"]),
                    "n": int(row["n_without_flagged"]),
                },
            }
    return out


def read_leakage(path: str | Path) -> dict[str, Any]:
    """What the report says of leakage.csv (one row per class digit): flagged digits by
    reason and by group, and the median nearest distance and ratio."""
    by_reason: dict[str, int] = {}
    by_group: dict[str, int] = {}
    distances, ratios = [], []
    with Path(path).open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            distances.append(float(row["distance"]))
            ratios.append(float(row["ratio"]))
            if row["flagged"] == "1":
                by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + 1
                by_group[row["group"]] = by_group.get(row["group"], 0) + 1
    return {
        "by_reason": by_reason,
        "by_group": by_group,
        "median_distance": statistics.median(distances) if distances else None,
        "median_ratio": statistics.median(ratios) if ratios else None,
    }


#: adapt/predictions.csv: every class digit's out-of-fold reading beside the MNIST-only one.
ADAPT_PREDICTIONS_HEADER = (
    "file",
    "group",
    "fold",
    "label",
    "pred",
    "confidence",
    "mnist_only_pred",
    "flagged",
)
#: adapt/groups.csv: per group, the MNIST-only model's accuracy and the adapted (out-of-fold).
ADAPT_GROUPS_HEADER = (
    "group",
    "n",
    "fold",
    "mnist_only_accuracy",
    "accuracy",
    "ci_low",
    "ci_high",
)
#: adapt/curve.csv: accuracy on held-out groups against the number of other groups adapted on.
CURVE_HEADER = ("groups", "digits", "accuracy", "ci_low", "ci_high", "n")


def _num6(x: float | None) -> str:
    return "" if x is None else f"{x:.6f}"


def adapt_groups_table(
    groups: Mapping[str, Mapping[str, Any]],
) -> tuple[tuple[str, ...], list[list]]:
    """(header, rows) of adapt/groups.csv from ``{id: {n, fold, mnist_only_accuracy,
    accuracy, ci_low, ci_high}}``."""
    rows = [
        [
            f"{_GROUP_PREFIX}{gid}",
            b["n"],
            b["fold"],
            _num6(b["mnist_only_accuracy"]),
            _num6(b["accuracy"]),
            _num6(b["ci_low"]),
            _num6(b["ci_high"]),
        ]
        for gid, b in groups.items()
    ]
    return ADAPT_GROUPS_HEADER, rows


def read_adapt_groups(path: str | Path) -> dict[str, dict[str, Any]]:
    """adapt/groups.csv back as ``{id: {n, fold, mnist_only_accuracy, accuracy, ci_low,
    ci_high}}`` (empty when the file has no rows: adaptation was not possible)."""
    out: dict[str, dict[str, Any]] = {}
    with Path(path).open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            out[row["group"].removeprefix(_GROUP_PREFIX)] = {
                "n": int(row["n"]),
                "fold": int(row["fold"]),
                **{
                    k: float(row[k]) if row[k] else None
                    for k in ("mnist_only_accuracy", "accuracy", "ci_low", "ci_high")
                },
            }
    return out


def curve_table(points: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, ...], list[list]]:
    """(header, rows) of adapt/curve.csv from ``[{groups, digits, accuracy, ci_low, ci_high,
    n}]`` (groups and digits: the mean over the folds of what each fold adapted on)."""
    rows = [
        [
            f"{p['groups']:g}",
            f"{p['digits']:g}",
            _num6(p["accuracy"]),
            _num6(p["ci_low"]),
            _num6(p["ci_high"]),
            p["n"],
        ]
        for p in points
    ]
    return CURVE_HEADER, rows


def read_curve(path: str | Path) -> list[dict[str, Any]]:
    """adapt/curve.csv back as a list of points (see :func:`curve_table`)."""
    with Path(path).open(encoding="utf-8", newline="") as fh:
        return [
            {
                "groups": float(row["groups"]),
                "digits": float(row["digits"]),
                **{k: float(row[k]) for k in ("accuracy", "ci_low", "ci_high")},
                "n": int(row["n"]),
            }
            for row in csv.DictReader(fh)
        ]
