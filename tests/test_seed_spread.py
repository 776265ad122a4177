"""scripts/seed_spread.py's checks before it writes a record: runs made alike, kept ones current."""

from __future__ import annotations

import copy
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scripts_loader import load_script

from mnistgap.params import validate

REPO = Path(__file__).resolve().parents[1]
seed_spread = load_script("seed_spread")

HEAD_LOCK = yaml.safe_load((REPO / "dvc.lock").read_text(encoding="utf-8"))
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def _with(**changes: object) -> object:
    raw = copy.deepcopy(PARAMS)
    raw.update(changes)
    return validate(raw)


def test_runs_that_differ_only_in_the_seed_agree() -> None:
    runs = [_with(seed=s, cnn_channels=[32, 64, 128]) for s in (1, 2, 3)]
    assert seed_spread.differing_params(runs) == []


def test_runs_made_with_other_settings_are_named() -> None:
    runs = [
        _with(seed=1, lr=1.0e-3),
        _with(seed=2, lr=2.0e-3),
        _with(seed=3, lr=1.0e-3, ensemble=3),
    ]
    assert seed_spread.differing_params(runs) == ["ensemble", "lr"]


def _lock_of_committed_code() -> dict:
    """HEAD's dvc.lock with every Python dep's md5 that of the file committed in HEAD."""
    lock = copy.deepcopy(HEAD_LOCK)
    for stage in lock["stages"].values():
        for dep in stage.get("deps", []):
            if dep["path"].endswith(".py"):
                shown = subprocess.run(
                    ["git", "show", f"HEAD:{dep['path']}"], cwd=REPO, capture_output=True
                )
                dep["md5"] = hashlib.md5(shown.stdout).hexdigest()
    return lock


def test_a_kept_experiment_of_the_committed_code_passes() -> None:
    lock = _lock_of_committed_code()
    committed = seed_spread.committed_md5s(sorted(seed_spread._code_md5s(lock)))
    assert "mnistgap/training.py" in committed
    assert seed_spread.changed_code(lock, committed) == []


def test_a_kept_experiment_of_other_code_names_the_files() -> None:
    old = _lock_of_committed_code()
    committed = seed_spread.committed_md5s(sorted(seed_spread._code_md5s(old)))
    for stage in old["stages"].values():
        for dep in stage.get("deps", []):
            if dep["path"] == "mnistgap/training.py":
                dep["md5"] = "0" * 32
            if dep["path"] == "params.yaml" or not dep["path"].endswith(".py"):
                dep["md5"] = "f" * 32  # data and other inputs may differ: not code
    assert seed_spread.changed_code(old, committed) == ["mnistgap/training.py"]


def test_a_kept_experiment_must_have_the_settings_asked_for() -> None:
    run = _with(seed=2, cnn_channels=[32, 64, 128], lr=1.0e-3)
    asked = ["seed=2", "cnn_channels=[32,64,128]", "lr=1.0e-3"]
    assert seed_spread.unmet_settings(run, asked) == []
    assert seed_spread.unmet_settings(run, [*asked, "ensemble=3", "augment.blur.p=0.25"]) == [
        "ensemble=3"
    ]
    assert seed_spread.unmet_settings(run, ["seed=1", "augment.blur.nope=1"]) == [
        "seed=1",
        "augment.blur.nope=1",
    ]


def test_without_dvc_on_path_it_stops_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seed_spread.shutil, "which", lambda name: None)
    monkeypatch.setattr(sys, "argv", ["seed_spread.py", "x"])
    monkeypatch.setattr(seed_spread, "run_seed", lambda *a, **k: pytest.fail("ran a seed"))
    with pytest.raises(SystemExit) as stop:
        seed_spread.main()
    assert stop.value.code == (
        "seed_spread: no `dvc` on PATH: activate the project's environment first"
    )


def test_a_failed_experiment_stops_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: object) -> object:
        ran.append(cmd)
        return seed_spread.subprocess.CompletedProcess(cmd, 2 if "run" in cmd else 0)

    monkeypatch.setattr(seed_spread.subprocess, "run", fake_run)
    with pytest.raises(SystemExit) as stop:
        seed_spread.run_seed("x", 1, [], keep=False)
    assert stop.value.code == (
        "seed_spread: x-seed1 failed (its output is above); no record was written"
    )
    assert ran[-1][:4] == ["dvc", "exp", "run", "--temp"]


def test_models_of_refuses_a_workspace_with_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """It runs in the workspace and restores it to HEAD after: uncommitted work would be lost."""
    monkeypatch.setattr(seed_spread, "_git", lambda *a: " M params.yaml\n")
    monkeypatch.setattr(seed_spread.subprocess, "run", lambda *a, **k: pytest.fail("ran dvc"))
    with pytest.raises(SystemExit) as stop:
        seed_spread.run_seed("dev-x", 1, [], models_of="x")
    assert stop.value.code == (
        "seed_spread: --models-of runs in the workspace: commit or stash your changes"
    )


def _code(lock: dict) -> dict[str, str]:
    return seed_spread._code_md5s(lock)


def _fake_workspace(
    monkeypatch: pytest.MonkeyPatch, new_train: dict, exit_codes: dict[str, int]
) -> list[list[str]]:
    """A clean workspace whose experiments' dvc.lock are HEAD's, except the new experiment's
    train stage; returns the commands run (dvc and git), answered with ``exit_codes``."""
    ran: list[list[str]] = []
    locks = {"refs/exps/x-seed1": HEAD_LOCK, "HEAD": HEAD_LOCK}
    locks["refs/exps/dev-x-seed1"] = {"stages": {**HEAD_LOCK["stages"], "train": new_train}}

    def fake_git(*args: str) -> str:
        if args[0] == "status":
            return ""
        assert args[0] == "show" and args[1].endswith(":dvc.lock"), args
        return yaml.safe_dump(locks[args[1].rsplit(":", 1)[0]])

    def fake_run(cmd: list[str], **kwargs: object) -> object:
        ran.append(cmd)
        return seed_spread.subprocess.CompletedProcess(cmd, exit_codes.get(cmd[2], 0))

    monkeypatch.setattr(seed_spread, "_git", fake_git)
    # HEAD's files: those HEAD_LOCK names (the experiments ran the committed code)
    monkeypatch.setattr(seed_spread, "committed_md5s", lambda paths: _code(HEAD_LOCK))
    monkeypatch.setattr(seed_spread, "_exp_ref", lambda name: f"refs/exps/{name}")
    monkeypatch.setattr(seed_spread.subprocess, "run", fake_run)
    return ran


def test_models_of_stops_when_the_settings_made_train_run_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    retrained = {**HEAD_LOCK["stages"]["train"], "params": {"params.yaml": {"lr": 0.1}}}
    ran = _fake_workspace(monkeypatch, retrained, {})
    with pytest.raises(SystemExit) as stop:
        seed_spread.run_seed("dev-x", 1, ["lr=0.1"], models_of="x")
    assert stop.value.code == "seed_spread: dev-x-seed1 trained again: its settings change training"
    assert [c[:3] for c in ran] == [
        ["dvc", "exp", "apply"],
        ["dvc", "exp", "remove"],
        ["dvc", "exp", "run"],
        ["git", "checkout", "HEAD"],
        ["dvc", "checkout", "--force"],
    ]
    assert ran[0][3] == "x-seed1" and ran[2][3:6] == ["-n", "dev-x-seed1", "-S"]
    # A cache without HEAD's outputs (a fresh clone's) must not make the restore fail.
    assert "--allow-missing" in ran[4]


def test_models_of_restores_the_workspace_when_the_run_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran = _fake_workspace(monkeypatch, HEAD_LOCK["stages"]["train"], {"run": 1})
    with pytest.raises(SystemExit) as stop:
        seed_spread.run_seed("dev-x", 1, [], models_of="x")
    assert stop.value.code == (
        "seed_spread: dev-x-seed1 failed (its output is above); no record was written"
    )
    assert ran[-2][:3] == ["git", "checkout", "HEAD"] and ran[-1][:2] == ["dvc", "checkout"]


def test_a_folder_is_run_by_its_absolute_path_and_recorded_relative_to_the_project() -> None:
    run, recorded = seed_spread.portable(
        ["preset=strong", "class_digits.dir=../shared/class_digits_dev", "lr=1e-3"]
    )
    assert run[0] == "preset=strong" and run[2] == "lr=1e-3"
    assert run[1] == f"class_digits.dir={(REPO / '../shared/class_digits_dev').resolve()}"
    assert recorded == ["preset=strong", "class_digits.dir=../shared/class_digits_dev", "lr=1e-3"]
    # An absolute path of this machine is recorded relative too: records stay portable.
    _, again = seed_spread.portable([f"class_digits.dir={(REPO / 'data' / 'x').resolve()}"])
    assert again == ["class_digits.dir=data/x"]


def test_the_queue_s_status_table_is_read_by_experiment_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = (
        "Task     Name          Created    Status\n"
        "79052d4  study-seed1   02:49 PM   Running\n"
        "e29203d  study-seed2   02:49 PM   Queued\n"
        "467bdfb  study-seed3   02:48 PM   Success\n"
        "\nWorker status: 1 active, 0 idle\n"
    )

    class Done:
        stdout = table

    monkeypatch.setattr(seed_spread.subprocess, "run", lambda *a, **k: Done())
    assert seed_spread._queue_status() == {
        "study-seed1": "Running",
        "study-seed2": "Queued",
        "study-seed3": "Success",
    }


def test_a_run_records_the_adapted_accuracy_and_the_record_its_mean() -> None:
    files = {
        "reports/mnist/metrics.json": {"accuracy": 0.99},
        "reports/class/metrics.json": {"accuracy": 0.94, "without_flagged": {"accuracy": 0.95}},
        "reports/external/usps/metrics.json": {"accuracy": 0.97},
        "reports/adapt/metrics.json": {"accuracy": 0.995, "mnist_accuracy": 0.993},
    }
    run = seed_spread.headline(files.get, ["usps"])
    assert run == {
        "mnist": 0.99,
        "class": 0.94,
        "class_without_flagged": 0.95,
        "usps": 0.97,
        "adapted": 0.995,
        "adapted_mnist": 0.993,
    }
    # Not adapted (fewer than 2 groups), or a pipeline older than stage adapt: None.
    files["reports/adapt/metrics.json"] = {"adapted": False, "reason": "1 group(s)"}
    assert seed_spread.headline(files.get, ["usps"])["adapted"] is None
    del files["reports/adapt/metrics.json"]
    assert seed_spread.headline(files.get, [])["adapted_mnist"] is None

    runs = [
        {"seed": 1, "experiment": "a-seed1", "class": 0.9, "adapted": 0.99},
        {"seed": 2, "experiment": "a-seed2", "class": 0.8, "adapted": None},
        {"seed": 3, "experiment": "a-seed3", "class": 0.7, "adapted": 0.97},
    ]
    mean = seed_spread.means(runs)
    assert mean == pytest.approx({"class": 0.8, "adapted": 0.98})
