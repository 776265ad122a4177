"""Render a class-digit folder's digits as phone photos of paper, one folder per variant.

    python scripts/make_photo_folder.py SRC OUT [--side 280] [--seed 0]

Each readable ``<digit>-<group>-<member>.<ext>`` of SRC (read with the pipeline's own reader,
so the ink is the digit as the model sees it) is written to ``OUT/<variant>/`` as

* ``photo``  black ink on cream paper, light falling off across the sheet, a hard shadow over
  one corner, a few specks of dirt, in half of them the dark table along one edge, sensor
  noise, JPEG quality 60-80 (``.jpg``);
* ``blue``   the same with blue ballpoint ink;
* ``pencil`` the same with pencil-grey ink;
* ``exif``   the clean digit as dark ink on white, pixels stored a quarter turn
  counter-clockwise with EXIF Orientation 6, so ``exif_transpose`` restores them (``.jpg``);
* ``heic``   the clean digit as a HEIC copy (``.heic``);
* ``jpegpng`` the clean digit's JPEG bytes under a ``.png`` name.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from mnistgap.class_folder import NAME_RE
from mnistgap.png import read_digit
from mnistgap.recipe import ImageError

VARIANTS = ("photo", "blue", "pencil", "exif", "heic", "jpegpng")
_INKS = {"photo": (0.12, 0.12, 0.14), "blue": (0.15, 0.25, 0.65), "pencil": (0.45, 0.45, 0.47)}


def _save(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def paper_photo(ink28: np.ndarray, ink_rgb: tuple[float, ...], side: int, rng) -> bytes:
    """``ink28`` (light on black, uint8) as a JPEG photo of ink on unevenly lit paper."""
    ink = np.asarray(Image.fromarray(ink28).resize((side, side), Image.Resampling.BICUBIC))
    a = (ink.astype(np.float32) / 255.0)[..., None]
    y, x = np.mgrid[0:side, 0:side] / side
    angle = rng.uniform(0, 2 * np.pi)
    light = 0.95 - 0.3 * (np.cos(angle) * x + np.sin(angle) * y + 1) / 2
    light = light * np.where(x + 0.6 * y > rng.uniform(1.1, 1.4), 0.65, 1.0)  # a shadow
    light = light[..., None]
    paper = light * np.array([0.97, 0.95, 0.9])
    img = paper * (1 - a) + light * np.array(ink_rgb) * a
    for _ in range(int(rng.integers(2, 6))):  # specks of dirt, 1-3 px
        cy, cx, r = rng.uniform(0, side), rng.uniform(0, side), rng.uniform(1, 3)
        img[(y * side - cy) ** 2 + (x * side - cx) ** 2 <= r * r] *= 0.3
    if rng.random() < 0.5:  # the table beyond the sheet's edge, along one side
        width = int(rng.uniform(0.03, 0.08) * side)
        edge = [np.s_[:width], np.s_[-width:], np.s_[:, :width], np.s_[:, -width:]]
        img[edge[int(rng.integers(4))]] = np.array([0.25, 0.2, 0.15])
    img = img + rng.normal(0, 0.015, img.shape)
    out = Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8))
    return _save(out, "JPEG", quality=int(rng.integers(60, 81)))


def render(src: Path, out: Path, side: int = 280, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    for v in VARIANTS:
        (out / v).mkdir(parents=True, exist_ok=True)
    n = 0
    for f in sorted(src.iterdir()):
        if not NAME_RE.fullmatch(f.name):
            continue
        try:
            ink = read_digit(f)
        except ImageError:
            continue
        stem = f.name.rsplit(".", 1)[0]
        for v, colour in _INKS.items():
            (out / v / f"{stem}.jpg").write_bytes(paper_photo(ink, colour, side, rng))
        clean = Image.fromarray(255 - ink).convert("RGB").resize((side, side))
        exif = Image.Exif()
        exif[0x0112] = 6
        turned = clean.rotate(90, expand=True)
        (out / "exif" / f"{stem}.jpg").write_bytes(
            _save(turned, "JPEG", quality=90, exif=exif.tobytes())
        )
        from pillow_heif import register_heif_opener

        register_heif_opener()
        (out / "heic" / f"{stem}.heic").write_bytes(_save(clean, "HEIF", quality=90))
        (out / "jpegpng" / f"{stem}.png").write_bytes(_save(clean, "JPEG", quality=90))
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--side", type=int, default=280)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n = render(args.src, args.out, args.side, args.seed)
    print(f"rendered {n} digits x {len(VARIANTS)} variants into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
