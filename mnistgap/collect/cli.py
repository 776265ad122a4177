"""``mnistgap-collect``: serve the page that collects handwritten digits into a folder.

    mnistgap-collect --dir DIR [--host 127.0.0.1] [--port 8000] [--model models/model.pt]
                     [--params params.yaml] [--max-folder-mb 500]
                     [--class-code CODE [--teacher-key KEY] [--public-url URL]
                      [--mnist-raw data/mnist/raw] [--tokens FILE]
                      [--predict-limit 10/second] [--save-limit 30/minute]
                      [--read-limit 60/minute]]

Class mode (``--class-code``; required for a ``--host`` other than loopback, see
docs/class-mode.md): the page asks for the code, each member's digits are protected by a
token, and ``/teacher`` shows the class's progress (``--teacher-key``, or a random key
printed at start).

Reads  ``class_digits.preprocess``, ``filter``, ``tta`` and ``leakage`` from ``--params``
(validated like every stage) and the checkpoint ``--model`` (weights_only; if it is missing
the page still collects, without the model's reading).
Writes only into ``--dir`` (created if missing): ``<digit>-<group>-<member>.png`` files, via
hidden temporary files in the same folder, and in class mode the member tokens' digests
(``--tokens``, default ``DIR/.member-tokens.json``).
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

PARAMS = ("class_digits.preprocess", "filter", "tta", "leakage")


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
    ap.add_argument(
        "--max-folder-mb",
        type=float,
        default=500.0,
        help="refuse saves (507) once --dir holds this many MB (default: 500)",
    )
    cls = ap.add_argument_group("class mode (a page for a whole class on the network)")
    cls.add_argument(
        "--class-code",
        help="code every student's page must send (required for a non-loopback --host)",
    )
    cls.add_argument(
        "--teacher-key", help="key of the teacher view /teacher (default: a random one, printed)"
    )
    cls.add_argument("--public-url", help="the page's address for students (for the QR code)")
    cls.add_argument(
        "--mnist-raw",
        type=Path,
        default=Path("data/mnist/raw"),
        help="MNIST training images for the teacher view's leakage flags",
    )
    cls.add_argument(
        "--tokens", type=Path, help="member-token file (default: DIR/.member-tokens.json)"
    )
    cls.add_argument("--predict-limit", default="10/second", help="per client (default: 10/second)")
    cls.add_argument("--save-limit", default="30/minute", help="per client (default: 30/minute)")
    cls.add_argument("--read-limit", default="60/minute", help="per client (default: 60/minute)")
    args = ap.parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise StageError(f"--port must be 0-65535, got {args.port}")
    if args.class_code is None and not _is_loopback(args.host):
        # Before anything loads: an open page on the network is refused, not warned about.
        print(
            f"mnistgap-collect: error: --host {args.host} is reachable from the network: "
            "give --class-code CODE (class mode, docs/class-mode.md)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if args.class_code is None and args.teacher_key is not None:
        raise StageError("--teacher-key needs class mode (--class-code)")
    if not args.max_folder_mb > 0:
        raise StageError(f"--max-folder-mb must be > 0, got {args.max_folder_mb}")
    class_mode = None
    generated_key = False
    if args.class_code is not None:
        from mnistgap.collect.classroom import ClassMode, new_secret

        generated_key = args.teacher_key is None
        class_mode = ClassMode(
            code=args.class_code,
            teacher_key=args.teacher_key or new_secret(12),
            predict_limit=args.predict_limit,
            save_limit=args.save_limit,
            read_limit=args.read_limit,
            tokens_file=args.tokens,
        )
    p = load_params(args.params, PARAMS)

    # Imported here so that `--help` and params errors answer without loading torch.
    import torch
    import uvicorn

    from mnistgap.collect.app import create_app

    # One image at a time: extra torch threads only add synchronisation per request.
    torch.set_num_threads(1)
    if args.dir.exists() and not args.dir.is_dir():
        raise StageError(f"--dir {args.dir} exists and is not a folder")
    app = create_app(
        args.dir,
        args.model,
        p["class_digits.preprocess"],
        p["filter"],
        p["tta"],
        max_folder_bytes=int(args.max_folder_mb * 2**20),
        class_mode=class_mode,
        mnist_raw=args.mnist_raw,
        leakage_cfg=p["leakage"].model_dump(),
        public_url=args.public_url,
    )
    log.info("saving digits into %s; open http://%s:%d/", args.dir, args.host, args.port)
    if class_mode is not None:
        # Never logged: the code is the teacher's to write on the board, and the key is
        # printed once, to the teacher's terminal, only when it was generated here.
        log.info("class mode: the page asks for the class code; teacher view at /teacher")
        if generated_key:
            print(f"teacher key (for /teacher): {class_mode.teacher_key}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)


def cli() -> int:
    """Console-script entry point (``mnistgap-collect``)."""
    return run_stage("collect", main)


if __name__ == "__main__":
    sys.exit(cli())
