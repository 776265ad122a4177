"""Deterministic train/validation split of the 60,000 MNIST training images."""

from __future__ import annotations

import numpy as np
import torch


def train_val_indices(n: int, val_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation images.

    Same arithmetic as the study's ``random_split(full, [n - int(f*n), int(f*n)],
    generator=torch.Generator().manual_seed(seed))``, so seed 42 gives the study's very
    validation images; the permutation comes from torch's CPU generator, which is the same
    on every platform for a given seed.
    """
    if not 0 < val_frac < 1:
        raise ValueError(f"val_frac must be in (0, 1), got {val_frac}")
    n_val = int(val_frac * n)
    if n_val < 1 or n_val >= n:
        raise ValueError(f"val_frac {val_frac} leaves an empty split of {n} images")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    n_train = n - n_val
    return np.sort(perm[:n_train]), np.sort(perm[n_train:])
