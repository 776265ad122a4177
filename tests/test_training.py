"""Tests for mnistgap.training: early stopping, the lr schedule, and a real (tiny) training run."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mnistgap.training as training
from mnistgap.device import select_device
from mnistgap.metrics import predict_logits
from mnistgap.models import build_model, members
from mnistgap.params import Augment, ModelParams, TrainParams
from mnistgap.training import (
    EarlyStopping,
    lr_lambda,
    train_members,
    train_model,
)

CPU = torch.device("cpu")
NO_AUGMENT = Augment(enabled=False)
HISTORY_KEYS = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}


def _run(stopper: EarlyStopping, losses: list[float]) -> int | None:
    """Feed ``losses`` (epochs 1, 2, ...); return the epoch at which it said stop, or None."""
    for epoch, loss in enumerate(losses, start=1):
        if stopper.step(epoch, loss):
            return epoch
    return None


# --------------------------------------------------------------------------- early stopping
def test_early_stopping_scripted_sequence() -> None:
    stopper = EarlyStopping(patience=3)
    assert _run(stopper, [1.0, 0.8, 0.9, 0.85, 0.95]) == 5
    assert stopper.best_epoch == 2 and stopper.best_loss == 0.8


def test_early_stopping_resets_on_improvement() -> None:
    stopper = EarlyStopping(patience=2)
    assert _run(stopper, [1.0, 1.1, 0.9, 1.0, 0.95, 0.99]) == 5
    assert stopper.best_epoch == 3


def test_patience_zero_never_stops() -> None:
    stopper = EarlyStopping(patience=0)
    assert _run(stopper, [1.0] + [2.0] * 50) is None
    assert stopper.best_epoch == 1


def test_equal_loss_is_not_an_improvement() -> None:
    stopper = EarlyStopping(patience=2)
    assert _run(stopper, [0.5, 0.5, 0.5]) == 3
    assert stopper.best_epoch == 1


def test_best_state_is_a_snapshot() -> None:
    model = torch.nn.Linear(2, 1)
    stopper = EarlyStopping(patience=1)
    stopper.step(1, 1.0, model)
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)  # later training must not change the kept copy
    stopper.step(2, 2.0, model)
    assert stopper.best_state is not None
    for key, value in snapshot.items():
        assert torch.equal(stopper.best_state[key], value)


# --------------------------------------------------------------------------- lr schedule
def test_cosine_schedule() -> None:
    f = lr_lambda("cosine", 100)
    assert f(0) == 1.0
    assert f(50) == pytest.approx(0.5)
    assert f(25) == pytest.approx(0.5 * (1 + np.cos(np.pi / 4)))
    assert f(100) == pytest.approx(0.0, abs=1e-12)
    assert f(150) == pytest.approx(0.0, abs=1e-12)  # clamped past the budget
    values = [f(s) for s in range(101)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_constant_schedule() -> None:
    f = lr_lambda("none", 100)
    assert [f(s) for s in (0, 50, 100, 1000)] == [1.0] * 4


# --------------------------------------------------------------------------- devices
@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_select_device_auto_is_the_cpu_without_cuda() -> None:
    assert select_device("auto") == torch.device("cpu")
    assert select_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_select_device_auto_is_cuda_when_present() -> None:
    assert select_device("auto").type == "cuda"
    assert select_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_select_device_cuda_fails_clearly_without_cuda() -> None:
    with pytest.raises(ValueError, match="no CUDA device"):
        select_device("cuda")


# --------------------------------------------------------------------------- training runs
@pytest.fixture(scope="module")
def tiny_data(digits: Callable[..., np.ndarray]) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(0)
    ytr = rng.permutation(np.arange(400) % 10)
    yva = rng.permutation(np.arange(100) % 10)
    return (
        torch.from_numpy(digits(ytr, seed=1)),
        torch.from_numpy(ytr).long(),
        torch.from_numpy(digits(yva, seed=2)),
        torch.from_numpy(yva).long(),
    )


def _model(seed: int = 0, hidden: list[int] | None = None) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelParams(model="mlp", hidden=hidden or [128]))


def _cfg(**kw: object) -> TrainParams:
    base = {"batch_size": 32, "max_epochs": 3, "precision": "fp32", "patience": 3, "seed": 0}
    return TrainParams(**{**base, **kw})  # type: ignore[arg-type]


def test_train_model_learns_the_synthetic_digits(tiny_data: tuple[torch.Tensor, ...]) -> None:
    model = _model()
    rows: list[dict[str, float]] = []
    result = train_model(model, *tiny_data, _cfg(), NO_AUGMENT, CPU, on_epoch=rows.append)
    assert result.epochs_run == 3 and len(result.history) == 3
    assert rows == result.history
    assert all(set(r) == HISTORY_KEYS for r in result.history)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.history[-1]["val_acc"] > 0.8
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    assert not model.training  # left in eval mode
    # Cosine schedule: the lr falls every epoch and reaches 0 after the last step.
    lrs = [r["lr"] for r in result.history]
    assert lrs[0] < _cfg().lr and lrs[0] > lrs[1] > lrs[2]
    assert lrs[2] == pytest.approx(0.0, abs=1e-12)
    # The recorded val metrics are those of the kept weights, under the training loss: the
    # default label smoothing (0.1), not plain cross-entropy.
    best = result.history[result.best_epoch - 1]
    val = (model, tiny_data[2], tiny_data[3], 256, CPU)
    val_loss, val_acc = training.evaluate_loss_acc(*val, 0.1)
    assert val_loss == pytest.approx(best["val_loss"], rel=1e-5)
    assert val_acc == best["val_acc"]
    plain_loss, _ = training.evaluate_loss_acc(*val)
    assert plain_loss < 0.9 * val_loss


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_label_smoothing_is_the_training_and_validation_loss(
    tiny_data: tuple[torch.Tensor, ...], model: str
) -> None:
    """Both steps (the MLP's hand-written one, autograd for the CNN) train on the smoothed
    loss, and the recorded validation loss is F.cross_entropy's with that smoothing."""
    weights = []
    for smoothing in (0.0, 0.3):
        torch.manual_seed(0)
        net = build_model(ModelParams(model=model, hidden=[64], cnn_channels=[4, 8]))
        cfg = _cfg(max_epochs=2, patience=0, label_smoothing=smoothing, lr=3.0e-3)
        row = train_model(net, *tiny_data, cfg, NO_AUGMENT, CPU).history[-1]
        logits = predict_logits(net, tiny_data[2], 256, CPU)
        expected = F.cross_entropy(logits, tiny_data[3], label_smoothing=smoothing).item()
        assert row["val_loss"] == pytest.approx(expected, rel=1e-5)
        assert row["val_acc"] > 0.6
        weights.append(torch.cat([v.float().flatten() for v in net.state_dict().values()]))
    assert not torch.allclose(weights[0], weights[1], atol=1e-4)


def test_train_model_is_deterministic(tiny_data: tuple[torch.Tensor, ...]) -> None:
    # Augmentation on: its random parameters must come from the seeded generator too.
    cfg = _cfg(max_epochs=2)
    states = []
    for _ in range(2):
        model = _model(seed=5)
        train_model(model, *tiny_data, cfg, Augment(), CPU)
        states.append(model.state_dict())
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    # ... and a different training seed gives different weights.
    model = _model(seed=5)
    train_model(model, *tiny_data, _cfg(max_epochs=2, seed=1), Augment(), CPU)
    assert not torch.equal(model.state_dict()["net.1.weight"], states[0]["net.1.weight"])


def _scripted_val_losses(monkeypatch: pytest.MonkeyPatch, losses: list[float]) -> None:
    it = iter(losses)
    monkeypatch.setattr(training, "evaluate_loss_acc", lambda *a, **k: (next(it), 0.5))


def _snapshots(model: torch.nn.Module) -> tuple[list[dict], Callable[[dict], None]]:
    snaps: list[dict] = []

    def on_epoch(row: dict) -> None:
        snaps.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    return snaps, on_epoch


def test_early_stopping_restores_the_best_weights(
    tiny_data: tuple[torch.Tensor, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted_val_losses(monkeypatch, [1.0, 0.5, 0.7, 0.8, 0.1, 0.1])
    model = _model()
    snaps, on_epoch = _snapshots(model)
    result = train_model(
        model, *tiny_data, _cfg(max_epochs=6, patience=2), NO_AUGMENT, CPU, on_epoch
    )
    assert result.stopped_early and result.epochs_run == 4 and result.best_epoch == 2
    assert len(snaps) == 4
    final = model.state_dict()
    for key in final:
        assert torch.equal(final[key], snaps[1][key]), key  # epoch 2's weights
    assert not torch.equal(final["net.1.weight"], snaps[3]["net.1.weight"])


def test_patience_zero_keeps_the_last_weights(
    tiny_data: tuple[torch.Tensor, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted_val_losses(monkeypatch, [0.1, 0.5, 0.9])
    model = _model()
    snaps, on_epoch = _snapshots(model)
    result = train_model(model, *tiny_data, _cfg(patience=0), NO_AUGMENT, CPU, on_epoch)
    assert not result.stopped_early and result.epochs_run == 3 and result.best_epoch == 3
    for key, value in model.state_dict().items():
        assert torch.equal(value, snaps[2][key]), key


def test_constant_lr_schedule_keeps_lr(tiny_data: tuple[torch.Tensor, ...]) -> None:
    result = train_model(
        _model(), *tiny_data, _cfg(max_epochs=1, lr_schedule="none", lr=3.0e-3), NO_AUGMENT, CPU
    )
    assert result.history[0]["lr"] == pytest.approx(3.0e-3)


@pytest.mark.parametrize(
    ("config", "precision"),
    [
        (ModelParams(model="mlp", hidden=[128]), "bf16"),  # the MLP's hand-written step, in bf16
        (ModelParams(model="cnn", cnn_channels=[4, 8]), "fp32"),  # autograd
        (ModelParams(model="cnn", cnn_channels=[4, 8]), "bf16"),  # autograd + autocast
    ],
    ids=["mlp-bf16", "cnn-fp32", "cnn-bf16"],
)
def test_both_training_paths_learn_deterministically(
    tiny_data: tuple[torch.Tensor, ...], config: ModelParams, precision: str
) -> None:
    cfg = _cfg(max_epochs=3, precision=precision, lr=3.0e-3)
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model(config)
        result = train_model(model, *tiny_data, cfg, Augment(), CPU)
        weights.append(torch.cat([v.float().flatten() for v in model.state_dict().values()]))
    assert result.history[-1]["val_acc"] > 0.7
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    assert torch.equal(weights[0], weights[1])


def test_train_members_trains_each_member_as_train_model_would_with_its_seed(
    tiny_data: tuple[torch.Tensor, ...],
) -> None:
    one = ModelParams(model="mlp", hidden=[32])
    ensemble = build_model(one.model_copy(update={"ensemble": 2}), seed=3)
    results = train_members(ensemble, *tiny_data, _cfg(max_epochs=2, seed=3), Augment(), CPU)
    assert [r.epochs_run for r in results] == [2, 2]
    alone = build_model(one, seed=4)
    train_model(alone, *tiny_data, _cfg(max_epochs=2, seed=4), Augment(), CPU)
    second = members(ensemble)[1].state_dict()
    assert all(torch.equal(second[k], v) for k, v in alone.state_dict().items())
    with pytest.raises(TypeError, match="train_members"):
        train_model(ensemble, *tiny_data, _cfg(max_epochs=1), NO_AUGMENT, CPU)
