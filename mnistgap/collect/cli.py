"""``mnistgap-collect``: serve the page that collects handwritten digits into a folder.

    mnistgap-collect --dir DIR [--host 127.0.0.1] [--port 8000] [--model models/model.pt]
                     [--params params.yaml]

Reads  ``class_digits.preprocess``, ``filter`` and ``tta`` from ``--params`` (validated like every
stage) and the checkpoint ``--model`` (weights_only; if it is missing the page still
collects, without the model's reading).
Writes only into ``--dir`` (created if missing): ``<digit>-<group>-<member>.png`` files, via
hidden temporary files in the same folder.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from pathlib import Path

from mnistgap.cli import StageError, run_stage
from mnistgap.params import load_params

log = logging.getLogger("mnistgap.collect")

PARAMS = ("class_digits.preprocess", "filter", "tta")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="mnistgap-collect",
        description="Serve a page that collects handwritten digits into a folder.",
    )
    ap.add_argument("--dir", type=Path, required=True, help="folder the digits are saved in")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default: local)")
    ap.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    ap.add_argument(
        "--model",
        type=Path,
        default=Path("models/model.pt"),
        help="checkpoint for the model's reading (if missing: collect without it)",
    )
    ap.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="class_digits.preprocess, filter and tta are read from it",
    )
    args = ap.parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise StageError(f"--port must be 0-65535, got {args.port}")
    p = load_params(args.params, PARAMS)

    # Imported here so that `--help` and params errors answer without loading torch.
    import torch
    import uvicorn

    from mnistgap.collect.app import create_app

    # One image at a time: extra torch threads only add synchronisation per request.
    torch.set_num_threads(1)
    if args.dir.exists() and not args.dir.is_dir():
        raise StageError(f"--dir {args.dir} exists and is not a folder")
    app = create_app(args.dir, args.model, p["class_digits.preprocess"], p["filter"], p["tta"])
    if not _is_loopback(args.host):
        log.warning(
            "listening on %s: anyone who can reach this machine can save files into %s",
            args.host,
            args.dir,
        )
    log.info("saving digits into %s; open http://%s:%d/", args.dir, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)


def cli() -> int:
    """Console-script entry point (``mnistgap-collect``)."""
    return run_stage("collect", main)


if __name__ == "__main__":
    sys.exit(cli())
