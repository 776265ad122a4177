"""The report at any number of groups, and with or without a seed-spread record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mnistgap.params import Params, as_file_dict, validate
from mnistgap.presets import compose
from mnistgap.report import ReportInputs, config_of, render_report, spread_of

REPO = Path(__file__).resolve().parents[1]


def _block(acc: float, n: int = 40) -> dict[str, Any]:
    return {
        "accuracy": acc,
        "ci_low": max(0.0, acc - 0.1),
        "ci_high": min(1.0, acc + 0.05),
        "loss": 1 - acc,
        "n": n,
        "without_flagged": {"accuracy": acc, "n": n},
    }


def _inputs(n_groups: int, seeds: list[dict[str, Any]] | None = None) -> ReportInputs:
    groups = {
        str(g): _block(0.5 + 0.49 * g / n_groups) | {"flagged": 0} for g in range(1, n_groups + 1)
    }
    spread = {"groups": n_groups, "median_accuracy": 0.75, "worst_accuracy": 0.5, "below_90": 3}
    return ReportInputs(
        mnist=_block(0.988, 10000),
        klass=_block(0.9, 40 * n_groups),
        groups=groups,
        group_spread=spread,
        train={"best_epoch": 20, "epochs_run": 20},
        leakage={"flagged": 0, "n": 40 * n_groups, "by_reason": {}, "by_group": {}},
        rejected=[],
        environment={"processor": "AMD EPYC", "isa": "AVX2", "precision": "fp32", "threads": 2},
        external={"usps": _block(0.965, 2007)},
        seeds=seeds or [],
        per_class_loss={name: [0.1] * 10 for name in ("mnist", "class", "usps")},
    )


def test_few_groups_are_all_listed() -> None:
    text = render_report(_inputs(12), Params())
    section = text.split("## Per group", 1)[1].split("\n## ", 1)[0]
    assert all(f"\n| {g} | " in section for g in range(1, 13))
    assert "groups.csv" not in section
    # Computed from the groups' intervals (here 0.1 below to 0.05 above), not hand-typed.
    assert "The median group's 95% interval is 15.0 points wide" in section


def test_many_groups_list_the_worst_and_the_best_and_link_the_csv() -> None:
    text = render_report(_inputs(400), Params())
    section = text.split("## Per group", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    listed = [r.split(" | ")[0].strip("| ") for r in rows if not r.startswith("| group")]
    assert listed[:10] == [str(g) for g in range(1, 11)]  # the worst first
    assert listed[10:] == ["400", "399", "398", "397", "396"]  # then the best
    assert "All 400 groups: [`groups/groups.csv`](groups/groups.csv)" in section
    assert len(text) < 20_000  # stays readable, whatever the number of groups


def test_the_seed_spread_of_the_same_configuration_is_shown() -> None:
    params = Params()
    record = {
        "name": "default",
        "set": {},
        "params": as_file_dict(params.model_copy(update={"seed": 1})),
        "environment": {"processor": "AMD EPYC", "isa": "AVX2", "precision": "fp32"},
        "runs": [
            {"seed": s, "mnist": m, "class": c, "class_without_flagged": w, "usps": u}
            for s, m, c, w, u in [
                (1, 0.987, 0.91, 0.92, 0.968),
                (2, 0.985, 0.886, 0.89, 0.964),
                (3, 0.99, 0.88, 0.88, 0.96),
            ]
        ],
    }
    other = {**record, "name": "mlp", "set": {"model": "mlp"}}
    other["params"] = as_file_dict(params.model_copy(update={"model": "mlp"}))
    assert spread_of([other, record], params) is record
    assert spread_of([other], params) is None
    # A record measured before a key existed ran that key's default: it still matches, and
    # only the default (an ensemble of 3 is another configuration).
    older = {**record, "params": {k: v for k, v in record["params"].items() if k != "ensemble"}}
    assert spread_of([older], params) is older
    assert spread_of([older], params.model_copy(update={"ensemble": 3})) is None
    # The other kind's widths do not matter: an MLP record measured when the CNN's channels
    # had another default is still an MLP run's spread; a CNN's channels do matter.
    mlp = params.model_copy(update={"model": "mlp"})
    assert spread_of([other], mlp.model_copy(update={"cnn_channels": [8]})) is other
    assert spread_of([record], params.model_copy(update={"cnn_channels": [8]})) is None
    assert spread_of([record], params.model_copy(update={"hidden": [8]})) is record
    # One configuration measured on two machine kinds: each run reads the record of the kind
    # that agrees most with its own environment; without one, the first by name.
    bf16 = {**record, "name": "bf16-default"}
    bf16["environment"] = {"processor": "AMD EPYC", "isa": "AVX512", "precision": "bf16"}
    assert spread_of([record, bf16], params, record["environment"]) is record
    assert spread_of([record, bf16], params, bf16["environment"]) is bf16
    sapphire = {"processor": "Intel Xeon", "isa": "AVX512", "precision": "bf16"}
    assert spread_of([record, bf16], params, sapphire) is bf16
    assert spread_of([record, bf16], params) is bf16
    text = render_report(_inputs(5, seeds=[other, record]), params)
    table = text.split("## Every evaluation set", 1)[1].split("\n## ", 1)[0]
    assert "| 98.73% (98.50%–99.00%, 3 seeds) |" in table
    assert "| 89.20% (88.00%–91.00%, 3 seeds) |" in table
    assert "| 96.40% (96.00%–96.80%, 3 seeds) |" in table
    assert "| 89.67% (88.00%–92.00%, 3 seeds) |" in table  # without MNIST look-alikes
    assert "seeds 1, 2, 3 (`default` in `reports/seeds/`" in table
    # The presets' table lists the records of presets alone (not `mlp`, a setting).
    presets_table = text.split("## Presets", 1)[1].split("\n## ", 1)[0]
    assert "| `default` | the defaults | 98.73% (98.50%–99.00%, 3 seeds) |" in presets_table
    assert "`mlp`" not in presets_table


def test_records_are_matched_by_the_folder_s_content_not_its_path() -> None:
    params = Params().model_copy(
        update={"class_digits": Params().class_digits.model_copy(update={"dir": "/elsewhere"})}
    )
    record = {
        "name": "dev-default",
        "set": {"class_digits.dir": "../shared/class_digits_dev"},
        "params": as_file_dict(
            Params().model_copy(
                update={
                    "seed": 1,
                    "class_digits": Params().class_digits.model_copy(
                        update={"dir": "../shared/class_digits_dev"}
                    ),
                }
            )
        ),
        "folder": {"dir": "../shared/class_digits_dev", "digest": "sha256:abc"},
        "environment": {},
        "runs": [],
    }
    # The same content under another path: its record; other content: none.
    assert spread_of([record], params, folder="sha256:abc") is record
    assert spread_of([record], params, folder="sha256:def") is None
    # Without the run's digest, paths are compared (and differ here).
    assert spread_of([record], params) is None


def test_every_seed_record_s_settings_reproduce_its_configuration_from_today_s_defaults() -> None:
    """A record's `set` is the `dvc exp run -S` recipe the report prints beside it: applied to
    today's defaults it must give the configuration the record measured (DVC reads each value
    as YAML), so a changed default comes with updated recipes."""
    records = sorted((REPO / "reports" / "seeds").glob("*.json"))
    assert len(records) >= 2
    for path in records:
        record = json.loads(path.read_text(encoding="utf-8"))
        assert record["name"] == path.stem
        # `dvc exp run -S key=value ...` composes conf/ with them: so does presets.compose.
        got = config_of(
            as_file_dict(compose([f"{k}={v}" for k, v in record["set"].items()], REPO / "conf"))
        )
        want = config_of(as_file_dict(validate(record["params"])))
        assert got == want, f"{path.name}: {[k for k in want if got.get(k) != want[k]]} differ"
