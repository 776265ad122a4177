"""Atomic file output: write to a temporary file beside the target, then rename.

A killed run therefore leaves either the previous file or the complete new one,
never a half-written model, array or report (``os.replace`` is atomic on POSIX
when source and target are on the same filesystem, which a sibling temp file is).

Whole folders written by other libraries (dvclive) get the same treatment one level up:
the writer fills a fresh hidden sibling (:func:`partial_dir`), and :func:`replace_dir` swaps
it into place once it is complete; :func:`remove_stale_dirs` clears what killed runs left.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports 'w' and 'wb', not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; give the result the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        Path(tmp).chmod(0o666 & ~umask)
        Path(tmp).replace(target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (what ``dvc metrics`` reads)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_csv(
    path: str | os.PathLike[str], header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Atomically write a CSV file with a header row."""
    with atomic_open(path, "w") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def save_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    """Atomically save arrays to an uncompressed ``.npz`` (fast to load, no pickle)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(path, buf.getvalue())


def load_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` written by :func:`save_npz`, refusing pickled objects."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def save_figure(path: str | os.PathLike[str], fig: Any, dpi: int = 120) -> None:
    """Atomically save a matplotlib figure as PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    write_bytes(path, buf.getvalue())


def partial_dir(dst: str | os.PathLike[str]) -> Path:
    """The work folder in which this process builds the next ``dst``: ``.<name>.partial-<pid>``.

    A hidden sibling of ``dst`` (same filesystem, so :func:`replace_dir` is two renames, and a
    dot-name that the repository's ``.gitignore`` ignores). Not created here.
    """
    target = Path(dst)
    return target.parent / f".{target.name}.partial-{os.getpid()}"


def _old_dir(dst: Path) -> Path:
    return dst.parent / f".{dst.name}.old-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers (an earlier failed call in this process) are stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    # A killed child whose parent died too may linger as a zombie (state Z) where nothing
    # reaps orphans (some containers): it signals fine but will never write again.
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def remove_stale_dirs(dst: str | os.PathLike[str]) -> list[Path]:
    """Remove the ``.partial-<pid>`` / ``.old-<pid>`` siblings of ``dst`` left by killed runs.

    Folders of processes that are still alive are left alone (a concurrent run is using
    them). If ``dst`` itself is missing because a run was killed between the two renames of
    :func:`replace_dir`, its complete previous copy is first moved back. Returns the removed
    folders.
    """
    target = Path(dst)
    if not target.parent.is_dir():
        return []
    stale: list[tuple[str, Path]] = []
    for kind in ("old", "partial"):
        for path in sorted(target.parent.glob(f".{glob.escape(target.name)}.{kind}-*")):
            pid = path.name.rsplit("-", 1)[1]
            if pid.isdigit() and _pid_alive(int(pid)):
                continue
            stale.append((kind, path))
    removed: list[Path] = []
    for kind, path in stale:
        if kind == "old" and not target.exists() and path.is_dir():
            log.warning("restoring %s from %s (a run was killed while replacing it)", dst, path)
            path.replace(target)
            continue
        log.info("removing %s left by an interrupted run", path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed.append(path)
    return removed


def replace_dir(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Move the complete folder ``src`` onto ``dst``, replacing any previous ``dst`` entirely.

    ``src`` must be on the same filesystem as ``dst`` (use :func:`partial_dir`), so both
    steps are cheap renames. POSIX cannot atomically rename a folder onto a non-empty one,
    so the previous ``dst`` is first renamed aside to ``.<name>.old-<pid>``, then ``src``
    becomes ``dst``, then the old copy is deleted. The only window in which ``dst`` does not
    exist lies between those two renames (microseconds); a kill there leaves the complete
    previous copy under its ``.old-<pid>`` name, which :func:`remove_stale_dirs` moves back.
    A kill during the final deletion only leaves a stale ``.old-<pid>`` folder, removed too.
    """
    source, target = Path(src), Path(dst)
    if not source.is_dir():
        raise NotADirectoryError(f"replace_dir: source is not a directory: {source}")
    old = _old_dir(target)
    if old.exists():
        shutil.rmtree(old)
    had_previous = target.exists() or target.is_symlink()
    if had_previous:
        target.replace(old)
    try:
        source.replace(target)
    except BaseException:
        if had_previous:
            old.replace(target)  # put the previous copy back before reporting the failure
        raise
    if had_previous:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
