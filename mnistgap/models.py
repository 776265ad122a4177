"""The study's MLP, a small CNN, ensembles of either, and self-describing checkpoints.

A checkpoint is a plain dict of tensors, numbers, strings and lists (loadable with
``torch.load(..., weights_only=True)``): the ``state_dict``, the ``model_config`` needed to
rebuild the network (:class:`mnistgap.params.ModelParams`), and the ``preprocessing``
constants the inputs must go through (:mod:`mnistgap.recipe`).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from mnistgap import atomic
from mnistgap.params import ModelParams
from mnistgap.recipe import NORM_MEAN, NORM_STD, SIZE

NUM_CLASSES = 10
FORMAT = "mnistgap-checkpoint-v2"

# Dropout draws 15-bit random integers, so p is quantised to a multiple of 2^-15.
_MASK_BITS = 15
_MASK_LEVELS = 1 << _MASK_BITS


def dropout_mask(
    shape: tuple[int, ...], p: float, dtype: torch.dtype, device: torch.device | str
) -> torch.Tensor:
    """Inverted-dropout mask: each entry ``1 / (1 - p)`` (kept) or 0 (dropped, probability p).

    The CPU generator costs about 8 ns per draw whatever the width, and ``rand`` spends one
    draw per element: the masks were 15-20% of a training step. ``random_()`` on int64 gives
    63 uniform bits per draw, which make four 15-bit integers, so this is 4x fewer draws.
    p is rounded to a multiple of 2^-15 (0.2 -> 0.200012). Uses the global generator.
    """
    n = math.prod(shape)
    draws = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()
    # Four int16 per int64; keeping the low 15 bits of each drops the always-zero sign bit.
    r = draws.view(torch.int16)[:n].view(shape).bitwise_and_(_MASK_LEVELS - 1)
    # keep = r >= t as 0.0 / 1.0, computed as clamp(r - (t - 1), 0, 1) on exact float
    # integers: the same values as (r >= t).to(float), 5x faster on CPU (bool -> float is an
    # unvectorised conversion there).
    keep = r.to(torch.float32).sub_(round(p * _MASK_LEVELS) - 1).clamp_(0.0, 1.0)
    return keep.mul_(1.0 / (1.0 - p)).to(dtype)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the cheaper mask of :func:`dropout_mask` (same scaling: kept
    units are multiplied by 1 / (1 - p))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * dropout_mask(tuple(x.shape), self.p, x.dtype, x.device)


class MLP(nn.Module):
    """784 -> hidden... -> 10, ReLU and dropout after every hidden layer (the study's Figure 1)."""

    def __init__(self, hidden: list[int], dropout: float) -> None:
        super().__init__()
        self.dropout_p = dropout
        layers: list[nn.Module] = [nn.Flatten()]
        width = SIZE * SIZE
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, NUM_CLASSES))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FlattenChannelsLast(nn.Module):
    """Flatten (N, C, H, W) in its channels-last memory order (H, W, C): a view, no copy.

    ``nn.Flatten`` flattens in (C, H, W) order, which for a channels-last tensor is a copy,
    and sends back a gradient laid out (C, H, W) that ReLU's backward then meets beside its
    channels-last output: PyTorch's slow mixed-layout path (3.5 ms instead of 0.1 ms per
    step on two cores). Here the gradient keeps the activations' layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


class CNN(nn.Module):
    """Small all-convolutional net: per block a 3x3 conv with stride 2 (it halves the image,
    instead of a max-pool after a full-size conv), BatchNorm and ReLU; then a 128-unit hidden
    layer with dropout. BatchNorm lets it converge within 14 epochs. The stride-2 convs do a
    quarter of the arithmetic of full-size convs and keep every activation 4x smaller, which
    is what the CPU's time went to (BatchNorm, ReLU and pooling over 28x28 maps); weights and
    activations are channels-last, the layout oneDNN's CPU convolutions run fastest in."""

    def __init__(self, channels: list[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, size = 1, SIZE
        for c_out in channels:
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]
            c_in, size = c_out, (size + 1) // 2
        layers += [
            FlattenChannelsLast(),
            nn.Linear(c_in * size * size, 128),
            nn.ReLU(),
            Dropout(dropout),
            nn.Linear(128, NUM_CLASSES),
        ]
        self.net = nn.Sequential(*layers)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.net(x.contiguous(memory_format=torch.channels_last))


class Ensemble(nn.Module):
    """Members of one architecture whose predicted probabilities are averaged.

    ``forward`` returns log(mean of the members' softmax): log-probabilities, which serve as
    logits everywhere (softmax gives back the mean probabilities, cross-entropy is the
    ensemble's loss, argmax its prediction)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([F.log_softmax(m(x).float(), dim=1) for m in self.members])
        return torch.logsumexp(logp, dim=0) - math.log(len(self.members))


def members(model: nn.Module) -> list[nn.Module]:
    """The separately trained networks of ``model``: an ensemble's members, else itself."""
    return list(model.members) if isinstance(model, Ensemble) else [model]


def build_model(cfg: ModelParams, seed: int | None = None) -> nn.Module:
    """Instantiate the network described by ``cfg`` (its ``model`` names the kind; with
    ``ensemble`` > 1 an :class:`Ensemble` of that many). With ``seed``, member i's weights are
    initialised from ``torch.manual_seed(seed + i)``: each member starts as the model that
    seed would build alone."""
    nets = []
    for i in range(cfg.ensemble):
        if seed is not None:
            torch.manual_seed(seed + i)
        nets.append(
            MLP(list(cfg.hidden), cfg.dropout)
            if cfg.model == "mlp"
            else CNN(list(cfg.cnn_channels), cfg.dropout)
        )
    return nets[0] if cfg.ensemble == 1 else Ensemble(nets)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    cfg: ModelParams,
    extra: dict[str, Any] | None = None,
) -> None:
    """Atomically save a self-describing checkpoint (weights + config + preprocessing)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    ckpt = {
        "format": FORMAT,
        "state_dict": state,
        "model_config": cfg.model_dump(),
        "preprocessing": {
            "image_size": SIZE,
            "norm_mean": NORM_MEAN,
            "norm_std": NORM_STD,
            "ink": "light on dark, pixels 0-255 scaled to [0, 1]",
        },
        "extra": extra or {},
    }
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic.write_bytes(path, buf.getvalue())


def load_checkpoint(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint safely (``weights_only=True``); return the eval-mode model and the dict."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a mnistgap checkpoint ({FORMAT})")
    try:
        cfg = ModelParams.model_validate(ckpt["model_config"])
    except ValidationError as err:
        raise ValueError(f"{path}: bad model_config: {err.errors()[0]['msg']}") from None
    pre = ckpt["preprocessing"]
    if (pre["norm_mean"], pre["norm_std"], pre["image_size"]) != (NORM_MEAN, NORM_STD, SIZE):
        raise ValueError(f"{path} was trained with other preprocessing constants: {pre}")
    model = build_model(cfg).to(device)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt
