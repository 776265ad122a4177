"""Tests for mnistgap.atomic: complete files or the previous file, never a half-written one."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mnistgap import atomic


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_json_round_trip(tmp_path: Path) -> None:
    obj = {"accuracy": 0.93, "n": 10, "per_class_loss": {"0": None, "1": 0.25}, "name": "é"}
    path = tmp_path / "a" / "b" / "metrics.json"  # parents are created
    atomic.write_json(path, obj)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == obj
    assert text.endswith("}\n") and '\n  "n": 10' in text  # indented, newline-terminated
    assert list(json.loads(text)) == list(obj)  # key order kept (not sorted)


def test_write_text_and_bytes(tmp_path: Path) -> None:
    atomic.write_text(tmp_path / "r.md", "line 1\r\nline 2\n")
    assert (tmp_path / "r.md").read_bytes() == b"line 1\r\nline 2\n"  # no newline translation
    atomic.write_bytes(tmp_path / "b.bin", bytes(range(256)))
    assert (tmp_path / "b.bin").read_bytes() == bytes(range(256))
    assert _leftovers(tmp_path) == []


def test_write_csv(tmp_path: Path) -> None:
    atomic.write_csv(tmp_path / "x.csv", ["file", "reason"], [("a,b.png", "bad"), ("c.png", "ok")])
    assert (tmp_path / "x.csv").read_text(encoding="utf-8") == (
        'file,reason\n"a,b.png",bad\nc.png,ok\n'
    )


def test_save_and_load_npz(tmp_path: Path) -> None:
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    files = np.array(["0-1-1.png", "1-1-1.png"])
    atomic.save_npz(tmp_path / "d.npz", images=images, files=files)
    loaded = atomic.load_npz(tmp_path / "d.npz")
    assert set(loaded) == {"images", "files"}
    np.testing.assert_array_equal(loaded["images"], images)
    assert loaded["images"].dtype == np.uint8
    assert loaded["files"].tolist() == files.tolist()


def test_load_npz_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        atomic.load_npz(path)


def test_exception_leaves_previous_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"old complete file")
    with pytest.raises(RuntimeError, match="killed"), atomic.atomic_open(path, "wb") as fh:
        fh.write(b"half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old complete file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_exception_on_a_new_file_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), atomic.atomic_open(tmp_path / "new.json") as fh:
        fh.write("{")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_failing_serialisation_keeps_previous_json(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    atomic.write_json(path, {"n": 1})
    with pytest.raises(TypeError):
        atomic.write_json(path, {"n": object()})
    assert json.loads(path.read_text(encoding="utf-8")) == {"n": 1}
    assert _leftovers(tmp_path) == []


def test_temp_file_is_a_sibling_until_the_rename(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    with atomic.atomic_open(path) as fh:
        fh.write("x")
        # During the write the target does not exist yet; the temp file lies beside it
        # (same filesystem, so os.replace is atomic).
        assert not path.exists()
        assert len(_leftovers(tmp_path)) == 1
    assert path.read_text(encoding="utf-8") == "x" and _leftovers(tmp_path) == []


def test_only_write_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'a'"), atomic.atomic_open(tmp_path / "x", "a"):
        pass


@pytest.mark.usefixtures("umask_022")
def test_files_get_umask_permissions_not_0600(tmp_path: Path) -> None:
    writers = {
        "t.txt": lambda p: atomic.write_text(p, "x"),
        "j.json": lambda p: atomic.write_json(p, {}),
        "a.npz": lambda p: atomic.save_npz(p, a=np.zeros(2)),
        "b.bin": lambda p: atomic.write_bytes(p, b"x"),
    }
    for name, write in writers.items():
        write(tmp_path / name)
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_stricter_umask_is_respected(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic.write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600


# --------------------------------------------------------------------------- folders
def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_replace_dir_swaps_in_the_new_folder(tmp_path: Path) -> None:
    dst = tmp_path / "reports" / "train"
    (dst / "plots").mkdir(parents=True)
    (dst / "metrics.json").write_text("old")
    (dst / "plots" / "stale.tsv").write_text("only in the old run")
    new = atomic.partial_dir(dst)
    assert new.parent == dst.parent and new.name == f".train.partial-{os.getpid()}"
    (new / "plots").mkdir(parents=True)
    (new / "metrics.json").write_text("new")
    (new / "plots" / "loss.tsv").write_text("step\tloss\n0\t1.0\n")

    atomic.replace_dir(new, dst)
    # The new folder replaces the old one entirely (no stale file survives), and neither the
    # partial nor the aside copy is left behind.
    assert _tree(dst) == {"metrics.json": b"new", "plots/loss.tsv": b"step\tloss\n0\t1.0\n"}
    assert sorted(p.name for p in dst.parent.iterdir()) == ["train"]


def test_replace_dir_without_previous_and_bad_source(tmp_path: Path) -> None:
    src, dst = tmp_path / ".out.partial-1", tmp_path / "out"
    src.mkdir()
    (src / "a").write_text("x")
    atomic.replace_dir(src, dst)
    assert _tree(dst) == {"a": b"x"} and not src.exists()
    with pytest.raises(NotADirectoryError):
        atomic.replace_dir(tmp_path / "missing", dst)
    assert _tree(dst) == {"a": b"x"}


def test_remove_stale_dirs(tmp_path: Path) -> None:
    dst = tmp_path / "train"
    dst.mkdir()
    (dst / "m.json").write_text("current")
    dead, alive = _dead_pid(), os.getppid()
    for name in (
        f".train.partial-{dead}",
        f".train.old-{dead}",
        f".train.partial-{os.getpid()}",  # this process's own leftover is stale too
        f".train.partial-{alive}",  # a concurrent run still writing: left alone
        f".other.partial-{dead}",  # another target's folder: not ours to touch
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text("x")
    removed = atomic.remove_stale_dirs(dst)
    assert sorted(p.name for p in removed) == sorted(
        [f".train.old-{dead}", f".train.partial-{dead}", f".train.partial-{os.getpid()}"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["train", f".train.partial-{alive}", f".other.partial-{dead}"]
    )
    assert _tree(dst) == {"m.json": b"current"}
    assert atomic.remove_stale_dirs(tmp_path / "no" / "such") == []


def test_kill_between_the_renames_is_repaired(tmp_path: Path) -> None:
    """A run killed after moving the old folder aside but before moving the new one in:
    the target is missing, its complete previous copy is restored, the partial dropped."""
    dst = tmp_path / "train"
    dead = _dead_pid()
    old, partial = tmp_path / f".train.old-{dead}", tmp_path / f".train.partial-{dead}"
    old.mkdir()
    (old / "metrics.json").write_text("previous")
    partial.mkdir()
    (partial / "metrics.json").write_text("complete but never swapped in")
    removed = atomic.remove_stale_dirs(dst)
    assert removed == [partial]
    assert _tree(dst) == {"metrics.json": b"previous"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]
