"""Train and evaluate the MLP and the CNN on one device, with the pipeline's own code.

    python benchmarks/device_check.py --device cuda [--class-data data/class/digits.npz]

Uses the library (no DVC, no dvclive), the params.yaml defaults and the prepared arrays in
data/mnist/, so the same numbers can be had on a GPU machine that only has torch. Prints, for
each model, seconds per epoch, the kept epoch, MNIST test accuracy/loss and class-digit
accuracy/loss, and writes them as JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
from defaults import train_defaults

from mnistgap.data import load_class, load_split
from mnistgap.device import select_device
from mnistgap.metrics import evaluate_logits, predict_logits, summary
from mnistgap.params import load_params


def run(kind: str, p: dict, device: torch.device, data: Path, class_data: Path | None) -> dict:
    test_x, test_y = load_split(data / "test.npz")
    t0 = time.perf_counter()
    model, result = train_defaults(p, data, device, model=kind)
    out = {
        "model": kind,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "train_seconds": round(time.perf_counter() - t0, 2),
        "epoch_seconds": [round(r["seconds"], 3) for r in result.history],
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "mnist": summary(evaluate_logits(predict_logits(model, test_x, 4096, device), test_y)),
    }
    if class_data is not None:
        cs = load_class(class_data)
        logits = predict_logits(model, torch.from_numpy(cs.images), 4096, device)
        out["class"] = summary(evaluate_logits(logits, cs.labels))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--data", type=Path, default=Path("data/mnist"))
    ap.add_argument("--class-data", type=Path, default=None)
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    ap.add_argument("--out", type=Path, default=Path("device_check.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    p = load_params("params.yaml")
    device = select_device(args.device)
    results = [run(kind, p, device, args.data, args.class_data) for kind in args.models]
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    for r in results:
        line = (
            f"{r['model']} on {r['device_name']}: {r['train_seconds']} s "
            f"({r['epochs_run']} epochs, kept {r['best_epoch']}), "
            f"MNIST test {r['mnist']['accuracy']:.4f} loss {r['mnist']['loss']:.4f}"
        )
        if "class" in r:
            line += f", class {r['class']['accuracy']:.4f} loss {r['class']['loss']:.4f}"
        print(line)


if __name__ == "__main__":
    main()
