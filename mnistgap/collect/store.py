"""Atomic, no-clobber file output inside the collection folder.

An upload is first written to a hidden temporary file in the folder itself (same filesystem),
checked there, then published under its final name in one step:

* :func:`publish` without ``replace`` uses ``os.link(tmp, final)``, which fails when
  ``final`` exists. Of any number of concurrent uploads of the same name exactly one
  succeeds; the others get :class:`FileExistsError` and the existing file is never touched.
  No "check, then write" window exists.
* with ``replace`` it renames ``tmp`` over ``final`` (``os.replace``): readers see the old
  file or the new one, never a partial one.

The temporary file is always removed afterwards; a process killed in between can leave one
``.collect-*.tmp`` file, which :func:`remove_stale_temps` deletes at the next start.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

TEMP_PREFIX = ".collect-"
TEMP_SUFFIX = ".tmp"
#: Temporary files older than this are leftovers of a killed server, not work in progress.
STALE_AFTER_S = 3600.0
# os.link fails with these where the filesystem has no hard links (FAT, some network mounts).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def _file_mode() -> int:
    """0666 less the umask: what ``open()`` would give (``mkstemp`` creates 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def spooled(folder: Path, data: bytes) -> Iterator[Path]:
    """Write ``data`` to a new hidden temporary file in ``folder``; yield its path; remove it."""
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=folder)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(_file_mode())
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def publish(tmp: Path, final: Path, replace: bool = False) -> bool:
    """Give the complete file ``tmp`` the name ``final`` (same folder); True if it replaced one.

    Without ``replace``: raises :class:`FileExistsError` when ``final`` exists (atomically,
    see the module doc). ``tmp`` itself is left for :func:`spooled` to remove.
    """
    if not replace:
        try:
            os.link(tmp, final)
        except FileExistsError:
            raise
        except OSError as err:
            if err.errno not in _NO_HARD_LINKS:
                raise
            _exclusive_copy(tmp, final)
        return False
    existed = final.exists()  # informational only; the rename is atomic either way
    tmp.replace(final)
    return existed


def _exclusive_copy(tmp: Path, final: Path) -> None:
    """Fallback where the filesystem has no hard links: create ``final`` with ``O_EXCL``.

    Still exactly-once (the create fails if the name exists), but a reader may see the file
    while its bytes are being written, which ``os.link`` avoids.
    """
    fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _file_mode())
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(tmp.read_bytes())
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            final.unlink()
        raise


def remove_stale_temps(folder: Path, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete this app's temporary files in ``folder`` left by a killed server."""
    removed = []
    now = time.time()
    for path in Path(folder).glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file() and now - path.stat().st_mtime > older_than_s:
                path.unlink()
                removed.append(path)
    return removed


def folder_bytes(folder: Path) -> int:
    """Total size of the regular files directly in ``folder`` (what a size cap counts)."""
    total = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total
