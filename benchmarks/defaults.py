"""Shared by the benchmarks: train the params.yaml model on the prepared MNIST arrays.

The benchmarks run as scripts (``python benchmarks/<name>.py``), so this module is imported
from their own folder; it holds the one copy of "train what dvc repro would train".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnistgap.data import load_split
from mnistgap.models import build_model
from mnistgap.params import ModelParams, TrainParams
from mnistgap.training import TrainResult, train_members


def train_defaults(
    params: Mapping[str, Any], data: Path, device: torch.device, **overrides: Any
) -> tuple[nn.Module, TrainResult]:
    """Train on ``data``/train.npz, validating on val.npz, with ``params`` (validated
    params.yaml) and top-level ``overrides`` such as ``seed``, ``model`` or ``max_epochs``.
    As the train stage does: the seed is set before the weights are initialised. With
    ``ensemble`` > 1 every member is trained; the result returned is the first member's."""
    p = {**params, **overrides}
    train_x, train_y = load_split(data / "train.npz")
    val_x, val_y = load_split(data / "val.npz")
    model = build_model(ModelParams.pick(p), seed=p["seed"])
    result, *_ = train_members(
        model,
        train_x,
        train_y,
        val_x,
        val_y,
        TrainParams.pick(p),
        p["augment"],
        device,
    )
    return model, result
