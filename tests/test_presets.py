"""Named presets: conf/ composes into params.yaml as DVC's `dvc exp run` composes it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mnistgap import presets
from mnistgap.params import Params

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def test_the_presets_and_their_labels() -> None:
    assert presets.names(CONF) == ["default", "strong", "study"]
    for name in presets.names(CONF):
        assert presets.compose([f"preset={name}"], CONF).preset == name
    assert presets.compose([], CONF) == Params()  # the default preset is the defaults


def test_strong_is_the_deeper_cnn_ensemble() -> None:
    assert presets.changes("strong", CONF) == {
        "cnn_channels": [32, 64, 128],
        "ensemble": 3,
        "lr": 0.001,
        "batch_size": 128,
        "max_epochs": 20,
    }


def test_study_is_the_study_s_mlp_as_it_trained() -> None:
    """The study (its sections 2-3): 784-512-256-128-10, dropout 0.2, Adam at a constant 1e-3,
    batch 128, up to 20 epochs with early stopping of patience 3 on an 85/15 split,
    RandomAffine(5, (0.1, 0.1), (0.8, 1.2), 5) only, plain cross-entropy, plain resize."""
    p = presets.compose(["preset=study"], CONF)
    assert (p.model, p.hidden, p.dropout) == ("mlp", [512, 256, 128], 0.2)
    assert (p.lr, p.lr_schedule, p.batch_size, p.max_epochs, p.patience) == (
        0.001,
        "none",
        128,
        20,
        3,
    )
    assert p.val_frac == 0.15 and p.label_smoothing == 0.0 and p.tta == "none"
    a = p.augment
    assert a.enabled and not a.blur.enabled and a.affine.stretch == 1.0
    assert (a.affine.degrees, a.affine.translate, a.affine.scale, a.affine.shear) == (
        5.0,
        0.1,
        (0.8, 1.2),
        5.0,
    )
    assert p.class_digits.preprocess == "study" and p.precision == "fp32"


def test_settings_apply_on_top_of_a_preset() -> None:
    p = presets.compose(["preset=strong", "lr=1e-2", "augment.blur.p=0.5"], CONF)
    assert (p.preset, p.lr, p.augment.blur.p) == ("strong", 0.01, 0.5)
    assert p.cnn_channels == [32, 64, 128]


@pytest.mark.parametrize("bad", [["preset=nope"], ["lrr=1"], ["lr=[1,"]])
def test_a_bad_preset_or_override_is_one_line(bad: list[str]) -> None:
    with pytest.raises(presets.PresetError) as err:
        presets.compose(bad, CONF)
    assert "\n" not in str(err.value) and str(err.value).startswith("presets: ")


def _dvc(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["dvc", *args], cwd=repo, capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def hydra_repo(tmp_path: Path) -> Path:
    """A git + DVC repository with this project's conf/, .dvc/config's hydra setting and a
    one-stage pipeline that depends on every param (no training)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(CONF, repo / "conf")
    run = {"cwd": repo, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **run)
    subprocess.run(["git", "config", "user.email", "t@example.com"], **run)
    subprocess.run(["git", "config", "user.name", "t"], **run)
    _dvc(repo, "init", "-q")
    _dvc(repo, "config", "core.analytics", "false")
    _dvc(repo, "config", "hydra.enabled", "True")
    presets.write_params(repo / "params.yaml", conf_dir=repo / "conf")
    cmd = "python -c \"open('out.txt', 'w').write('x')\""
    stage = {"cmd": cmd, "params": [{"params.yaml": None}]}
    (repo / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {"echo": stage | {"outs": ["out.txt"]}}}), encoding="utf-8"
    )
    (repo / ".gitignore").write_text("/out.txt\n", encoding="utf-8")
    _dvc(repo, "repro", "-q")
    subprocess.run(["git", "add", "-A"], **run)
    subprocess.run(["git", "commit", "-qm", "init"], **run)
    return repo


def test_dvc_exp_run_composes_the_preset_into_params_yaml(hydra_repo: Path) -> None:
    _dvc(hydra_repo, "exp", "run", "-S", "preset=strong", "-S", "lr=1e-2")
    written = (hydra_repo / "params.yaml").read_text(encoding="utf-8")
    expected = hydra_repo / "expected.yaml"
    presets.write_params(expected, ["preset=strong", "lr=1e-2"], hydra_repo / "conf")
    assert written == expected.read_text(encoding="utf-8")
    assert yaml.safe_load(written)["preset"] == "strong"
    # A later plain `dvc exp run` composes the defaults again: nothing lingers.
    _dvc(hydra_repo, "exp", "run")
    assert yaml.safe_load((hydra_repo / "params.yaml").read_text())["lr"] == 0.002


def test_a_hydra_sweep_queues_one_experiment_per_value(hydra_repo: Path) -> None:
    """The study's learning-rate figure: three runs of the study preset, one per rate."""
    _dvc(hydra_repo, "exp", "run", "--queue", "-S", "preset=study", "-S", "lr=1e-2,1e-3,1e-4")
    try:
        assert _dvc(hydra_repo, "queue", "status").count("Queued") == 3
        shown = json.loads(_dvc(hydra_repo, "exp", "show", "--json"))
        queued = [  # the repository has no other experiment than these
            exp["data"]["params"]["params.yaml"]["data"]
            for rev in shown
            for row in rev.get("experiments") or []
            for exp in row["revs"]
        ]
        assert sorted(p["lr"] for p in queued) == [0.0001, 0.001, 0.01]
        assert {p["preset"] for p in queued} == {"study"}
        assert {p["model"] for p in queued} == {"mlp"}
    finally:
        _dvc(hydra_repo, "queue", "remove", "--all")
