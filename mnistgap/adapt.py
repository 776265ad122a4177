"""Adapt the trained model to the class: fine-tune it on the class's own digits, folds over groups.

A class's writers have conventions MNIST never shows (a "1" with a long up-stroke, open 9s);
a few hundred steps on the class's own digits close most of that gap. Measured honestly,
every digit is read by a model that never saw its group's writers:

1. :func:`assign_folds` puts whole groups into folds, balanced by digit count;
2. for each fold, :func:`fine_tune` starts from the trained model and takes a few hundred
   Adam steps on batches mixing the *other* folds' class digits with MNIST training digits
   (so that MNIST is not forgotten), with the training augmentation, label-smoothed loss,
   precision and optimisation step (:mod:`mnistgap.training`);
3. that model reads its own fold's digits: :func:`out_of_fold` returns every digit's reading.

The model a class then uses is :func:`fine_tune` on every group (``models/adapted.pt``). An
ensemble is fine-tuned member by member (member i from seed + i), each as a single model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mnistgap.augment import augment_batch
from mnistgap.device import resolve_precision
from mnistgap.models import NUM_CLASSES, members
from mnistgap.params import Adapt, Augment
from mnistgap.recipe import normalize
from mnistgap.training import flush_denormals, lr_lambda, make_step, to_unit
from mnistgap.tta import predict_logits


@dataclass(frozen=True)
class Recipe:
    """How a fine-tuning trains: the ``adapt`` section and what it shares with training."""

    adapt: Adapt
    augment: Augment
    label_smoothing: float
    lr_schedule: str
    precision: str


def assign_folds(groups: np.ndarray, folds: int, seed: int) -> dict[int, int]:
    """Group id -> fold (0 .. k-1, k = min(folds, number of groups)), balanced by digit count.

    The groups are put in a random order drawn from ``seed``, then sorted by size (largest
    first, the random order breaking ties); each goes to the fold with the fewest digits so
    far (ties: the lowest fold). The same groups and seed always give the same folds."""
    ids, counts = np.unique(np.asarray(groups), return_counts=True)
    k = min(folds, len(ids))
    order = np.random.default_rng(seed).permutation(len(ids))
    order = order[np.argsort(-counts[order], kind="stable")]
    load = np.zeros(k, dtype=np.int64)
    out: dict[int, int] = {}
    for i in order:
        fold = int(np.argmin(load))
        out[int(ids[i])] = fold
        load[fold] += counts[i]
    return out


def class_per_batch(cfg: Adapt) -> int:
    """Class digits in each batch of ``cfg.batch_size``: at least one, and at least one MNIST."""
    return min(cfg.batch_size - 1, max(1, round(cfg.class_frac * cfg.batch_size)))


def fine_tune(
    model: nn.Module,
    class_x: torch.Tensor,
    class_y: torch.Tensor,
    mnist_x: torch.Tensor,
    mnist_y: torch.Tensor,
    recipe: Recipe,
    seed: int,
    device: torch.device,
) -> nn.Module:
    """A copy of ``model`` fine-tuned on the class digits ``class_x`` (uint8 (N, 28, 28),
    labels ``class_y``) mixed with MNIST's; ``model`` itself is not changed. Eval mode, on
    ``device``. Member i of an ensemble is fine-tuned with seed ``seed + i``."""
    if len(class_x) == 0:
        raise ValueError("fine-tuning needs at least one class digit")
    adapted = copy.deepcopy(model)
    for i, member in enumerate(members(adapted)):
        _fine_tune_one(member, class_x, class_y, mnist_x, mnist_y, recipe, seed + i, device)
    return adapted.to(device).eval()


def _fine_tune_one(
    net: nn.Module,
    class_x: torch.Tensor,
    class_y: torch.Tensor,
    mnist_x: torch.Tensor,
    mnist_y: torch.Tensor,
    recipe: Recipe,
    seed: int,
    device: torch.device,
) -> None:
    """One network fine-tuned in place: ``recipe.adapt.steps`` Adam steps, each on a fresh
    batch of class and MNIST digits drawn with replacement, augmented as in training."""
    cfg = recipe.adapt
    n_class = class_per_batch(cfg)
    cuda = [device] if device.type == "cuda" else []
    # As in train_model: the global random state (dropout) and denormal mode are restored.
    with torch.random.fork_rng(devices=cuda), flush_denormals():
        torch.manual_seed(seed)
        draw = torch.Generator().manual_seed(seed)  # which digits
        aug_gen = torch.Generator(device=device).manual_seed(seed + 1)
        net.to(device).train()
        if cfg.freeze_norm:  # BatchNorm normalises with MNIST's statistics, as it reads
            for m in net.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        step = make_step(net, resolve_precision(recipe.precision, device), recipe.label_smoothing)
        opt = torch.optim.Adam(step.parameters, lr=cfg.lr, fused=True)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(recipe.lr_schedule, cfg.steps))
        everything = slice(0, cfg.batch_size)
        for _ in range(cfg.steps):
            ci = torch.randint(len(class_x), (n_class,), generator=draw)
            mi = torch.randint(len(mnist_x), (cfg.batch_size - n_class,), generator=draw)
            images = torch.cat([class_x.index_select(0, ci), mnist_x.index_select(0, mi)])
            labels = torch.cat([class_y.index_select(0, ci), mnist_y.index_select(0, mi)])
            x = to_unit(images.to(device))
            xs = step.prepare(normalize(augment_batch(x, recipe.augment, aug_gen)))
            step(xs, labels.to(device), everything)
            opt.step()
            sched.step()
    net.eval()


#: What fine-tunes a fold's model, with :func:`fine_tune`'s arguments (tests pass a spy).
Tuner = Callable[..., nn.Module]


@dataclass(frozen=True)
class OutOfFold:
    """Every class digit's reading by the model of its fold (adapted on the other folds)."""

    folds: np.ndarray  # (N,) int64 the fold of each digit
    logits: torch.Tensor  # (N, 10) float32, the fold model's logits (test-time views applied)


def out_of_fold(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    mnist_x: torch.Tensor,
    mnist_y: torch.Tensor,
    recipe: Recipe,
    seed: int,
    tta: str,
    batch_size: int,
    device: torch.device,
    tune: Tuner = fine_tune,
) -> OutOfFold:
    """Fine-tune one model per fold on the digits of every other fold (``tune``, by default
    :func:`fine_tune`, seed ``seed + 100 * fold``) and read the fold's own digits with it.
    Needs at least two groups."""
    assignment = assign_folds(groups, recipe.adapt.folds, seed)
    if len(assignment) < 2:
        raise ValueError("adaptation needs at least 2 groups: one to adapt on, one to read")
    fold = np.array([assignment[int(g)] for g in groups], dtype=np.int64)
    x, y = torch.from_numpy(np.asarray(images)), torch.from_numpy(np.asarray(labels))
    logits = torch.empty(len(x), NUM_CLASSES)
    for k in range(max(assignment.values()) + 1):
        held = torch.from_numpy(fold == k)
        adapted = tune(model, x[~held], y[~held], mnist_x, mnist_y, recipe, seed + 100 * k, device)
        logits[held] = predict_logits(adapted, x[held], tta, batch_size, device)
    return OutOfFold(fold, logits)


def curve_subsets(
    assignment: dict[int, int], sizes: list[int], seed: int
) -> dict[int, dict[int, list[int]]]:
    """For each fold, for each size k: the k other groups its curve point adapts on (all the
    others where there are fewer), nested: the groups of a smaller k are among a larger k's.
    Drawn from ``seed``; {fold: {k: sorted group ids}}."""
    out: dict[int, dict[int, list[int]]] = {}
    rng = np.random.default_rng(seed)
    for k in sorted(set(assignment.values())):
        others = np.array(sorted(g for g, f in assignment.items() if f != k))
        order = others[rng.permutation(len(others))]
        out[k] = {n: sorted(int(g) for g in order[:n]) for n in sizes}
    return out


def mean_groups(subsets: dict[int, dict[int, list[int]]], size: int) -> float:
    """The mean number of groups a curve point of ``size`` adapted on over the folds."""
    counts = [len(by_size[size]) for by_size in subsets.values()]
    return math.fsum(counts) / len(counts)


def curve_readings(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    mnist_x: torch.Tensor,
    mnist_y: torch.Tensor,
    recipe: Recipe,
    seed: int,
    tta: str,
    batch_size: int,
    device: torch.device,
    sizes: list[int],
    tune: Tuner = fine_tune,
) -> tuple[dict[int, dict[int, list[int]]], dict[int, torch.Tensor]]:
    """The learning curve's readings: for each size k, every digit read by its fold's model
    fine-tuned on k of the other folds' groups (:func:`curve_subsets`; the folds of
    :func:`out_of_fold`, seed ``seed + 100 * fold + k``). Returns the subsets and
    {k: (N, 10) logits}."""
    assignment = assign_folds(groups, recipe.adapt.folds, seed)
    subsets = curve_subsets(assignment, sizes, seed)
    fold = np.array([assignment[int(g)] for g in groups], dtype=np.int64)
    x, y = torch.from_numpy(np.asarray(images)), torch.from_numpy(np.asarray(labels))
    readings = {}
    for size in sizes:
        logits = torch.empty(len(x), NUM_CLASSES)
        for k, by_size in subsets.items():
            chosen = torch.from_numpy(np.isin(groups, by_size[size]))
            held = torch.from_numpy(fold == k)
            adapted = tune(
                model, x[chosen], y[chosen], mnist_x, mnist_y, recipe, seed + 100 * k + size, device
            )
            logits[held] = predict_logits(adapted, x[held], tta, batch_size, device)
        readings[size] = logits
    return subsets, readings
