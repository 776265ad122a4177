"""Independent digit sets: both USPS formats, acquisition with checksums, one-line errors."""

from __future__ import annotations

import bz2
import dataclasses
import gzip
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

import stages.prepare_external
from mnistgap import external
from mnistgap.cli import run_stage
from mnistgap.data import load_split
from mnistgap.params import ExternalSetName

SHARED_USPS = Path(__file__).resolve().parents[2] / "shared" / "external" / "usps"
LABELS = np.arange(30) % 10


def _tiny_set(path: Path, **changes: object) -> external.DigitSet:
    """external.USPS, but accepting this test's file (its MD5) and its size."""
    esl = dataclasses.replace(external.USPS.files[0], name=path.name, md5=external.md5sum(path))
    return dataclasses.replace(external.USPS, files=(esl,), size=len(LABELS), **changes)


def test_params_names_exactly_the_sets_that_can_be_read() -> None:
    assert set(get_args(ExternalSetName)) == set(external.SETS)


def test_esl_and_libsvm_files_read_the_same_digits(
    tmp_path: Path, make_usps: Callable[..., Path]
) -> None:
    esl = make_usps(tmp_path / "zip.test.gz", LABELS)
    images, labels = external.USPS.files[0].parse(esl)
    assert images.shape == (30, 16, 16) and images.dtype == np.float32
    assert labels.tolist() == LABELS.tolist() and images.min() >= 0.0 and images.max() <= 1.0
    # The same digits in LIBSVM's format: labels 1-10, index:value pairs (zeros may be left out).
    with gzip.open(esl, "rt") as fh:
        rows = [line.split() for line in fh]
    libsvm = tmp_path / "usps.t.bz2"
    with bz2.open(libsvm, "wt") as fh:
        for r in rows:
            pairs = [f"{i + 1}:{v}" for i, v in enumerate(r[1:]) if float(v) != -1.0]
            fh.write(f"{int(r[0]) + 1} " + " ".join(pairs) + "\n")
    images2, labels2 = external.USPS.files[1].parse(libsvm)
    np.testing.assert_array_equal(labels2, labels)
    np.testing.assert_allclose(images2, images, atol=1e-6)


def test_the_recipe_makes_centred_28x28_digits(tmp_path: Path, make_usps: Callable) -> None:
    images, _ = external.USPS.files[0].parse(make_usps(tmp_path / "zip.test.gz", LABELS))
    digits, refused = external.to_mnist(images, pad=2)
    assert refused == [] and digits.shape == (30, 28, 28) and digits.dtype == np.uint8
    assert int(digits.max()) == 255 and (digits[:, :2].max() == 0)  # a background margin
    blank = np.zeros((1, 16, 16), np.float32)
    _, refused = external.to_mnist(np.concatenate([images[:2], blank]), pad=2)
    assert refused == [2]
    seed, _ = external.to_mnist(images, pad=2, preprocess="study")
    assert seed.shape == (30, 28, 28)  # the study's plain resize, no padding


def test_acquire_uses_a_valid_file_then_the_cache_then_the_download(
    tmp_path: Path, make_usps: Callable[..., Path]
) -> None:
    source = make_usps(tmp_path / "src" / "zip.test.gz", LABELS)
    downloads: list[Path] = []

    def download(folder: Path) -> None:
        downloads.append(folder)
        (folder / source.name).write_bytes(source.read_bytes())

    digit_set = _tiny_set(source, download=download)
    folder, cache = tmp_path / "data" / "usps", tmp_path / "cache"
    assert external.acquire(folder, digit_set, cache).name == "zip.test.gz"
    assert len(downloads) == 1 and (cache / "zip.test.gz").is_file()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["usps"]  # no temp left
    external.acquire(folder, digit_set, cache)  # valid file there: no download
    (folder / "zip.test.gz").unlink()
    external.acquire(folder, digit_set, cache, use_network=False)  # from the cache, offline
    assert len(downloads) == 1 and (folder / "zip.test.gz").read_bytes() == source.read_bytes()
    images, _, found = external.read(folder, digit_set)
    assert len(images) == 30 and found.format == "ESL text"


def test_a_corrupt_file_is_replaced_by_a_download(
    tmp_path: Path, make_usps: Callable[..., Path]
) -> None:
    source = make_usps(tmp_path / "src" / "zip.test.gz", LABELS)
    digit_set = _tiny_set(
        source, download=lambda f: (f / source.name).write_bytes(source.read_bytes())
    )
    folder = tmp_path / "usps"
    folder.mkdir()
    (folder / "zip.test.gz").write_bytes(b"not the file")
    external.acquire(folder, digit_set)
    assert external.md5sum(folder / "zip.test.gz") == external.md5sum(source)


def test_without_file_or_download_one_line_says_what_to_put_where(tmp_path: Path) -> None:
    def offline(folder: Path) -> None:
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    digit_set = dataclasses.replace(external.USPS, download=offline)
    with pytest.raises(external.ExternalDataError) as info:
        external.acquire(tmp_path / "usps", digit_set)
    msg = str(info.value)
    assert "\n" not in msg and "download failed" in msg
    assert f"put zip.test.gz (md5 {external.USPS.files[0].md5}) or usps.t.bz2" in msg
    assert str(tmp_path / "usps") in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["usps"]  # nothing half-written
    with pytest.raises(external.ExternalDataError, match=r"no valid file; put zip\.test\.gz"):
        external.acquire(tmp_path / "usps", digit_set, use_network=False)


def test_a_malformed_file_with_the_right_checksum_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "usps" / "zip.test.gz"
    bad.parent.mkdir()
    with gzip.open(bad, "wt") as fh:
        fh.write("3 0.1 0.2\n")  # 2 values, not 256
    with pytest.raises(external.ExternalDataError, match=r"cannot read .*256 values") as info:
        external.read(bad.parent, _tiny_set(bad))
    assert "\n" not in str(info.value)


def test_the_stage_writes_the_digits_or_fails_in_one_line(
    tmp_path: Path,
    make_usps: Callable[..., Path],
    params_file: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    raw = tmp_path / "data" / "external" / "usps"
    out = tmp_path / "data" / "external" / "usps.npz"
    argv = ["--set", "usps", "--raw", str(raw), "--out", str(out), "--params", str(params_file())]
    # No file, no network: one line, exit 1, nothing written.
    assert run_stage("prepare_external", stages.prepare_external.main, [*argv, "--offline"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prepare_external: error: usps: no valid file")
    assert not out.exists()
    # With the file in place: the digits, through the class digits' recipe.
    source = make_usps(raw / "zip.test.gz", LABELS)
    monkeypatch.setitem(external.SETS, "usps", _tiny_set(source))
    assert run_stage("prepare_external", stages.prepare_external.main, [*argv, "--offline"]) == 0
    images, labels = load_split(out)
    assert images.shape == (30, 28, 28) and labels.tolist() == LABELS.tolist()


@pytest.mark.skipif(not SHARED_USPS.is_dir(), reason="../shared/external/usps is not here")
def test_the_real_usps_test_set(tmp_path: Path) -> None:
    """The file ../shared/external holds: 2,007 digits with zip.info.txt's class counts."""
    images, labels, found = external.read(SHARED_USPS, external.USPS)
    assert found.name == "zip.test.gz" and images.shape == (2007, 16, 16)
    counts = np.bincount(labels, minlength=10).tolist()
    assert counts == [359, 264, 198, 166, 200, 160, 170, 147, 166, 177]
    digits, refused = external.to_mnist(images, external.USPS.pad)
    assert refused == [] and digits.shape == (2007, 28, 28)
