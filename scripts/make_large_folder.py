"""Build a large class-digit folder from the bundled sample, to try the pipeline at course scale.

    python scripts/make_large_folder.py OUT --groups 390 [--per-group 140] [--seed 0]

Writes OUT/<digit>-<group>-<member>.png for GROUPS groups of about PER-GROUP digits (every
digit 0-9 equally often): each file is a hard link to (or, across file systems, a copy of)
a random digit of data/class_digits with that label, so groups mix the sample's 13 writer
blocks differently and their accuracies spread as a class's would. 390 x 140 = 54,600
digits; --groups 1430 gives 200,200. OUT must not exist yet. Then:

    dvc exp run -S class_digits.dir=$(realpath OUT)        # or the stages one by one
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mnistgap.class_folder import parse_name  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--groups", type=int, default=390)
    ap.add_argument("--per-group", type=int, default=140, help="rounded to a multiple of 10")
    ap.add_argument("--sample", type=Path, default=REPO / "data" / "class_digits")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.out.exists():
        sys.exit(f"make_large_folder: {args.out} exists; give a new folder")
    by_digit: dict[int, list[Path]] = {d: [] for d in range(10)}
    for path in sorted(args.sample.glob("*.png")):
        by_digit[parse_name(path.name).digit].append(path)
    rng = np.random.default_rng(args.seed)
    members = max(1, args.per_group // 10)
    args.out.mkdir(parents=True)
    count = 0
    for group in range(1, args.groups + 1):
        for digit in range(10):
            picks = rng.choice(len(by_digit[digit]), size=members, replace=False)
            for member, k in enumerate(picks, 1):
                target = args.out / f"{digit}-{group}-{member}.png"
                try:
                    os.link(by_digit[digit][k], target)
                except OSError:
                    shutil.copyfile(by_digit[digit][k], target)
                count += 1
    print(f"{count} digits in {args.groups} groups -> {args.out}")


if __name__ == "__main__":
    main()
