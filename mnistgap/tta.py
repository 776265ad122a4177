"""Test-time augmentation: a digit read as the mean of the model's probabilities over views.

Every reader of a trained model (the evaluate_* stages, ``predict``, the collection page,
``benchmarks/ensemble_eval.py``) predicts through :func:`predict_logits`, so the params.yaml
key ``tta`` changes all of them alike. A view is a zoom and a rotation about the image centre
(bilinear, zeros outside), applied to the 28x28 MNIST-like image before normalisation:

* ``none``: the image alone (exactly :func:`mnistgap.metrics.predict_logits`);
* ``rot``: the image and its rotations by +-7 degrees;
* ``scale``: the image and its zooms by 0.9 and 1.1.

Training's augmentation draws rotations up to 5 degrees and zooms of 0.8-1.2, so both views
stay among the digits the model was trained on. What each reads on every evaluation set:
docs/findings.md ("Test-time views").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mnistgap.metrics import predict_logits as plain_logits
from mnistgap.recipe import normalize

#: (zoom, degrees) of each view; the first is always the identity. The keys are params.yaml's
#: ``tta`` values (tests check they agree with :data:`mnistgap.params.TestTimeViews`).
VIEWS: dict[str, tuple[tuple[float, float], ...]] = {
    "none": ((1.0, 0.0),),
    "rot": ((1.0, 0.0), (1.0, 7.0), (1.0, -7.0)),
    "scale": ((1.0, 0.0), (0.9, 0.0), (1.1, 0.0)),
}


def warp(images: torch.Tensor, scale: float, degrees: float) -> torch.Tensor:
    """uint8 (N, 28, 28) images zoomed by ``scale`` and rotated by ``degrees`` about the
    centre (bilinear, zeros outside), as float images in [0, 1] of shape (N, 1, 28, 28).
    The identity view is the images themselves, unresampled."""
    x = images.unsqueeze(1).float() / 255.0
    if (scale, degrees) == (1.0, 0.0):
        return x
    a = math.radians(degrees)
    theta = torch.tensor(
        [
            [math.cos(a) / scale, -math.sin(a) / scale, 0.0],
            [math.sin(a) / scale, math.cos(a) / scale, 0.0],
        ],
        device=x.device,
    ).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False)


def views(tta: str) -> tuple[tuple[float, float], ...]:
    """The (zoom, degrees) views of ``tta``; a ValueError naming the choices otherwise."""
    if tta not in VIEWS:
        raise ValueError(f"tta must be one of {', '.join(VIEWS)}, got {tta!r}")
    return VIEWS[tta]


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    tta: str = "none",
    batch_size: int = 4096,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Logits (float32, CPU) of uint8 images (N, 28, 28) read with the views of ``tta``.

    ``none`` returns the model's own logits. Otherwise log(mean over the views of the
    model's softmax): log-probabilities that serve as logits everywhere (softmax gives back
    the mean probabilities, cross-entropy is the averaged reading's loss), as an ensemble's
    output does."""
    chosen = views(tta)
    if tta == "none":
        return plain_logits(model, images, batch_size, device)
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        batch = images[i : i + batch_size].to(device)
        logp = torch.stack(
            [F.log_softmax(model(normalize(warp(batch, s, d))).float(), dim=1) for s, d in chosen]
        )
        out.append((torch.logsumexp(logp, dim=0) - math.log(len(chosen))).cpu())
    return torch.cat(out) if out else plain_logits(model, images, batch_size, device)
