"""Reading class digits, on synthetic PNGs written to tmp_path: decoding (mnistgap.png), the
MNIST recipe and quality filter (mnistgap.recipe) and the folder scan (mnistgap.class_folder)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistgap import class_folder
from mnistgap.class_folder import NAME_RE, ClassFolderError, DigitName, load_folder, parse_name
from mnistgap.params import Filter
from mnistgap.png import MAX_PIXELS, open_png, read_digit, read_digit_info, to_gray
from mnistgap.recipe import ImageError, preprocess_mnist, preprocess_study, quality_reason

NO_FILTER = Filter(enabled=False)


def load_grayscale(path: Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A PNG file as float32 grey in [0, 1], ink polarity as stored."""
    return to_gray(open_png(path, max_pixels=max_pixels))


# --------------------------------------------------------------------------- helpers
def draw_seven(scale: int = 1, ink: int = 255, paper: int = 0) -> np.ndarray:
    """A thick '7' on a (28*scale)² canvas, uint8, off-centre on purpose."""
    size = 28 * scale
    im = Image.new("L", (size, size), paper)
    draw = ImageDraw.Draw(im)
    pts = [(5 * scale, 4 * scale), (19 * scale, 4 * scale), (9 * scale, 22 * scale)]
    draw.line(pts, fill=ink, width=3 * scale, joint="curve")
    return np.array(im)


def save(path: Path, im: Image.Image) -> Path:
    im.save(path, format="PNG")
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width×height (8-bit grey) with an empty IDAT: a cheap 'bomb'."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    w = img.astype(np.float64)
    ys, xs = np.indices(img.shape)
    return float((ys * w).sum() / w.sum()), float((xs * w).sum() / w.sum())


def bbox_size(img: np.ndarray, level: int = 0) -> tuple[int, int]:
    rows = np.flatnonzero((img > level).any(axis=1))
    cols = np.flatnonzero((img > level).any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def blur(img: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1]/4 blur: forgives sub-pixel differences in where edges fall."""
    out = img.astype(np.float64)
    out = (np.roll(out, 1, 0) + 2 * out + np.roll(out, -1, 0)) / 4
    return (np.roll(out, 1, 1) + 2 * out + np.roll(out, -1, 1)) / 4


# --------------------------------------------------------------------------- parse_name
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("3-4-1.png", DigitName(3, 4, 1)),
        ("0-10-12.png", DigitName(0, 10, 12)),
        ("9-1-2.PNG", DigitName(9, 1, 2)),
        ("7-01-003.Png", DigitName(7, 1, 3)),
    ],
)
def test_parse_name_good(name: str, expected: DigitName) -> None:
    assert parse_name(name) == expected
    assert NAME_RE.fullmatch(name)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("12-1-1.png", "digit outside 0-9"),
        ("x-1-1.png", "name does not match"),
        ("3-a-1.png", "name does not match"),
        ("3-1.png", "name does not match"),
        ("3-1-1-1.png", "name does not match"),
        ("-1-1-1.png", "name does not match"),
        ("3-1-1 .png", "name does not match"),
        ("\u0663-1-1.png", "name does not match"),  # Arabic-Indic 3 is not a 0-9 digit
        ("3-1-1.pdf", "not an image file name"),
        ("3-1-1.png\n", "not an image file name"),
        ("README.md", "not an image file name"),
        (".DS_Store", "not an image file name"),
        ("3-1-" + "9" * 30 + ".png", "member number too large"),
    ],
)
def test_parse_name_bad(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        parse_name(name)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- modes
def _variants(tmp: Path) -> dict[str, Path]:
    """The same '7' saved in every PNG flavour users produce."""
    base = draw_seven()
    zero = np.zeros_like(base)
    full = np.full_like(base, 255)
    out: dict[str, Path] = {}
    out["L"] = save(tmp / "L.png", Image.fromarray(base))
    out["LA"] = save(tmp / "LA.png", Image.fromarray(np.stack([base, full], -1), mode="LA"))
    out["LA_alpha"] = save(tmp / "LA_a.png", Image.fromarray(np.stack([full, base], -1), mode="LA"))
    out["RGB"] = save(tmp / "RGB.png", Image.fromarray(np.stack([base] * 3, axis=-1)))
    out["RGB_red"] = save(tmp / "RGB_red.png", Image.fromarray(np.stack([base, zero, zero], -1)))
    out["RGBA"] = save(tmp / "RGBA.png", Image.fromarray(np.stack([base] * 3 + [full], -1)))
    out["RGBA_alpha_black"] = save(
        tmp / "RGBA_ab.png", Image.fromarray(np.stack([zero] * 3 + [base], -1))
    )
    out["RGBA_alpha_white"] = save(
        tmp / "RGBA_aw.png", Image.fromarray(np.stack([full] * 3 + [base], -1))
    )
    # Dark ink on a transparent sheet whose hidden colour is white (a common export).
    out["RGBA_dark_ink"] = save(
        tmp / "RGBA_dk.png", Image.fromarray(np.stack([255 - base] * 3 + [base], -1))
    )
    # Dark ink whose shade varies along the stroke (colour carries information too).
    shade = np.tile(np.linspace(0, 120, 28).astype(np.uint8), (28, 1))
    out["RGBA_shaded_ink"] = save(
        tmp / "RGBA_sh.png",
        Image.fromarray(np.stack([np.where(base > 0, shade, 255)] * 3 + [base], -1)),
    )
    # White paper with dark ink, opaque except a transparent (black RGB) top-left margin.
    margin = np.full_like(base, 255)
    margin[:3, :10] = 0
    paper_rgb = np.where(margin > 0, 255 - base, 0).astype(np.uint8)
    out["RGBA_paper_margin"] = save(
        tmp / "RGBA_pm.png", Image.fromarray(np.stack([paper_rgb] * 3 + [margin], -1))
    )
    out["P"] = save(tmp / "P.png", Image.fromarray(base).convert("P"))
    pal = Image.fromarray((base > 127).astype(np.uint8)).convert("P")
    pal.putpalette([255, 255, 255, 0, 0, 0])  # index 0 white (transparent), index 1 black ink
    out["P_trns"] = tmp / "P_trns.png"
    pal.save(out["P_trns"], format="PNG", transparency=0)
    out["I16"] = save(tmp / "I16.png", Image.fromarray(base.astype(np.uint16) * 257))
    out["1"] = save(tmp / "one.png", Image.fromarray(base > 127))
    out["dark_on_white"] = save(tmp / "inv.png", Image.fromarray(255 - base))
    out["grey_paper"] = save(tmp / "grey.png", Image.fromarray(draw_seven(ink=230, paper=80)))
    out["mid_grey_paper"] = save(tmp / "mid.png", Image.fromarray(draw_seven(ink=250, paper=140)))
    out["large"] = save(tmp / "large.png", Image.fromarray(draw_seven(scale=10)))
    return out


def test_pngs_are_written_in_the_intended_modes(tmp_path: Path) -> None:
    files = _variants(tmp_path)
    modes = {k: Image.open(p).mode for k, p in files.items()}
    assert modes["LA"] == "LA" and modes["RGBA_alpha_black"] == "RGBA"
    assert modes["P"] == "P" and modes["P_trns"] == "P" and modes["1"] == "1"
    assert modes["I16"].startswith("I")
    assert "transparency" in Image.open(files["P_trns"]).info


def test_every_mode_gives_the_same_mnist_digit(tmp_path: Path) -> None:
    files = _variants(tmp_path)
    ref = preprocess_mnist(load_grayscale(files["L"]))
    for kind, path in files.items():
        gray = load_grayscale(path)
        assert gray.dtype == np.float32 and gray.ndim == 2
        assert gray.min() >= 0.0 and gray.max() <= 1.0
        img = preprocess_mnist(gray)
        assert img.shape == (28, 28) and img.dtype == np.uint8, kind
        assert img.max() == 255, kind
        if kind == "RGBA_shaded_ink":  # ink 0..120 of 255: brightness varies along the stroke
            assert corr(img, ref) > 0.95
            assert np.array_equal(img > 0, ref > 0)
        elif kind == "large":
            # Rasterised at 280 px instead of 28 px, the stroke edges fall up to half a pixel
            # apart (raw correlation ~0.94); the digit itself is the same.
            assert corr(blur(img), blur(ref)) > 0.95
            assert np.abs(img.astype(int) - ref).mean() < 10
        else:  # the same 28x28 pixels in another container: identical after preprocessing
            np.testing.assert_array_equal(img, ref, err_msg=kind)
        cy, cx = centre_of_mass(img)
        assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1, (kind, cy, cx)
        h, w = bbox_size(img, level=25)
        assert max(h, w) in (19, 20, 21) and h <= 21 and w <= 21, (kind, h, w)


def test_alpha_only_strokes_are_read_from_alpha(tmp_path: Path) -> None:
    files = _variants(tmp_path)
    ref = load_grayscale(files["L"])
    for kind in ("RGBA_alpha_black", "RGBA_alpha_white", "LA_alpha"):
        np.testing.assert_allclose(load_grayscale(files[kind]), ref, atol=1e-6)
    # Colour-keyed palette transparency: transparent white paper, black ink -> ink visible.
    p_trns = load_grayscale(files["P_trns"])
    assert np.corrcoef(p_trns.ravel(), ref.ravel())[0, 1] ** 2 > 0.9


def test_16bit_is_scaled_by_65535(tmp_path: Path) -> None:
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16).repeat(3, axis=0)
    path = save(tmp_path / "g16.png", Image.fromarray(arr))
    np.testing.assert_allclose(load_grayscale(path)[0], [0.0, 32768 / 65535, 1.0], atol=1e-6)
    assert preprocess_study(open_png(path))[0, 0] == 0


def test_seed_equals_report_for_8bit_files(tmp_path: Path) -> None:
    files = _variants(tmp_path)
    big = np.array(Image.fromarray(draw_seven(scale=2)).convert("RGB"))
    files["resized"] = save(tmp_path / "rs.png", Image.fromarray(big))
    for kind in (
        "L",
        "LA",
        "RGB",
        "RGB_red",
        "RGBA",
        "RGBA_alpha_white",
        "P",
        "P_trns",
        "1",
        "resized",
    ):
        path = files[kind]
        expected = np.array(Image.open(path).convert("L").resize((28, 28)))
        got = preprocess_study(open_png(path))
        assert got.dtype == np.uint8 and got.shape == (28, 28)
        np.testing.assert_array_equal(got, expected, err_msg=kind)


def test_faint_digit_passes_mnist_but_not_seed(tmp_path: Path) -> None:
    path = save(tmp_path / "7-1-3.png", Image.fromarray(draw_seven(ink=25)))
    cfg = Filter()
    mnist = preprocess_mnist(load_grayscale(path))
    assert quality_reason(mnist, cfg) is None
    assert mnist.max() == 255
    seed = preprocess_study(open_png(path))
    assert quality_reason(seed, cfg) == "filter: max pixel 25 < 70"
    # And through the folder loader: kept in mnist mode, rejected in seed mode.
    assert len(load_folder(tmp_path, "mnist", cfg)[0].files) == 1
    with pytest.raises(ClassFolderError, match="filter: max pixel 25 < 70"):
        load_folder(tmp_path, "study", cfg)


@pytest.mark.parametrize(
    "gray",
    [
        np.zeros((28, 28), np.float32),
        np.full((28, 28), 128 / 255, np.float32),
        np.ones((28, 28), np.float32),
        np.random.default_rng(0).integers(0, 4, (28, 28)).astype(np.float32) / 255,
        np.random.default_rng(1).integers(252, 256, (28, 28)).astype(np.float32) / 255,
        np.pad(np.ones((1, 2), np.float32), 13),  # two hot pixels are not a digit
    ],
    ids=["zeros", "grey", "white", "dark-noise", "light-noise", "two-pixels"],
)
def test_blank_images_are_rejected(gray: np.ndarray) -> None:
    with pytest.raises(ImageError, match=r"^blank: no ink$"):
        preprocess_mnist(gray)


def test_bad_arrays_raise_class_image_error() -> None:
    with pytest.raises(ImageError):
        preprocess_mnist(np.zeros((0, 5), np.float32))
    with pytest.raises(ImageError):
        preprocess_mnist(np.zeros((4, 4, 3), np.float32))


def test_mnist_output_is_centred_and_fits_20_box_for_tall_digit() -> None:
    gray = np.zeros((60, 40), np.float32)
    gray[5:55, 30:33] = 1.0  # a '1' hugging the right edge
    img = preprocess_mnist(gray)
    h, w = bbox_size(img, level=25)
    assert h == 20 and w <= 3
    cy, cx = centre_of_mass(img)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1


# --------------------------------------------------------------------------- filter
def test_quality_reason_each_rule() -> None:
    cfg = Filter()
    dim = np.zeros((28, 28), np.uint8)
    dim[10, 10] = 41
    assert quality_reason(dim, cfg) == "filter: max pixel 41 < 70"
    few = np.zeros((28, 28), np.uint8)
    few[10, 10:15] = 200
    assert quality_reason(few, cfg) == "filter: 5 pixels above 60 < 10"
    flat = np.full((28, 28), 200, np.uint8)
    flat[0, 0] = 180
    assert quality_reason(flat, cfg) == "filter: contrast 20 < 30"
    good = np.zeros((28, 28), np.uint8)
    good[5:15, 10] = 61  # exactly 10 pixels above 60, max 61 < 70 -> max rule first
    assert quality_reason(good, cfg) == "filter: max pixel 61 < 70"
    good[5:15, 10] = 70
    assert quality_reason(good, cfg) is None
    assert quality_reason(dim, NO_FILTER) is None


# --------------------------------------------------------------------------- load_folder
def _good_png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(draw_seven()).save(buf, format="PNG")
    return buf.getvalue()


def test_load_folder_mixed_entries_never_raises(tmp_path: Path) -> None:
    good = _good_png_bytes()
    (tmp_path / "7-2-1.png").write_bytes(good)
    (tmp_path / "7-1-2.PNG").write_bytes(good)
    save(tmp_path / "1-3-4.png", Image.fromarray(255 - draw_seven()).convert("RGB"))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "README.md").write_text("# digits")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / "x-1-1.png").write_bytes(good)
    (tmp_path / "12-1-1.png").write_bytes(good)
    (tmp_path / "3-1-1.png").mkdir()
    (tmp_path / "4-1-1.png").write_bytes(b"")
    (tmp_path / "5-1-1.png").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 not really a jpeg")
    (tmp_path / "5-1-2.png").write_text("just some text\n")
    (tmp_path / "6-1-1.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "6-1-2.png").write_bytes(good[:40] + b"\x00" * 40 + good[80:])
    (tmp_path / "8-1-1.png").write_bytes(png_header_only(3000, 3000))  # 9 Mpx > 4 Mpx default
    (tmp_path / "8-1-2.png").write_bytes(png_header_only(100_000, 100_000))  # > PIL's own limit
    save(tmp_path / "9-1-1.png", Image.new("L", (28, 28), 0))
    save(tmp_path / "9-1-2.png", Image.new("RGB", (28, 28), (200, 200, 200)))
    (tmp_path / "7-02-1.png").write_bytes(good)  # sorts first; 7-2-1.png is then a duplicate

    cd, cd_rejected = load_folder(tmp_path, "mnist", Filter())
    assert cd.files.tolist() == ["1-3-4.png", "7-02-1.png", "7-1-2.PNG"]
    assert cd.images.shape == (3, 28, 28) and cd.images.dtype == np.uint8
    assert cd.labels.tolist() == [1, 7, 7] and cd.labels.dtype == np.int64
    assert cd.groups.tolist() == [3, 2, 1] and cd.members.tolist() == [4, 1, 2]
    assert corr(cd.images[0], cd.images[1]) > 0.95  # inverted RGB copy reads the same

    reasons = dict(cd_rejected)
    expected = {
        ".DS_Store": "not an image file name",
        "12-1-1.png": "digit outside 0-9",
        "3-1-1.png": "is a directory",
        "4-1-1.png": "empty file",
        "5-1-1.png": "corrupt JPEG",
        "5-1-2.png": "not an image file (unknown format)",
        "6-1-1.png": "corrupt PNG: ",
        "6-1-2.png": "corrupt PNG: ",
        "7-2-1.png": "duplicate of 7-02-1.png",
        "8-1-1.png": "too large: 3000x3000 pixels > limit 4000000",
        "8-1-2.png": "too large",
        "9-1-1.png": "blank: no ink",
        "9-1-2.png": "blank: no ink",
        "README.md": "not an image file name",
        "notes.txt": "not an image file name",
        "x-1-1.png": "name does not match",
    }
    assert set(reasons) == set(expected)
    for name, prefix in expected.items():
        assert reasons[name].startswith(prefix), (name, reasons[name])
        assert "\n" not in reasons[name] and len(reasons[name]) <= 160
    # rejected entries are listed in name order, like the images
    assert [n for n, _ in cd_rejected] == sorted(reasons)

    # seed mode: same bad files; blanks fall to the filter, or are kept without it.
    _, seed_rejected = load_folder(tmp_path, "study", Filter())
    assert dict(seed_rejected)["9-1-1.png"] == "filter: max pixel 0 < 70"
    assert dict(seed_rejected)["9-1-2.png"].startswith("filter: contrast 0 < 30")
    kept, _ = load_folder(tmp_path, "study", NO_FILTER)
    assert {"9-1-1.png", "9-1-2.png"} <= set(kept.files)


def test_damaged_pngs_never_raise(tmp_path: Path) -> None:
    """Random byte flips and truncations of valid PNGs: every file is loaded or rejected
    with an anticipated one-line reason (none falls through to the last-resort guard)."""
    rng = np.random.default_rng(123)
    good = _good_png_bytes()
    (tmp_path / "7-0-0.png").write_bytes(good)
    for i in range(1, 121):
        data = bytearray(good)
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, 6))):
            data[pos] = int(rng.integers(0, 256))
        if i % 3 == 0:
            data = data[: int(rng.integers(8, len(data)))]
        (tmp_path / f"7-0-{i}.png").write_bytes(bytes(data))
    for mode in ("mnist", "study"):
        cd, cd_rejected = load_folder(tmp_path, mode, Filter())
        assert "7-0-0.png" in cd.files
        assert len(cd.files) + len(cd_rejected) == 121
        for _, reason in cd_rejected:
            assert "\n" not in reason
            assert not reason.startswith("unreadable"), reason


def test_pixel_limit_applies_before_decoding(tmp_path: Path) -> None:
    global_limit = Image.MAX_IMAGE_PIXELS
    save(tmp_path / "2-1-1.png", Image.fromarray(draw_seven(scale=4)))  # 112x112 = 12544 px
    save(tmp_path / "2-1-2.png", Image.fromarray(draw_seven()))
    cd, cd_rejected = load_folder(tmp_path, "mnist", Filter(), max_pixels=5000)
    assert cd.files.tolist() == ["2-1-2.png"]
    assert cd_rejected == [
        ("2-1-1.png", "too large: 112x112 pixels > limit 5000 (possible decompression bomb)")
    ]
    with pytest.raises(ImageError, match="too large"):
        load_grayscale(tmp_path / "2-1-1.png", max_pixels=5000)
    assert global_limit == Image.MAX_IMAGE_PIXELS  # the global limit is never changed


def test_missing_and_unusable_folders(tmp_path: Path) -> None:
    with pytest.raises(ClassFolderError, match="class digit folder not found") as info:
        load_folder(tmp_path / "nope", "mnist", Filter())
    assert "\n" not in str(info.value)
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(ClassFolderError, match="not a directory"):
        load_folder(afile, "mnist", Filter())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ClassFolderError, match="folder is empty"):
        load_folder(empty, "mnist", Filter())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "1-1-1.png").write_bytes(b"")
    (bad / "notes.txt").write_text("x")
    save(bad / "2-1-1.png", Image.new("L", (28, 28), 0))
    with pytest.raises(ClassFolderError) as info:
        load_folder(bad, "mnist", Filter())
    msg = str(info.value)
    assert msg.startswith(f"no usable class digit images in {bad} (3 entries rejected")
    assert "\n" not in msg
    assert [n for n, _ in info.value.rejected] == ["1-1-1.png", "2-1-1.png", "notes.txt"]
    with pytest.raises(ValueError, match="preprocess"):
        load_folder(bad, "fancy", Filter())  # type: ignore[arg-type]


def test_a_large_folder_read_by_several_processes_is_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parallel read gives the same digits, rejections and order, byte for byte."""
    good = _good_png_bytes()
    for g in range(1, 4):
        for m in range(1, 6):
            (tmp_path / f"{(g + m) % 10}-{g}-{m}.png").write_bytes(good)
    (tmp_path / "2-01-1.png").write_bytes(good)  # the same digit as 2-1-1.png, another chunk
    (tmp_path / "5-9-9.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    monkeypatch.setattr(class_folder, "PARALLEL_FROM", 4)
    one, rejected_one = load_folder(tmp_path, "mnist", Filter(), workers=1)
    two, rejected_two = load_folder(tmp_path, "mnist", Filter(), workers=2)
    assert rejected_one == rejected_two and len(rejected_one) == 3
    for field in ("images", "labels", "groups", "members", "files"):
        a, b = getattr(one, field), getattr(two, field)
        assert a.dtype == b.dtype and np.array_equal(a, b), field


# --------------------------------------------------------------------------- any image format
_FORMATS = [("JPEG", "jpg"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tif"), ("GIF", "gif")]
_FORMATS += [("HEIF", "heic"), ("PNG", "png")]


def _encoded(im: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "ext"), _FORMATS)
def test_every_format_reads_like_the_png(tmp_path: Path, fmt: str, ext: str) -> None:
    seven = Image.fromarray(draw_seven()).convert("RGB")
    ref = read_digit(_encoded(seven, "PNG"))
    # Content decides, not the name: the file is also given a wrong (.png) name.
    for name in (f"7-1-1.{ext}", "7-1-2.png"):
        (tmp_path / name).write_bytes(_encoded(seven, fmt))
    img, opened = read_digit_info(tmp_path / "7-1-2.png")
    assert opened.format == ("heif" if fmt == "HEIF" else fmt.lower())
    assert not opened.rotated
    lossy = fmt in ("JPEG", "WEBP", "HEIF")
    assert corr(img, ref) > (0.97 if lossy else 0.9999)
    log: list[Any] = []
    cd, rejected = load_folder(tmp_path, "mnist", Filter(), read_log=log)
    assert cd.files.tolist() == sorted([f"7-1-1.{ext}", "7-1-2.png"])
    assert [r.format for r in log] == [opened.format] * 2 and rejected == []


@pytest.mark.parametrize(("fmt", "ext"), _FORMATS)
def test_size_guard_holds_for_every_format(tmp_path: Path, fmt: str, ext: str) -> None:
    path = tmp_path / f"7-1-1.{ext}"
    path.write_bytes(_encoded(Image.new("RGB", (40, 30), (255, 255, 255)), fmt))
    with pytest.raises(ImageError, match=r"too large: 40x30 pixels > limit 1000"):
        read_digit(path, max_pixels=1000)


def test_large_jpeg_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "7-1-1.jpg"
    path.write_bytes(_encoded(Image.new("L", (2100, 2000), 255), "JPEG", quality=10))
    _, rejected = _load_rejected(tmp_path)
    assert rejected == [
        ("7-1-1.jpg", "too large: 2100x2000 pixels > limit 4000000 (possible decompression bomb)")
    ]


def _load_rejected(folder: Path) -> tuple[Any, list[tuple[str, str]]]:
    try:
        return load_folder(folder, "mnist", Filter())
    except ClassFolderError as err:
        return None, err.rejected


def test_exif_orientation_applied(tmp_path: Path) -> None:
    seven = Image.fromarray(draw_seven()).convert("RGB")
    upright = read_digit(_encoded(seven, "JPEG", quality=95))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    stored = seven.rotate(90, expand=True)  # so the pixels are stored a quarter turn CCW
    img, opened = read_digit_info(_encoded(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert opened.rotated and opened.format == "jpeg"
    assert corr(img, upright) > 0.97
    # Without the tag the same pixels read as a different (turned) picture.
    assert corr(read_digit(_encoded(stored, "JPEG", quality=95)), upright) < 0.8


def test_same_digit_in_two_formats_is_a_duplicate(tmp_path: Path) -> None:
    seven = Image.fromarray(draw_seven()).convert("RGB")
    (tmp_path / "7-1-1.png").write_bytes(_encoded(seven, "PNG"))
    (tmp_path / "7-1-1.jpg").write_bytes(_encoded(seven, "JPEG"))
    cd, rejected = load_folder(tmp_path, "mnist", Filter())
    assert cd.files.tolist() == ["7-1-1.jpg"]
    assert rejected == [("7-1-1.png", "duplicate of 7-1-1.jpg (same digit-group-member)")]


def test_gif_first_frame_and_unknown_bytes(tmp_path: Path) -> None:
    seven = Image.fromarray(draw_seven()).convert("RGB")
    blank = Image.new("RGB", seven.size, (0, 0, 0))
    gif = _encoded(seven, "GIF", save_all=True, append_images=[blank])
    assert corr(read_digit(gif), read_digit(_encoded(seven, "PNG"))) > 0.99
    with pytest.raises(ImageError, match=r"^not an image file \(unknown format\)$"):
        read_digit(b"%PDF-1.4 a document, not a picture")


# --------------------------------------------------------------------------- photos of paper
def _paper_photo(ink_rgb: tuple[float, float, float], side: int = 400) -> bytes:
    """draw_seven as a JPEG photo: ink on cream paper with a light gradient, noise, q=70."""
    rng = np.random.default_rng(7)
    seven = Image.fromarray(draw_seven()).resize((side, side), Image.Resampling.BICUBIC)
    ink = np.asarray(seven, dtype=np.float32)[..., None] / 255.0
    y, x = np.mgrid[0:side, 0:side] / side
    light = (0.95 - 0.35 * x - 0.15 * y)[..., None]
    paper = light * np.array([0.97, 0.95, 0.9])
    img = paper * (1 - ink) + light * np.array(ink_rgb) * ink + rng.normal(0, 0.02, paper.shape)
    return _encoded(
        Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8)), "JPEG", quality=70
    )


@pytest.mark.parametrize("ink", [(0.1, 0.1, 0.15), (0.1, 0.2, 0.7)], ids=["black", "blue"])
def test_photo_of_paper_gets_its_background_removed(ink: tuple[float, float, float]) -> None:
    photo = _paper_photo(ink)
    with pytest.raises(ImageError, match="blank: no ink"):  # the plain recipe sees no digit
        preprocess_mnist(to_gray(open_png(photo)))
    img, opened = read_digit_info(photo)
    assert opened.photo and opened.format == "jpeg"
    assert corr(img, read_digit(_encoded(Image.fromarray(draw_seven()), "PNG"))) > 0.95


def test_clean_drawing_on_white_is_not_taken_for_a_photo() -> None:
    dark_on_white = Image.fromarray(255 - draw_seven(scale=10)).convert("RGB")
    _, opened = read_digit_info(_encoded(dark_on_white, "PNG"))
    assert not opened.photo
