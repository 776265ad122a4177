"""A hand-written forward and backward pass for training the MLP, without autograd.

At batch 128 a training step of this MLP is about 0.4 GFLOP, which the CPU's bf16 matrix
units do in well under a millisecond; with autograd and autocast the step took 5-6 ms,
mostly per-op overhead: autograd bookkeeping, weight casts per layer and per step, and
Adam's Python side per tensor. The step here does the same arithmetic in about 30 ops:

- all weights and biases live in ONE flat fp32 buffer (the module's parameters become
  views of it, so ``state_dict``, evaluation and checkpoints see every update). Adam
  updates the whole buffer as one tensor;
- in bf16 the flat buffer is cast once per step, and the gradients come back in one cast
  (autocast casts every weight, its gradient and activations separately);
- ReLU and dropout share one saved tensor: ``h = relu(z) * mask`` with mask in
  ``{0, 1/(1-p)}``, so ``dh/dz = 1/(1-p)`` exactly where ``h > 0`` and 0 elsewhere.

The arithmetic is that of ``nn.Linear`` + ReLU + :class:`mnistgap.models.Dropout` + mean
cross-entropy (optionally label-smoothed); ``tests/test_fused_mlp.py`` checks loss and
gradients against autograd.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mnistgap.models import MLP, Dropout, dropout_mask


def covered_linears(model: nn.Module) -> list[nn.Linear]:
    """The Linear layers of ``model`` if this step computes exactly its ``forward``, else raise.

    The step is fenced: it covers an :class:`MLP` whose ``net`` is exactly ``Flatten``, then
    ``(Linear, ReLU, Dropout)`` per hidden layer, then ``Linear``, with one dropout rate and
    biases everywhere. Any other model or layer (a subclass, a BatchNorm, another activation)
    is refused with a TypeError, so a change to the MLP can never be silently skipped in
    training: it must be taught to this step first, or trained through autograd.
    """
    layers = list(getattr(model, "net", ()))
    kinds = [type(m) for m in layers]
    hidden = (len(kinds) - 2) // 3
    expected = [nn.Flatten, *[nn.Linear, nn.ReLU, Dropout] * hidden, nn.Linear]
    rates = {m.p for m in layers if isinstance(m, Dropout)}
    if (
        type(model) is not MLP
        or kinds != expected
        or rates != ({model.dropout_p} if hidden else set())
        or any(m.bias is None for m in layers if isinstance(m, nn.Linear))
    ):
        names = ", ".join(k.__name__ for k in kinds) or type(model).__name__
        raise TypeError(
            "FusedMLPStep covers exactly MLP(Flatten, (Linear, ReLU, Dropout)*, Linear); "
            f"refusing {type(model).__name__}({names}): train it through autograd"
        )
    return [m for m in layers if isinstance(m, nn.Linear)]


class FusedMLPStep:
    """Forward and backward of an :class:`MLP` in ``dtype`` (bf16 or fp32) with fp32 master
    weights; the gradient lands in ``flat.grad`` for an optimizer over ``[flat]``."""

    def __init__(
        self, model: MLP, dtype: torch.dtype = torch.float32, label_smoothing: float = 0.0
    ) -> None:
        linears = covered_linears(model)
        params = [t for lin in linears for t in (lin.weight, lin.bias)]
        device = params[0].device
        self.dtype = dtype
        self.device = device
        self.dropout_p = float(model.dropout_p)
        self.label_smoothing = float(label_smoothing)
        self.flat = nn.Parameter(torch.cat([t.detach().reshape(-1) for t in params]))
        self.flat.grad = torch.zeros_like(self.flat)
        #: What the optimizer updates: the one flat buffer.
        self.parameters = [self.flat]
        self._chunk_masks: list[torch.Tensor] | None = None
        self._neg: torch.Tensor | None = None
        shapes = [tuple(t.shape) for t in params]
        # The module's parameters become views of the flat buffer: one storage, two names.
        for t, view in zip(params, _views(self.flat.data, shapes), strict=True):
            t.data = view
        if dtype == torch.float32:
            self._low, self._low_grad = self.flat.data, self.flat.grad
        else:
            self._low = torch.empty(self.flat.numel(), dtype=dtype, device=device)
            self._low_grad = torch.empty(self.flat.numel(), dtype=dtype, device=device)
        low, low_grad = _views(self._low, shapes), _views(self._low_grad, shapes)
        self._weights = list(zip(low[0::2], low[1::2], strict=True))
        self._grads = list(zip(low_grad[0::2], low_grad[1::2], strict=True))

    @property
    def widths(self) -> list[int]:
        """Output width of every hidden layer (where dropout masks go)."""
        return [w.shape[0] for w, _ in self._weights[:-1]]

    def draw_masks(self, batch: int) -> list[torch.Tensor] | None:
        """Dropout masks ``(batch, width)`` per hidden layer (None when p is 0), from the
        global generator. Drawing a whole chunk of batches at once and slicing rows per
        step saves about ten small ops per step."""
        if self.dropout_p == 0:
            return None
        widths = self.widths
        flat = dropout_mask((batch * sum(widths),), self.dropout_p, self.dtype, self.device)
        # One (batch, width) block per layer, so any run of rows is contiguous.
        return _views(flat, [(batch, w) for w in widths])

    @torch.no_grad()
    def forward_backward(
        self, x: torch.Tensor, y: torch.Tensor, masks: list[torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy (label-smoothed) of ``x`` (B, 784) in ``self.dtype`` against
        ``y``; writes its gradient into ``flat.grad``. Returns (loss, fp32 logits), both
        detached."""
        if self.dtype != torch.float32:
            self._low.copy_(self.flat)  # this step's weights in bf16: one cast
        scale = 1.0 / (1.0 - self.dropout_p)
        acts = [x]  # every layer's input; hidden ones after ReLU and dropout
        for i, (w, b) in enumerate(self._weights[:-1]):
            h = torch.addmm(b, acts[-1], w.t()).clamp_min_(0)
            acts.append(h.mul_(masks[i]) if masks is not None else h)
        w, b = self._weights[-1]
        logits = torch.addmm(b, acts[-1], w.t()).float()

        logp = torch.log_softmax(logits, dim=1)
        e = self.label_smoothing
        # With smoothing the target is (1 - e) one_hot + e / K, as F.cross_entropy takes it.
        loss = F.cross_entropy(logits, y, label_smoothing=e) if e else F.nll_loss(logp, y)
        # d(mean CE)/d logits = (softmax - target) / B; the label's 1 - e is subtracted in
        # place at each row's label (the same numbers as subtracting a one-hot matrix, two
        # ops fewer), then e / K from every entry.
        d = logp.exp_().scatter_add_(1, y.unsqueeze(1), self._minus_one(len(y)))
        if e:
            d.sub_(e / logits.shape[1])
        d = d.div_(len(y)).to(self.dtype)
        for i in range(len(self._weights) - 1, -1, -1):
            w, _ = self._weights[i]
            gw, gb = self._grads[i]
            torch.mm(d.t(), acts[i], out=gw)
            torch.sum(d, dim=0, out=gb)
            if i > 0:  # the input layer needs no gradient for the images
                # ReLU and dropout backward in one op: pass d where the saved output > 0.
                d = torch.ops.aten.threshold_backward(torch.mm(d, w), acts[i], 0)
                if masks is not None:
                    d.mul_(scale)
        if self.dtype != torch.float32:
            self.flat.grad.copy_(self._low_grad)
        return loss, logits

    def _minus_one(self, batch: int) -> torch.Tensor:
        """A (batch, 1) fp32 column of -(1 - label_smoothing): -1 without smoothing (kept
        between steps: one allocation fewer)."""
        if self._neg is None or len(self._neg) != batch:
            self._neg = torch.full((batch, 1), self.label_smoothing - 1.0, device=self.device)
        return self._neg

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A normalised chunk of images (n, 1, 28, 28) as flat rows in the step's dtype (one
        cast per chunk), and the chunk's dropout masks, drawn at once for all its batches."""
        self._chunk_masks = self.draw_masks(len(x))
        return x.reshape(len(x), -1).to(self.dtype)

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, rows: slice
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward_backward` of the batch ``x[rows]`` of the chunk last prepared, with
        the same rows of that chunk's dropout masks."""
        masks = None if self._chunk_masks is None else [m[rows] for m in self._chunk_masks]
        return self.forward_backward(x[rows], y, masks)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw this batch's dropout masks, then :meth:`forward_backward`."""
        return self.forward_backward(x, y, self.draw_masks(len(x)))


def _views(buf: torch.Tensor, shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    """Consecutive views of a flat buffer with the given shapes."""
    out, offset = [], 0
    for shape in shapes:
        n = math.prod(shape)
        out.append(buf[offset : offset + n].view(shape))
        offset += n
    return out
