"""Classify image files or folders with the trained checkpoint (a user command, not a DVC stage).

    python -m stages.predict PATH... [--model models/model.pt] [--json] [--preprocess mnist|study]
                                     [--tta none|rot|scale]
    mnistgap-predict PATH...            (the same, installed as a console script)

Reads  the checkpoint (weights_only) and each image, format read from its bytes (folders: their
files with an image extension, e.g. .png .jpg .heic, sorted), with
the same preprocessing and test-time views as the pipeline's evaluation (params.yaml's
class_digits.preprocess and tta by default).
Writes to stdout one line per file: file, predicted digit, confidence (or JSON with --json).
Files that cannot be read are reported with the reason and do not stop the others; the exit
status is 1 only when no file at all could be classified.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import get_args

import numpy as np
import torch

from mnistgap.class_folder import EXTENSIONS
from mnistgap.cli import StageError, run_stage
from mnistgap.models import load_checkpoint
from mnistgap.params import Params, ParamsError, Preprocess, load_params
from mnistgap.png import read_digit
from mnistgap.recipe import ImageError
from mnistgap.tta import VIEWS, predict_logits

log = logging.getLogger("stages.predict")


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; folders replaced by their image entries (:data:`EXTENSIONS`), sorted."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(c for c in p.iterdir() if c.suffix.lower() in EXTENSIONS)
        else:
            out.append(p)
    return out


def pipeline_reading(params: Path) -> tuple[str, str]:
    """The pipeline's class-digit preprocessing and test-time views, so predictions match the
    evaluation; without a valid params file, the defaults of mnistgap/params.py."""
    keys = ("class_digits.preprocess", "tta")
    try:
        p = load_params(params, keys)
    except ParamsError:
        defaults = Params()
        p = {"class_digits.preprocess": defaults.class_digits.preprocess, "tta": defaults.tta}
    return p["class_digits.preprocess"], p["tta"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path, help="PNG files or folders of PNGs")
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    ap.add_argument("--preprocess", choices=get_args(Preprocess), default=None)
    ap.add_argument("--tta", choices=list(VIEWS), default=None, help="test-time views")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = ap.parse_args(argv)
    preprocess, tta = pipeline_reading(args.params)
    preprocess, tta = args.preprocess or preprocess, args.tta or tta
    if not args.model.is_file():
        raise StageError(f"no checkpoint at {args.model}: run `dvc repro` first or pass --model")
    model, _ = load_checkpoint(args.model, "cpu")

    files = expand(args.paths)
    images, good, errors = [], [], []
    for f in files:
        try:
            images.append(read_digit(f, preprocess))
            good.append(f)
        except ImageError as exc:
            errors.append({"file": str(f), "error": str(exc)})
        except OSError as exc:  # e.g. vanished or unreadable file
            errors.append({"file": str(f), "error": exc.strerror or type(exc).__name__})

    results = []
    if images:
        logits = predict_logits(model, torch.from_numpy(np.stack(images)), tta)
        probs = logits.softmax(dim=1)
        conf, pred = probs.max(dim=1)
        results = [
            {"file": str(f), "prediction": int(d), "confidence": round(float(c), 4)}
            for f, d, c in zip(good, pred.tolist(), conf.tolist(), strict=True)
        ]

    if args.json:
        print(
            json.dumps(
                {"preprocess": preprocess, "tta": tta, "results": results, "errors": errors},
                indent=1,
            )
        )
    else:
        for r in results:
            print(f"{r['file']}\t{r['prediction']}\t{r['confidence']:.4f}")
        for e in errors:
            print(f"{e['file']}: skipped: {e['error']}", file=sys.stderr)
    if not results:
        raise StageError(f"no file could be classified ({len(errors)} skipped)")


def cli() -> int:
    """Console-script entry point (`mnistgap-predict`)."""
    return run_stage("predict", main)


if __name__ == "__main__":
    sys.exit(cli())
