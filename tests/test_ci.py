"""CI proves the reports: the stale-lock check, the reproduction check, the one workflow."""

from __future__ import annotations

from pathlib import Path

import yaml
from scripts_loader import load_script

REPO = Path(__file__).resolve().parents[1]
ci = load_script("ci_checks")

DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
OUTPUTS = ci.stage_outputs(DVC_YAML, ["usps"])

# What `dvc status --json` says in a fresh clone of a consistent commit.
FRESH_CLONE = {
    "prepare_mnist": [
        {"changed outs": {"data/mnist/raw": "deleted", "data/mnist/train.npz": "not in cache"}}
    ],
    "train": [
        {"changed deps": {"data/mnist/train.npz": "deleted"}},
        {"changed outs": {"models/model.pt": "not in cache"}},
    ],
    "evaluate_external@usps": [{"changed deps": {"data/external/usps.npz": "deleted"}}],
}


def test_foreach_outputs_are_expanded() -> None:
    assert "reports/external/usps/metrics.json" in OUTPUTS
    assert "data/external/usps.npz" in OUTPUTS and "models/model.pt" in OUTPUTS


def test_a_fresh_clone_only_misses_outputs() -> None:
    assert ci.lock_problems(FRESH_CLONE, OUTPUTS) == []


def test_a_stale_lock_is_caught_and_named() -> None:
    stale = {
        **FRESH_CLONE,
        "train": [
            {
                "changed deps": {
                    "mnistgap/training.py": "modified",
                    "data/mnist/train.npz": "deleted",
                }
            }
        ],
        "report": [{"changed outs": {"reports/report.md": "modified"}}],
        "leakage": [{"changed deps": {"params.yaml": {"leakage.threshold": "modified"}}}],
        "evaluate_mnist": [{"changed command": True}],
        "new_stage": ["changed checksum"],
    }
    problems = ci.lock_problems(stale, OUTPUTS)
    assert "train: dependency mnistgap/training.py modified" in problems
    assert "report: output reports/report.md modified" in problems  # a report edited by hand
    assert any(p.startswith("leakage: dependency params.yaml") for p in problems)
    assert "evaluate_mnist: changed command True" in problems
    assert "new_stage: changed checksum" in problems
    assert not any("train.npz" in p for p in problems)  # missing outputs stay allowed


def test_a_deleted_dep_that_no_stage_makes_is_a_problem() -> None:
    status = {"prepare_class": [{"changed deps": {"data/class_digits": "deleted"}}]}
    assert ci.lock_problems(status, OUTPUTS) == [
        "prepare_class: dependency data/class_digits deleted"
    ]


RECORD = {
    "runs": [
        {"seed": 1, "mnist": 0.987, "class": 0.91, "usps": 0.968},
        {"seed": 2, "mnist": 0.985, "class": 0.886, "usps": 0.964},
        {"seed": 3, "mnist": 0.990, "class": 0.880, "usps": 0.960},
    ]
}


def test_same_machine_kind_must_reproduce_exactly() -> None:
    committed = {"mnist": 0.9874, "class": 0.9098}
    assert ci.compare(committed, dict(committed), True, RECORD) == []
    problems = ci.compare(committed, {"mnist": 0.9875, "class": 0.9098}, True, RECORD)
    assert problems == [
        "mnist: 0.9874 committed, 0.9875 now (|diff| 0.0001 > 0.0000 allowed on the same "
        "machine kind)"
    ]


def test_another_machine_kind_may_differ_within_the_seed_spread() -> None:
    committed = {"mnist": 0.9874, "class": 0.9098, "usps": 0.9676}
    # Spreads .005, .03, .008: twice each is allowed.
    within = {"mnist": 0.9800, "class": 0.8540, "usps": 0.9530}
    assert ci.compare(committed, within, False, RECORD) == []
    outside = {"mnist": 0.9770, "class": 0.9098, "usps": 0.9676}
    [problem] = ci.compare(committed, outside, False, RECORD)
    assert problem.startswith("mnist: 0.9874 committed, 0.9770 now (|diff| 0.0104 > 0.0100")
    # Without a record the documented tolerance applies.
    assert ci.allowed_difference(None, "mnist") == ci.TOLERANCE
    assert ci.compare(committed, outside, False, None) == []


def test_a_lucky_narrow_seed_spread_is_widened_to_the_sampling_error() -> None:
    # Three seeds within 0.03 points on 10,000 digits: 2 x 0.0003 would be the allowance.
    narrow = {"runs": [{"mnist": 0.9919}, {"mnist": 0.9922}, {"mnist": 0.992}]}
    committed, now = {"mnist": 0.9899}, {"mnist": 0.9921}
    assert ci.compare(committed, now, False, narrow)  # the spread alone: fails
    # 2 x sqrt(2 x 0.9899 x 0.0101 / 10,000) = 0.00283: a 0.0022 difference is within it.
    assert abs(ci.sampling_floor(0.9899, 10_000) - 0.002828) < 1e-5
    assert ci.compare(committed, now, False, narrow, {"mnist": 10_000}) == []
    [problem] = ci.compare(committed, {"mnist": 0.9930}, False, narrow, {"mnist": 10_000})
    assert "> 0.0028 allowed" in problem
    # A wide spread still rules; the same kind stays exact.
    assert ci.compare({"mnist": 0.9874}, {"mnist": 0.9800}, False, RECORD, {"mnist": 10_000}) == []
    assert ci.compare(committed, now, True, narrow, {"mnist": 10_000})


def test_the_workflow_runs_the_one_ci_definition() -> None:
    workflow = yaml.safe_load((REPO / ".github/workflows/reports.yml").read_text(encoding="utf-8"))
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    runs = [s.get("run", "") for s in steps]
    assert any(r.strip() == "bash .ci/run" for r in runs)
    # What only GitHub has: the diff against the base branch, with failures not hidden.
    summary = next(r for r in runs if "dvc metrics diff" in r)
    assert "pipefail" in summary.split("\n")[0] and "GITHUB_STEP_SUMMARY" in summary
    assert "dvc params diff" in summary and "dvc plots diff" in summary
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    paths = "\n".join(s["with"]["path"] for s in uploads)
    assert "reports/" in paths and "dvc_plots/" in paths and ".ci/artifacts/" in paths
    # Nothing tests or reproduces outside .ci/run.
    assert not any(r.strip().startswith(("pytest", "dvc repro", "ruff")) for r in runs)


def test_ci_run_checks_the_lock_before_and_the_reports_after_dvc_repro() -> None:
    text = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    lock, repro = text.index("ci_checks.py lock"), text.index("\ndvc repro\n")
    reproduced = text.index("ci_checks.py reproduced")
    assert lock < repro < reproduced
