"""The README's documented commands say what they do."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _exp_show_drop() -> re.Pattern[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    [pattern] = re.findall(r"dvc exp show --only-changed --drop '([^']+)'", text)
    return re.compile(pattern)


def test_exp_show_view_keeps_the_headline_and_the_params() -> None:
    """DVC drops a column when the pattern matches at the start of its name (re.match; see
    dvc/commands/experiments/show.py), named `file:key` when the key is ambiguous."""
    drop = _exp_show_drop()
    kept = [
        "Experiment",
        "Created",
        "reports/mnist/metrics.json:accuracy",
        "reports/class/metrics.json:accuracy",
        "reports/external/usps/metrics.json:accuracy",
        "summary.median_accuracy",
        "summary.min_accuracy",
        "seed",
        "model",
        "params.yaml:lr",
        "class_digits.dir",
        "augment.blur.p",
        "leakage.threshold",
    ]
    dropped = [
        "data/class/digits.npz",
        "reports/class/rejected.csv",
        "reports/class/metrics.json:per_class_loss.3",
        "reports/class/metrics.json:ci_low",
        "reports/mnist/metrics.json:loss",
        "reports/mnist/metrics.json:n",
        "without_flagged.accuracy",
        "groups.12.accuracy",
        "summary.groups",
        "summary.below_90",
        "flagged_by_group.5",
        "median_ratio",
        "reports/train/metrics.json:lr",
        "train.loss",
        "val.acc",
        "best_epoch",
        "epochs_run",
        "step",
        "threshold",
    ]
    assert [c for c in kept if drop.match(c)] == []
    assert [c for c in dropped if not drop.match(c)] == []


def test_readme_s_deeper_cnn_recipe_is_the_one_its_seed_records_measured() -> None:
    """The Quickstart's `$D` (the strongest option's base) sets exactly what the `cnn-deep`
    and `dev-cnn-deep` records were run with, and `$D -S ensemble=3` what the `deep-ensemble3`
    records were run with, so the numbers quoted for each are its own."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    [recipe] = re.findall(r'^D="([^"]+)"$', text, flags=re.MULTILINE)
    settings = dict(s.split("=", 1) for s in re.findall(r"-S (\S+)", recipe))
    assert settings["cnn_channels"] == "[32,64,128]"
    # The strongest option's line adds the ensemble: its records are `deep-ensemble3` / `dev-...`.
    assert re.search(r"^dvc exp run \$D -S ensemble=3 ", text, flags=re.MULTILINE)
    ensemble = {**settings, "ensemble": "3"}
    expected = {"cnn-deep": settings, "deep-ensemble3": ensemble}
    for name, want in [*expected.items(), *((f"dev-{n}", w) for n, w in expected.items())]:
        record = json.loads((REPO / "reports" / "seeds" / f"{name}.json").read_text())
        recorded = {k: v for k, v in record["set"].items() if k != "class_digits.dir"}
        assert recorded == want, name
