"""The stage entry points end to end on tiny synthetic data, with explicit paths in tmp dirs.

One module-scoped pipeline runs every stage once, in dvc.yaml's order (the leakage stage's
outputs are written by hand: its own tests live in test_leakage.py); each test then checks
one stage's outputs. Error paths run through ``run_stage`` like ``python -m stages.<name>``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

import stages.adapt
import stages.adapt_curve
import stages.evaluate_class
import stages.evaluate_groups
import stages.evaluate_split
import stages.predict
import stages.prepare_class
import stages.prepare_external
import stages.prepare_mnist
import stages.report
import stages.train
from mnistgap import external, study
from mnistgap.cli import run_stage
from mnistgap.data import load_class, load_split, save_class
from mnistgap.leakage import CSV_HEADER
from mnistgap.metrics import predict_logits, wilson_interval
from mnistgap.mnist_source import RAW_FILES
from mnistgap.models import load_checkpoint, members
from mnistgap.params import Params, load_params
from mnistgap.report import _handed_in, _training_sentence
from mnistgap.split import train_val_indices
from mnistgap.tables import read_adapt_groups, read_curve, read_groups, read_per_class_loss
from mnistgap.tta import predict_logits as tta_logits

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FLAGGED_FILE = "0-1-1.png"  # the one class digit the hand-written leakage report flags
BAD_ENTRIES = {
    "notes.txt": "not an image file name",
    "x-1-1.png": "name does not match",
    "7-2-2.png": "blank",  # a black image: no ink
    "8-3-2.png": "not an image file",  # text with a .png name
}


@dataclass
class Pipeline:
    root: Path
    params: Path
    mnist: Any  # conftest.TinyMnist
    class_files: list[str]
    acquire_calls: list[dict[str, Any]]

    def path(self, rel: str) -> Path:
        return self.root / rel

    def json(self, rel: str) -> Any:
        return json.loads(self.path(rel).read_text(encoding="utf-8"))

    def csv(self, rel: str) -> list[dict[str, str]]:
        with self.path(rel).open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))


def write_leakage(reports: Path, files: list[str], digits: list[int], groups: list[int]) -> None:
    """A minimal leakage.csv / metrics.json pair that flags FLAGGED_FILE only."""
    out = reports / "leakage"
    out.mkdir(parents=True, exist_ok=True)
    with (out / "leakage.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(CSV_HEADER)
        for i, (f, d, g) in enumerate(zip(files, digits, groups, strict=True)):
            flagged = f == FLAGGED_FILE
            distance = "0.05" if flagged else "0.3"
            reason = "distance" if flagged else ""
            w.writerow([f, d, g, 1, i, d, distance, int(flagged), "0.4", "0.75", reason])
    metrics = {"n": len(files), "flagged": 1}
    (out / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")


@pytest.fixture(scope="module")
def pipeline(
    tmp_path_factory: pytest.TempPathFactory,
    make_tiny_mnist: Callable[[Path], Any],
    make_class_dir: Callable[[Path], list[str]],
    make_params_at: Callable[..., Path],
    make_usps: Callable[..., Path],
) -> Pipeline:
    root = tmp_path_factory.mktemp("pipeline")
    class_dir = root / "class_digits"
    class_files = make_class_dir(class_dir)
    (class_dir / "notes.txt").write_text("not a digit", encoding="utf-8")
    (class_dir / "8-3-2.png").write_text("not a png", encoding="utf-8")
    Image.new("L", (28, 28), 0).save(class_dir / "7-2-2.png")
    Image.new("L", (28, 28), 255).save(class_dir / "x-1-1.png")
    params = make_params_at(root / "params.yaml", fast=True, **{"class_digits.dir": str(class_dir)})

    mnist = make_tiny_mnist(root / "data" / "mnist")
    for name in ("train.npz", "val.npz", "test.npz"):  # prepare_mnist must write them itself
        (mnist.root / name).unlink()
    calls: list[dict[str, Any]] = []

    def fake_acquire(raw_dir: Path, **kwargs: Any) -> str:
        calls.append({"raw_dir": raw_dir, **kwargs})
        return "existing"

    usps = make_usps(root / "data" / "external" / "usps" / "zip.test.gz", np.arange(40) % 10)
    esl = dataclasses.replace(external.USPS.files[0], md5=external.md5sum(usps))
    tiny_usps = dataclasses.replace(external.USPS, files=(esl,), size=40)

    r = str(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stages.prepare_mnist, "acquire_raw", fake_acquire)
        mp.setitem(external.SETS, "usps", tiny_usps)
        mp.setenv("XDG_CACHE_HOME", f"{r}/cache")
        mp.chdir(root)  # dvclive may look around the working directory: keep it in tmp
        P = ["--params", str(params)]  # noqa: N806
        stages.prepare_mnist.main(
            ["--raw", f"{r}/data/mnist/raw", "--out", f"{r}/data/mnist", "--offline", *P]
        )
        stages.prepare_class.main(
            [
                "--dir",
                str(class_dir),
                "--out",
                f"{r}/data/class/digits.npz",
                "--rejected",
                f"{r}/reports/class/rejected.csv",
                *P,
            ]
        )
        stages.train.main(
            [
                "--data",
                f"{r}/data/mnist",
                "--model",
                f"{r}/models/model.pt",
                "--live",
                f"{r}/reports/train",
                *P,
            ]
        )
        cs = load_class(root / "data/class/digits.npz")
        write_leakage(root / "reports", cs.files.tolist(), cs.labels.tolist(), cs.groups.tolist())
        stages.evaluate_split.main(
            [
                "--set",
                "mnist",
                "--model",
                f"{r}/models/model.pt",
                "--data",
                f"{r}/data/mnist/test.npz",
                "--out",
                f"{r}/reports/mnist",
                *P,
            ]
        )
        for stage, out in ((stages.evaluate_class, "class"), (stages.evaluate_groups, "groups")):
            stage.main(
                [
                    "--model",
                    f"{r}/models/model.pt",
                    "--data",
                    f"{r}/data/class/digits.npz",
                    "--leakage",
                    f"{r}/reports/leakage/leakage.csv",
                    "--out",
                    f"{r}/reports/{out}",
                    *P,
                ]
            )
        stages.prepare_external.main(
            [
                "--set",
                "usps",
                "--raw",
                f"{r}/data/external/usps",
                "--out",
                f"{r}/data/external/usps.npz",
                "--offline",
                *P,
            ]
        )
        stages.evaluate_split.main(
            [
                "--set",
                "usps",
                "--model",
                f"{r}/models/model.pt",
                "--data",
                f"{r}/data/external/usps.npz",
                "--out",
                f"{r}/reports/external/usps",
                *P,
            ]
        )
        stages.adapt.main(
            [
                "--model",
                f"{r}/models/model.pt",
                "--data",
                f"{r}/data/class/digits.npz",
                "--leakage",
                f"{r}/reports/leakage/leakage.csv",
                "--mnist",
                f"{r}/data/mnist",
                "--out",
                f"{r}/reports/adapt",
                "--adapted",
                f"{r}/models/adapted.pt",
                *P,
            ]
        )
        stages.adapt_curve.main(
            [
                "--model",
                f"{r}/models/model.pt",
                "--data",
                f"{r}/data/class/digits.npz",
                "--mnist",
                f"{r}/data/mnist",
                "--predictions",
                f"{r}/reports/adapt/predictions.csv",
                "--out",
                f"{r}/reports/adapt",
                *P,
            ]
        )
        stages.report.main(
            [
                "--reports",
                f"{r}/reports",
                "--seeds",
                f"{r}/reports/seeds",
                "--out",
                f"{r}/reports/report.md",
                *P,
            ]
        )
    return Pipeline(root, params, mnist, class_files, calls)


def _is_png(path: Path, min_size: tuple[int, int] = (300, 150)) -> bool:
    """A real figure: a PNG at least ``min_size`` pixels, with ink on a light page (between
    1% and 70% of its pixels darker than light grey), not a blank or solid image."""
    if not path.is_file() or path.read_bytes()[:8] != PNG_SIGNATURE:
        return False
    with Image.open(path) as im:
        grey = np.asarray(im.convert("L"))
    ink = float((grey < 200).mean())
    return grey.shape[1] >= min_size[0] and grey.shape[0] >= min_size[1] and 0.01 < ink < 0.7


# --------------------------------------------------------------------------- prepare_mnist
def test_prepare_mnist_split_and_meta(pipeline: Pipeline) -> None:
    assert len(pipeline.acquire_calls) == 1
    assert pipeline.acquire_calls[0]["use_network"] is False  # --offline
    m = pipeline.mnist
    tr, va = train_val_indices(600, 0.15, 42)
    train_x, train_y = load_split(pipeline.path("data/mnist/train.npz"))
    val_x, val_y = load_split(pipeline.path("data/mnist/val.npz"))
    test_x, test_y = load_split(pipeline.path("data/mnist/test.npz"))
    assert (len(train_x), len(val_x), len(test_x)) == (510, 90, 100)
    assert train_x.dtype == torch.uint8 and train_y.dtype == torch.int64
    np.testing.assert_array_equal(train_x.numpy(), m.train_images[tr])
    np.testing.assert_array_equal(val_y.numpy(), m.train_labels[va])
    np.testing.assert_array_equal(test_x.numpy(), m.test_images)
    np.testing.assert_array_equal(test_y.numpy(), m.test_labels)

    meta = pipeline.json("data/mnist/meta.json")
    assert "source" not in meta  # the same bytes give the same meta.json, however fetched
    assert meta["raw_md5"] == RAW_FILES
    assert (meta["seed"], meta["val_frac"]) == (42, 0.15)
    assert (meta["n_train"], meta["n_val"], meta["n_test"]) == (510, 90, 100)
    assert meta["train_class_counts"] == np.bincount(m.train_labels[tr], minlength=10).tolist()
    assert meta["val_class_counts"] == np.bincount(m.train_labels[va], minlength=10).tolist()
    assert sum(meta["train_class_counts"]) == 510


# --------------------------------------------------------------------------- prepare_class
def test_prepare_class_cache_and_rejected(pipeline: Pipeline) -> None:
    cs = load_class(pipeline.path("data/class/digits.npz"))
    assert cs.files.tolist() == pipeline.class_files  # sorted by name, bad entries left out
    assert cs.images.shape == (30, 28, 28) and cs.images.dtype == np.uint8
    assert cs.labels.tolist() == [int(f[0]) for f in pipeline.class_files]
    assert cs.groups.tolist() == [int(f.split("-")[1]) for f in pipeline.class_files]
    assert set(cs.members.tolist()) == {1}
    assert np.bincount(cs.groups).tolist() == [0, 10, 10, 10]

    rejected = {row["file"]: row["reason"] for row in pipeline.csv("reports/class/rejected.csv")}
    assert set(rejected) == set(BAD_ENTRIES)
    for name, reason in BAD_ENTRIES.items():
        assert reason in rejected[name], (name, rejected[name])
    read = pipeline.csv("reports/class/read.csv")
    assert [row["file"] for row in read] == pipeline.class_files
    assert {(row["format"], row["rotated"], row["photo"]) for row in read} == {("png", "0", "0")}


# --------------------------------------------------------------------------- train
def test_train_checkpoint_and_dvclive_outputs(pipeline: Pipeline) -> None:
    model, ckpt = load_checkpoint(pipeline.path("models/model.pt"))
    assert ckpt["model_config"]["model"] == "mlp" and ckpt["model_config"]["hidden"] == [128]
    summary = pipeline.json("reports/train/metrics.json")
    # The kept model's headline only (not dvclive's last-epoch figures).
    assert set(summary) == {"best_val_loss", "best_val_acc", "best_epoch", "epochs_run"}
    assert pipeline.json("reports/train/members.json") == {
        "0": {"seed": 42, **{k: summary[k] for k in summary}}
    }
    assert summary["epochs_run"] == 2
    assert summary["best_epoch"] in (1, 2)
    assert ckpt["extra"]["best_epoch"] == summary["best_epoch"]
    assert ckpt["extra"]["best_val_loss"] == pytest.approx(summary["best_val_loss"])
    assert summary["best_val_acc"] > 0.8  # the bars are easy
    # The kept weights are the best epoch's: re-evaluating gives the recorded val accuracy.
    val_x, val_y = load_split(pipeline.path("data/mnist/val.npz"))
    logits = predict_logits(model, val_x)
    assert (logits.argmax(1) == val_y).double().mean().item() == pytest.approx(
        summary["best_val_acc"]
    )
    # The ensemble's validation loss is training's: label-smoothed (params' 0.1), as labelled.
    smoothed = F.cross_entropy(logits, val_y, label_smoothing=0.1).item()
    assert summary["best_val_loss"] == pytest.approx(smoothed, rel=1e-5)
    assert summary["best_val_loss"] != pytest.approx(F.cross_entropy(logits, val_y).item())

    # Every per-epoch series dvc.yaml plots exists, one row per epoch.
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    tsvs = [
        f
        for entry in dvc["plots"]
        if isinstance(entry, dict)
        for spec in entry.values()
        for f in spec.get("y", {})
        if f.startswith("reports/train/")
    ]
    assert len(tsvs) == 4
    for rel in tsvs:
        rows = pipeline.path(rel).read_text(encoding="utf-8").splitlines()
        assert rows[0].split("\t") == ["step", rel.rsplit("/", 1)[1].removesuffix(".tsv")]
        assert [r.split("\t")[0] for r in rows[1:]] == ["0", "1"]
    val_loss = pipeline.path("reports/train/plots/metrics/val/loss.tsv").read_text().splitlines()
    best = float(val_loss[summary["best_epoch"]].split("\t")[1])
    assert best == pytest.approx(summary["best_val_loss"])


def test_train_an_ensemble(
    tiny_mnist: Any, tmp_path: Path, params_file: Callable[..., Path]
) -> None:
    """ensemble: 2 trains two members (seeds 5 and 6); metrics.json holds the ensemble's
    validation figures and each member's; the report says so."""
    params = params_file(ensemble=2, seed=5, max_epochs=1)
    model_path, live = tmp_path / "m" / "model.pt", tmp_path / "reports" / "train"
    argv = ["--data", str(tiny_mnist.root), "--model", str(model_path), "--live", str(live)]
    stages.train.main([*argv, "--params", str(params)])
    summary = json.loads((live / "metrics.json").read_text(encoding="utf-8"))
    assert set(summary) == {"best_val_loss", "best_val_acc"}  # headline; members beside it
    kept = json.loads((live / "members.json").read_text(encoding="utf-8"))
    assert [m["seed"] for m in kept.values()] == [5, 6]
    assert all(m["epochs_run"] == 1 for m in kept.values())
    model, ckpt = load_checkpoint(model_path)
    assert ckpt["extra"]["members"] == kept and len(members(model)) == 2
    val_x, val_y = load_split(tiny_mnist.root / "val.npz")
    logits = predict_logits(model, val_x)
    assert (logits.argmax(1) == val_y).double().mean().item() == pytest.approx(
        summary["best_val_acc"]
    )
    # The ensemble's validation loss is training's: label-smoothed (params' 0.1), as labelled.
    smoothed = F.cross_entropy(logits, val_y, label_smoothing=0.1).item()
    assert summary["best_val_loss"] == pytest.approx(smoothed, rel=1e-5)
    assert summary["best_val_loss"] != pytest.approx(F.cross_entropy(logits, val_y).item())
    # The loss curves run on through both members' epochs.
    rows = (live / "plots/metrics/val/loss.tsv").read_text(encoding="utf-8").splitlines()
    assert [r.split("\t")[0] for r in rows[1:]] == ["0", "1"]
    sentence = _training_sentence(summary, kept)
    assert sentence.startswith("An ensemble of 2 models") and "seed 6: epoch 1 of 1" in sentence
    assert "(label smoothing 0.1) " in _training_sentence(summary, kept, 0.1)
    assert "label smoothing" not in sentence


# --------------------------------------------------------------------------- evaluate_mnist
def test_evaluate_mnist_outputs(pipeline: Pipeline) -> None:
    m = pipeline.json("reports/mnist/metrics.json")
    # Headline numbers only; the loss per true digit is the table beside it.
    assert set(m) == {"accuracy", "ci_low", "ci_high", "loss", "n"}
    assert m["n"] == 100
    per_digit = read_per_class_loss(pipeline.path("reports/mnist/per_class_loss.csv"))
    assert len(per_digit) == 10 and all(v is not None and v >= 0 for v in per_digit)
    counts = np.bincount(pipeline.mnist.test_labels, minlength=10)
    assert sum(v * c for v, c in zip(per_digit, counts, strict=True)) / 100 == pytest.approx(
        m["loss"], abs=1e-4
    )

    rows = pipeline.csv("reports/mnist/predictions.csv")
    assert len(rows) == 100 and list(rows[0]) == ["actual", "predicted"]
    actual = np.array([int(r["actual"]) for r in rows])
    predicted = np.array([int(r["predicted"]) for r in rows])
    np.testing.assert_array_equal(actual, pipeline.mnist.test_labels)
    correct = int((actual == predicted).sum())
    assert m["accuracy"] == correct / 100
    assert m["accuracy"] > 0.8
    assert (m["ci_low"], m["ci_high"]) == pytest.approx(wilson_interval(correct, 100))

    # Independent recomputation from the checkpoint: the default reads each digit as the
    # mean of its three rotated views (mnistgap.tta), not the image alone.
    assert yaml.safe_load(pipeline.params.read_text())["tta"] == "rot"
    model, _ = load_checkpoint(pipeline.path("models/model.pt"))
    images = torch.from_numpy(pipeline.mnist.test_images)
    logits = tta_logits(model, images, "rot")
    np.testing.assert_array_equal(logits.argmax(1).numpy(), predicted)
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(actual)).item()
    assert m["loss"] == pytest.approx(loss, rel=1e-5)
    plain = torch.nn.functional.cross_entropy(
        predict_logits(model, images), torch.from_numpy(actual)
    )
    assert m["loss"] != pytest.approx(plain.item(), rel=1e-3)

    per_class = pipeline.csv("reports/mnist/per_class_loss.csv")
    assert [r["digit"] for r in per_class] == [f"digit {d}" for d in range(10)]
    threes = actual == 3
    per_image = torch.nn.functional.cross_entropy(
        logits, torch.from_numpy(actual), reduction="none"
    )
    assert float(per_class[3]["loss"]) == pytest.approx(per_image[threes].mean().item(), abs=1e-5)
    for png in ("confusion.png", "per_class_loss.png"):
        assert _is_png(pipeline.path(f"reports/mnist/{png}")), png


def test_predict_reads_the_class_digits_as_the_evaluation_does(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    """`predict` on the class folder: the pipeline's preprocessing and test-time views from
    params.yaml, so every digit the evaluation kept gets the evaluation's reading."""
    cs = load_class(pipeline.path("data/class/digits.npz"))
    model, _ = load_checkpoint(pipeline.path("models/model.pt"))
    images = torch.from_numpy(cs.images)
    argv = [str(pipeline.path("class_digits")), "--model", str(pipeline.path("models/model.pt"))]
    argv += ["--params", str(pipeline.params), "--json"]
    for extra, tta in (([], "rot"), (["--tta", "none"], "none")):
        assert run_stage("predict", stages.predict.main, argv + extra) == 0
        out = json.loads(capsys.readouterr().out)
        assert (out["preprocess"], out["tta"]) == ("mnist", tta)
        read = {Path(r["file"]).name: r for r in out["results"]}
        probs = tta_logits(model, images, tta).softmax(1)
        for i, name in enumerate(cs.files):
            assert read[name]["prediction"] == int(probs[i].argmax())
            assert read[name]["confidence"] == pytest.approx(float(probs[i].max()), abs=1e-4)
        # The unreadable files are reported, not classified.
        assert {Path(e["file"]).name for e in out["errors"]} >= {"8-3-2.png"}


# --------------------------------------------------------------------------- evaluate_class
def _class_predictions(pipeline: Pipeline) -> tuple[np.ndarray, np.ndarray]:
    rows = pipeline.csv("reports/class/predictions.csv")
    return np.array([int(r["actual"]) for r in rows]), np.array([int(r["predicted"]) for r in rows])


def test_evaluate_class_outputs(pipeline: Pipeline) -> None:
    m = pipeline.json("reports/class/metrics.json")
    assert set(m) == {"accuracy", "ci_low", "ci_high", "loss", "n", "without_flagged"}
    assert m["n"] == 30
    actual, predicted = _class_predictions(pipeline)
    np.testing.assert_array_equal(actual, [int(f[0]) for f in pipeline.class_files])
    assert m["accuracy"] == pytest.approx((actual == predicted).mean())

    wf = m["without_flagged"]
    assert wf["n"] == m["n"] - 1
    keep = np.array([f != FLAGGED_FILE for f in pipeline.class_files])
    assert wf["accuracy"] == pytest.approx((actual[keep] == predicted[keep]).mean())
    assert set(wf) == {"accuracy", "ci_low", "ci_high", "n"}
    for png in ("confusion.png", "per_class_loss.png", "misclassified.png"):
        assert _is_png(pipeline.path(f"reports/class/{png}")), png


# --------------------------------------------------------------------------- evaluate_groups
def test_evaluate_groups_outputs(pipeline: Pipeline) -> None:
    # metrics.json: the spread of the groups only; every group's numbers are in groups.csv.
    spread = pipeline.json("reports/groups/metrics.json")
    assert set(spread) == {"groups", "median_accuracy", "worst_accuracy", "below_90"}
    g = read_groups(pipeline.path("reports/groups/groups.csv"))
    assert list(g) == ["1", "2", "3"]
    assert [g[k]["n"] for k in g] == [10, 10, 10]
    assert [g[k]["flagged"] for k in g] == [1, 0, 0]  # FLAGGED_FILE is in group 1
    assert [g[k]["without_flagged"]["n"] for k in g] == [9, 10, 10]

    actual, predicted = _class_predictions(pipeline)
    groups = np.array([int(f.split("-")[1]) for f in pipeline.class_files])
    for gid, block in g.items():
        sel = groups == int(gid)
        assert block["accuracy"] == pytest.approx((actual[sel] == predicted[sel]).mean())
    klass = pipeline.json("reports/class/metrics.json")
    assert sum(b["accuracy"] * b["n"] for b in g.values()) == pytest.approx(klass["accuracy"] * 30)
    assert sum(b["loss"] * b["n"] for b in g.values()) == pytest.approx(
        klass["loss"] * 30, abs=1e-4
    )
    accuracies = sorted(b["accuracy"] for b in g.values())
    assert spread["groups"] == 3 and spread["worst_accuracy"] == pytest.approx(accuracies[0])
    assert spread["median_accuracy"] == pytest.approx(accuracies[1])
    assert spread["below_90"] == sum(a < 0.9 for a in accuracies)

    rows = pipeline.csv("reports/groups/groups.csv")
    assert [r["group"] for r in rows] == ["group 1", "group 2", "group 3"]
    for png in ("groups.png", "group_digit_accuracy.png"):
        assert _is_png(pipeline.path(f"reports/groups/{png}")), png


# --------------------------------------------------------------------------- adapt
def test_adapt_outputs(pipeline: Pipeline) -> None:
    m = pipeline.json("reports/adapt/metrics.json")
    assert set(m) == {
        "accuracy", "ci_low", "ci_high", "loss", "n", "mnist_only_accuracy", "mnist_accuracy",
        "without_flagged",
    }  # fmt: skip
    assert m["n"] == 30 and 0 <= m["ci_low"] <= m["accuracy"] <= m["ci_high"] <= 1
    assert m["loss"] > 0 and 0 <= m["mnist_accuracy"] <= 1
    # The MNIST-only reading of the same digits is evaluate_class's.
    klass = pipeline.json("reports/class/metrics.json")
    assert m["mnist_only_accuracy"] == pytest.approx(klass["accuracy"])
    rows = pipeline.csv("reports/adapt/predictions.csv")
    assert [r["file"] for r in rows] == pipeline.class_files
    label = np.array([int(r["label"]) for r in rows])
    pred = np.array([int(r["pred"]) for r in rows])
    assert m["accuracy"] == pytest.approx((label == pred).mean())
    keep = np.array([r["flagged"] == "0" for r in rows])
    assert [r["file"] for r in rows if r["flagged"] == "1"] == [FLAGGED_FILE]
    assert m["without_flagged"]["n"] == 29
    assert m["without_flagged"]["accuracy"] == pytest.approx((label[keep] == pred[keep]).mean())
    # Three groups, three folds: each group a fold of its own.
    folds = {r["group"]: {x["fold"] for x in rows if x["group"] == r["group"]} for r in rows}
    assert all(len(f) == 1 for f in folds.values()) and len(set.union(*folds.values())) == 3
    g = read_adapt_groups(pipeline.path("reports/adapt/groups.csv"))
    assert list(g) == ["1", "2", "3"] and [b["n"] for b in g.values()] == [10, 10, 10]
    assert sum(b["accuracy"] * b["n"] for b in g.values()) == pytest.approx(m["accuracy"] * 30)
    assert _is_png(pipeline.path("reports/adapt/confusion.png"))
    # models/adapted.pt: a self-describing checkpoint that says what it was adapted on.
    model, ckpt = load_checkpoint(pipeline.path("models/adapted.pt"))
    assert ckpt["extra"]["adapted"] is True and ckpt["extra"]["class_digits"] == 30
    base, _ = load_checkpoint(pipeline.path("models/model.pt"))
    changed = [
        not torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), base.state_dict().values(), strict=True)
    ]
    assert any(changed)


def test_adapt_curve_outputs(pipeline: Pipeline) -> None:
    points = read_curve(pipeline.path("reports/adapt/curve.csv"))
    # 0 (MNIST only), 1 of the 2 other groups (adapt.curve [1, 2, 4]: 2 and 4 are "all"), all.
    assert [p["groups"] for p in points] == [0, 1, 2]
    assert [p["digits"] for p in points] == [0, 10, 20]
    assert all(p["n"] == 30 for p in points)
    klass = pipeline.json("reports/class/metrics.json")
    adapt = pipeline.json("reports/adapt/metrics.json")
    assert points[0]["accuracy"] == pytest.approx(klass["accuracy"], abs=1e-6)
    assert points[-1]["accuracy"] == pytest.approx(adapt["accuracy"], abs=1e-6)
    assert _is_png(pipeline.path("reports/adapt/curve.png"))


def test_predict_reads_with_the_adapted_model(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    """`predict --model models/adapted.pt`: the adapted model's reading, not the trained one's."""
    cs = load_class(pipeline.path("data/class/digits.npz"))
    adapted, _ = load_checkpoint(pipeline.path("models/adapted.pt"))
    argv = [str(pipeline.path("class_digits")), "--model", str(pipeline.path("models/adapted.pt"))]
    argv += ["--params", str(pipeline.params), "--json", "--tta", "none"]
    assert run_stage("predict", stages.predict.main, argv) == 0
    read = {Path(r["file"]).name: r for r in json.loads(capsys.readouterr().out)["results"]}
    probs = tta_logits(adapted, torch.from_numpy(cs.images), "none").softmax(1)
    for i, name in enumerate(cs.files):
        assert read[name]["confidence"] == pytest.approx(float(probs[i].max()), abs=1e-4)


@pytest.mark.parametrize("why", ["one group", "disabled"])
def test_adapt_says_when_it_cannot(
    pipeline: Pipeline,
    tmp_path: Path,
    why: str,
    caplog: pytest.LogCaptureFixture,
    params_file: Callable[..., Path],
) -> None:
    """One group, or adapt.enabled false: one line, a metrics file saying so, every output."""
    r = pipeline.root
    cs = load_class(r / "data/class/digits.npz")
    data, leakage = r / "data/class/digits.npz", r / "reports/leakage/leakage.csv"
    params = pipeline.params
    if why == "one group":
        one = cs.groups == 1
        data = tmp_path / "digits.npz"
        save_class(
            data,
            dataclasses.replace(
                cs, **{f.name: getattr(cs, f.name)[one] for f in dataclasses.fields(cs)}
            ),
        )
        write_leakage(
            tmp_path, cs.files[one].tolist(), cs.labels[one].tolist(), [1] * int(one.sum())
        )
        leakage = tmp_path / "leakage" / "leakage.csv"
    else:
        params = params_file(fast=True, **{"adapt.enabled": False})
    out, adapted = tmp_path / "adapt", tmp_path / "adapted.pt"
    argv = ["--model", str(r / "models/model.pt"), "--data", str(data), "--leakage", str(leakage)]
    argv += ["--mnist", str(r / "data/mnist"), "--out", str(out), "--adapted", str(adapted)]
    with caplog.at_level("INFO"):
        assert run_stage("adapt", stages.adapt.main, [*argv, "--params", str(params)]) == 0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["adapted"] is False and set(m) == {"adapted", "reason"}
    assert ("at least 2" if why == "one group" else "adapt.enabled is false") in m["reason"]
    assert [rec.message for rec in caplog.records if "no adaptation" in rec.message]
    assert (out / "predictions.csv").read_text(encoding="utf-8").count("\n") == 1  # header
    _, ckpt = load_checkpoint(adapted)
    assert ckpt["extra"]["adapted"] is False
    # The curve is the MNIST-only point alone; the report says why.
    curve_argv = ["--model", str(r / "models/model.pt"), "--data", str(data)]
    curve_argv += ["--mnist", str(r / "data/mnist"), "--predictions", str(out / "predictions.csv")]
    curve_argv += ["--out", str(out), "--params", str(params)]
    assert run_stage("adapt_curve", stages.adapt_curve.main, curve_argv) == 0
    assert [p["groups"] for p in read_curve(out / "curve.csv")] == [0]


# --------------------------------------------------------------------------- report
def test_report_contents(pipeline: Pipeline) -> None:
    text = pipeline.path("reports/report.md").read_text(encoding="utf-8")
    mnist = pipeline.json("reports/mnist/metrics.json")
    klass = pipeline.json("reports/class/metrics.json")
    usps = pipeline.json("reports/external/usps/metrics.json")
    train = pipeline.json("reports/train/metrics.json")
    env = pipeline.json("reports/train/environment.json")
    assert text.startswith("# MNIST → real handwriting: pipeline report")
    assert f"in {env['precision']}, torch {env['torch']}" in text
    # One table of every evaluation set, the independent one with its published points.
    table = text.split("## Every evaluation set", 1)[1].split("\n## ", 1)[0]
    assert "| MNIST test | 10,000 |" not in table  # the tiny MNIST has 100 test digits
    assert f"| MNIST test | {mnist['n']} | " in table
    assert f"{100 * mnist['accuracy']:.2f}% [" in table
    assert f"| class folder `{pipeline.root / 'class_digits'}` | {klass['n']} | 3 groups |" in table
    assert f"| USPS test | {usps['n']} | not published (US Postal Service envelopes) |" in table
    assert f"{100 * usps['accuracy']:.2f}% [" in table and "75.2% ± 1.6" in table
    assert usps["n"] == 40 and set(usps) >= {"accuracy", "ci_low", "ci_high", "loss", "n"}
    assert "No seed spread is recorded for this configuration" in table
    assert "## The study vs this run" in text
    assert "| MNIST test accuracy | 98.00% (~) |" in text
    # Three groups of ten digits are not the study's collection: overall figures only.
    assert "accuracy (n) |" not in text
    assert "are not the study's collection" in text
    # Few groups: every one is listed.
    groups = text.split("## Per group", 1)[1].split("\n## ", 1)[0]
    assert all(f"\n| {g} | " in groups for g in ("1", "2", "3"))
    assert "3 groups of 10 digits; median group accuracy" in groups
    assert "![USPS test confusion matrix](external/usps/confusion.png)" in text
    assert f"Training kept epoch {train['best_epoch']} of 2" in text
    assert f"(best validation loss (label smoothing 0.1) {train['best_val_loss']:.4f}" in text
    assert "probability 0.91, not 1: even a right answer costs 0.094" in text  # -log(0.91)
    leakage = text.split("## Leakage check", 1)[1].split("\n## ", 1)[0]
    threshold = load_params(pipeline.params, ["leakage"])["leakage"].threshold
    assert "1 of 30 class digits" in leakage and f"below {threshold} (an almost" in leakage
    assert "Flagged by reason: distance: 1, ratio: 0, both: 0" in leakage
    assert "groups with flagged digits: 1: 1" in leakage
    assert f"{len(BAD_ENTRIES)} entries of the class folder were not used" in text
    for name in BAD_ENTRIES:
        assert f"| `{name}` |" in text
    # The params block is the whole validated params file.
    block = re.search(r"## Parameters used\n\n```yaml\n(.*?)```", text, re.DOTALL)
    assert block is not None
    assert yaml.safe_load(block.group(1)) == Params.pick(load_params(pipeline.params)).model_dump(
        mode="json"
    )


@pytest.mark.parametrize(
    ("handed_in", "same"),
    [
        ({"1": 40, "2": 30, "3": 40, "4": 40, "5": 40}, True),  # the development groups 1-5
        ({str(g): n for g, n in enumerate([40, 30, 40, 40, 40, 40, 20, 30, 10, 40], 1)}, True),
        ({"1": 40, "2": 29}, False),  # one digit short
        ({"1": 40, "11": 40}, False),  # a group the study does not have
        ({str(g): 138 for g in range(1, 14)}, False),  # the bundled UCI sample
        ({}, False),
    ],
)
def test_the_study_s_collection_is_told_by_its_groups_and_sizes(
    handed_in: dict[str, int], same: bool
) -> None:
    assert study.is_study_collection(handed_in) is same


def test_handed_in_counts_digit_files_rejected_for_their_content() -> None:
    groups = {"1": {"n": 38}, "2": {"n": 30}}
    rejected = [
        ("0-1-3.png", "filter: max pixel 41 < 70"),
        ("1-1-3.png", "blank: no ink"),
        ("1-02-3.png", "duplicate of 1-2-3.png (same digit-group-member)"),
        ("notes.txt", "not a PNG file name"),
        ("3-5-1.png", "corrupt PNG: broken data stream"),
    ]
    assert _handed_in(groups, rejected) == {"1": 40, "2": 30, "5": 1}


def test_report_is_deterministic(pipeline: Pipeline, tmp_path: Path) -> None:
    out = tmp_path / "again.md"
    argv = ["--reports", str(pipeline.path("reports")), "--params", str(pipeline.params)]
    argv += ["--seeds", str(pipeline.path("reports/seeds"))]
    stages.report.main([*argv, "--out", str(out)])
    assert out.read_bytes() == pipeline.path("reports/report.md").read_bytes()


# --------------------------------------------------------------------------- errors
def _one_error_line(err: str, stage: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{stage}: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{stage}: error: "), lines[0]
    return lines[0]


def test_prepare_class_missing_folder(
    tmp_path: Path,
    params_file: Callable[..., Path],
    prepare_class_argv: Callable[..., list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = prepare_class_argv(tmp_path / "nope", tmp_path, params_file())
    assert run_stage("prepare_class", stages.prepare_class.main, argv) == 1
    line = _one_error_line(capsys.readouterr().err, "prepare_class")
    assert "class digit folder not found" in line and "nope" in line
    assert not (tmp_path / "digits.npz").exists()


def test_prepare_class_without_usable_images_still_lists_rejects(
    tmp_path: Path,
    params_file: Callable[..., Path],
    prepare_class_argv: Callable[..., list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "readme.md").write_text("x", encoding="utf-8")
    (folder / "3-1-1.png").write_bytes(b"")
    argv = prepare_class_argv(folder, tmp_path, params_file())
    assert run_stage("prepare_class", stages.prepare_class.main, argv) == 1
    line = _one_error_line(capsys.readouterr().err, "prepare_class")
    assert "no usable class digit images" in line
    text = (tmp_path / "rejected.csv").read_text(encoding="utf-8")
    assert text.splitlines() == [
        "file,reason",
        "3-1-1.png,empty file",
        "readme.md,not an image file name (expected <digit>-<group>-<member>.<image extension>)",
    ]
    assert not (tmp_path / "digits.npz").exists()


def test_prepare_class_with_the_tiny_folder(
    tmp_path: Path,
    tiny_class_dir: Path,
    params_file: Callable[..., Path],
    prepare_class_argv: Callable[..., list[str]],
) -> None:
    params = params_file(**{"class_digits.preprocess": "study"})
    stages.prepare_class.main(prepare_class_argv(tiny_class_dir, tmp_path, params))
    cs = load_class(tmp_path / "digits.npz")
    assert len(cs.files) == 30
    # 'seed' preprocessing of a 28x28 grey PNG is the identity: the pixels come back as drawn.
    first = np.array(Image.open(tiny_class_dir / cs.files[0]))
    np.testing.assert_array_equal(cs.images[0], first)
    assert (tmp_path / "rejected.csv").read_text(encoding="utf-8") == "file,reason\n"


def test_bad_lr_fails_before_any_work(
    tmp_path: Path,
    tiny_mnist: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text, n = re.subn(
        r"\nlr: \S+\n", "\nlr: 1e-3\n", (REPO / "params.yaml").read_text(encoding="utf-8")
    )
    assert n == 1
    params = tmp_path / "params.yaml"
    params.write_text(text, encoding="utf-8")
    argv = [
        "--data",
        str(tiny_mnist.root),
        "--model",
        str(tmp_path / "model.pt"),
        "--live",
        str(tmp_path / "live"),
        "--params",
        str(params),
    ]
    assert run_stage("train", stages.train.main, argv) == 1
    line = _one_error_line(capsys.readouterr().err, "train")
    assert "'lr'" in line and "1.0e-3" in line
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "live").exists()


def test_stale_leakage_report_is_refused(
    pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = pipeline.path("reports/leakage/leakage.csv").read_text(encoding="utf-8").splitlines()
    stale = tmp_path / "leakage.csv"
    stale.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")  # one digit short
    argv = [
        "--model",
        str(pipeline.path("models/model.pt")),
        "--data",
        str(pipeline.path("data/class/digits.npz")),
        "--leakage",
        str(stale),
        "--out",
        str(tmp_path / "out"),
        "--params",
        str(pipeline.params),
    ]
    for name, stage in (
        ("evaluate_class", stages.evaluate_class),
        ("evaluate_groups", stages.evaluate_groups),
    ):
        assert run_stage(name, stage.main, argv) == 1
        line = _one_error_line(capsys.readouterr().err, name)
        assert "rerun the leakage stage" in line
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_evaluate_refuses_a_file_that_is_not_a_checkpoint(
    tmp_path: Path,
    tiny_mnist: Any,
    params_file: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bogus = tmp_path / "model.pt"
    torch.save([1, 2, 3], bogus)
    argv = [
        "--set",
        "mnist",
        "--model",
        str(bogus),
        "--data",
        str(tiny_mnist.root / "test.npz"),
        "--out",
        str(tmp_path / "out"),
        "--params",
        str(params_file(fast=True)),
    ]
    assert run_stage("evaluate_mnist", stages.evaluate_split.main, argv) == 1
    assert "not a mnistgap checkpoint" in _one_error_line(capsys.readouterr().err, "evaluate_mnist")
