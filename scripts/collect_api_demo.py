"""The collect API's answers to six typical requests, against a live server.

    python scripts/collect_api_demo.py [--url http://127.0.0.1:8000] [--model models/model.pt]

Without ``--url`` it starts ``mnistgap-collect`` itself on a free 127.0.0.1 port with an empty
temporary ``--dir`` (removed afterwards). With ``--url`` it talks to a running server, and
saves ``7-9001-1.png`` there (the name is chosen to stay out of a real class's way).
Prints, per request, the HTTP status and the JSON answer.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from mnistgap.collect.server import running_server
from mnistgap.collect.synthetic import digit_png

GROUP = "9001"


def blank_canvas() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((280, 280), 255, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def show(label: str, send) -> None:
    try:
        r = send()
        answer = f"{r.status_code} {json.dumps(r.json())}"
    except httpx.HTTPError as err:
        answer = f"no answer: {type(err).__name__}: {err}"
    print(f"{label:<28} -> {answer}")


def run(url: str) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:

        def post(image: bytes, **fields: str):
            data = {"digit": "7", "group": GROUP, "member": "1", **fields}
            return lambda: client.post(
                "/api/digits", data=data, files={"image": ("drawing.png", image, "image/png")}
            )

        good = digit_png(7)
        show("good PNG", post(good))
        show("same name again", post(digit_png(7, seed=1)))
        show("group=../x", post(good, group="../x"))
        show("not a PNG (a text file)", post(b"hello, this is not an image\n"))
        show("30 MB upload", post(b"\x89PNG\r\n\x1a\n" + bytes(30 * 1024 * 1024)))
        show("blank canvas", post(blank_canvas(), digit="3"))
        show("same name, replace=true", post(digit_png(7, seed=2), replace="true"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running mnistgap-collect (default: start one)")
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    args = ap.parse_args()
    if args.url:
        run(args.url.rstrip("/"))
        return 0
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "collected"
        url = stack.enter_context(running_server(folder, args.model))
        print(f"server {url}, --dir {folder}")
        run(url)
        print(f"files in --dir afterwards: {sorted(p.name for p in folder.iterdir())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
