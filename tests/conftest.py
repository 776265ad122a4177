"""Shared fixtures: a tiny fake MNIST, a tiny class-digit folder and editable params files.

The synthetic "digits" are easy on purpose: digit k is a bright bar whose position and
orientation depend on k (0-4: horizontal bars at rows 3, 8, ..., 23; 5-9: vertical bars at
columns 3, 8, ..., 23), jittered by up to one pixel. A small MLP separates them within one
or two epochs, so the stage tests exercise real training in well under a second.

Factories are session-scoped (module-scoped fixtures such as the pipeline in
``test_stages.py`` can use them); ``tiny_mnist``, ``tiny_class_dir`` and ``params_file``
wrap them on ``tmp_path``.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mnistgap.data import save_split
from mnistgap.mnist_source import write_idx
from mnistgap.settings import lookup
from mnistgap.split import train_val_indices

# Shared browser fixtures (chromium_browser, with the network cut off): tests/browser.py.
pytest_plugins = ("browser",)

# Tests must never phone home (dvclive/dvc send usage analytics unless told not to).
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# Tiny models on tiny batches: extra threads only add synchronisation, and on busy cores
# torch's spinning worker threads make a 0.1 s training run take seconds.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
PARAMS_YAML = REPO / "params.yaml"

N_TRAIN_RAW = 600  # the fake "60,000"
N_TEST = 100
SEED = 42  # params.yaml's seed
VAL_FRAC = 0.15  # params.yaml's val_frac
CLASS_GROUPS = (1, 2, 3)

# Settings that make training take a fraction of a second on tiny data.
FAST: dict[str, Any] = {
    "model": "mlp",  # the stage tests train the fast one; tests/test_training.py covers both
    "hidden": [128],
    "max_epochs": 2,
    "batch_size": 32,
    "precision": "fp32",
    "device": "cpu",
    "augment.enabled": False,
    "eval_batch_size": 256,
    "adapt.steps": 5,
    "adapt.batch_size": 16,
}


def draw_digits(labels: np.ndarray, seed: int, jitter: int = 1) -> np.ndarray:
    """Synthetic uint8 (N, 28, 28) "digits", light bars on black, one pattern per label."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=np.int64)
    images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
    dy = rng.integers(-jitter, jitter + 1, size=len(labels))
    dx = rng.integers(-jitter, jitter + 1, size=len(labels))
    ink = rng.integers(180, 256, size=len(labels))
    for i, k in enumerate(labels):
        pos = 3 + 5 * (int(k) % 5)
        if k < 5:  # horizontal bar
            r, c = pos + dy[i], 6 + dx[i]
            images[i, r : r + 3, c : c + 16] = ink[i]
        else:  # vertical bar
            r, c = 6 + dy[i], pos + dx[i]
            images[i, r : r + 16, c : c + 3] = ink[i]
    return images


def balanced_labels(n: int, seed: int) -> np.ndarray:
    """``n`` labels, every digit (almost) equally often, in a random order."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(n) % 10).astype(np.int64)


@dataclass(frozen=True)
class TinyMnist:
    """A fake prepared MNIST folder (like ``data/mnist``) and the arrays written into it."""

    root: Path  # holds train.npz, val.npz, test.npz
    raw: Path  # root/raw: the four IDX files
    train_images: np.ndarray  # all N_TRAIN_RAW "training" images (before the split)
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    train_idx: np.ndarray  # split indices, as prepare_mnist computes them
    val_idx: np.ndarray


def write_tiny_mnist(root: Path) -> TinyMnist:
    """Write raw IDX files to ``root/raw`` and the split npz files to ``root``."""
    train_labels = balanced_labels(N_TRAIN_RAW, seed=1).astype(np.uint8)
    test_labels = balanced_labels(N_TEST, seed=2).astype(np.uint8)
    train_images = draw_digits(train_labels, seed=3)
    test_images = draw_digits(test_labels, seed=4)
    raw = root / "raw"
    write_idx(raw / "train-images-idx3-ubyte", train_images)
    write_idx(raw / "train-labels-idx1-ubyte", train_labels)
    write_idx(raw / "t10k-images-idx3-ubyte", test_images)
    write_idx(raw / "t10k-labels-idx1-ubyte", test_labels)
    tr, va = train_val_indices(N_TRAIN_RAW, VAL_FRAC, SEED)
    save_split(root / "train.npz", train_images[tr], train_labels[tr])
    save_split(root / "val.npz", train_images[va], train_labels[va])
    save_split(root / "test.npz", test_images, test_labels)
    return TinyMnist(
        root,
        raw,
        train_images,
        train_labels.astype(np.int64),
        test_images,
        test_labels.astype(np.int64),
        tr,
        va,
    )


def write_class_dir(folder: Path) -> list[str]:
    """30 PNGs ``<digit>-<group>-1.png``: every digit once in each of the groups 1, 2, 3.

    Returns the file names in sorted order (the order prepare_class caches them in).
    """
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for group in CLASS_GROUPS:
        labels = np.arange(10)
        for digit, img in zip(labels, draw_digits(labels, seed=10 + group), strict=True):
            name = f"{digit}-{group}-1.png"
            Image.fromarray(img).save(folder / name)
            names.append(name)
    return sorted(names)


def _set_dotted(params: dict, key: str, value: Any) -> None:
    """Set (or, for ``...``, delete) ``a.b.c`` / ``a__b__c`` in a nested dict."""
    parent, _, leaf = key.replace("__", ".").rpartition(".")
    node = lookup(params, parent) if parent else params
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value


def write_params(path: Path, fast: bool = False, **overrides: Any) -> Path:
    """Copy the real params.yaml to ``path`` with ``overrides`` applied.

    Keys are dotted (``**{"augment.enabled": False}``) or use ``__`` (``augment__enabled=False``);
    the value ``...`` deletes the key. ``fast=True`` first applies :data:`FAST`.
    """
    params = yaml.safe_load(PARAMS_YAML.read_text(encoding="utf-8"))
    for key, value in ({**FAST, **overrides} if fast else overrides).items():
        _set_dotted(params, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def prepare_class_args(folder: Path, out: Path, params: Path) -> list[str]:
    """prepare_class's arguments writing ``out``/digits.npz and ``out``/rejected.csv."""
    return [
        "--dir",
        str(folder),
        "--out",
        str(out / "digits.npz"),
        "--rejected",
        str(out / "rejected.csv"),
        "--params",
        str(params),
    ]


@pytest.fixture(scope="session")
def prepare_class_argv() -> Callable[[Path, Path, Path], list[str]]:
    """:func:`prepare_class_args`: ``prepare_class_argv(folder, out, params)``."""
    return prepare_class_args


@pytest.fixture(scope="session")
def digits() -> Callable[..., np.ndarray]:
    """:func:`draw_digits`: ``digits(labels, seed)`` -> uint8 (N, 28, 28)."""
    return draw_digits


@pytest.fixture(scope="session")
def make_tiny_mnist() -> Callable[[Path], TinyMnist]:
    """:func:`write_tiny_mnist` for fixtures of any scope."""
    return write_tiny_mnist


@pytest.fixture(scope="session")
def make_class_dir() -> Callable[[Path], list[str]]:
    """:func:`write_class_dir` for fixtures of any scope."""
    return write_class_dir


@pytest.fixture(scope="session")
def make_params_at() -> Callable[..., Path]:
    """:func:`write_params` for any scope: ``make_params_at(path, fast, **overrides)``."""
    return write_params


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> TinyMnist:
    """600 + 100 synthetic images as raw IDX files and prepared npz splits under tmp_path."""
    return write_tiny_mnist(tmp_path / "data" / "mnist")


@pytest.fixture
def tiny_class_dir(tmp_path: Path) -> Path:
    """A folder of 30 synthetic class-digit PNGs in 3 groups."""
    folder = tmp_path / "class_digits"
    write_class_dir(folder)
    return folder


@pytest.fixture
def params_file(tmp_path: Path) -> Callable[..., Path]:
    """``make_params(fast=False, name="params.yaml", **overrides) -> Path`` in tmp_path."""

    def make_params(fast: bool = False, name: str = "params.yaml", **overrides: Any) -> Path:
        return write_params(tmp_path / name, fast, **overrides)

    return make_params


def write_usps_esl(path: Path, labels: np.ndarray, seed: int = 5) -> Path:
    """A small USPS file in the ESL text format (zip.test.gz): the synthetic bars, shrunk to
    16x16 and scaled to [-1, 1] (-1 the background), one digit a line."""
    images = draw_digits(labels, seed=seed)
    small = torch.nn.functional.interpolate(
        torch.from_numpy(images).float()[:, None] / 255, size=(16, 16), mode="area"
    )[:, 0].numpy()
    lines = [
        f"{int(y)} " + " ".join(f"{v:.3f}" for v in (img * 2 - 1).ravel())
        for y, img in zip(labels, small, strict=True)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="ascii") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def make_usps() -> Callable[..., Path]:
    """:func:`write_usps_esl`: ``make_usps(path, labels)``."""
    return write_usps_esl
