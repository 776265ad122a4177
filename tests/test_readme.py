"""The README is the front door: short, its links resolve, its preset table is the records'."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mnistgap import presets

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
#: The table's columns after the preset's name and description: (record, metric) pairs.
COLUMNS = [("", "mnist"), ("", "class"), ("", "usps"), ("dev-", "class")]


def test_the_readme_is_short() -> None:
    assert len(README.splitlines()) <= 120


def test_every_relative_link_of_the_readme_resolves() -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if "://" not in link]
    assert local, "the README links nothing of the project"
    assert [link for link in local if not (REPO / link).exists()] == []


def _mean(record: str, metric: str) -> str:
    path = REPO / "reports" / "seeds" / f"{record}.json"
    if not path.is_file():
        return "—"
    runs = json.loads(path.read_text(encoding="utf-8"))["runs"]
    values = [r[metric] for r in runs]
    return f"{100 * sum(values) / len(values):.2f}"


def test_the_preset_table_is_every_preset_with_its_records_means() -> None:
    """Each preset once, in conf/preset/'s order, with the 3-seed means of its records
    (`NAME` on the bundled sample, `dev-NAME` on the development digits), so the README's
    numbers are the records' and a preset without a record says so."""
    table = README.split("<!-- presets:", 1)[1].split("<!-- /presets -->", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    names = [re.match(r"\| `([^`]+)`", row).group(1) for row in rows]
    assert names == presets.names(REPO / "conf")
    for name, row in zip(names, rows, strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        want = [_mean(f"{prefix}{name}", metric) for prefix, metric in COLUMNS]
        assert cells[2:] == want, f"README row of {name}: expected {want}"
