"""Hardened inputs and outputs: kill-safe training, bit-for-bit determinism, a messy folder.

* A training run killed with SIGKILL mid-run leaves the previous model and reports/train
  byte-identical, and the next run (and the next ``dvc repro``) completes.
* The same params and seed on CPU give identical metrics, plots and weights, bit for bit.
* ``prepare_class`` on a folder mixing good images with every bad kind of entry lists each
  bad one in rejected.csv with a reason and reads the unusual-but-valid ones correctly.

The stages run as real subprocesses (``python -m stages.<name>``) where exit codes, stderr
and signals are the point; with one OpenMP thread so tiny runs are not slowed by spinning.
"""

from __future__ import annotations

import csv
import hashlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
import torch
import yaml

import stages.evaluate_split
import stages.prepare_class
import stages.train
from mnistgap.cli import run_stage
from mnistgap.data import load_class
from mnistgap.models import load_checkpoint
from mnistgap.png import read_digit

REPO = Path(__file__).resolve().parents[1]
MESSY_SCRIPT = REPO / "scripts" / "make_messy_folder.py"
SAMPLE = REPO / "data" / "class_digits"
KILLED_EPOCHS = 200  # far more than the test waits for: the run is surely mid-training
# Epoch 2's log line: epoch 1's dvclive files are written after epoch 1's log line, so
# waiting for epoch 2 guarantees the killed run had logged something (no race).
EPOCH_2 = rf"\bepoch\s+2/{KILLED_EPOCHS}\b"

# Every bad entry of the messy folder and the start of the reason it must be rejected with.
BAD_REASONS = {
    "notes.txt": "not an image file name",
    "7-1-99.pdf": "not an image file name",  # JPEG bytes, not an image's name
    "x-1-1.png": "name does not match",
    "3-a-1.png": "name does not match",
    "12-1-1.png": "digit outside 0-9",
    "4-90-1.png": "empty file",
    "5-90-1.png": "corrupt PNG",  # truncated
    "6-90-1.png": "not an image file (unknown format)",  # random bytes
    "8-90-1.png": "too large",  # decompression bomb
    "9-90-1.png": "is a directory",
    "0-90-1.png": "blank: no ink",
    "1-90-1.png": "blank: no ink",
}
# The unusual-but-valid files and the sample digit each was made from.
UNUSUAL_SOURCES = {
    "2-91-1.png": "2-1-1.png",  # 16-bit grayscale
    "3-91-1.png": "3-1-1.png",  # strokes only in the alpha channel
    "4-91-1.png": "4-1-1.png",  # dark ink on white paper
    "5-91-1.png": "5-1-1.png",  # 280x280
    "6-91-1.png": "6-1-1.png",  # palette with transparency
    "7-91-1.png": "7-1-1.png",  # JPEG bytes, .png name: read by content
    "8-91-1.jpg": "8-1-1.png",  # JPEG stored rotated with an EXIF Orientation tag
}
N_GOOD = 40


def _env(**extra: str) -> dict[str, str]:
    """The environment for child processes: no analytics, one thread, unbuffered output."""
    env = dict(os.environ)
    env.update(
        DVC_NO_ANALYTICS="1",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        MNISTGAP_LOG_LEVEL="INFO",
        # `python` in dvc.yaml commands must be this interpreter (CI's venv may not be on PATH).
        PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
    )
    env.update(extra)
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run(
        args,
        cwd=cwd,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


class StderrLines:
    """Read a child's stderr line by line on a thread, so the test can wait with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float) -> str:
        """Return the first line matching ``pattern``; fail after ``timeout`` s or at EOF."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"stderr ended before {pattern!r}:\n{''.join(self.lines)}")
            self.lines.append(line)
            if regex.search(line):
                return line
        pytest.fail(f"no stderr line matching {pattern!r} in {timeout}s:\n{''.join(self.lines)}")


def _sha256_tree(*paths: Path) -> dict[str, str]:
    """sha256 of every file in ``paths`` (files, or folders walked recursively)."""
    digests = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            digests[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return digests


def _states_equal(a: Path, b: Path) -> bool:
    sa, sb = (load_checkpoint(p)[1]["state_dict"] for p in (a, b))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _kill_when_training(proc: subprocess.Popen[str], group: bool) -> StderrLines:
    """Wait for the child's "epoch 2" log line, then SIGKILL it (or its process group)."""
    assert proc.stderr is not None
    lines = StderrLines(proc.stderr)
    try:
        lines.wait_for(EPOCH_2, timeout=180)
    finally:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    return lines


# --------------------------------------------------------------------------- kill safety
@pytest.mark.slow
def test_sigkill_mid_training_keeps_previous_outputs(
    tmp_path: Path, tiny_mnist: Any, params_file: Callable[..., Path]
) -> None:
    fast = params_file(fast=True)
    long = params_file(fast=True, name="long.yaml", max_epochs=KILLED_EPOCHS, patience=0)
    model, live = tmp_path / "models" / "model.pt", tmp_path / "reports" / "train"
    train = [sys.executable, "-m", "stages.train", "--data", str(tiny_mnist.root)]
    train += ["--model", str(model), "--live", str(live), "--params"]

    _ok(_run([*train, str(fast)], tmp_path))
    before = _sha256_tree(model, live)
    assert str(live / "metrics.json") in before
    assert str(live / "plots" / "metrics" / "val" / "loss.tsv") in before
    first_model = tmp_path / "first.pt"
    shutil.copyfile(model, first_model)

    proc = subprocess.Popen(
        [*train, str(long)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _kill_when_training(proc, group=False)

    # The killed run was logging into its own partial folder, never into reports/train.
    partial = live.parent / f".train.partial-{proc.pid}"
    assert (partial / "plots" / "metrics" / "val" / "loss.tsv").is_file()
    assert _sha256_tree(model, live) == before
    assert not list(model.parent.glob(".*.tmp"))

    rerun = _ok(_run([*train, str(fast)], tmp_path))
    assert "Traceback" not in rerun.stderr
    assert not partial.exists()  # the killed run's leftovers are cleared
    assert sorted(p.name for p in live.parent.iterdir()) == ["train"]
    net, ckpt = load_checkpoint(model)
    assert ckpt["extra"]["epochs_run"] == 2
    assert net(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    # Same params and seed in a fresh process: the reports are bit-identical to the first run.
    assert _sha256_tree(live) == {k: v for k, v in before.items() if k != str(model)}
    assert _states_equal(model, first_model)


@pytest.mark.slow
def test_dvc_repro_completes_after_kill(
    tmp_path: Path, make_tiny_mnist: Callable[[Path], Any], make_params_at: Callable[..., Path]
) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    proj = tmp_path / "proj"
    proj.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("stages", "mnistgap"):
        shutil.copytree(REPO / package, proj / package, ignore=ignore)
    shutil.copyfile(REPO / ".gitignore", proj / ".gitignore")
    train_stage = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["train"]
    (proj / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {"train": train_stage}}, sort_keys=False), encoding="utf-8"
    )
    mnist = make_tiny_mnist(tmp_path / "mnist")
    (proj / "data" / "mnist").mkdir(parents=True)
    for name in ("train.npz", "val.npz"):
        shutil.copyfile(mnist.root / name, proj / "data" / "mnist" / name)
    make_params_at(proj / "params.yaml", fast=True)

    env = _env(
        DVC_SITE_CACHE_DIR=str(tmp_path / "dvc-site"),
        DVC_GLOBAL_CONFIG_DIR=str(tmp_path / "dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(tmp_path / "dvc-system"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.com",
    )
    dvc = [sys.executable, "-m", "dvc"]
    _ok(_run(["git", "init", "-q"], proj, env))
    _ok(_run(["git", "add", "-A"], proj, env))
    _ok(_run(["git", "commit", "-q", "-m", "initial"], proj, env))
    _ok(_run([*dvc, "init", "-q"], proj, env))
    _ok(_run([*dvc, "repro"], proj, env))
    assert load_checkpoint(proj / "models" / "model.pt")[1]["extra"]["epochs_run"] == 2

    make_params_at(proj / "params.yaml", fast=True, max_epochs=KILLED_EPOCHS, patience=0)
    proc = subprocess.Popen(
        [*dvc, "repro", "-f"],
        cwd=proj,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: dvc and the stage die together
    )
    _kill_when_training(proc, group=True)

    make_params_at(proj / "params.yaml", fast=True)
    repro = _ok(_run([*dvc, "repro"], proj, env))
    assert "Traceback" not in repro.stderr
    status = _ok(_run([*dvc, "status"], proj, env))
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    net, ckpt = load_checkpoint(proj / "models" / "model.pt")
    assert ckpt["extra"]["epochs_run"] == 2
    assert net(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    assert (proj / "reports" / "train" / "metrics.json").is_file()
    assert not list((proj / "reports").glob(".train.*"))  # no partial folder left


# --------------------------------------------------------------------------- determinism
def _train_and_evaluate(root: Path, data: Path, params: Path, evaluate: bool = True) -> Path:
    """Run the train (and evaluate_mnist) stage in-process into ``root``; return ``root``."""
    p = ["--params", str(params)]
    stages.train.main(
        ["--data", str(data), "--model", f"{root}/model.pt", "--live", f"{root}/train", *p]
    )
    if evaluate:
        test = str(data / "test.npz")
        out = f"{root}/mnist"
        stages.evaluate_split.main(
            ["--set", "mnist", "--model", f"{root}/model.pt", "--data", test, "--out", out, *p]
        )
    return root


def _report_bytes(root: Path) -> dict[str, bytes]:
    files = [root / "train" / "metrics.json", root / "mnist" / "metrics.json"]
    files += sorted((root / "train" / "plots").rglob("*.tsv"))
    files.append(root / "mnist" / "predictions.csv")
    return {str(f.relative_to(root)): f.read_bytes() for f in files}


def test_same_seed_same_metrics_bit_for_bit(
    tmp_path: Path,
    tiny_mnist: Any,
    params_file: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # dvclive looks for a DVC repo from the working directory
    # The real recipe (augmentation on, bf16 autocast where the CPU has it), on CPU, tiny.
    params = params_file(fast=True, **{"augment.enabled": True, "precision": "bf16"})
    other = params_file(
        fast=True, name="seed7.yaml", seed=7, **{"augment.enabled": True, "precision": "bf16"}
    )
    a = _train_and_evaluate(tmp_path / "a", tiny_mnist.root, params)
    b = _train_and_evaluate(tmp_path / "b", tiny_mnist.root, params)
    c = _train_and_evaluate(tmp_path / "c", tiny_mnist.root, other, evaluate=False)

    ra, rb = _report_bytes(a), _report_bytes(b)
    assert len(ra) == 8  # 2 metrics.json, 5 tsv (loss, acc per split; lr), predictions.csv
    assert ra == rb
    assert _states_equal(a / "model.pt", b / "model.pt")
    # The comparison can fail: another seed gives other weights and other metrics.
    assert ra["train/metrics.json"] != (c / "train" / "metrics.json").read_bytes()
    assert not _states_equal(a / "model.pt", c / "model.pt")


# --------------------------------------------------------------------------- messy folder
def _prepare_class(argv: Callable[..., list[str]], folder: Path, out: Path) -> list[str]:
    """The prepare_class command line (with the repository's params.yaml) as a subprocess."""
    return [sys.executable, "-m", "stages.prepare_class", *argv(folder, out, REPO / "params.yaml")]


def _read_rejected(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["file", "reason"]
    reasons = dict(rows[1:])
    assert len(reasons) == len(rows) - 1  # one row per entry
    return reasons


@pytest.fixture(scope="module")
def messy(
    tmp_path_factory: pytest.TempPathFactory, prepare_class_argv: Callable[..., list[str]]
) -> dict[str, Any]:
    """The messy folder (built by the script) and prepare_class's run on it, as a subprocess."""
    if not SAMPLE.is_dir():
        pytest.skip("the bundled sample data/class_digits is missing")
    root = tmp_path_factory.mktemp("messy")
    folder, out = root / "messy", root / "out"
    _ok(_run([sys.executable, str(MESSY_SCRIPT), str(folder), "--good", str(N_GOOD)], root))
    proc = _run(_prepare_class(prepare_class_argv, folder, out), root)
    return {"root": root, "folder": folder, "out": out, "run": proc}


def test_messy_folder_script_contents(messy: dict[str, Any]) -> None:
    entries = {p.name for p in messy["folder"].iterdir()}
    good = entries - set(BAD_REASONS) - set(UNUSUAL_SOURCES)
    assert len(good) == N_GOOD and set(BAD_REASONS) | set(UNUSUAL_SOURCES) <= entries
    for name in good:  # copied unchanged, names kept
        assert (messy["folder"] / name).read_bytes() == (SAMPLE / name).read_bytes()
    assert {name[0] for name in good} == set("0123456789")
    bomb = (messy["folder"] / "8-90-1.png").read_bytes()
    assert len(bomb) < 100_000 and int.from_bytes(bomb[16:20]) * int.from_bytes(bomb[20:24]) > 1e8
    # Deterministic: a second build is byte-identical.
    again = messy["root"] / "again"
    _ok(_run([sys.executable, str(MESSY_SCRIPT), str(again)], messy["root"]))
    assert _sha256_tree(again) == {
        k.replace(str(messy["folder"]), str(again)): v
        for k, v in _sha256_tree(messy["folder"]).items()
    }


def test_messy_folder_rejects_each_bad_entry_with_a_reason(messy: dict[str, Any]) -> None:
    code, stderr, out = messy["run"].returncode, messy["run"].stderr, messy["out"]
    assert code == 0, stderr
    assert "Traceback" not in stderr and "error" not in stderr.lower()
    reasons = _read_rejected(out / "rejected.csv")
    assert set(reasons) == set(BAD_REASONS)  # nothing else: no good or unusual file
    for name, prefix in BAD_REASONS.items():
        assert reasons[name].startswith(prefix), (name, reasons[name])
        assert "unreadable" not in reasons[name]  # anticipated, not the last-resort guard


def test_messy_folder_reads_unusual_valid_files(messy: dict[str, Any]) -> None:
    cs = load_class(messy["out"] / "digits.npz")
    files = cs.files.tolist()
    assert len(files) == N_GOOD + len(UNUSUAL_SOURCES)
    for name, source in UNUSUAL_SOURCES.items():
        assert name in files, name
        i = files.index(name)
        assert cs.labels[i] == int(name[0]) and cs.groups[i] == 91
        # Read correctly: the same 28x28 digit as the sample PNG it was made from.
        ours, ref = cs.images[i].astype(float).ravel(), read_digit(SAMPLE / source).ravel()
        assert np.corrcoef(ours, ref.astype(float))[0, 1] > 0.95, name


@pytest.mark.parametrize("how", ["in-process", pytest.param("subprocess", marks=pytest.mark.slow)])
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "prepare_class: error: class digit folder not found: "),
        ("all_bad", "prepare_class: error: no usable class digit images in "),
    ],
    ids=["missing", "all_bad"],
)
def test_unusable_folders_fail_with_one_line(
    messy: dict[str, Any],
    prepare_class_argv: Callable[..., list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    how: str,
    case: str,
    message: str,
) -> None:
    """A missing folder, or one holding only the messy folder's bad entries: exit 1, one line.

    In-process through ``run_stage`` (what ``python -m`` runs) for the fast suite; the slow
    suite repeats it as a real subprocess (each costs seconds of importing torch).
    """
    folder = tmp_path / "no_such_folder"
    if case == "all_bad":
        folder = tmp_path / "all_bad"
        folder.mkdir()
        for name in BAD_REASONS:
            if (messy["folder"] / name).is_dir():
                (folder / name).mkdir()
            else:
                shutil.copyfile(messy["folder"] / name, folder / name)
    out = tmp_path / "out"
    argv = _prepare_class(prepare_class_argv, folder, out)
    if how == "subprocess":
        proc = _run(argv, tmp_path)
        code, stderr = proc.returncode, proc.stderr
    else:
        code = run_stage("prepare_class", stages.prepare_class.main, argv[3:])
        stderr = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("prepare_class: error:")]
    assert len(errors) == 1 and errors[0].startswith(message), stderr
    assert not (out / "digits.npz").exists()
    if case == "all_bad":  # the reasons are still written, so the user can fix the folder
        assert set(_read_rejected(out / "rejected.csv")) == set(BAD_REASONS)
