"""How far MNIST-only training gets on USPS: many CNNs, several recipes, averaged every way.

    python benchmarks/usps_ceiling.py --out DIR [--recipes deep convs2 ...] [--workers 8]
        [--device auto] [--mnist data/mnist] [--sets class=data/class/digits.npz
        usps=data/external/usps.npz dev=X/digits.npz]
    python benchmarks/usps_ceiling.py --out DIR --summary     # the tables again, no training

Trains each recipe's seeds with the package's ``train_members`` (params.yaml's settings, the
recipe's overrides on top), on the prepared seed-42 split (``data/mnist/train.npz`` and
``val.npz``), several processes at once on one device (a GPU: a CPU trains one at a time). Each
model is read with and without the test-time rotations (:mod:`mnistgap.tta`) on MNIST test and
every ``--sets`` cache; DIR/results.jsonl gets a row per model, DIR/probs.npz its
log-probabilities (float16: a model "averaged" alone can differ from its own accuracy by a
digit), so that the summary can average any models afterwards: per model,
per recipe (the mean of its seeds and their average), all models averaged, and the spread over
every triple of models. Training never sees the evaluation sets.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from mnistgap.data import load_split
from mnistgap.device import select_device
from mnistgap.models import Dropout, FlattenChannelsLast, build_model
from mnistgap.params import TOP_LEVEL_KEYS, ModelParams, TrainParams, validate
from mnistgap.settings import applied
from mnistgap.training import train_members
from mnistgap.tta import predict_logits

DEEP = {"cnn_channels": [32, 64, 128], "max_epochs": 20, "batch_size": 128, "lr": 1.0e-3}
LONG = {"max_epochs": 40, "patience": 0}
STRONG = {
    "augment.affine.degrees": 10.0,
    "augment.affine.shear": 10.0,
    "augment.affine.scale": [0.75, 1.25],
}
# name: (network, params overrides, seeds). "cnn" is the package's CNN; "convs2" two 3x3
# convs a resolution (the second of each pair with stride 2) of the given channels.
RECIPES: dict[str, tuple[str, dict[str, Any], list[int]]] = {
    "default-fp32": ("cnn", {"precision": "fp32"}, [42]),
    "default-bf16": ("cnn", {"precision": "bf16"}, [42]),
    "deep": ("cnn", DEEP, [1, 2, 3, 4, 5, 6]),
    "wide": ("cnn", {**DEEP, "cnn_channels": [64, 128, 256]}, [1, 2, 3]),
    "convs2": ("convs2", {**DEEP, "cnn_channels": [32, 64, 128]}, [1, 2, 3]),
    "deep-long": ("cnn", {**DEEP, **LONG}, [1, 2, 3]),
    "deep-long-strong": ("cnn", {**DEEP, **LONG, **STRONG}, [1, 2, 3]),
    "convs2-long-strong": ("convs2", {**DEEP, **LONG, **STRONG}, [1, 2, 3]),
    "convs2-wide": ("convs2", {**DEEP, "cnn_channels": [64, 128, 256]}, [1, 2, 3, 4, 5, 6]),
    "convs2-wider": ("convs2", {**DEEP, "cnn_channels": [96, 192, 384]}, [1, 2]),
}


def convs2(channels: list[int], dropout: float) -> nn.Module:
    """Per resolution a stride-1 and a stride-2 3x3 conv (the last resolution: stride 2 only),
    BatchNorm and ReLU after each, then the CNN's 128-unit head."""
    spec = [(c, s) for c in channels[:-1] for s in (1, 2)] + [(channels[-1], 2)]
    layers: list[nn.Module] = []
    c_in, size = 1, 28
    for c_out, stride in spec:
        layers += [
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
        ]
        c_in, size = c_out, (size + 1) // 2 if stride == 2 else size
    layers += [
        FlattenChannelsLast(),
        nn.Linear(c_in * size * size, 128),
        nn.ReLU(),
        Dropout(dropout),
        nn.Linear(128, 10),
    ]
    return nn.Sequential(*layers).to(memory_format=torch.channels_last)


def settings(overrides: dict[str, Any], seed: int, device: str, epochs: int | None) -> dict:
    """params.yaml with dotted ``overrides`` applied, validated as every stage validates it."""
    raw = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    extra = {"max_epochs": epochs} if epochs is not None else {}
    params = validate(applied(raw, {**overrides, "seed": seed, "device": device, **extra}))
    return {key: getattr(params, key) for key in TOP_LEVEL_KEYS}


def train_one(job: tuple) -> dict:
    recipe, seed, args = job
    network, overrides, _ = RECIPES[recipe]
    torch.set_num_threads(args["threads"])
    p = settings(overrides, seed, args["device"], args["epochs"])
    device = torch.device(args["device"])
    tx, ty = load_split(Path(args["mnist"]) / "train.npz")
    vx, vy = load_split(Path(args["mnist"]) / "val.npz")
    if args["limit"]:
        tx, ty, vx, vy = tx[: args["limit"]], ty[: args["limit"]], vx[:500], vy[:500]
    if network == "cnn":
        model = build_model(ModelParams.pick(p), seed=seed)
    else:
        torch.manual_seed(seed)
        model = convs2(p["cnn_channels"], p["dropout"])
    t0 = time.perf_counter()
    (result,) = train_members(model, tx, ty, vx, vy, TrainParams.pick(p), p["augment"], device)
    tag = f"{recipe}/{seed}"
    row: dict[str, Any] = {
        "tag": tag,
        "recipe": recipe,
        "seed": seed,
        "train_s": round(time.perf_counter() - t0, 1),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "environment": result.environment,
    }
    logp = {}
    for name, path in args["sets"].items():
        d = np.load(path)
        x, y = torch.from_numpy(d["images"]), d["labels"]
        for tta in ("none", "rot"):
            lp = predict_logits(model, x, tta, 4096, device).log_softmax(1).numpy()
            row[f"{name}_{tta}"] = round(100 * float((lp.argmax(1) == y).mean()), 2)
            logp[f"{tag}|{name}|{tta}"] = lp.astype(np.float16)
    return {"row": row, "logp": logp}


def train_all(args: argparse.Namespace, sets: dict[str, Path]) -> None:
    device = select_device(args.device).type
    workers = args.workers if device == "cuda" else 1
    shared = {
        "device": device,
        "mnist": str(args.mnist),
        "sets": {k: str(v) for k, v in sets.items()},
        "threads": 1 if device == "cuda" else torch.get_num_threads(),
        "epochs": args.epochs,
        "limit": args.limit,
    }
    jobs = [(r, s, shared) for r in args.recipes for s in RECIPES[r][2]]
    args.out.mkdir(parents=True, exist_ok=True)
    probs_path = args.out / "probs.npz"
    logp = dict(np.load(probs_path)) if probs_path.exists() else {}
    t0 = time.perf_counter()
    # spawn: CUDA cannot be used in a forked child.
    with mp.get_context("spawn").Pool(workers, maxtasksperchild=1) as pool:
        for done in pool.imap_unordered(train_one, jobs):
            row = done["row"] | {"done_s": round(time.perf_counter() - t0, 1)}
            print(json.dumps(row), flush=True)
            with (args.out / "results.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            logp |= done["logp"]
            tmp = args.out / "probs.partial.npz"
            np.savez_compressed(tmp, **logp)
            tmp.replace(probs_path)


def summary(out: Path, sets: dict[str, Path]) -> None:
    rows = {}
    for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        rows[row["tag"]] = row  # a later run of the same model replaces the earlier
    names = list(sets)  # MNIST test, then --sets in their order
    labels = {s: np.load(sets[s])["labels"] for s in names}
    with np.load(out / "probs.npz") as logp:  # read each array once: every access unzips it
        probs = {k: np.exp(logp[k].astype(np.float32)) for k in logp.files}

    def averaged(tags: list[str], tta: str, of: list[str] = names) -> list[float]:
        """Accuracy (%) on each set of ``of`` of the models' averaged probabilities."""
        accs = []
        for s in of:
            p = sum(probs[f"{t}|{s}|{tta}"] for t in tags)
            accs.append(100 * float((p.argmax(1) == labels[s]).mean()))
        return accs

    head = " ".join(f"{s:>13}" for s in names)
    print(f"accuracy, none / rot (the digit alone / with ±7° rotations)\n{'model':<24} {head}")
    for tag, r in rows.items():
        cells = " ".join(f"{r[f'{s}_none']:6.2f}/{r[f'{s}_rot']:6.2f}" for s in names)
        print(f"{tag:<24} {cells}  {r['train_s']:.0f} s, {r['epochs_run']} epochs")
    print("\nper recipe: mean of its models (range) | its models averaged")
    print(f"recipe, reading, models, then {', '.join(names)}")
    by_recipe: dict[str, list[str]] = {}
    for tag, r in rows.items():
        by_recipe.setdefault(r["recipe"], []).append(tag)
    for recipe, tags in by_recipe.items():
        for tta in ("none", "rot"):
            cells = []
            for s in names:
                a = [rows[t][f"{s}_{tta}"] for t in tags]
                cells.append(f"{statistics.mean(a):6.2f} ({min(a):.2f}-{max(a):.2f})")
            ens = " ".join(f"{a:6.2f}" for a in averaged(tags, tta))
            print(f"{recipe:<20} {tta:<4} {len(tags)}  " + "  ".join(cells) + f" | {ens}")
    tags = list(rows)
    for tta in ("none", "rot"):
        ens = " ".join(f"{a:6.2f}" for a in averaged(tags, tta))
        print(f"all {len(tags)} models averaged, {tta}: {ens}")
    if "usps" in names and len(tags) >= 3:
        for tta in ("none", "rot"):
            triples = itertools.combinations(tags, 3)
            usps = [averaged(list(c), tta, ["usps"])[0] for c in triples]
            print(
                f"USPS over all {len(usps)} triples of models, {tta}: mean "
                f"{statistics.mean(usps):.2f}, range {min(usps):.2f}-{max(usps):.2f}, "
                f"{sum(u >= 98.5 for u in usps)} at or above 98.5"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--workers", type=int, default=8, help="processes at once on a GPU")
    ap.add_argument("--mnist", type=Path, default=Path("data/mnist"))
    ap.add_argument(
        "--sets",
        nargs="*",
        default=["class=data/class/digits.npz", "usps=data/external/usps.npz"],
        metavar="NAME=NPZ",
    )
    ap.add_argument("--summary", action="store_true", help="only print the tables of --out")
    ap.add_argument("--epochs", type=int, help="override every recipe's epochs (a smoke run)")
    ap.add_argument("--limit", type=int, default=0, help="train on this many images (smoke)")
    args = ap.parse_args()
    sets = {"mnist": args.mnist / "test.npz"}
    sets |= {k: Path(v) for k, v in (e.split("=", 1) for e in args.sets)}
    if not args.summary:
        train_all(args, sets)
    summary(args.out, sets)


if __name__ == "__main__":
    main()
