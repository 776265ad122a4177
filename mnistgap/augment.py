"""Batched, per-image random augmentation of MNIST-style tensors for training.

Every image in a batch gets its own random parameters, yet no step loops over images in
Python: parameters are drawn as tensors from one ``torch.Generator`` (so a seed fixes the
result) and applied with batched tensor ops on whatever device the batch lives on.

Input and output are float tensors ``(B, C, H, W)`` in ``[0, 1]`` with 0 = background and
1 = ink (MNIST is ``(B, 1, 28, 28)``). Normalisation (``Normalize((0.5,), (0.5,))``) is
*not* done here; it belongs after augmentation.

Order of operations (each one optional; the settings are :class:`mnistgap.params.Augment`):

1. geometry: random affine (torchvision ``RandomAffine`` semantics) and elastic distortion
   (Simard et al. 2003), combined into ONE sampling grid and ONE bilinear ``grid_sample``;
2. stroke thickness: 3x3 max filter (dilate) or min filter (erode);
3. contrast: scale ink intensity (optionally a gamma first), modelling faint pens;
4. additive Gaussian noise;
5. random erasing of a rectangle (torchvision ``RandomErasing`` semantics, value 0);

then clamp to ``[0, 1]``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from mnistgap.params import Affine, Augment, Contrast, Elastic, Erasing, Noise, Thickness

# Attempts per image when looking for an erasing rectangle that fits, as torchvision does.
_ERASING_ATTEMPTS = 10


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
    :func:`sample_affine_params` and :func:`affine_matrices`)."""
    p = sample_affine_params(n, cfg, generator, device, size)
    return affine_matrices(*p, size=size, dtype=dtype)


def _gaussian_kernel1d(sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd size ``2*ceil(2*sigma)+1`` (about 4*sigma+1 taps)."""
    radius = max(1, math.ceil(2.0 * sigma))
    xs = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (xs / sigma) ** 2)
    return k / k.sum()


def _smoothing_matrix(
    n: int, sigma: float, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """``(n, n)`` matrix S with ``signal @ S`` = Gaussian convolution along the last axis.

    Built by convolving each unit impulse with the kernel after reflect padding (as
    torchvision's ElasticTransform pads; zero padding would damp the field at the border),
    so it is exactly that 1-D convolution written as a banded matrix.
    """
    k = _gaussian_kernel1d(sigma, device, dtype)
    r = k.numel() // 2
    mode = "reflect" if r < n else "replicate"  # reflect needs pad < length
    impulses = torch.eye(n, device=device, dtype=dtype).unsqueeze(1)  # (n, 1, n)
    return F.conv1d(F.pad(impulses, (r, r), mode=mode), k.view(1, 1, -1)).squeeze(1)


def elastic_displacement(
    n: int,
    cfg: Elastic,
    generator: torch.Generator,
    size: tuple[int, int],
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Random smoothed displacement fields ``(n, H, W, 2)`` in affine_grid's normalised units.

    Per pixel and axis ``U(-1, 1)``, smoothed by a separable Gaussian, times ``alpha`` pixels,
    then divided by half the image side so that it can be added to an ``F.affine_grid`` grid
    (last axis is (x, y)).

    The separable convolution is applied as two batched matmuls with banded matrices
    (``S_h^T @ field @ S_w``), which is the same linear map as a grouped ``F.conv2d`` but about
    25x faster on CPU for 28x28 fields (0.2 ms against 5-38 ms per batch of 128).
    """
    device = torch.device(device)
    h, w = size
    field_ = torch.rand((n, 2, h, w), generator=generator, device=device, dtype=torch.float32)
    field_ = (field_ * 2.0 - 1.0).to(dtype)
    s_w = _smoothing_matrix(w, cfg.sigma, device, dtype)
    s_h = s_w if h == w else _smoothing_matrix(h, cfg.sigma, device, dtype)
    field_ = s_h.T @ field_ @ s_w
    scale = torch.tensor([2.0 / w, 2.0 / h], device=device, dtype=dtype)
    return field_.permute(0, 2, 3, 1) * (cfg.alpha * scale)


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
    """Affine and elastic in one grid and one bilinear grid_sample.

    torchvision's RandomAffine on PIL images defaults to NEAREST; we use bilinear because
    MNIST digits are anti-aliased and nearest would add jagged, blocky edges that the test
    images do not have. Zero padding = background enters from outside the image.
    """
    n, _, h, w = x.shape
    # Affine parameters are drawn before the elastic field, so the affine part for a given
    # seed is the same whether elastic is on or off (and alpha=0 equals affine-only).
    theta = random_affine_matrices(n, cfg.affine, generator, x.device, x.dtype, size=(h, w))
    grid = _affine_grid(theta, h, w)
    if cfg.elastic.enabled:
        grid = grid + elastic_displacement(n, cfg.elastic, generator, (h, w), x.device, x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _box_extreme(x: torch.Tensor, r: int, dilate: bool) -> torch.Tensor:
    """Square ``(2r+1)`` max (dilate) or min (erode) filter; outside the image counts as 0.

    Done separably with shifted slices and ``torch.maximum``/``minimum``: on CPU this is
    about 10x faster than ``F.max_pool2d(stride=1)`` for 28x28 batches. Zero padding means
    the outside is background, so erosion also thins ink touching the border.
    """
    op = torch.maximum if dilate else torch.minimum
    h, w = x.shape[-2:]
    p = F.pad(x, (r, r, r, r), value=0.0)
    rows = p[..., :, 0:w]
    for i in range(1, 2 * r + 1):
        rows = op(rows, p[..., :, i : i + w])
    out = rows[..., 0:h, :]
    for i in range(1, 2 * r + 1):
        out = op(out, rows[..., i : i + h, :])
    return out


def _thickness(x: torch.Tensor, cfg: Thickness, generator: torch.Generator) -> torch.Tensor:
    """Per image: with prob p dilate (max filter) or erode (min filter), 50/50, radius
    uniform in ``1..max_radius``. Every variant is computed for the whole batch and picked
    per image with ``torch.where`` (cheap at 28x28, and no per-image Python)."""
    n = x.shape[0]
    dev = x.device
    apply = torch.rand(n, generator=generator, device=dev) < cfg.p
    dilate = (torch.rand(n, generator=generator, device=dev) < 0.5).view(-1, 1, 1, 1)
    radius = torch.randint(1, cfg.max_radius + 1, (n,), generator=generator, device=dev)
    out = x
    for r in range(1, cfg.max_radius + 1):
        chosen = torch.where(dilate, _box_extreme(x, r, True), _box_extreme(x, r, False))
        out = torch.where((apply & (radius == r)).view(-1, 1, 1, 1), chosen, out)
    return out


def _contrast(x: torch.Tensor, cfg: Contrast, generator: torch.Generator) -> torch.Tensor:
    """Per image ``c * x**g``; ``g`` drawn only when the gamma range is not (1, 1)."""
    n = x.shape[0]
    factor = _uniform(n, cfg.low, cfg.high, generator, x.device).to(x.dtype).view(-1, 1, 1, 1)
    if cfg.gamma != (1.0, 1.0):
        g = _uniform(n, cfg.gamma[0], cfg.gamma[1], generator, x.device).to(x.dtype)
        # clamp: grid_sample/noise can leave tiny negatives, and pow of those is NaN.
        x = x.clamp(min=0.0) ** g.view(-1, 1, 1, 1)
    return x * factor


def _noise(x: torch.Tensor, cfg: Noise, generator: torch.Generator) -> torch.Tensor:
    """Additive Gaussian noise with a per-image std ``U(0, std)``."""
    n = x.shape[0]
    std = _uniform(n, 0.0, cfg.std, generator, x.device).to(x.dtype).view(-1, 1, 1, 1)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    return x + std * noise.to(x.dtype)


def _erasing(x: torch.Tensor, cfg: Erasing, generator: torch.Generator) -> torch.Tensor:
    """torchvision RandomErasing (value 0), batched: 10 candidate boxes per image, first fit."""
    n, _, h, w = x.shape
    dev = x.device
    shape = (n, _ERASING_ATTEMPTS)

    def u(lo: float, hi: float) -> torch.Tensor:
        r = torch.rand(shape, generator=generator, device=dev, dtype=torch.float32)
        return lo + (hi - lo) * r

    apply = torch.rand(n, generator=generator, device=dev) < cfg.p
    erase_area = h * w * u(cfg.scale[0], cfg.scale[1])
    aspect = torch.exp(u(math.log(cfg.ratio[0]), math.log(cfg.ratio[1])))
    eh = torch.round(torch.sqrt(erase_area * aspect)).long()
    ew = torch.round(torch.sqrt(erase_area / aspect)).long()
    fits = (eh < h) & (ew < w)
    # Top-left corner i ~ randint(0, h - eh + 1), as torchvision; the floor of a scaled
    # uniform is that integer distribution. Clamp guards the u == 1.0 float edge case.
    top = torch.minimum((u(0.0, 1.0) * (h - eh + 1)).long(), (h - eh).clamp(min=0))
    left = torch.minimum((u(0.0, 1.0) * (w - ew + 1)).long(), (w - ew).clamp(min=0))
    first = torch.argmax(fits.to(torch.uint8), dim=1, keepdim=True)  # first True (or 0)
    apply = apply & fits.any(dim=1)
    eh, ew, top, left = (t.gather(1, first).squeeze(1) for t in (eh, ew, top, left))

    rows = torch.arange(h, device=dev)
    cols = torch.arange(w, device=dev)
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])  # (n, h)
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])  # (n, w)
    mask = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
    return x.masked_fill(mask[:, None], 0.0)


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
    if cfg.affine.enabled or cfg.elastic.enabled:
        out, changed = _geometric(out, cfg, generator), True
    if cfg.thickness.enabled:
        out, changed = _thickness(out, cfg.thickness, generator), True
    if cfg.contrast.enabled:
        out, changed = _contrast(out, cfg.contrast, generator), True
    if cfg.noise.enabled:
        out, changed = _noise(out, cfg.noise, generator), True
    if cfg.erasing.enabled:
        out, changed = _erasing(out, cfg.erasing, generator), True
    if not changed:
        return orig
    # Every part returns a new tensor, so the clamp runs in place (the input is never
    # modified): a new tensor per chunk costs more in page faults than the clamp itself.
    return out.clamp_(0.0, 1.0).to(out_dtype)
