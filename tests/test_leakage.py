"""Tests of the leakage check: batched normalisation, nearest neighbours, flags, the stage."""

from __future__ import annotations

import csv
import itertools
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mnistgap import leakage
from mnistgap.data import ClassSet, read_flags, save_class
from mnistgap.leakage import (
    distance_ratio,
    find_leaks,
    flag_reasons,
    flagged_order,
    nearest_neighbours,
    two_nearest_neighbours,
)
from mnistgap.recipe import renormalize_batch
from mnistgap.tables import read_leakage

PROJECT = Path(__file__).resolve().parents[1]


def _com(img: torch.Tensor) -> tuple[float, float]:
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    total = img.sum()
    return float((img * ys).sum() / total), float((img * xs).sum() / total)


def _size(img: torch.Tensor) -> tuple[float, float]:
    """Height and width of a solid box: the ink summed along its middle column and row.

    A bilinear resample of a box keeps its size this way (the ramps at both edges add up to
    one pixel), whereas counting pixels above a level depends on the sub-pixel phase.
    """
    return float(img[:, 14].sum()), float(img[14, :].sum())


def _bar(row0: int, col: int) -> torch.Tensor:
    """A 20-px vertical bar whose centre of mass is exactly at row row0 + 10, column col.

    Rows row0..row0+18 hold 9/19 and row row0+19 holds 1: the mass-weighted row mean is
    (19 * (row0 + 9) * 9/19 + (row0 + 19)) / (9 + 1) = row0 + 10. So for row0 = 4, col = 14 the
    bar already has s = 1 and its centre of mass at (14, 14): normalisation must be the identity.
    """
    img = torch.zeros(28, 28)
    img[row0 : row0 + 19, col] = 9 / 19
    img[row0 + 19, col] = 1.0
    return img


def _stroke_digits(n: int, seed: int) -> np.ndarray:
    """MNIST-like uint8 digits: a few thick random strokes, blurred, then MNIST-normalised."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    out = np.zeros((n, 28, 28), dtype=np.float64)
    for k in range(n):
        pts = rng.uniform(6, 22, size=(4, 2))
        for (y0, x0), (y1, x1) in itertools.pairwise(pts):
            for t in np.linspace(0, 1, 30):
                cy, cx = y0 + t * (y1 - y0), x0 + t * (x1 - x0)
                out[k] = np.maximum(out[k], np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0))
    imgs = (renormalize_batch(torch.from_numpy(out).float()).numpy() * 255).round()
    return imgs.astype(np.uint8)


def _pen_digits(n: int, seed: int) -> np.ndarray:
    """uint8 digits drawn with a ~3 px pen: 3 random segments, 1 px anti-aliased edge.

    Unlike the blurred strokes of :func:`_stroke_digits`, binarising these changes only the
    edge pixels, as with real MNIST digits (whose strokes are solid with grey edges).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    out = np.zeros((n, 28, 28))
    for k in range(n):
        pts = rng.uniform(5, 23, size=(4, 2))
        dist = np.full((28, 28), np.inf)
        for (y0, x0), (y1, x1) in itertools.pairwise(pts):
            vy, vx = y1 - y0, x1 - x0
            t = np.clip(((yy - y0) * vy + (xx - x0) * vx) / max(vy * vy + vx * vx, 1e-9), 0, 1)
            dist = np.minimum(dist, np.hypot(yy - (y0 + t * vy), xx - (x0 + t * vx)))
        out[k] = np.clip(2.0 - dist, 0.0, 1.0)
    return (out * 255).round().astype(np.uint8)


def _binarise(img: np.ndarray) -> np.ndarray:
    return np.where(img > 127, 255, 0).astype(np.uint8)


# --------------------------------------------------------------------------- renormalize_batch


def test_identity_when_already_normalised() -> None:
    """s = 1 and centre of mass at (14, 14): the output is the input (half-pixel convention)."""
    img = _bar(4, 14)
    out = renormalize_batch(img[None])[0]
    torch.testing.assert_close(out, img / img.max(), atol=1e-4, rtol=0)


def test_integer_shift_is_undone() -> None:
    """The same bar moved 3 rows up and 5 columns right comes back to the same place."""
    out = renormalize_batch(torch.stack([_bar(1, 19), _bar(4, 14)]))
    torch.testing.assert_close(out[0], out[1], atol=1e-4, rtol=0)


def test_shifted_blob_is_centred_and_scaled_to_20() -> None:
    img = torch.zeros(1, 28, 28)
    img[0, 3:7, 20:24] = 1.0  # 4x4 blob in the top-right corner
    out = renormalize_batch(img)[0]
    cy, cx = _com(out)
    assert cy == pytest.approx(14.0, abs=1e-3)
    assert cx == pytest.approx(14.0, abs=1e-3)
    # Scaled by 20/4 = 5 about its centre: 20 pixels each way.
    assert _size(out) == pytest.approx((20.0, 20.0), abs=0.05)
    assert float(out.max()) == pytest.approx(1.0, abs=1e-6)


def test_big_square_fits_20x20_and_keeps_aspect() -> None:
    img = torch.zeros(2, 28, 28)
    img[0, 1:27, 1:27] = 1.0  # 26x26: shrunk by 20/26
    img[1, 9:19, 2:7] = 0.5  # 10 tall, 5 wide, faint: scaled by 2 -> 20 x 10, max -> 1
    out = renormalize_batch(img)
    assert _size(out[0]) == pytest.approx((20.0, 20.0), abs=0.5)
    assert _com(out[0]) == pytest.approx((14.0, 14.0), abs=1e-3)
    assert _size(out[1]) == pytest.approx((20.0, 10.0), abs=0.05)
    assert float(out[1].max()) == pytest.approx(1.0, abs=1e-6)


def test_blank_stays_blank_and_chunking_does_not_matter() -> None:
    imgs = _stroke_digits(5, seed=1)
    imgs[2] = 0
    out = renormalize_batch(imgs)
    assert out.dtype == torch.float32 and out.shape == (5, 28, 28)
    assert float(out[2].abs().max()) == 0.0
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    torch.testing.assert_close(renormalize_batch(imgs, chunk=2), out)
    # uint8 0..255 and float 0..1 inputs are the same images.
    torch.testing.assert_close(renormalize_batch(torch.from_numpy(imgs).float() / 255), out)
    assert renormalize_batch(np.zeros((0, 28, 28), np.uint8)).shape == (0, 28, 28)


def test_idempotent_ish_on_mnist_like_digits() -> None:
    once = renormalize_batch(_stroke_digits(20, seed=2))
    twice = renormalize_batch(once)
    rms = ((twice - once) ** 2).mean(dim=(1, 2)).sqrt()
    # Bilinear resampling at a sub-pixel offset blurs a little; a second pass moves little.
    assert float(rms.max()) < 0.05
    for img in twice:
        assert _com(img) == pytest.approx((14.0, 14.0), abs=0.05)


def test_normalize_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="28"):
        renormalize_batch(torch.zeros(2, 27, 28))


# --------------------------------------------------------------------------- nearest_neighbours


def test_nearest_neighbours_matches_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    ref = torch.rand(700, 784, generator=gen)
    query = torch.rand(50, 784, generator=gen)
    query[:5] = ref[[3, 128, 699, 0, 400]] + 0.01 * torch.rand(5, 784, generator=gen)
    dist, idx = nearest_neighbours(query, ref, chunk=16)  # 4 query chunks, the last partial
    full = torch.cdist(query.double(), ref.double())
    want_d, want_i = full.min(dim=1)
    assert torch.equal(idx, want_i)
    torch.testing.assert_close(dist.double(), want_d / 28.0, atol=1e-6, rtol=1e-5)
    assert idx[:5].tolist() == [3, 128, 699, 0, 400]


def test_nearest_neighbours_ties_go_to_lowest_index() -> None:
    gen = torch.Generator().manual_seed(1)
    ref = torch.rand(300, 784, generator=gen)
    ref[250] = ref[7]  # duplicates after the first copy
    ref[9] = ref[7]
    dist, idx = nearest_neighbours(ref[[250]], ref, chunk=100)
    assert int(idx[0]) == 7
    assert float(dist[0]) == 0.0


def test_nearest_neighbours_validates() -> None:
    with pytest.raises(ValueError, match="share D"):
        nearest_neighbours(torch.zeros(2, 784), torch.zeros(3, 783))
    with pytest.raises(ValueError, match="empty"):
        nearest_neighbours(torch.zeros(2, 784), torch.zeros(0, 784))
    with pytest.raises(ValueError, match="at least 2"):
        two_nearest_neighbours(torch.zeros(2, 784), torch.zeros(1, 784))
    assert nearest_neighbours(torch.zeros(2, 784), torch.ones(1, 784))[1].tolist() == [0, 0]


@pytest.mark.parametrize("chunk", [1, 97, 128, 4096])
def test_two_nearest_matches_brute_force(chunk: int) -> None:
    """Top-2 by chunked matmul equals cdist + topk, for query chunks of 1 row up to all."""
    gen = torch.Generator().manual_seed(2)
    ref = torch.rand(700, 784, generator=gen)
    query = torch.rand(60, 784, generator=gen)
    # Near-copies whose two nearest lie close together, far apart, or at the ends.
    query[:4] = ref[[3, 128, 699, 0]] + 0.01 * torch.rand(4, 784, generator=gen)
    ref[130] = ref[128] + 0.02 * torch.rand(784, generator=gen)
    ref[690] = ref[3] + 0.02 * torch.rand(784, generator=gen)
    dist, idx = two_nearest_neighbours(query, ref, chunk=chunk)
    want_d, want_i = torch.cdist(query.double(), ref.double()).topk(2, dim=1, largest=False)
    assert dist.shape == (60, 2) and idx.shape == (60, 2) and idx.dtype == torch.int64
    assert torch.equal(idx, want_i)
    torch.testing.assert_close(dist.double(), want_d / 28.0, atol=1e-6, rtol=1e-5)
    assert idx[:2, 1].tolist() == [690, 130]
    # Column 0 agrees with the top-1 search.
    d1, i1 = nearest_neighbours(query, ref, chunk=chunk)
    assert torch.equal(i1, idx[:, 0]) and torch.equal(d1, dist[:, 0])


def test_two_nearest_ties_go_to_lowest_indices() -> None:
    gen = torch.Generator().manual_seed(3)
    ref = torch.rand(300, 784, generator=gen)
    ref[[9, 120, 250]] = ref[7].clone()  # three copies of row 7, near it and far after
    dist, idx = two_nearest_neighbours(ref[[250, 120]], ref, chunk=100)
    assert idx.tolist() == [[7, 9], [7, 9]]  # distinct indices, the two lowest of the tie
    assert dist.abs().max().item() == 0.0
    # A query far from everything still gets two distinct indices.
    _, idx = two_nearest_neighbours(torch.full((1, 784), 5.0), ref[:2], chunk=1)
    assert sorted(idx[0].tolist()) == [0, 1]


def test_distance_ratio_and_reasons() -> None:
    ratio = distance_ratio(np.array([0.0, 0.01, 0.05, 0.0]), np.array([0.0, 0.1, 0.05, 0.2]))
    assert ratio.dtype == np.float32
    assert ratio.tolist() == pytest.approx([1.0, 0.1, 1.0, 0.0])  # 0/0 -> 1
    reasons = flag_reasons(
        np.array([0.01, 0.01, 0.05, 0.05, 0.02]),
        np.array([0.9, 0.3, 0.3, 0.9, 0.5]),
        threshold=0.02,
        ratio_threshold=0.5,
    )
    # Both comparisons are strict: 0.02 and 0.5 themselves are not flagged.
    assert reasons.tolist() == ["distance", "both", "ratio", "", ""]


# --------------------------------------------------------------------------- find_leaks


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(img)
    out[max(dy, 0) : 28 + min(dy, 0), max(dx, 0) : 28 + min(dx, 0)] = img[
        max(-dy, 0) : 28 + min(-dy, 0), max(-dx, 0) : 28 + min(-dx, 0)
    ]
    return out


def test_find_leaks_flags_copies_not_new_patterns() -> None:
    mnist = _stroke_digits(40, seed=3)
    labels = np.arange(40) % 10
    other = _stroke_digits(1, seed=99)[0]
    queries = np.stack([mnist[5], _shift(mnist[17], 2, -1), other])
    res = find_leaks(queries, mnist, labels, threshold=0.02, ratio_threshold=0.0)
    assert res.index[:2].tolist() == [5, 17]
    assert res.nearest_label[:2].tolist() == [5, 7]
    assert res.distance[0] == pytest.approx(0.0, abs=1e-6)
    assert res.distance[1] < 1e-3
    assert res.flagged.tolist() == [True, True, False]
    assert res.reason.tolist() == ["distance", "distance", ""]
    assert res.distance[2] > 0.05
    assert res.threshold == 0.02 and res.ratio_threshold == 0.0
    assert flagged_order(res).tolist() == [0, 1]
    assert np.all(res.second_index != res.index)
    assert np.all(res.second_distance >= res.distance)
    np.testing.assert_allclose(res.ratio, res.distance / res.second_distance, rtol=1e-6)
    with pytest.raises(ValueError, match="threshold"):
        find_leaks(queries, mnist, labels, threshold=-1.0, ratio_threshold=0.5)
    with pytest.raises(ValueError, match="ratio_threshold"):
        find_leaks(queries, mnist, labels, threshold=0.02, ratio_threshold=1.5)


def test_find_leaks_in_blocks_gives_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Class digits are searched a block at a time (bounded memory): blocks of 3 and one call
    for all agree on every digit, the last block partial."""
    mnist = _stroke_digits(40, seed=3)
    labels = np.arange(40) % 10
    queries = np.concatenate([_stroke_digits(7, seed=11), mnist[[2, 9]]])
    whole = find_leaks(queries, mnist, labels, threshold=0.02, ratio_threshold=0.62)
    monkeypatch.setattr(leakage, "QUERY_BLOCK", 3)
    blocks = find_leaks(queries, mnist, labels, threshold=0.02, ratio_threshold=0.62)
    for field in ("distance", "index", "second_distance", "second_index", "ratio", "reason"):
        np.testing.assert_array_equal(getattr(blocks, field), getattr(whole, field))
    assert blocks.index[-2:].tolist() == [2, 9] and blocks.flagged[-2:].all()


def test_ratio_flags_a_binarised_copy_but_not_a_new_digit() -> None:
    """Binarising moves a copy too far for any distance threshold, but not for the ratio."""
    mnist = _pen_digits(60, seed=5)
    labels = np.arange(60) % 10
    others = _pen_digits(3, seed=123)  # genuinely different "handwriting"
    queries = np.concatenate([_binarise(mnist[11])[None], others])
    res = find_leaks(queries, mnist, labels, threshold=0.02, ratio_threshold=0.6)
    assert res.index[0] == 11
    assert res.distance[0] > 0.02  # not caught by the distance
    assert res.ratio[0] < 0.6
    assert np.all(res.ratio[1:] > 0.6)  # the new digits have no single close original
    assert res.flagged.tolist() == [True, False, False, False]
    assert res.reason.tolist() == ["ratio", "", "", ""]
    # ratio_threshold = 0 switches the ratio criterion off.
    off = find_leaks(queries, mnist, labels, threshold=0.02, ratio_threshold=0.0)
    assert not off.flagged.any()


# --------------------------------------------------------------------------- the stage


def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = 2051 if array.ndim == 3 else 2049  # 0x00000803 images, 0x00000801 labels
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _stage_inputs(
    tmp_path: Path, threshold: float, ratio_threshold: float
) -> tuple[list[str], ClassSet, np.ndarray]:
    mnist = _pen_digits(30, seed=4)
    labels = (np.arange(30) * 3) % 10
    raw = tmp_path / "raw"
    raw.mkdir()
    _write_idx(raw / "train-images-idx3-ubyte", mnist)
    _write_idx(raw / "train-labels-idx1-ubyte", labels.astype(np.uint8))
    images = np.stack(
        [mnist[11], _pen_digits(1, seed=77)[0], _shift(mnist[4], -1, 2), _binarise(mnist[22])]
    )
    cs = ClassSet(
        images=images,
        labels=np.array([3, 5, 2, 0]),
        groups=np.array([5, 1, 5, 5]),
        members=np.array([1, 2, 3, 4]),
        files=np.array(["3-5-1.png", "5-1-2.png", "2-5-3.png", "0-5-4.png"]),
    )
    save_class(tmp_path / "digits.npz", cs)
    params = yaml.safe_load((PROJECT / "params.yaml").read_text(encoding="utf-8"))
    params["leakage"]["threshold"] = threshold
    params["leakage"]["ratio_threshold"] = ratio_threshold
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    argv = [
        "--class-data",
        str(tmp_path / "digits.npz"),
        "--mnist-raw",
        str(raw),
        "--out",
        str(tmp_path / "out"),
        "--params",
        str(tmp_path / "params.yaml"),
    ]
    return argv, cs, labels


def test_stage_writes_csv_json_png(tmp_path: Path) -> None:
    from stages import leakage as stage

    argv, cs, labels = _stage_inputs(tmp_path, threshold=0.02, ratio_threshold=0.6)
    stage.main(argv)
    out = tmp_path / "out"
    with (out / "leakage.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(leakage.CSV_HEADER)
    # The original columns first, in place (read_flags and the evaluate stages use them).
    assert leakage.CSV_HEADER[:8] == (
        "file",
        "digit",
        "group",
        "member",
        "nearest_index",
        "nearest_label",
        "distance",
        "flagged",
    )
    assert leakage.CSV_HEADER[8:] == ("second_distance", "ratio", "reason")
    assert [r["file"] for r in rows] == list(cs.files)
    assert [r["digit"] for r in rows] == ["3", "5", "2", "0"]
    assert [r["group"] for r in rows] == ["5", "1", "5", "5"]
    assert [r["member"] for r in rows] == ["1", "2", "3", "4"]
    assert [r["flagged"] for r in rows] == ["1", "0", "1", "1"]
    assert [r["reason"] for r in rows] == ["both", "", "both", "ratio"]
    assert [r["nearest_index"] for r in rows if r["flagged"] == "1"] == ["11", "4", "22"]
    assert rows[0]["nearest_label"] == str(labels[11])
    assert rows[2]["nearest_label"] == str(labels[4])
    assert rows[0]["distance"] == "0.0000" and rows[0]["ratio"] == "0.0000"
    assert float(rows[3]["distance"]) > 0.02 and float(rows[3]["ratio"]) < 0.6
    assert float(rows[1]["ratio"]) > 0.6
    for r in rows:
        for col in ("distance", "second_distance", "ratio"):
            assert len(r[col].split(".")[1]) == 4
        assert float(r["second_distance"]) >= float(r["distance"])
        expected = float(r["distance"]) / float(r["second_distance"])
        assert float(r["ratio"]) == pytest.approx(expected, abs=2e-3)
    # metrics.json: the headline only; what the report says per reason and group, and the
    # medians, come from leakage.csv (mnistgap.tables.read_leakage).
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics == {"n": 4, "flagged": 3}
    details = read_leakage(out / "leakage.csv")
    assert details["by_group"] == {"5": 3}
    assert details["by_reason"] == {"ratio": 1, "both": 2}
    dists = sorted(float(r["distance"]) for r in rows)
    assert details["median_distance"] == pytest.approx((dists[1] + dists[2]) / 2, abs=1e-4)
    ratios = sorted(float(r["ratio"]) for r in rows)
    assert details["median_ratio"] == pytest.approx((ratios[1] + ratios[2]) / 2, abs=1e-4)
    assert (out / "flagged_pairs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_flags(out / "leakage.csv", cs.files).tolist() == [True, False, True, True]


def test_stage_with_nothing_flagged(tmp_path: Path) -> None:
    from stages import leakage as stage

    argv, _, _ = _stage_inputs(tmp_path, threshold=0.0, ratio_threshold=0.0)
    stage.main(argv)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics == {"n": 4, "flagged": 0}
    details = read_leakage(tmp_path / "out" / "leakage.csv")
    assert details["by_group"] == {} and details["by_reason"] == {}
    assert (tmp_path / "out" / "flagged_pairs.png").stat().st_size > 0


# --------------------------------------------------------------------------- read_flags


def _write_report(path: Path, files: list[str], flags: list[int]) -> None:
    lines = [",".join(leakage.CSV_HEADER)]
    lines += [f"{f},1,1,1,0,1,0.0100,{g}" for f, g in zip(files, flags, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_read_flags_aligned(tmp_path: Path) -> None:
    files = ["0-1-1.png", "1-1-1.png", "2-5-1.png"]
    _write_report(tmp_path / "l.csv", files, [0, 0, 1])
    flags = read_flags(tmp_path / "l.csv", np.array(files))
    assert flags.dtype == bool and flags.tolist() == [False, False, True]


@pytest.mark.parametrize(
    "files",
    [
        ["1-1-1.png", "0-1-1.png", "2-5-1.png"],  # other order
        ["0-1-1.png", "1-1-1.png"],  # fewer
        ["0-1-1.png", "1-1-1.png", "2-5-1.png", "3-5-1.png"],  # more
    ],
)
def test_read_flags_mismatch(tmp_path: Path, files: list[str]) -> None:
    _write_report(tmp_path / "l.csv", ["0-1-1.png", "1-1-1.png", "2-5-1.png"], [0, 0, 1])
    with pytest.raises(ValueError, match="do not match"):
        read_flags(tmp_path / "l.csv", files)


def test_read_flags_bad_value(tmp_path: Path) -> None:
    _write_report(tmp_path / "l.csv", ["0-1-1.png"], [2])
    with pytest.raises(ValueError, match="0 or 1"):
        read_flags(tmp_path / "l.csv", ["0-1-1.png"])


def test_a_precomputed_reference_gives_the_same_result() -> None:
    from mnistgap.leakage import reference_matrix

    rng = np.random.default_rng(3)
    mnist = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 50)
    queries = np.concatenate([mnist[:3], rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)])
    plain = find_leaks(queries, mnist, labels, 0.02, 0.62)
    reused = find_leaks(queries, mnist, labels, 0.02, 0.62, reference=reference_matrix(mnist))
    assert plain.flagged[:3].all()
    for field in ("distance", "index", "ratio", "flagged", "reason"):
        assert np.array_equal(getattr(plain, field), getattr(reused, field)), field
    with pytest.raises(ValueError, match="reference must be"):
        find_leaks(queries, mnist, labels, 0.02, 0.62, reference=reference_matrix(mnist[:10]))
