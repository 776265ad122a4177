"""Compare the speed of batched MNIST augmentation options.

Times one pass of augmentation over N (default 51,000: one training epoch) 28x28 images:

(a) mnistgap.augment.augment_batch, affine only (per-image parameters: the default);
(b) augment_batch, affine and blur (every part on);
(c) torchvision.transforms.v2.RandomAffine on a batch tensor -- ONE parameter set per call,
    i.e. per batch, NOT per image (fast, but not the same augmentation);
(d) torchvision v2 RandomAffine per image in a Python loop (a subset, extrapolated);
(e) kornia.augmentation.RandomAffine on the batch (per-image parameters), only if kornia can
    be imported (``--extra-path DIR`` prepends DIR to sys.path, e.g. a ``pip install
    --target DIR kornia kornia-rs --no-deps`` made outside the project's venv).

All affine variants use bilinear interpolation and the same ranges as
``RandomAffine(degrees=5, translate=(0.1, 0.1), scale=(0.8, 1.2), shear=5)``. The data are
synthetic MNIST-like strokes (speed does not depend on the content).

Run: ``python benchmarks/augment_speed.py [--device cuda] [--n 51000]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mnistgap.augment import augment_batch
from mnistgap.params import Augment, Blur

DEGREES, TRANSLATE, SCALE, SHEAR = 5.0, (0.1, 0.1), (0.8, 1.2), 5.0


def synthetic_digits(n: int, seed: int = 0, chunk: int = 4096) -> torch.Tensor:
    """n MNIST-like 28x28 images in [0, 1]: three ring/stroke fragments on black."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    out = []
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        img = torch.zeros(m, 1, 28, 28)
        for _ in range(3):
            c = 6 + 16 * torch.rand(m, 2, generator=g)
            rad = 3 + 4 * torch.rand(m, 1, 1, generator=g)
            d = torch.sqrt((xx - c[:, 0, None, None]) ** 2 + (yy - c[:, 1, None, None]) ** 2)
            img = torch.maximum(img, torch.clamp(1.5 - (d - rad).abs(), 0.0, 1.0).unsqueeze(1))
        out.append(img)
    return torch.cat(out)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batched(
    fn: Callable[[torch.Tensor], torch.Tensor], data: torch.Tensor, batch: int
) -> float:
    """Seconds for one pass of ``fn`` over ``data`` in batches (after one warm-up batch)."""
    fn(data[:batch])
    _sync(data.device)
    t0 = time.perf_counter()
    for start in range(0, data.shape[0], batch):
        fn(data[start : start + batch])
    _sync(data.device)
    return time.perf_counter() - t0


def time_per_image(
    fn: Callable[[torch.Tensor], torch.Tensor], data: torch.Tensor, subset: int
) -> float:
    """Seconds for one pass over ``data`` one image at a time, extrapolated from ``subset``."""
    for i in range(10):
        fn(data[i])
    _sync(data.device)
    t0 = time.perf_counter()
    for i in range(subset):
        fn(data[i])
    _sync(data.device)
    return (time.perf_counter() - t0) * data.shape[0] / subset


def main(argv: list[str] | None = None) -> None:
    """Run the comparison and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=51_000, help="images per pass")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--loop-subset", type=int, default=2000, help="images timed in (d)")
    ap.add_argument("--extra-path", action="append", default=[], help="prepend to sys.path")
    args = ap.parse_args(argv)
    for p in args.extra_path:
        sys.path.insert(0, p)

    device = torch.device(args.device)
    from torchvision.transforms import InterpolationMode, v2

    try:
        import kornia.augmentation as kaug
    except ImportError as exc:
        kaug = None
        kornia_note = f"kornia not importable ({exc.__class__.__name__}); (e) skipped"
    else:
        import kornia

        kornia_note = f"kornia {kornia.__version__}"

    data = synthetic_digits(args.n).to(device)
    gen = torch.Generator(device).manual_seed(0)
    cfg_affine = Augment(blur=Blur(enabled=False))
    cfg_all = Augment(blur=Blur(enabled=True))
    tv_affine = v2.RandomAffine(
        DEGREES, TRANSLATE, SCALE, SHEAR, interpolation=InterpolationMode.BILINEAR
    )

    rows: list[tuple[str, str, str, float]] = []
    for b in args.batch_sizes:
        rows.append(
            (
                "(a) augment_batch affine",
                str(b),
                "per image",
                time_batched(lambda x: augment_batch(x, cfg_affine, gen), data, b),
            )
        )
        rows.append(
            (
                "(b) augment_batch all on",
                str(b),
                "per image",
                time_batched(lambda x: augment_batch(x, cfg_all, gen), data, b),
            )
        )
        rows.append(
            ("(c) tv v2 RandomAffine(batch)", str(b), "PER BATCH", time_batched(tv_affine, data, b))
        )
        if kaug is not None:
            k_affine = kaug.RandomAffine(
                DEGREES, TRANSLATE, SCALE, SHEAR, resample="bilinear", p=1.0
            ).to(device)
            rows.append(
                ("(e) kornia RandomAffine", str(b), "per image", time_batched(k_affine, data, b))
            )
    subset = min(args.loop_subset, args.n)
    rows.append(
        (
            "(d) tv v2 RandomAffine loop",
            "1",
            "per image",
            time_per_image(tv_affine, data, subset),
        )
    )

    print(
        f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
        f"n={args.n} images (synthetic 28x28); {kornia_note}"
    )
    print(f"{'method':36} {'batch':>5} {'params':>9} {'s/pass':>8} {'img/s':>10}")
    for name, b, params, sec in rows:
        print(f"{name:36} {b:>5} {params:>9} {sec:8.2f} {args.n / sec:10.0f}")
    print(
        "notes: (c) v2.RandomAffine on a batched tensor draws ONE parameter set per call, so "
        "all images of a batch get the same warp (not per-image augmentation).\n"
        f"       (d) timed on {subset} images and extrapolated to {args.n}."
    )


if __name__ == "__main__":
    main()
