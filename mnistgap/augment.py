"""Batched, per-image random augmentation of MNIST-style tensors for training.

Every image in a batch gets its own random parameters, yet no step loops over images in
Python: parameters are drawn as tensors from one ``torch.Generator`` (so a seed fixes the
result) and applied with batched tensor ops on whatever device the batch lives on.

Input and output are float tensors ``(B, C, H, W)`` in ``[0, 1]`` with 0 = background and
1 = ink (MNIST is ``(B, 1, 28, 28)``). Normalisation (``Normalize((0.5,), (0.5,))``) is
*not* done here; it belongs after augmentation.

Order of operations (each one optional; the settings are :class:`mnistgap.params.Augment`):

1. random affine (torchvision ``RandomAffine`` semantics) after a random width stretch,
   ONE sampling grid and ONE bilinear ``grid_sample`` for the batch;
2. blur: a Gaussian of random width (low-resolution scans and photos, soft pens);

then clamp to ``[0, 1]``. (Elastic distortion, stroke thickness, contrast, noise and random
erasing were here too; measured on every evaluation set, none helped on any, so they went.)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from mnistgap.params import Affine, Augment, Blur


class AffineParams(NamedTuple):
    """Per-image affine parameters, each a 1-D tensor of length n (torchvision conventions)."""

    angle: torch.Tensor  # degrees, counter-clockwise positive as in torchvision
    tx: torch.Tensor  # pixels, +x = right
    ty: torch.Tensor  # pixels, +y = down
    scale: torch.Tensor
    shear_x: torch.Tensor  # degrees
    shear_y: torch.Tensor  # degrees


def _uniform(
    n: int, lo: float, hi: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """n draws of U(lo, hi) in float32 (float32 whatever the image dtype, so that a seed
    gives the same parameters for float32 and float64 batches)."""
    u = torch.rand(n, generator=generator, device=device, dtype=torch.float32)
    return lo + (hi - lo) * u


def sample_affine_params(
    n: int,
    cfg: Affine,
    generator: torch.Generator,
    device: torch.device | str,
    size: tuple[int, int] = (28, 28),
) -> AffineParams:
    """Draw n independent parameter sets as torchvision ``RandomAffine.get_params`` does.

    ``size`` is ``(H, W)``. Translations are whole pixels: ``round(U(-t*W, t*W))`` (half to
    even, like Python's ``round``). A disabled config gives the identity parameters.
    """
    device = torch.device(device)
    h, w = size
    zeros = torch.zeros(n, device=device, dtype=torch.float32)
    if not cfg.enabled:
        return AffineParams(zeros, zeros, zeros, zeros + 1.0, zeros, zeros)
    angle = _uniform(n, -cfg.degrees, cfg.degrees, generator, device)
    max_dx, max_dy = cfg.translate * w, cfg.translate * h
    tx = torch.round(_uniform(n, -max_dx, max_dx, generator, device))
    ty = torch.round(_uniform(n, -max_dy, max_dy, generator, device))
    scale = _uniform(n, cfg.scale[0], cfg.scale[1], generator, device)
    shear_x = _uniform(n, -cfg.shear, cfg.shear, generator, device)
    # torchvision: a single shear number means shear along x only.
    return AffineParams(angle, tx, ty, scale, shear_x, zeros)


def affine_matrices(
    angle: torch.Tensor,
    tx: torch.Tensor,
    ty: torch.Tensor,
    scale: torch.Tensor,
    shear_x: torch.Tensor,
    shear_y: torch.Tensor,
    size: tuple[int, int],
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Build ``(n, 2, 3)`` thetas for ``F.affine_grid(..., align_corners=False)``.

    Parameters are 1-D tensors in torchvision's ``F.affine`` conventions (angle and shears in
    degrees, translation in pixels, rotation about the image centre); ``size`` is ``(H, W)``.
    The warp equals torchvision's tensor ``F.affine(img, angle, [tx, ty], scale,
    [shear_x, shear_y])``: this is ``_get_inverse_affine_matrix`` with centre (0, 0), batched,
    then rescaled from centred pixel coordinates to affine_grid's [-1, 1] coordinates.
    """
    h, w = size
    # float64 for the trigonometry; it is only n x 6 numbers.
    rot = torch.deg2rad(angle.to(torch.float64))
    sx = torch.deg2rad(shear_x.to(torch.float64))
    sy = torch.deg2rad(shear_y.to(torch.float64))
    s = scale.to(torch.float64)
    tx64, ty64 = tx.to(torch.float64), ty.to(torch.float64)

    # Forward rotate-scale-shear without the scale, RSS = R(a) * SHy(sy) * SHx(sx) (see
    # torchvision.transforms.functional._get_inverse_affine_matrix).
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    # Its inverse (det = 1) divided by the scale; then the inverse translation. In centred
    # pixel coordinates (origin at the image centre) the centre terms vanish.
    m0, m1, m3, m4 = d / s, -b / s, -c / s, a / s
    m2 = -(m0 * tx64 + m1 * ty64)
    m5 = -(m3 * tx64 + m4 * ty64)
    # affine_grid with align_corners=False uses x_norm = x_centred / (W/2), likewise y; so
    # x_in_norm = m0*x_n + m1*(H/W)*y_n + m2*2/W and y_in_norm = m3*(W/H)*x_n + m4*y_n + m5*2/H.
    theta = torch.stack(
        [
            torch.stack([m0, m1 * (h / w), m2 * (2.0 / w)], dim=-1),
            torch.stack([m3 * (w / h), m4, m5 * (2.0 / h)], dim=-1),
        ],
        dim=-2,
    )
    return theta.to(dtype)


def random_affine_matrices(
    n: int,
    cfg: Affine,
    generator: torch.Generator,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
    size: tuple[int, int] = (28, 28),
) -> torch.Tensor:
    """n independent random affine thetas ``(n, 2, 3)`` for ``F.affine_grid`` (see
    :func:`sample_affine_params` and :func:`affine_matrices`), each after a random width
    stretch when ``cfg.stretch`` > 1.

    The stretch multiplies the digit's width by ``1 / r``, ``log r ~ U(-log s, log s)``,
    before the rotation, zoom, shear and shift: theta maps output to input pixels, so it is
    theta's x row times r. Its factors are drawn after torchvision's parameters, so
    ``stretch: 1`` leaves the random stream (and the augmented images) as they were.
    """
    p = sample_affine_params(n, cfg, generator, device, size)
    theta = affine_matrices(*p, size=size, dtype=dtype)
    if cfg.enabled and cfg.stretch != 1.0:
        u = torch.rand(n, generator=generator, device=device)
        r = torch.exp((2 * u - 1) * math.log(cfg.stretch)).to(dtype)
        theta[:, 0, :] *= r[:, None]
    return theta


def _grid_basis(h: int, w: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(6, h*w*2)`` matrix E with ``theta^T.reshape(n, 6) @ E`` = the flattened grids.

    Entry ``[(k, c'), (p, c)]`` is ``base[p, k] * (c == c')``, where ``base[p]`` is pixel p's
    (x, y, 1) in affine_grid's [-1, 1] coordinates (align_corners=False).
    """
    xs = (torch.arange(w, dtype=dtype, device=device) * 2 + 1) / w - 1
    ys = (torch.arange(h, dtype=dtype, device=device) * 2 + 1) / h - 1
    ones = torch.ones(h, w, dtype=dtype, device=device)
    base = torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None], ones), -1)
    basis = torch.zeros(3, 2, h * w, 2, dtype=dtype, device=device)
    for c in range(2):
        basis[:, c, :, c] = base.reshape(h * w, 3).T
    return basis.reshape(6, h * w * 2)


def _affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Same numbers as ``F.affine_grid(theta, [n, 1, h, w], align_corners=False)``, faster.

    F.affine_grid does a batched matmul of (n, h*w, 3) by (n, 3, 2), the slowest step of
    augmentation on CPU. Here it is ONE plain GEMM, (n, 6) thetas by a constant (6, h*w*2)
    basis, whose output is already in grid_sample's (n, h, w, 2) memory layout: no
    transposed copy (that copy alone took half of the augmentation time).
    """
    n = theta.shape[0]
    basis = _grid_basis(h, w, theta.dtype, theta.device)
    return (theta.transpose(1, 2).reshape(n, 6) @ basis).view(n, h, w, 2)


def _geometric(x: torch.Tensor, cfg: Augment, generator: torch.Generator) -> torch.Tensor:
    """The random affine as one grid and one bilinear grid_sample.

    torchvision's RandomAffine on PIL images defaults to NEAREST; we use bilinear because
    MNIST digits are anti-aliased and nearest would add jagged, blocky edges that the test
    images do not have. Zero padding = background enters from outside the image.
    """
    n, _, h, w = x.shape
    theta = random_affine_matrices(n, cfg.affine, generator, x.device, x.dtype, size=(h, w))
    grid = _affine_grid(theta, h, w)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def blur_matrices(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """``(n, size, size)`` matrices B with ``B @ img @ B.T`` a Gaussian blur of std ``sigma``
    pixels per image (the identity where sigma is 0). Each row's weights sum to 1, so the
    ink's total stays and nothing leaks in from outside the image."""
    pos = torch.arange(size, device=sigma.device)
    # exp of each distinct distance |i - j| once per image, then spread over the matrix: the
    # same numbers as exp over all size x size entries, for 1/size of the exps (which, deep in
    # underflow for narrow sigmas, are slow on CPU).
    d2 = pos.to(sigma.dtype) ** 2
    s2 = (2 * sigma**2).clamp_min(1e-12)[:, None]
    weights = torch.exp(-d2 / s2)[:, (pos[:, None] - pos[None, :]).abs()]
    weights = weights / weights.sum(dim=-1, keepdim=True)
    eye = torch.eye(size, device=sigma.device, dtype=sigma.dtype)
    return torch.where((sigma > 0)[:, None, None], weights, eye)


def _blur(x: torch.Tensor, cfg: Blur, generator: torch.Generator) -> torch.Tensor:
    """With probability p per image a Gaussian blur of std U(*sigma) pixels: two batched
    matmuls with per-image smoothing matrices (rows, then columns)."""
    n, c, h, w = x.shape
    apply = torch.rand(n, generator=generator, device=x.device) < cfg.p
    sigma = _uniform(n, cfg.sigma[0], cfg.sigma[1], generator, x.device) * apply
    # Only the images drawn for a blur are computed (a quarter by default); the others are
    # copied unchanged, as the identity matrices of blur_matrices would leave them.
    picked = apply.nonzero().squeeze(1)
    sigma = sigma.index_select(0, picked).to(x.dtype)
    sub = x.index_select(0, picked)
    rows = blur_matrices(sigma, h)
    cols = rows if h == w else blur_matrices(sigma, w)
    if c == 1:
        blurred = (rows @ sub.reshape(-1, h, w) @ cols.transpose(-1, -2)).view(-1, c, h, w)
    else:  # several channels: blur each alike
        blurred = rows[:, None] @ sub @ cols[:, None].transpose(-1, -2)
    return x.clone().index_copy_(0, picked, blurred)


def augment_batch(x: torch.Tensor, cfg: Augment, generator: torch.Generator) -> torch.Tensor:
    """Augment a batch ``(B, C, H, W)`` in ``[0, 1]``, with independent parameters per image.

    ``generator`` must live on ``x.device``; it drives every random draw, so the same seed
    gives the same output. Returns a tensor of the same shape, dtype and device, clamped to
    ``[0, 1]``. Returns ``x`` itself when ``cfg.enabled`` is False or every part is off.
    """
    if not cfg.enabled:
        return x
    if x.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point batch, got {x.dtype}")
    if x.shape[0] == 0:
        return x
    orig = x
    out_dtype = x.dtype
    # grid_sample / affine_grid lack half kernels on CPU; work in float32 there.
    if x.dtype not in (torch.float32, torch.float64) and x.device.type == "cpu":
        x = x.float()

    out = x
    changed = False
    if cfg.affine.enabled:
        out, changed = _geometric(out, cfg, generator), True
    if cfg.blur.enabled:
        out, changed = _blur(out, cfg.blur, generator), True
    if not changed:
        return orig
    # Every part returns a new tensor, so the clamp runs in place (the input is never
    # modified): a new tensor per chunk costs more in page faults than the clamp itself.
    return out.clamp_(0.0, 1.0).to(out_dtype)
