"""Stage `prepare_class`: load, preprocess and quality-filter a folder of class digit PNGs.

Reads  every entry of the folder given by --dir (dvc.yaml passes ${class_digits.dir}), named
<digit>-<group>-<member>.<ext>: any image format (PNG, JPEG, WebP, BMP, TIFF, GIF, HEIC),
sniffed from the bytes.
Writes data/class/digits.npz (uint8 28x28 images with digit, group, member and file name),
reports/class/rejected.csv (file,reason for every entry that was not used),
reports/class/read.csv (file,format,rotated,photo for every kept file: the format sniffed from
its bytes, whether an EXIF orientation was applied, whether it was read as a photo of paper) and
reports/class/folder.json (the folder as given and named by its content: {dir, digest,
files}; seed-spread records are matched by the digest, wherever the folder lies).
A missing folder, or one without a single usable image, fails with one line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mnistgap import atomic
from mnistgap.class_folder import ClassFolderError, ReadInfo, folder_digest, load_folder
from mnistgap.cli import StageError, run_stage
from mnistgap.data import save_class
from mnistgap.params import load_params

log = logging.getLogger("stages.prepare_class")

PARAMS = ("class_digits.preprocess", "filter")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True, help="folder of class digit images")
    ap.add_argument("--out", type=Path, default=Path("data/class/digits.npz"))
    ap.add_argument("--rejected", type=Path, default=Path("reports/class/rejected.csv"))
    ap.add_argument("--read", type=Path, default=None, help="default: read.csv beside --rejected")
    ap.add_argument(
        "--folder-id", type=Path, default=None, help="default: folder.json beside --rejected"
    )
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    p = load_params(args.params, PARAMS)
    folder_id = args.folder_id or args.rejected.parent / "folder.json"
    read_csv = args.read or args.rejected.parent / "read.csv"
    read_log: list[ReadInfo] = []

    try:
        digits, rejected = load_folder(
            args.dir, p["class_digits.preprocess"], p["filter"], read_log=read_log
        )
    except ClassFolderError as exc:
        # Still say which entries were refused and why, so the user can fix the folder.
        atomic.write_csv(args.rejected, ["file", "reason"], exc.rejected)
        raise StageError(str(exc)) from None
    atomic.write_csv(args.rejected, ["file", "reason"], rejected)
    atomic.write_csv(
        read_csv,
        ["file", "format", "rotated", "photo"],
        [(r.file, r.format, int(r.rotated), int(r.photo)) for r in read_log],
    )
    files = sum(1 for e in args.dir.iterdir() if e.is_file())
    atomic.write_json(
        folder_id, {"dir": str(args.dir), "digest": folder_digest(args.dir), "files": files}
    )
    save_class(args.out, digits)
    log.info(
        "%d usable class digits in %d groups; %d entries not used (see %s)",
        len(digits.files),
        len(set(digits.groups.tolist())),
        len(rejected),
        args.rejected,
    )


if __name__ == "__main__":
    sys.exit(run_stage("prepare_class", main))
