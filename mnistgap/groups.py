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


def group_spread(groups: dict[str, dict]) -> dict:
    """How accuracy varies between groups, in a few numbers that read at any number of
    groups: their count, median, range and how many read below 90%."""
    acc = np.array([b["accuracy"] for b in groups.values()], dtype=np.float64)
    return {
        "groups": len(acc),
        "median_accuracy": float(np.median(acc)),
        "min_accuracy": float(acc.min()),
        "max_accuracy": float(acc.max()),
        "below_90": int((acc < 0.9).sum()),
    }
