"""Stage `prepare_external`: get one independent real-handwriting set and read it like class digits.

Reads  data/external/<set>/ (the set's file, checksum-verified) if there; else a verified copy
       in ~/.cache/mnistgap/external/<set>/; else torchvision's download (or, with --offline or
       without a network, one line saying what to put where).
Writes data/external/<set>/ (the raw file, kept between runs) and data/external/<set>.npz:
       uint8 28x28 images and labels, through the class digits' recipe
       (params: class_digits.preprocess). Evaluation only: no stage trains on them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mnistgap import external
from mnistgap.cli import StageError, run_stage, user_cache
from mnistgap.data import save_split
from mnistgap.params import load_params

log = logging.getLogger("stages.prepare_external")

PARAMS = ("class_digits.preprocess",)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", required=True, choices=sorted(external.SETS), dest="name")
    ap.add_argument("--raw", type=Path, required=True, help="folder of the set's raw file")
    ap.add_argument("--out", type=Path, required=True, help="the prepared .npz")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--offline", action="store_true", help="never use the network")
    args = ap.parse_args(argv)
    p = load_params(args.params, PARAMS)
    digit_set = external.SETS[args.name]

    try:
        cache = user_cache() / "external" / args.name
        source = external.acquire(args.raw, digit_set, cache, use_network=not args.offline)
        gray, labels, _ = external.read(args.raw, digit_set)
    except external.ExternalDataError as err:
        raise StageError(str(err)) from None
    images, refused = external.to_mnist(gray, digit_set.pad, p["class_digits.preprocess"])
    if refused:
        log.warning("%d %s digits have no ink after the recipe: left out", len(refused), args.name)
    keep = [i for i in range(len(labels)) if i not in set(refused)]
    save_split(args.out, images, labels[keep])
    log.info(
        "%s: %d digits from %s (%s format), %s recipe -> %s",
        args.name,
        len(images),
        source.name,
        source.format,
        p["class_digits.preprocess"],
        args.out,
    )


if __name__ == "__main__":
    sys.exit(run_stage("prepare_external", main))
