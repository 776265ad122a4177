"""Tests for mnistgap.fused_mlp (hand-written MLP step) and models.dropout_mask."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistgap import models
from mnistgap.fused_mlp import FusedMLPStep, covered_linears
from mnistgap.models import MLP, dropout_mask, load_checkpoint, save_checkpoint
from mnistgap.params import Augment, ModelParams, TrainParams
from mnistgap.training import train_model

# --- dropout_mask ---------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.2, 0.5, 0.05])
def test_dropout_mask_values_and_rate(p: float) -> None:
    torch.manual_seed(0)
    n = 1 << 20
    mask = dropout_mask((n // 64, 64), p, torch.float32, "cpu")
    assert mask.shape == (n // 64, 64) and mask.dtype == torch.float32
    scale = 1.0 / (1.0 - p)
    kept = mask != 0
    assert torch.all(mask[kept] == torch.tensor(scale, dtype=torch.float32))
    # p is quantised to 2^-15; the drop rate then matches within 4 standard errors.
    p_eff = round(p * 32768) / 32768
    se = (p_eff * (1 - p_eff) / n) ** 0.5
    assert abs(float((~kept).double().mean()) - p_eff) < 4 * se
    # Expectation preserved: E[mask] = (1 - p_eff) / (1 - p) ~ 1.
    assert abs(float(mask.double().mean()) - 1.0) < 0.01


def test_dropout_mask_every_packed_slot_is_uniform() -> None:
    """Four masks come from each 64-bit draw; the one holding the always-zero sign bit
    must drop at the same rate as the others (it would never drop if that bit were used)."""
    torch.manual_seed(1)
    mask = dropout_mask((4 * 200_000,), 0.5, torch.float32, "cpu").view(-1, 4)
    rates = (mask == 0).double().mean(0)
    torch.testing.assert_close(
        rates, torch.full((4,), 0.5, dtype=torch.float64), atol=0.005, rtol=0
    )
    # Neighbouring slots are independent: P(both dropped) ~ 0.25.
    both = ((mask[:, 0] == 0) & (mask[:, 3] == 0)).double().mean()
    assert abs(float(both) - 0.25) < 0.005


def test_dropout_mask_is_the_documented_threshold_rule() -> None:
    """Entry i is kept exactly when the low 15 bits of the i-th int16 of the int64 draws reach
    round(p * 2^15): the mask is computed arithmetically, this spells the rule out with a
    comparison and checks every entry, at a width that is not a multiple of 4."""
    p, shape = 0.2, (257, 123)
    n = shape[0] * shape[1]
    torch.manual_seed(7)
    draws = torch.empty((n + 3) // 4, dtype=torch.int64).random_()
    bits = draws.view(torch.int16)[:n].view(shape) & 0x7FFF
    expected = torch.where(bits >= round(p * 32768), 1.0 / (1.0 - p), 0.0).float()
    torch.manual_seed(7)
    assert torch.equal(dropout_mask(shape, p, torch.float32, "cpu"), expected)


def test_dropout_mask_seeded_and_dtype() -> None:
    torch.manual_seed(3)
    a = dropout_mask((7, 13), 0.2, torch.bfloat16, "cpu")
    torch.manual_seed(3)
    b = dropout_mask((7, 13), 0.2, torch.bfloat16, "cpu")
    assert a.dtype == torch.bfloat16 and torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 1.25}


# --- FusedMLPStep against autograd ----------------------------------------------------------


def _mlp(dropout: float = 0.2, seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP([48, 32, 16], dropout)


def _module_reference(
    model: MLP,
    x: torch.Tensor,
    y: torch.Tensor,
    masks: list[torch.Tensor] | None,
    bf16: bool,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss, logits and flat gradient of the module's own ``forward`` in training mode,
    through autograd (and autocast in bf16), with its dropout layers given ``masks``."""
    pending = iter(masks or [])
    model.train()
    with (
        mock.patch.object(models, "dropout_mask", lambda shape, p, dtype, device: next(pending)),
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16),
    ):
        logits = model(x)
    assert next(pending, None) is None, "every mask was used"
    loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    loss.backward()
    grad = torch.cat([t.grad.reshape(-1) for t in model.parameters()])
    return loss.detach(), logits.detach().float(), grad


@pytest.mark.parametrize(("dropout", "smoothing"), [(0.2, 0.0), (0.0, 0.0), (0.2, 0.1), (0.0, 0.3)])
def test_fp32_step_equals_the_modules_forward(dropout: float, smoothing: float) -> None:
    """Loss and logits bit for bit; the gradient to 1e-7 (the matmuls sum in another order).
    With label smoothing, against F.cross_entropy's ``label_smoothing``."""
    ref = _mlp(dropout)
    step = FusedMLPStep(copy.deepcopy(ref), torch.float32, smoothing)
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(20, 784, generator=g), torch.randint(0, 10, (20,), generator=g)
    masks = step.draw_masks(20)
    assert (masks is None) == (dropout == 0)
    loss, logits = step.forward_backward(x, y, masks)
    ref_loss, ref_logits, ref_grad = _module_reference(ref, x, y, masks, False, smoothing)
    assert torch.equal(loss, ref_loss) and torch.equal(logits, ref_logits)
    torch.testing.assert_close(step.flat.grad, ref_grad, atol=1e-7, rtol=0)


def test_bf16_step_equals_the_modules_forward_under_autocast() -> None:
    """bf16 weights and activations, fp32 master weights and gradients: bit for bit what the
    module computes under autocast, gradient included."""
    ref = _mlp()
    step = FusedMLPStep(copy.deepcopy(ref), torch.bfloat16)
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(32, 784, generator=g), torch.randint(0, 10, (32,), generator=g)
    masks = step.draw_masks(32)
    assert masks is not None and all(m.dtype == torch.bfloat16 for m in masks)
    loss, logits = step.forward_backward(x.bfloat16(), y, masks)
    ref_loss, ref_logits, ref_grad = _module_reference(ref, x, y, masks, bf16=True)
    assert step.flat.grad.dtype == torch.float32
    assert torch.equal(loss, ref_loss) and torch.equal(logits, ref_logits)
    assert torch.equal(step.flat.grad, ref_grad)


class _MLPWithNorm(MLP):
    def __init__(self) -> None:
        super().__init__([48, 32], 0.2)
        self.net.insert(2, nn.BatchNorm1d(48))


@pytest.mark.parametrize(
    "make",
    [
        lambda: _MLPWithNorm(),  # a layer the step does not compute
        lambda: type("Wider", (MLP,), {})([16], 0.2),  # a subclass may change forward()
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),  # not an MLP at all
    ],
    ids=["extra-layer", "subclass", "other-module"],
)
def test_the_step_refuses_a_model_it_does_not_exactly_cover(make: Any) -> None:
    with pytest.raises(TypeError, match="FusedMLPStep covers exactly"):
        FusedMLPStep(make(), torch.float32)


def test_the_training_loop_trains_an_uncovered_mlp_through_autograd() -> None:
    model = _MLPWithNorm()
    assert covered_linears(_mlp()) and type(model) is not MLP
    x, y = torch.randn(64, 28, 28).clamp(0, 1).mul(255).byte(), torch.randint(0, 10, (64,))
    cfg = TrainParams(batch_size=16, max_epochs=1, patience=0, precision="fp32")
    result = train_model(model, x, y, x, y, cfg, Augment(enabled=False), torch.device("cpu"))
    assert result.epochs_run == 1  # trained (through AutogradStep), not refused or skipped


def test_module_parameters_are_views_of_the_flat_buffer(tmp_path: Path) -> None:
    """Optimizer updates of the flat buffer are what the module evaluates and saves."""
    model = _mlp()
    step = FusedMLPStep(model, torch.bfloat16)
    opt = torch.optim.Adam([step.flat], lr=1e-2)
    x, y = torch.randn(16, 784), torch.randint(0, 10, (16,))
    before = copy.deepcopy(model.state_dict())
    for _ in range(3):
        step.step(x.bfloat16(), y)
        opt.step()
    after = model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)
    first = model.net[1].weight
    assert first.data_ptr() == step.flat.data_ptr()  # same storage, no copy
    # A snapshot (early stopping) does not follow later updates; loading it restores them.
    snapshot = copy.deepcopy(after)
    step.step(x.bfloat16(), y)
    opt.step()
    assert not torch.equal(snapshot["net.1.weight"], model.net[1].weight)
    model.load_state_dict(snapshot)
    assert torch.equal(model.net[1].weight, snapshot["net.1.weight"])
    assert first.data_ptr() == step.flat.data_ptr()  # loaded in place, still the flat buffer
    # The checkpoint holds compact tensors and rebuilds the same network.
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, ModelParams(model="mlp", hidden=[48, 32, 16]))
    loaded, _ = load_checkpoint(path)
    model.eval()
    torch.testing.assert_close(loaded(x), model(x))
    assert path.stat().st_size < 4 * step.flat.numel() + 20_000


def test_training_with_the_fused_step_learns() -> None:
    """A few hundred steps on a separable toy problem drive the loss near zero."""
    model = _mlp(0.1)
    step = FusedMLPStep(model, torch.bfloat16)
    opt = torch.optim.Adam([step.flat], lr=3e-3)
    g = torch.Generator().manual_seed(7)
    centers = torch.randn(10, 784, generator=g)
    y = torch.randint(0, 10, (512,), generator=g)
    x = centers[y] + 0.5 * torch.randn(512, 784, generator=g)
    losses = []
    for i in range(200):
        b = slice((i % 4) * 128, (i % 4 + 1) * 128)
        loss, _ = step.step(x[b].bfloat16(), y[b])
        opt.step()
        losses.append(float(loss))
    assert losses[0] > 1.5 and max(losses[-4:]) < 0.05
    model.eval()
    assert float((model(x).argmax(1) == y).double().mean()) == 1.0


def test_a_chunks_batches_use_the_rows_of_the_masks_drawn_for_the_chunk() -> None:
    """prepare() draws one chunk's masks at once; each batch of it gets its own rows."""
    gen = torch.Generator().manual_seed(5)
    chunk = torch.rand(300, 1, 28, 28, generator=gen) * 2 - 1
    y = torch.randint(0, 10, (300,), generator=gen)
    step = FusedMLPStep(_mlp(), torch.float32)
    torch.manual_seed(0)
    xs = step.prepare(chunk)
    assert xs.shape == (300, 784) and xs.dtype == torch.float32
    torch.manual_seed(0)
    masks = step.draw_masks(300)  # the same draws as prepare() made
    assert masks is not None and [tuple(m.shape) for m in masks] == [
        (300, 48),
        (300, 32),
        (300, 16),
    ]
    rows = slice(128, 256)
    loss, logits = step(xs, y[rows], rows)
    want_loss, want_logits = step.forward_backward(xs[rows], y[rows], [m[rows] for m in masks])
    assert torch.equal(loss, want_loss) and torch.equal(logits, want_logits)
    other = step.forward_backward(xs[rows], y[rows], [m[:128] for m in masks])[0]
    assert not torch.equal(loss, other)  # other rows of the masks give another loss


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_step_equals_autograd(dtype: torch.dtype) -> None:
    """The same step runs on a GPU (device: cuda) and still computes autograd's gradient."""
    ref = _mlp().cuda()
    step = FusedMLPStep(copy.deepcopy(ref), dtype)
    x = torch.randn(64, 784, device="cuda")
    y = torch.randint(0, 10, (64,), device="cuda")
    masks = step.draw_masks(64)
    assert masks is not None and masks[0].device.type == "cuda"
    loss, _ = step.forward_backward(x.to(dtype), y, masks)
    bf16 = dtype == torch.bfloat16
    linears = [m for m in ref.net if isinstance(m, nn.Linear)]
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        h = x
        for i, lin in enumerate(linears[:-1]):
            h = F.relu(lin(h)) * masks[i]
        logits = linears[-1](h)
    ref_loss = F.cross_entropy(logits.float(), y)
    ref_loss.backward()
    grad = torch.cat([t.grad.reshape(-1) for lin in linears for t in (lin.weight, lin.bias)])
    tol = 1e-2 if bf16 else 1e-4  # GPU bf16 matmuls may accumulate in another order
    torch.testing.assert_close(loss, ref_loss.detach(), atol=tol, rtol=0)
    assert float((step.flat.grad - grad).norm() / grad.norm()) < tol
