"""Training speed: the study's per-image pipeline vs this project's training loop.

    python benchmarks/train_speed.py [--model mlp|cnn] [--epochs 3] [--rounds 2] [--data ...]

Runs, on the same MNIST data and the same 2 cores, N epochs of
  (a) the study's pipeline: torchvision's MNIST dataset with RandomAffine(5, (0.1, 0.1),
      (0.8, 1.2), 5), ToTensor and Normalize((0.5,), (0.5,)), random_split 85/15 with seed 42,
      a DataLoader with num_workers=0 and batch 128, the study's MLP, Adam(lr=1e-3), and a
      validation pass per epoch (as in the study's notebook);
  (b) this project's `train_model` with the params.yaml defaults for those N epochs and the
      model given by --model (batched per-image augmentation, fused Adam, batch 128,
      validation per epoch); the MLP with the study's augmentation alone (no blur), so the
      comparison keeps the study's method; with --model cnn also our MLP, for the CNN/MLP
      epoch ratio.
Each runs in its own child process so that its peak resident memory is its own, and they
alternate for --rounds rounds (a shared machine's speed drifts over minutes). Prints seconds
per epoch, train plus validation (median over all rounds' epochs after each run's first),
training images per second and peak RSS, then `speedup: X.XX` (the study's seconds per
epoch / ours) and, with --model cnn, `cnn/mlp epoch ratio: X.XX` and `cnn vs the study's MLP:
X.XX`. Needs data/mnist from `dvc repro`.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_study(raw: Path, epochs: int) -> dict:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, random_split
    from torchvision import datasets, transforms

    from mnistgap.models import MLP

    # torchvision's MNIST expects <root>/MNIST/raw/<canonical files>: link ours in.
    root = Path(tempfile.mkdtemp())
    (root / "MNIST").mkdir()
    (root / "MNIST" / "raw").symlink_to(raw.resolve())
    transform = transforms.Compose(
        [
            transforms.RandomAffine(degrees=5, translate=(0.1, 0.1), scale=(0.8, 1.2), shear=5),
            transforms.ToTensor(),
            transforms.Normalize((0.5,), (0.5,)),
        ]
    )
    full = datasets.MNIST(root=str(root), train=True, download=False, transform=transform)
    n_val = int(0.15 * len(full))
    train_ds, val_ds = random_split(
        full, [len(full) - n_val, n_val], generator=torch.Generator().manual_seed(42)
    )
    train_loader = DataLoader(train_ds, batch_size=128, shuffle=True, num_workers=0)
    val_loader = DataLoader(val_ds, batch_size=128, shuffle=False, num_workers=0)
    torch.manual_seed(42)
    model = MLP([512, 256, 128], 0.2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for x, y in train_loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val_loss = sum(
                F.cross_entropy(model(x), y, reduction="sum").item() for x, y in val_loader
            )
        times.append(time.perf_counter() - t0)
    return {"epoch_seconds": times, "n_train": len(train_ds), "val_loss": val_loss / n_val}


def run_ours(data: Path, epochs: int, model: str) -> dict:
    import numpy as np
    from defaults import train_defaults

    from mnistgap.device import select_device
    from mnistgap.params import load_params

    p = load_params("params.yaml")
    overrides = {"model": model, "max_epochs": epochs, "patience": 0}
    if model == "mlp":  # the study's method: its augmentation (RandomAffine) alone
        overrides["augment"] = p["augment"].model_copy(
            update={"blur": p["augment"].blur.model_copy(update={"enabled": False})}
        )
    _, result = train_defaults(p, data, select_device("cpu"), **overrides)
    return {
        "epoch_seconds": [row["seconds"] for row in result.history],
        "n_train": len(np.load(data / "train.npz")["labels"]),
        "val_loss": result.history[-1]["val_loss"],
    }


def child(which: str, args: argparse.Namespace) -> None:

    from mnistgap.device import environment, resolve_precision, select_device
    from mnistgap.params import load_params

    if which == "study":
        out = run_study(args.raw, args.epochs)
    else:
        out = run_ours(args.data, args.epochs, which)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    device = select_device("cpu")
    precision = load_params("params.yaml", ("precision",))["precision"]
    out["environment"] = environment(device, resolve_precision(precision, device))
    print("RESULT " + json.dumps(out))


def _child_run(which: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", which, "--epochs", str(args.epochs)]
    cmd += ["--data", str(args.data), "--raw", str(args.raw)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        sys.exit(f"{which} run failed:\n{proc.stderr[-2000:]}")
    return json.loads(line[-1][len("RESULT ") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="rounds of runs, interleaved")
    ap.add_argument("--data", type=Path, default=Path("data/mnist"))
    ap.add_argument("--raw", type=Path, default=Path("data/mnist/raw"))
    ap.add_argument("--child", choices=["study", "mlp", "cnn"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args)
        return

    # Interleave the pipelines (the study's, ours, the study's, ours, ...): the speed of a shared
    # machine drifts over minutes, and one long run of the study's pipeline followed by one
    # short run of ours would put the drift into the ratio.
    names = ["study", "mlp"] + (["cnn"] if args.model == "cnn" else [])
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for which in runs:
            runs[which].append(_child_run(which, args))

    env = runs["mlp"][0]["environment"]
    print(
        f"machine: {env['processor']} ({env['isa']}, native bf16: {env['native_bf16']}), "
        f"{env['threads']} threads, our precision {env['precision']}, torch {env['torch']}"
    )
    header = ("pipeline", "s/epoch", "images/s", "peak RSS MB", "epochs (s), per round")
    print("{:<10} {:>8} {:>9} {:>12}  {}".format(*header))
    per_epoch = {}
    for which, rs in runs.items():
        # Median over epochs after each run's first (warm-up: page faults, allocator, threads).
        timed = [s for r in rs for s in (r["epoch_seconds"][1:] or r["epoch_seconds"])]
        secs = statistics.median(timed)
        per_epoch[which] = secs
        rss = max(r["peak_rss_mb"] for r in rs)
        epochs = " | ".join(", ".join(f"{s:.2f}" for s in r["epoch_seconds"]) for r in rs)
        label = "study" if which == "study" else f"ours {which}"
        print(f"{label:<10} {secs:>8.2f} {rs[0]['n_train'] / secs:>9.0f} {rss:>12.0f}  {epochs}")
    print(f"epochs: {args.epochs}, rounds: {args.rounds} (seconds are train + validation)")
    print(f"speedup: {per_epoch['reference'] / per_epoch[args.model]:.2f}")
    if args.model == "cnn":
        print(f"cnn/mlp epoch ratio: {per_epoch['cnn'] / per_epoch['mlp']:.2f}")
        print(f"cnn vs the study's MLP: {per_epoch['cnn'] / per_epoch['reference']:.2f}")


if __name__ == "__main__":
    main()
