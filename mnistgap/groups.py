"""Per-group results read at any number of groups: their ranking and their spread.

Plain Python over the ``{"<group id>": {"accuracy", "n", ...}}`` blocks that
:func:`mnistgap.metrics.group_summaries` makes; no torch, so the report stage stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def rank_groups(groups: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Group ids from the lowest accuracy up (ties: more digits first, then the id)."""

    def key(gid: str) -> tuple[float, int, int, str]:
        block = groups[gid]
        return (block["accuracy"], -block["n"], int(gid) if gid.isdigit() else -1, gid)

    return sorted(groups, key=key)


def group_spread(groups: Mapping[str, Mapping[str, Any]]) -> dict:
    """How accuracy varies between groups, in a few numbers that read at any number of
    groups: their count, the median and the worst group's accuracy, and how many read below
    90% (groups.metrics.json; each group's own numbers are in groups.csv)."""
    acc = np.array([b["accuracy"] for b in groups.values()], dtype=np.float64)
    return {
        "groups": len(acc),
        "median_accuracy": float(np.median(acc)),
        "worst_accuracy": float(acc.min()),
        "below_90": int((acc < 0.9).sum()),
    }
