"""Tests for mnistgap.split: the study's random_split, reproduced as sorted index arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import random_split

from mnistgap.split import train_val_indices


def test_same_seed_same_indices() -> None:
    a = train_val_indices(1000, 0.15, 42)
    b = train_val_indices(1000, 0.15, 42)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize(("n", "frac"), [(1000, 0.15), (60_000, 0.15), (7, 0.5), (10, 0.99)])
def test_disjoint_cover_and_sizes(n: int, frac: float) -> None:
    tr, va = train_val_indices(n, frac, 0)
    n_val = int(frac * n)
    assert len(va) == n_val and len(tr) == n - n_val
    assert np.intersect1d(tr, va).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(n))
    # Sorted, so that gathering keeps the IDX file order (and the npz is reproducible).
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)


def test_report_split_sizes() -> None:
    tr, va = train_val_indices(60_000, 0.15, 42)
    assert (len(tr), len(va)) == (51_000, 9_000)


def test_different_seed_different_split() -> None:
    _, va1 = train_val_indices(1000, 0.15, 42)
    _, va2 = train_val_indices(1000, 0.15, 43)
    assert not np.array_equal(va1, va2)


@pytest.mark.parametrize(
    ("n", "frac", "seed"), [(1000, 0.15, 42), (60_000, 0.15, 42), (50, 0.3, 7)]
)
def test_equals_torch_random_split(n: int, frac: float, seed: int) -> None:
    n_val = int(frac * n)
    train_ds, val_ds = random_split(
        range(n), [n - n_val, n_val], generator=torch.Generator().manual_seed(seed)
    )
    tr, va = train_val_indices(n, frac, seed)
    np.testing.assert_array_equal(tr, np.sort(np.asarray(train_ds.indices)))
    np.testing.assert_array_equal(va, np.sort(np.asarray(val_ds.indices)))


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.1, 1.5])
def test_val_frac_outside_open_interval(frac: float) -> None:
    with pytest.raises(ValueError, match="val_frac"):
        train_val_indices(100, frac, 0)


@pytest.mark.parametrize(("n", "frac"), [(10, 0.05), (3, 0.2)])
def test_empty_validation_split_is_refused(n: int, frac: float) -> None:
    with pytest.raises(ValueError, match="empty split"):
        train_val_indices(n, frac, 0)
