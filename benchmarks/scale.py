"""Time and peak memory of the class-digit stages on a folder of any size (issue: a course).

    python scripts/make_large_folder.py /tmp/class54k --groups 390      # ~54,600 digits
    python benchmarks/scale.py /tmp/class54k [--out /tmp/scale54k]

Runs prepare_class, leakage, evaluate_class and evaluate_groups, as `dvc repro` would, on the
folder (outputs in --out, a temporary folder by default; the model is models/model.pt and raw
MNIST data/mnist/raw, from `dvc repro`), and prints each stage's wall time and its own peak
resident memory (os.wait4), the number of digits and groups, and the figures' pixel sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from mnistgap.tables import read_groups


def run(name: str, argv: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{name} failed:\n{stderr[-2000:]}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    ap.add_argument("--raw", type=Path, default=Path("data/mnist/raw"))
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="scale-"))
    py = [sys.executable, "-m"]
    data, leak = out / "digits.npz", out / "leakage"
    stages = {
        "prepare_class": [
            *py, "stages.prepare_class", "--dir", str(args.folder), "--out", str(data),
            "--rejected", str(out / "rejected.csv"),
        ],
        "leakage": [
            *py, "stages.leakage", "--class-data", str(data), "--mnist-raw", str(args.raw),
            "--out", str(leak),
        ],
        "evaluate_class": [
            *py, "stages.evaluate_class", "--model", str(args.model), "--data", str(data),
            "--leakage", str(leak / "leakage.csv"), "--out", str(out / "class"),
        ],
        "evaluate_groups": [
            *py, "stages.evaluate_groups", "--model", str(args.model), "--data", str(data),
            "--leakage", str(leak / "leakage.csv"), "--out", str(out / "groups"),
        ],
    }  # fmt: skip
    for name, argv in stages.items():
        seconds, rss = run(name, argv)
        print(f"{name:<16} {seconds:7.1f} s  peak RSS {rss:7.0f} MB", flush=True)
    summary = json.loads((out / "groups" / "metrics.json").read_text(encoding="utf-8"))
    digits = sum(b["n"] for b in read_groups(out / "groups" / "groups.csv").values())
    print(f"{digits} digits in {summary['groups']} groups; outputs in {out}")
    for png in ("groups/groups.png", "groups/group_digit_accuracy.png"):
        with Image.open(out / png) as im:
            print(f"{png}: {im.width}x{im.height} px")


if __name__ == "__main__":
    main()
