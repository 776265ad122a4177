"""Wall time of each pipeline stage: runs every stage's `cmd` from dvc.yaml in order.

    python benchmarks/stage_times.py

The same commands as `dvc repro -f`, without DVC's own hashing and bookkeeping (which adds a
few seconds in all); with raw MNIST already in data/mnist/raw. Prints one line per stage and
the total. Interpolates ${...} from params.yaml (only the simple dotted keys dvc.yaml uses).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml


def main() -> None:
    stages = yaml.safe_load(Path("dvc.yaml").read_text(encoding="utf-8"))["stages"]
    params = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))

    def lookup(match: re.Match[str]) -> str:
        value = params
        for part in match.group(1).split("."):
            value = value[part]
        return str(value)

    total = 0.0
    for name, stage in stages.items():
        cmd = re.sub(r"\$\{([^}]+)\}", lookup, stage["cmd"])
        argv = shlex.split(cmd)
        if argv[0] == "python":
            argv[0] = sys.executable
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        dt = time.perf_counter() - t0
        total += dt
        print(f"{name:<16} {dt:6.1f} s" + ("" if proc.returncode == 0 else "  FAILED"), flush=True)
        if proc.returncode != 0:
            sys.exit(proc.stderr[-2000:])
    print(f"{'total':<16} {total:6.1f} s")


if __name__ == "__main__":
    main()
