"""Tests for mnistgap.augment: batched per-image augmentation with torchvision semantics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from mnistgap.augment import (
    _affine_grid,
    affine_matrices,
    augment_batch,
    elastic_displacement,
    random_affine_matrices,
    sample_affine_params,
)
from mnistgap.params import (
    Affine,
    Augment,
    Contrast,
    Elastic,
    Erasing,
    Noise,
    Thickness,
)

OFF = Augment(affine=Affine(enabled=False))  # every part off


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _blob(h: int = 28, w: int = 28, cx: float = 11.0, cy: float = 15.0) -> torch.Tensor:
    """Smooth off-centre anisotropic blob (1, 1, h, w) in [0, 1]: bilinear-friendly."""
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    return torch.exp(-((xx - cx) ** 2) / 30.0 - ((yy - cy) ** 2) / 12.0).view(1, 1, h, w)


def _digits(n: int, seed: int = 0) -> torch.Tensor:
    """n MNIST-like images: a few smooth strokes on a black background."""
    g = _gen(seed)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    img = torch.zeros(n, 1, 28, 28)
    for _ in range(3):
        c = 6 + 16 * torch.rand(n, 2, generator=g)
        d = torch.sqrt(
            (xx - c[:, 0].view(-1, 1, 1)) ** 2 + (yy - c[:, 1].view(-1, 1, 1)) ** 2
        ).unsqueeze(1)
        img = torch.maximum(img, torch.clamp(2.0 - (d - 4.0).abs(), 0.0, 1.0))
    return img


def _all_on() -> Augment:
    return Augment(
        elastic=Elastic(enabled=True),
        thickness=Thickness(enabled=True),
        erasing=Erasing(enabled=True),
        noise=Noise(enabled=True),
        contrast=Contrast(enabled=True, gamma=(0.8, 1.25)),
    )


def _only(**parts: object) -> Augment:
    """Config with affine off and only the given parts set."""
    return OFF.model_copy(update=parts)


# --- basic contract ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_range_dtype(dtype: torch.dtype) -> None:
    x = _digits(32).to(dtype)
    out = augment_batch(x, _all_on(), _gen())
    assert out.shape == x.shape
    assert out.dtype == dtype
    assert out.device == x.device
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, x)


def test_half_precision_on_cpu_keeps_dtype() -> None:
    x = _digits(4).half()
    out = augment_batch(x, _all_on(), _gen())
    assert out.dtype == torch.float16 and out.shape == x.shape


def test_deterministic_for_seed_and_seed_dependent() -> None:
    x = _digits(16)
    a = augment_batch(x, _all_on(), _gen(1))
    b = augment_batch(x, _all_on(), _gen(1))
    c = augment_batch(x, _all_on(), _gen(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_independent_parameters_per_image() -> None:
    x = _digits(1).expand(16, 1, 28, 28).contiguous()
    out = augment_batch(x, Augment(), _gen())  # affine only (the default)
    flat = out.flatten(1)
    # Every pair of rows differs: distinct parameters per image, not one per batch.
    dists = torch.cdist(flat, flat) + torch.eye(16) * 1e9
    assert float(dists.min()) > 1e-3


def test_identity_when_disabled() -> None:
    x = _digits(8)
    assert augment_batch(x, Augment(enabled=False), _gen()) is x
    disabled_but_parts_on = _all_on().model_copy(update={"enabled": False})
    assert augment_batch(x, disabled_but_parts_on, _gen()) is x
    assert torch.equal(augment_batch(x, OFF, _gen()), x)


@pytest.mark.parametrize(
    "cfg",
    [Augment(), _only(thickness=Thickness(enabled=True, p=0.0)), "all"],
    ids=["affine", "thickness_never_applied", "all"],
)
def test_input_batch_is_never_modified(cfg: Augment | str) -> None:
    """The final clamp runs in place only on tensors augmentation made itself."""
    x = _digits(8) * 1.5 - 0.25  # values outside [0, 1], which the clamp would change
    before = x.clone()
    out = augment_batch(x, _all_on() if cfg == "all" else cfg, _gen())
    assert torch.equal(x, before)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        augment_batch(torch.zeros(1, 28, 28), Augment(), _gen())
    with pytest.raises(TypeError):
        augment_batch(torch.zeros(1, 1, 28, 28, dtype=torch.uint8), Augment(), _gen())


# --- affine: equivalence with torchvision -----------------------------------------------

AFFINE_CASES = [
    # angle, tx, ty, scale, shear_x, shear_y
    (0.0, 3.0, -2.0, 1.0, 0.0, 0.0),
    (4.5, 1.0, 2.0, 0.9, 3.0, 0.0),
    (-5.0, -3.0, 1.0, 1.2, -4.0, 0.0),
    (30.0, 0.0, 0.0, 1.0, 0.0, 0.0),
    (-12.0, 2.0, 0.0, 0.8, 5.0, 7.0),  # shear_y too: exercises the full matrix
]


def _warp(img: torch.Tensor, p: tuple[float, ...], size: tuple[int, int]) -> torch.Tensor:
    theta = affine_matrices(*(torch.tensor([v]) for v in p), size=size)
    grid = F.affine_grid(theta, [1, 1, *size], align_corners=False)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@pytest.mark.parametrize("p", AFFINE_CASES)
@pytest.mark.parametrize("size", [(28, 28), (20, 32)])
def test_affine_matches_torchvision(p: tuple[float, ...], size: tuple[int, int]) -> None:
    img = _blob(*size, cx=size[1] * 0.4, cy=size[0] * 0.55)
    angle, tx, ty, scale, shx, shy = p
    ref = TF.affine(
        img,
        angle=angle,
        translate=[tx, ty],
        scale=scale,
        shear=[shx, shy],
        interpolation=InterpolationMode.BILINEAR,
    )
    ours = _warp(img, p, size)
    assert float((ours - ref).abs().mean()) < 1e-4  # brief asked < 0.02; we match exactly
    assert float((ours - ref).abs().max()) < 1e-4


@pytest.mark.parametrize("size", [(28, 28), (20, 32)])
def test_fast_affine_grid_equals_torch_affine_grid(size: tuple[int, int]) -> None:
    """The one-GEMM grid builder gives F.affine_grid's numbers, already contiguous."""
    theta = random_affine_matrices(37, Affine(degrees=30, shear=10), _gen(3), "cpu", size=size)
    ours = _affine_grid(theta, *size)
    ref = F.affine_grid(theta, [37, 1, *size], align_corners=False)
    assert ours.shape == ref.shape and ours.is_contiguous()
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_integer_translation_is_exact_shift() -> None:
    img = _digits(1)
    out = _warp(img, (0.0, 3.0, -2.0, 1.0, 0.0, 0.0), (28, 28))
    expected = torch.zeros_like(img)
    expected[..., 0:26, 3:28] = img[..., 2:28, 0:25]  # right by 3, up by 2
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_affine_with_no_range_is_identity() -> None:
    x = _digits(4)
    cfg = Augment(affine=Affine(degrees=0, translate=0, scale=(1.0, 1.0), shear=0))
    torch.testing.assert_close(augment_batch(x, cfg, _gen()), x, atol=1e-5, rtol=0)


def test_random_matrices_built_from_sampled_params() -> None:
    cfg = Affine()
    p = sample_affine_params(10, cfg, _gen(3), "cpu")
    theta = random_affine_matrices(10, cfg, _gen(3), "cpu", torch.float64)
    assert theta.shape == (10, 2, 3) and theta.dtype == torch.float64
    torch.testing.assert_close(theta, affine_matrices(*p, size=(28, 28), dtype=torch.float64))


def test_affine_parameter_distribution() -> None:
    n = 20_000
    p = sample_affine_params(n, Affine(), _gen(), "cpu")
    assert float(p.angle.abs().max()) <= 5.0 and float(p.angle.min()) < -4.9
    assert float(p.angle.max()) > 4.9
    assert float(p.scale.min()) >= 0.8 and float(p.scale.max()) <= 1.2
    assert abs(float(p.scale.mean()) - 1.0) < 0.01
    assert float(p.shear_x.abs().max()) <= 5.0 and float(p.shear_x.std()) > 2.5
    assert torch.all(p.shear_y == 0)  # single shear number -> x only, as torchvision
    limit = round(0.1 * 28)  # 3
    for t in (p.tx, p.ty):
        assert torch.equal(t, torch.round(t))
        assert set(t.long().tolist()) == set(range(-limit, limit + 1))
        # round(U(-2.8, 2.8)) puts (2.8 - 2.5) / 5.6 of the mass on each of +-3
        assert abs(float((t == 3).float().mean()) - 0.3 / 5.6) < 0.01


def test_disabled_affine_params_are_identity() -> None:
    p = sample_affine_params(5, Affine(enabled=False), _gen(), "cpu")
    theta = affine_matrices(*p, size=(28, 28))
    torch.testing.assert_close(theta, torch.eye(2, 3).expand(5, 2, 3))


# --- elastic ------------------------------------------------------------------------------


def test_elastic_alpha_zero_equals_affine_only() -> None:
    x = _digits(8)
    affine_only = augment_batch(x, Augment(), _gen(5))
    zero = Augment(elastic=Elastic(enabled=True, alpha=0.0))
    assert torch.equal(augment_batch(x, zero, _gen(5)), affine_only)
    strong = Augment(elastic=Elastic(enabled=True))
    assert not torch.allclose(augment_batch(x, strong, _gen(5)), affine_only)


def test_elastic_field_is_gaussian_smoothed_noise() -> None:
    """The matmul smoothing equals a reflect-padded separable Gaussian conv2d."""
    cfg = Elastic(enabled=True, alpha=34.0, sigma=4.0)
    disp = elastic_displacement(6, cfg, _gen(7), (28, 28), "cpu")
    assert disp.shape == (6, 28, 28, 2)
    raw = torch.rand((6, 2, 28, 28), generator=_gen(7)) * 2 - 1
    r = math.ceil(2 * cfg.sigma)
    xs = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (xs / cfg.sigma) ** 2)
    k = k / k.sum()
    sm = F.conv2d(
        F.pad(raw, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(2, 1, 1, 1), groups=2
    )
    sm = F.conv2d(
        F.pad(sm, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(2, 1, 1, 1), groups=2
    )
    expected = sm.permute(0, 2, 3, 1) * cfg.alpha * (2.0 / 28)
    torch.testing.assert_close(disp, expected, atol=1e-5, rtol=1e-4)
    # Simard's alpha=34, sigma=4 gives displacements of roughly a pixel or two.
    rms_px = float((disp * 14).pow(2).mean().sqrt())
    assert 0.5 < rms_px < 3.0


def test_elastic_only_changes_image() -> None:
    x = _digits(4)
    out = augment_batch(x, _only(elastic=Elastic(enabled=True)), _gen())
    assert float((out - x).abs().mean()) > 1e-3


# --- thickness ---------------------------------------------------------------------------


def test_thickness_dilates_or_erodes() -> None:
    x = _digits(1).expand(64, 1, 28, 28).contiguous()
    out = augment_batch(x, _only(thickness=Thickness(enabled=True, p=1.0)), _gen())
    padded = F.pad(x[:1], (1, 1, 1, 1))
    dil = F.max_pool2d(padded, 3, stride=1)
    ero = -F.max_pool2d(-padded, 3, stride=1)
    is_dil = (out == dil).flatten(1).all(1)
    is_ero = (out == ero).flatten(1).all(1)
    assert bool((is_dil | is_ero).all())
    assert 16 < int(is_dil.sum()) < 48  # about half each
    mass = out.flatten(1).sum(1)
    m0 = float(x[0].sum())
    assert bool((mass[is_dil] > m0).all()) and bool((mass[is_ero] < m0).all())


def test_thickness_probability_zero_is_identity() -> None:
    x = _digits(8)
    out = augment_batch(x, _only(thickness=Thickness(enabled=True, p=0.0)), _gen())
    assert torch.equal(out, x)


# --- erasing -----------------------------------------------------------------------------


def test_erasing_rectangle_and_area() -> None:
    n, side = 200, 28
    cfg = Erasing(enabled=True, p=1.0)
    x = torch.ones(n, 1, side, side)
    out = augment_batch(x, _only(erasing=cfg), _gen())
    zero = out[:, 0] == 0
    assert bool(((out == 0) | (out == 1)).all())
    fracs = []
    for m in zero:  # the checks, not the augmentation, loop over images
        rows = torch.nonzero(m.any(1)).flatten()
        cols = torch.nonzero(m.any(0)).flatten()
        assert rows.numel() > 0, "p=1 and every candidate fits at these scales"
        h = int(rows[-1] - rows[0] + 1)
        w = int(cols[-1] - cols[0] + 1)
        assert int(m.sum()) == h * w  # a filled axis-aligned rectangle
        # h = round(sqrt(A*r)), w = round(sqrt(A/r)) so A lies in [(h-.5)(w-.5), (h+.5)(w+.5)]
        lo, hi = cfg.scale[0] * side * side, cfg.scale[1] * side * side
        assert (h - 0.5) * (w - 0.5) <= hi and (h + 0.5) * (w + 0.5) >= lo
        assert (h - 0.5) / (w + 0.5) <= cfg.ratio[1] and (h + 0.5) / (w - 0.5) >= cfg.ratio[0]
        fracs.append(h * w / side**2)
    mean = sum(fracs) / len(fracs)
    assert abs(mean - 0.085) < 0.015  # E[U(0.02, 0.15)]


def test_erasing_probability() -> None:
    x = torch.ones(1000, 1, 28, 28)
    out = augment_batch(x, _only(erasing=Erasing(enabled=True, p=0.3)), _gen())
    erased = (out == 0).flatten(1).any(1).float().mean()
    assert abs(float(erased) - 0.3) < 0.05


# --- noise and contrast --------------------------------------------------------------------


def test_noise_std() -> None:
    x = torch.full((2000, 1, 28, 28), 0.5)
    out = augment_batch(x, _only(noise=Noise(enabled=True, std=0.1)), _gen())
    per_image = (out - 0.5).flatten(1).std(1)
    assert float(per_image.max()) < 0.1 * 1.1
    assert float(per_image.min()) < 0.01
    assert abs(float(per_image.mean()) - 0.05) < 0.004  # E[U(0, 0.1)]
    assert abs(float(out.mean()) - 0.5) < 1e-3


def test_contrast_scales_ink() -> None:
    x = _digits(8)
    half = augment_batch(x, _only(contrast=Contrast(enabled=True, low=0.5, high=0.5)), _gen())
    torch.testing.assert_close(half, 0.5 * x)
    torch.testing.assert_close(half.flatten(1).amax(1), 0.5 * x.flatten(1).amax(1))

    x = _digits(300)
    out = augment_batch(x, _only(contrast=Contrast(enabled=True)), _gen())
    ratio = out.flatten(1).amax(1) / x.flatten(1).amax(1)
    assert float(ratio.min()) >= 0.6 - 1e-6 and float(ratio.max()) <= 1.0 + 1e-6
    assert float(ratio.min()) < 0.65 and float(ratio.max()) > 0.95
    assert bool((out[x == 0] == 0).all())  # background untouched


def test_contrast_gamma() -> None:
    x = _digits(4)
    cfg = Contrast(enabled=True, low=1.0, high=1.0, gamma=(2.0, 2.0))
    torch.testing.assert_close(augment_batch(x, _only(contrast=cfg), _gen()), x**2)


# --- device ------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_and_determinism() -> None:
    x = _digits(64).cuda()
    a = augment_batch(x, _all_on(), torch.Generator("cuda").manual_seed(0))
    b = augment_batch(x, _all_on(), torch.Generator("cuda").manual_seed(0))
    assert a.device.type == "cuda" and a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # Same parameters on CPU and CUDA give the same warp.
    p = (4.5, 1.0, 2.0, 0.9, 3.0, 0.0)
    cpu = _warp(_blob(), p, (28, 28))
    theta = affine_matrices(*(torch.tensor([v], device="cuda") for v in p), size=(28, 28))
    grid = F.affine_grid(theta, [1, 1, 28, 28], align_corners=False)
    gpu = F.grid_sample(_blob().cuda(), grid, mode="bilinear", align_corners=False)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
