"""mnistgap/adapt.py: folds over groups, fine-tuning, and no held-out digit reaching its reader."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from mnistgap.adapt import (
    Recipe,
    assign_folds,
    class_per_batch,
    curve_readings,
    curve_subsets,
    fine_tune,
    out_of_fold,
)
from mnistgap.models import MLP, NUM_CLASSES
from mnistgap.params import Adapt, Augment
from mnistgap.tta import predict_logits

CPU = torch.device("cpu")


def recipe(**adapt: Any) -> Recipe:
    return Recipe(Adapt(**adapt), Augment(enabled=False), 0.0, "none", "fp32")


# --------------------------------------------------------------------------- folds
def test_folds_are_whole_groups_balanced_by_digits_and_fixed_by_the_seed() -> None:
    sizes = {1: 50, 2: 40, 3: 30, 4: 30, 5: 20, 6: 10, 7: 10}
    groups = np.repeat(list(sizes), list(sizes.values()))
    a = assign_folds(groups, 3, seed=7)
    assert sorted(a) == list(sizes) and set(a.values()) == {0, 1, 2}
    load = [sum(sizes[g] for g, f in a.items() if f == k) for k in range(3)]
    assert max(load) - min(load) <= 10  # 190 digits: 60-70 per fold
    assert assign_folds(groups, 3, seed=7) == a
    # More folds than groups: one group per fold.
    assert sorted(assign_folds(groups[groups <= 2], 5, seed=0).values()) == [0, 1]


def test_class_digits_per_batch_leave_room_for_mnist() -> None:
    assert class_per_batch(Adapt(batch_size=128, class_frac=0.5)) == 64
    assert class_per_batch(Adapt(batch_size=2, class_frac=0.99)) == 1
    assert class_per_batch(Adapt(batch_size=100, class_frac=0.001)) == 1


def test_adapt_params_refuse_a_curve_out_of_order() -> None:
    with pytest.raises(ValueError, match="increasing"):
        Adapt(curve=[4, 2])
    with pytest.raises(ValueError):
        Adapt(folds=1)


# --------------------------------------------------------------------------- no leak
class Constant(nn.Module):
    """Reads every image as digit ``k``: which fold's model read a digit shows in its logits."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), NUM_CLASSES)
        out[:, self.k] = 10.0
        return out


def _unique_digits(groups: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(len(groups), 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(len(groups)) % 256  # no two alike
    images[:, 0, 1] = np.arange(len(groups)) // 256
    return images, rng.integers(0, 10, size=len(groups))


def test_a_held_out_groups_digits_never_reach_the_model_that_reads_them() -> None:
    groups = np.repeat(np.arange(1, 8), [9, 7, 8, 6, 9, 5, 8])
    images, labels = _unique_digits(groups)
    seen: list[set[bytes]] = []

    def spy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *args: Any) -> nn.Module:
        seen.append({img.numpy().tobytes() for img in x})
        return Constant(len(seen) - 1)  # the fold model of call k reads everything as k

    oof = out_of_fold(
        MLP([8], 0.0), images, labels, groups, torch.zeros(4, 28, 28, dtype=torch.uint8),
        torch.zeros(4, dtype=torch.int64), recipe(folds=3), 5, "none", 64, CPU, tune=spy,
    )  # fmt: skip
    assert len(seen) == 3
    read_by = oof.logits.argmax(1).numpy()
    for i, (img, g) in enumerate(zip(images, groups, strict=True)):
        reader = read_by[i]
        assert reader == oof.folds[i]  # read by its own fold's model ...
        assert img.tobytes() not in seen[reader]  # ... which never saw it ...
        same_group = images[groups == g]
        assert not {x.tobytes() for x in same_group} & seen[reader]  # ... nor its group
        # and every other fold's model did see it.
        assert all(img.tobytes() in s for k, s in enumerate(seen) if k != reader)


def test_curve_points_adapt_only_on_other_folds_groups() -> None:
    groups = np.repeat(np.arange(1, 7), 4)
    images, labels = _unique_digits(groups, seed=1)
    a = assign_folds(groups, 3, seed=2)
    subsets = curve_subsets(a, [1, 2, 9], seed=2)
    for k, by_size in subsets.items():
        others = sorted(g for g, f in a.items() if f != k)
        assert set(by_size[1]) <= set(by_size[2]) <= set(others)  # nested
        assert len(by_size[1]) == 1 and by_size[9] == others  # all where fewer
    seen: list[set[int]] = []

    def spy(model: nn.Module, x: torch.Tensor, *args: Any) -> nn.Module:
        seen.append({int(g) for img in x for g in groups[(images == img.numpy()).all((1, 2))]})
        return Constant(0)

    got, _ = curve_readings(
        MLP([8], 0.0), images, labels, groups, torch.zeros(4, 28, 28, dtype=torch.uint8),
        torch.zeros(4, dtype=torch.int64), recipe(folds=3), 2, "none", 64, CPU, [1, 2], tune=spy,
    )  # fmt: skip
    assert got == {k: {s: b[s] for s in (1, 2)} for k, b in subsets.items()}  # the same draw
    held = [sorted(g for g, f in a.items() if f == k) for k in sorted(subsets)]
    calls = [(size, k) for size in (1, 2) for k in sorted(subsets)]
    for (size, k), groups_seen in zip(calls, seen, strict=True):
        assert groups_seen == set(subsets[k][size])
        assert not groups_seen & set(held[k])


# --------------------------------------------------------------------------- behaviour
def test_fine_tuning_learns_its_groups_and_out_of_fold_reads_do_not_know_them() -> None:
    """Each group's digits are one group-specific pattern with a label of its own: a model
    that saw a group reads it (memorised), one that never saw it cannot. So out-of-fold
    accuracy stays near chance while the model adapted on every group reads them all; a leak
    from a held-out group into its reader would show as high out-of-fold accuracy."""
    n_groups, per_group = 10, 6
    groups = np.repeat(np.arange(1, n_groups + 1), per_group)
    rng = np.random.default_rng(3)
    patterns = (rng.random((n_groups, 28, 28)) > 0.7).astype(np.uint8) * 255
    images = patterns[groups - 1]
    labels = np.repeat(rng.permutation(10), per_group).astype(np.int64)
    mnist_x = torch.zeros(64, 28, 28, dtype=torch.uint8)  # blank "MNIST" labelled 0
    mnist_y = torch.zeros(64, dtype=torch.int64)
    torch.manual_seed(0)
    model = MLP([64], 0.0)
    r = recipe(folds=5, steps=150, lr=1.0e-2, batch_size=32, class_frac=0.75)

    everything = fine_tune(
        model, torch.from_numpy(images), torch.from_numpy(labels), mnist_x, mnist_y, r, 0, CPU
    )
    in_sample = predict_logits(everything, torch.from_numpy(images)).argmax(1).numpy()
    assert (in_sample == labels).mean() == 1.0
    # The model itself is untouched: fine-tuning works on a copy.
    assert not torch.equal(everything.net[1].weight, model.net[1].weight)

    oof = out_of_fold(model, images, labels, groups, mnist_x, mnist_y, r, 0, "none", 64, CPU)
    assert (oof.logits.argmax(1).numpy() == labels).mean() < 0.4
