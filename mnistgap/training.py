"""The training loop: in-memory uint8 tensors, per-batch augmentation, Adam, early stopping.

Short and explicit in the style of pytorch/examples' mnist/main.py, read top to bottom in
:func:`train_model`. All data stay in memory as uint8 (51,000 x 784 bytes = 40 MB); chunks of
images are gathered, augmented on tensors with independent parameters per image, normalised
and cut into batches: no DataLoader, no per-image Python. One optimisation step's forward and
backward is an object chosen once, before the loop: :class:`AutogradStep` for any model, or
the MLP's hand-written :class:`mnistgap.fused_mlp.FusedMLPStep` (same arithmetic, fewer ops).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mnistgap.augment import augment_batch
from mnistgap.device import environment, resolve_precision
from mnistgap.fused_mlp import FusedMLPStep
from mnistgap.metrics import predict_logits
from mnistgap.models import MLP, Ensemble, members
from mnistgap.params import Augment, TrainParams
from mnistgap.recipe import normalize

log = logging.getLogger(__name__)

# Images augmented per call. Small enough that a chunk's tensors (2048 x 784 x 4 B = 6 MB)
# stay in cache: 8192 was 2x slower per image. Large enough to amortise per-call overhead.
AUGMENT_CHUNK = 2048


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1], the augmentation's input."""
    return images.unsqueeze(1).float().div_(255.0)


class EarlyStopping:
    """Stop after ``patience`` epochs without a lower validation loss; remember the best weights.

    ``patience=0`` never stops; ``best_state`` then still holds the best epoch, but the caller
    keeps the last weights (the study's stage 1, "no early stopping").
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
    environment: dict[str, object] = field(default_factory=dict)  # device.environment()


def lr_lambda(schedule: str, total_steps: int) -> Callable[[int], float]:
    if schedule == "none":
        return lambda step: 1.0
    # Cosine decay to zero over the whole budget of max_epochs, per step (smooth).
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


@torch.no_grad()
def evaluate_loss_acc(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    device: torch.device,
    label_smoothing: float = 0.0,
) -> tuple[float, float]:
    """Mean cross-entropy (with ``label_smoothing``, as in training) and accuracy of
    ``model`` on uint8 images ``x`` (fp32, eval mode)."""
    logits = predict_logits(model, x, batch_size, device)
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing).item()
    acc = (logits.argmax(1) == y).double().mean().item()
    return loss, acc


class AutogradStep:
    """Forward and backward of any model through autograd, matmuls in bf16 under autocast
    when ``dtype`` is bf16; the gradients land in the parameters' ``.grad``."""

    def __init__(self, model: nn.Module, dtype: torch.dtype, label_smoothing: float = 0.0) -> None:
        self.model = model
        self.dtype = dtype
        self.label_smoothing = label_smoothing
        self.parameters = list(model.parameters())

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A normalised chunk of images (n, 1, 28, 28), as the model takes it."""
        return x

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, rows: slice
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy (label-smoothed) of the batch ``x[rows]`` against ``y``;
        returns (loss, logits)."""
        device_type = x.device.type
        with torch.autocast(device_type, torch.bfloat16, enabled=self.dtype == torch.bfloat16):
            logits = self.model(x[rows])
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        self.model.zero_grad(set_to_none=True)
        loss.backward()
        return loss, logits


def make_step(
    model: nn.Module, dtype: torch.dtype, label_smoothing: float
) -> AutogradStep | FusedMLPStep:
    """The optimisation step of ``model``, chosen once: the MLP's hand-written one (same
    arithmetic, ~2x faster per step, see fused_mlp.py; it refuses any model it does not
    exactly cover), autograd for any other model."""
    kind = FusedMLPStep if type(model) is MLP else AutogradStep
    return kind(model, dtype, label_smoothing)


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat denormal floats as zero while training, and restore the default afterwards.

    Late in training many gradients and Adam moments underflow to denormals, which x86 CPUs
    handle ~100x slower (epochs got 50% slower); flushing them changes nothing measurable.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def train_model(
    model: nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    cfg: TrainParams,
    augment: Augment,
    device: torch.device,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place with Adam and early stopping; return the history.

    ``train_x``/``val_x`` are uint8 (N, 28, 28) and ``train_y``/``val_y`` int64 (N,), on CPU.
    The loss, in training and on the validation set, is cross-entropy with
    ``cfg.label_smoothing``. On return the model holds the best-validation-loss weights (or
    the last ones if ``cfg.patience == 0``) and is in eval mode. ``on_epoch`` receives each
    epoch's metrics.
    The global random state (dropout masks draw from it) and the denormal mode are restored
    on return: training has no lasting side effect on the process.
    """
    if isinstance(model, Ensemble):
        raise TypeError("train_model trains one network: train an Ensemble with train_members")
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), flush_denormals():
        torch.manual_seed(cfg.seed)  # dropout masks; weight init happened before, from the caller
        model.to(device)
        shuffle_gen = torch.Generator().manual_seed(cfg.seed)
        aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        train_x, train_y = train_x.to(device), train_y.to(device)
        n = len(train_x)

        dtype = resolve_precision(cfg.precision, device)
        result = TrainResult(environment=environment(device, dtype))
        step = make_step(model, dtype, cfg.label_smoothing)
        # fused=True: one kernel for all parameters; 2x faster than the per-tensor loop on CPU.
        opt = torch.optim.Adam(step.parameters, lr=cfg.lr, fused=True)
        steps_per_epoch = math.ceil(n / cfg.batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lr_lambda(cfg.lr_schedule, cfg.max_epochs * steps_per_epoch)
        )
        # Whole chunks of batches are augmented at once: every image still gets its own random
        # parameters, but per-call overhead is paid once per ~2k images instead of per 128.
        chunk = cfg.batch_size * max(1, AUGMENT_CHUNK // cfg.batch_size)

        stopper = EarlyStopping(cfg.patience)
        t0 = time.perf_counter()
        for epoch in tqdm(range(1, cfg.max_epochs + 1), desc="epochs", disable=None, leave=False):
            model.train()
            t_epoch = time.perf_counter()
            perm = torch.randperm(n, generator=shuffle_gen).to(device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            for c0 in range(0, n, chunk):
                # index_select, not train_x[idx]: the same rows, 10x faster on uint8 (CPU).
                idx = perm[c0 : c0 + chunk]
                images = to_unit(train_x.index_select(0, idx))
                xs = step.prepare(normalize(augment_batch(images, augment, aug_gen)))
                ys = train_y.index_select(0, idx)
                for b0 in range(0, len(idx), cfg.batch_size):
                    rows = slice(b0, b0 + cfg.batch_size)
                    loss, logits = step(xs, ys[rows], rows)
                    opt.step()
                    sched.step()
                    # Accumulate on-device: no .item() sync per batch.
                    loss_sum += loss.detach() * len(logits)
                    correct += (logits.argmax(1) == ys[rows]).sum()
            train_seconds = time.perf_counter() - t_epoch

            val_loss, val_acc = evaluate_loss_acc(
                model, val_x, val_y, cfg.eval_batch_size, device, cfg.label_smoothing
            )
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


def train_members(
    model: nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    cfg: TrainParams,
    augment: Augment,
    device: torch.device,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> list[TrainResult]:
    """:func:`train_model` for each member of ``model`` in turn (one result for a single
    network): member i trains with seed ``cfg.seed + i`` on the same data, so it is exactly
    the model :func:`train_model` makes with that seed (given it was initialised from that
    seed, see ``build_model``). The pipeline's split comes from ``seed`` and is shared: a
    member differs from the pipeline run of seed + i, whose validation split differs too."""
    return [
        train_model(
            member,
            train_x,
            train_y,
            val_x,
            val_y,
            cfg.model_copy(update={"seed": cfg.seed + i}),
            augment,
            device,
            on_epoch,
        )
        for i, member in enumerate(members(model))
    ]
