"""Wall time of each pipeline stage: runs every stage's `cmd` from dvc.yaml in order.

    python benchmarks/stage_times.py

The same commands as `dvc repro -f`, without DVC's own hashing and bookkeeping (which adds a
few seconds in all); with raw MNIST already in data/mnist/raw. Prints one line per stage (wall
time and the stage process's peak resident memory) and the total. Interpolates ${...} from
params.yaml (only the simple dotted keys dvc.yaml uses); a `foreach` stage runs once per item
of its list (`prepare_external@usps`, ...).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from mnistgap.settings import lookup


def main() -> None:
    stages = yaml.safe_load(Path("dvc.yaml").read_text(encoding="utf-8"))["stages"]
    params = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))

    def interpolate(match: re.Match[str]) -> str:
        return str(lookup(params, match.group(1)))

    runs: list[tuple[str, str]] = []
    for name, stage in stages.items():
        if "foreach" in stage:
            items = params[stage["foreach"].strip("${}")]
            runs += [(f"{name}@{i}", stage["do"]["cmd"].replace("${item}", i)) for i in items]
        else:
            runs.append((name, stage["cmd"]))

    total = 0.0
    for name, template in runs:
        cmd = re.sub(r"\$\{([^}]+)\}", interpolate, template)
        argv = shlex.split(cmd)
        if argv[0] == "python":
            argv[0] = sys.executable
        t0 = time.perf_counter()
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
            # wait4 gives this child's own rusage: its peak resident set, not the maximum
            # over every child so far (which is what RUSAGE_CHILDREN would report).
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        dt = time.perf_counter() - t0
        total += dt
        rss_mb = usage.ru_maxrss / 1024
        status_note = "" if proc.returncode == 0 else "  FAILED"
        print(f"{name:<24} {dt:6.1f} s  peak RSS {rss_mb:6.0f} MB{status_note}", flush=True)
        if proc.returncode != 0:
            sys.exit(stderr[-2000:])
    print(f"{'total':<24} {total:6.1f} s")


if __name__ == "__main__":
    main()
