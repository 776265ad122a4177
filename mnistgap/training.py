"""The training loop: in-memory uint8 tensors, per-batch augmentation, Adam, early stopping.

Short and explicit in the style of pytorch/examples' mnist/main.py. All data stay in memory
as uint8 (51,000 x 784 bytes = 40 MB); each batch is gathered, augmented on tensors with
independent parameters per image, normalized and fed to the model: no DataLoader, no
per-image Python. With the MLP's hand-written step (fused_mlp.py) an epoch of 51,000 images
takes about 2 s on two CPU cores, against 15-20 s for the report's per-image pipeline.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mnistgap.augment import AugmentConfig, augment_batch
from mnistgap.device import bf16_supported
from mnistgap.fused_mlp import FusedMLPStep, batch_masks
from mnistgap.metrics import predict_logits
from mnistgap.models import MLP, NORM_MEAN, NORM_STD

log = logging.getLogger(__name__)

# Images augmented per call. Small enough that a chunk's tensors (2048 x 784 x 4 B = 6 MB)
# stay in cache: 8192 was 2x slower per image. Large enough to amortise per-call overhead.
AUGMENT_CHUNK = 2048


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1], the augmentation's input."""
    return images.unsqueeze(1).float().div_(255.0)


def _normalize_(x: torch.Tensor) -> torch.Tensor:
    """In place, the same arithmetic as :func:`mnistgap.models.normalize` ([0, 1] -> [-1, 1])."""
    return x.sub_(NORM_MEAN).div_(NORM_STD)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (defaults are the report's, plus the lr schedule)."""

    lr: float = 1.0e-3
    batch_size: int = 128
    max_epochs: int = 20
    patience: int = 3  # 0 disables early stopping (the last epoch's weights are kept)
    lr_schedule: str = "cosine"  # "none" | "cosine"
    seed: int = 42
    precision: str = "bf16"  # "bf16" | "fp32"
    eval_batch_size: int = 4096

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> TrainConfig:
        """Pick this config's fields out of validated params (extra keys are ignored)."""
        return cls(**{f.name: p[f.name] for f in fields(cls)})


class EarlyStopping:
    """Stop after ``patience`` epochs without a lower validation loss; remember the best weights.

    ``patience=0`` never stops; ``best_state`` then still holds the best epoch, but the caller
    keeps the last weights (the report's stage 1, "no early stopping").
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_loss = math.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0

    def step(self, epoch: int, val_loss: float, model: nn.Module | None = None) -> bool:
        """Record one epoch's validation loss; return True when training should stop."""
        if val_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            if model is not None:
                self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.bad_epochs += 1
        return self.patience > 0 and self.bad_epochs >= self.patience


@dataclass
class TrainResult:
    """What happened during training: one dict per epoch, and the epoch whose weights were kept."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    epochs_run: int = 0
    stopped_early: bool = False
    seconds: float = 0.0


def _lr_lambda(schedule: str, total_steps: int) -> Callable[[int], float]:
    if schedule == "none":
        return lambda step: 1.0
    # Cosine decay to zero over the whole budget of max_epochs, per step (smooth).
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


@torch.no_grad()
def evaluate_loss_acc(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on uint8 images ``x`` (fp32, eval mode)."""
    logits = predict_logits(model, x, batch_size, device)
    loss = F.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).double().mean().item()
    return loss, acc


def train_model(
    model: nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    cfg: TrainConfig,
    augment: AugmentConfig,
    device: torch.device,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place with Adam and early stopping; return the history.

    ``train_x``/``val_x`` are uint8 (N, 28, 28) and ``train_y``/``val_y`` int64 (N,), on CPU.
    On return the model holds the best-validation-loss weights (or the last ones if
    ``cfg.patience == 0``) and is in eval mode. ``on_epoch`` receives each epoch's metrics.
    """
    torch.manual_seed(cfg.seed)  # dropout masks; weight init happened before, from the caller
    # Late in training many gradients and Adam moments underflow to denormal floats, which
    # x86 CPUs handle ~100x slower (epochs got 50% slower). Flushing them to zero changes
    # nothing measurable in the results. Set before the thread pool starts so workers inherit.
    torch.set_flush_denormal(True)
    model.to(device)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    train_x, train_y = train_x.to(device), train_y.to(device)

    n = len(train_x)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    use_bf16 = cfg.precision == "bf16" and bf16_supported(device)
    if cfg.precision == "bf16" and not use_bf16:
        log.warning("precision bf16 requested but not supported on %s; using fp32", device)
    # The MLP trains through a hand-written step (same arithmetic, ~2x faster per step, see
    # fused_mlp.py); other models through autograd, with bf16 autocast.
    fused = (
        FusedMLPStep(model, torch.bfloat16 if use_bf16 else torch.float32)
        if isinstance(model, MLP)
        else None
    )
    params = [fused.flat] if fused is not None else list(model.parameters())
    # fused=True: one kernel for all parameters; 2x faster than the per-tensor loop on CPU.
    opt = torch.optim.Adam(params, lr=cfg.lr, fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(cfg.lr_schedule, cfg.max_epochs * steps_per_epoch)
    )

    stopper = EarlyStopping(cfg.patience)
    result = TrainResult()
    t0 = time.perf_counter()
    epochs = tqdm(range(1, cfg.max_epochs + 1), desc="epochs", disable=None, leave=False)
    # Augment whole chunks of batches at once: every image still gets its own random
    # parameters, but per-call overhead is paid once per ~8k images instead of per 128.
    chunk = cfg.batch_size * max(1, AUGMENT_CHUNK // cfg.batch_size)
    for epoch in epochs:
        model.train()
        perm = torch.randperm(n, generator=shuffle_gen).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        t_epoch = time.perf_counter()
        bar = tqdm(total=n, desc=f"epoch {epoch}", unit="img", disable=None, leave=False)
        for c0 in range(0, n, chunk):
            idx_chunk = perm[c0 : c0 + chunk]
            x_chunk = _normalize_(augment_batch(to_unit(train_x[idx_chunk]), augment, aug_gen))
            if fused is not None:  # flat rows in the step's dtype, cast once per chunk
                x_chunk = x_chunk.reshape(len(x_chunk), -1).to(fused.dtype)
                masks = fused.draw_masks(len(x_chunk))
            y_chunk = train_y[idx_chunk]
            for b0 in range(0, len(idx_chunk), cfg.batch_size):
                x = x_chunk[b0 : b0 + cfg.batch_size]
                y = y_chunk[b0 : b0 + cfg.batch_size]
                if fused is not None:
                    loss, logits = fused.forward_backward(
                        x, y, batch_masks(masks, b0, b0 + cfg.batch_size)
                    )
                else:
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                        logits = model(x)
                    loss = F.cross_entropy(logits.float(), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                opt.step()
                sched.step()
                # Accumulate on-device: no .item() sync per batch.
                loss_sum += loss.detach() * len(y)
                correct += (logits.argmax(1) == y).sum()
            bar.update(len(idx_chunk))
        bar.close()
        train_seconds = time.perf_counter() - t_epoch

        val_loss, val_acc = evaluate_loss_acc(model, val_x, val_y, cfg.eval_batch_size, device)
        row = {
            "epoch": epoch,
            "train_loss": loss_sum.item() / n,
            "train_acc": correct.item() / n,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t_epoch,
        }
        result.history.append(row)
        result.epochs_run = epoch
        stop = stopper.step(epoch, val_loss, model)
        log.info(
            "epoch %2d/%d  train loss %.4f acc %.4f  val loss %.4f acc %.4f"
            "  (%.1fs train, %.2fs total)%s",
            epoch,
            cfg.max_epochs,
            row["train_loss"],
            row["train_acc"],
            val_loss,
            val_acc,
            train_seconds,
            row["seconds"],
            "  *best*" if stopper.best_epoch == epoch else "",
        )
        if on_epoch is not None:
            on_epoch(row)
        if stop:
            result.stopped_early = True
            log.info("early stopping: no lower validation loss for %d epochs", cfg.patience)
            break

    if cfg.patience > 0 and stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)
        result.best_epoch = stopper.best_epoch
    else:
        result.best_epoch = result.epochs_run
    model.eval()
    result.seconds = time.perf_counter() - t0
    return result
