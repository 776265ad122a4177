"""The CSV tables beside the metrics files: what is written is read back, by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnistgap import atomic
from mnistgap.leakage import CSV_HEADER
from mnistgap.tables import (
    groups_table,
    per_class_loss_table,
    read_groups,
    read_leakage,
    read_per_class_loss,
)


def test_per_class_loss_round_trip_keeps_empty_digits(tmp_path: Path) -> None:
    losses = [0.1234567, None, *[float(d) for d in range(2, 10)]]
    path = tmp_path / "per_class_loss.csv"
    atomic.write_csv(path, *per_class_loss_table(losses))
    assert path.read_text(encoding="utf-8").splitlines()[:3] == [
        "digit,loss",
        "digit 0,0.12346",
        "digit 1,",
    ]
    assert read_per_class_loss(path) == [0.12346, None, *[float(d) for d in range(2, 10)]]


def test_groups_round_trip(tmp_path: Path) -> None:
    groups = {
        "2": {
            "accuracy": 0.9,
            "ci_low": 0.6,
            "ci_high": 0.98,
            "loss": 0.3,
            "n": 10,
            "flagged": 1,
            "without_flagged": {"accuracy": 1.0, "n": 9},
        },
        "10": {
            "accuracy": 0.5,
            "ci_low": 0.2,
            "ci_high": 0.8,
            "loss": 1.5,
            "n": 4,
            "flagged": 4,
            "without_flagged": {"accuracy": None, "n": 0},
        },
    }
    path = tmp_path / "groups.csv"
    atomic.write_csv(path, *groups_table(groups))
    assert path.read_text(encoding="utf-8").splitlines()[1].startswith("group 2,0.900000,")
    assert read_groups(path) == groups
    assert list(read_groups(path)) == ["2", "10"]  # in the order written


def test_read_leakage_counts_flags_by_reason_and_group(tmp_path: Path) -> None:
    rows = [
        ["0-1-1.png", 0, 1, 1, 5, 0, "0.0100", 1, "0.2000", "0.0500", "both"],
        ["1-1-1.png", 1, 1, 1, 6, 1, "0.1000", 1, "0.2000", "0.5000", "ratio"],
        ["2-3-1.png", 2, 3, 1, 7, 2, "0.3000", 0, "0.3100", "0.9677", ""],
    ]
    path = tmp_path / "leakage.csv"
    atomic.write_csv(path, CSV_HEADER, rows)
    got = read_leakage(path)
    assert got["by_reason"] == {"both": 1, "ratio": 1}
    assert got["by_group"] == {"1": 2}
    assert got["median_distance"] == pytest.approx(0.1)
    assert got["median_ratio"] == pytest.approx(0.5)
