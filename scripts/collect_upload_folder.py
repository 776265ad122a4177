"""Upload a folder of ``<digit>-<group>-<member>.png`` files through the collect API.

    python scripts/collect_upload_folder.py SRC --dir DEST [--model models/model.pt]
    python scripts/collect_upload_folder.py SRC --url http://127.0.0.1:8000

Each file goes through the same checks as a drawing on the page (the loader, the quality
filter, no-clobber names). With ``--dir`` a server is started for the run (127.0.0.1, a free
port) and DEST receives the files; with ``--url`` a running server does. Prints one line per
file that was not saved (status and reason) and the tally; the model's readings that differ
from the file's digit are listed too. Files whose names do not parse are skipped locally.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import Counter
from pathlib import Path

import httpx

from mnistgap.collect.loader import parse_name
from mnistgap.collect.server import running_server


def upload(src: Path, url: str, replace: bool) -> Counter:
    tally: Counter = Counter()
    misread = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for path in sorted(src.iterdir()):
            try:
                name = parse_name(path.name)
            except ValueError as err:
                print(f"{path.name}: skipped: {err}")
                tally["skipped"] += 1
                continue
            fields = {"digit": name.digit, "group": name.group, "member": name.member}
            r = http.post(
                "/api/digits",
                data={**{k: str(v) for k, v in fields.items()}, "replace": str(replace).lower()},
                files={"image": (path.name, path.read_bytes(), "image/png")},
            )
            tally[r.status_code] += 1
            body = r.json()
            if r.status_code >= 400:
                print(f"{path.name}: {r.status_code} {body['error']}")
            elif body["prediction"] is not None and body["prediction"] != name.digit:
                misread.append(f"{body['file']} read as {body['prediction']}")
    print(f"status counts: {dict(sorted(tally.items(), key=str))}")
    if misread:
        print(f"model readings that differ from the file's digit: {', '.join(misread)}")
    return tally


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="folder of <digit>-<group>-<member>.png files")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--dir", type=Path, help="start a server that saves into this folder")
    where.add_argument("--url", help="a running mnistgap-collect")
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    ap.add_argument("--replace", action="store_true", help="overwrite files already saved")
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(running_server(args.dir, args.model))
        tally = upload(args.src, url.rstrip("/"), args.replace)
    return 1 if any(isinstance(k, int) and k >= 400 for k in tally) else 0


if __name__ == "__main__":
    sys.exit(main())
