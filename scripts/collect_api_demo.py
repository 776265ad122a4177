"""The collect API's answers to six typical requests, against a live server.

    python scripts/collect_api_demo.py [--url http://127.0.0.1:8000] [--model models/model.pt]
    python scripts/collect_api_demo.py --class-mode [--model models/model.pt]

``--class-mode`` starts the server in class mode instead (its own code and teacher key) and
shows the answers to: no class code, a wrong one, the right one, a member's first save (which
returns its token), that member's next digit without and with the token, the teacher view
without and with its key; and what the command says when asked to listen on the network
without a class code.

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
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from mnistgap.collect.server import running_server
from mnistgap.collect.synthetic import digit_png

GROUP = "9001"
CODE = "demo-class-code"
KEY = "demo-teacher-key"


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


def run_class(url: str) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:

        def save(digit: str, **headers: str):
            data = {"digit": digit, "group": GROUP, "member": "1"}
            image = digit_png(int(digit))
            return lambda: client.post(
                "/api/digits",
                data=data,
                files={"image": ("drawing.png", image, "image/png")},
                headers=headers,
            )

        show("info, no class code", lambda: client.get("/api/info"))
        show(
            "info, wrong class code",
            lambda: client.get("/api/info", headers={"X-Class-Code": "guess"}),
        )
        show(
            "info, right class code",
            lambda: client.get("/api/info", headers={"X-Class-Code": CODE}),
        )
        first = save("7", **{"X-Class-Code": CODE})()
        print(f"{'first save of member 1':<28} -> {first.status_code} {json.dumps(first.json())}")
        token = first.json().get("member_token", "")
        show("member 1's 8, no token", save("8", **{"X-Class-Code": CODE}))
        show(
            "member 1's 8, its token", save("8", **{"X-Class-Code": CODE, "X-Member-Token": token})
        )
        show("progress, no teacher key", lambda: client.get("/api/progress"))

        def progress():
            r = client.get("/api/progress", headers={"X-Teacher-Key": KEY})
            body = r.json()
            body["qr_svg"] = body["qr_svg"][:40] + "..."  # an SVG data URI, shortened here
            return _Answer(r.status_code, body)

        show("progress, teacher key", progress)


class _Answer:
    """A response stand-in whose JSON the demo has edited for printing."""

    def __init__(self, status_code: int, body: object) -> None:
        self.status_code = status_code
        self._body = body

    def json(self) -> object:
        return self._body


def network_bind_without_code(folder: Path) -> None:
    cmd = [sys.executable, "-m", "mnistgap.collect.cli", "--dir", str(folder)]
    cmd += ["--host", "0.0.0.0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    print(f"$ mnistgap-collect --dir DIR --host 0.0.0.0   (exit {proc.returncode})")
    print(proc.stderr.strip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running mnistgap-collect (default: start one)")
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    ap.add_argument("--class-mode", action="store_true", help="show class mode's answers")
    args = ap.parse_args()
    if args.class_mode:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "collected"
            extra = ["--teacher-key", KEY, "--public-url", "http://192.168.1.20:8000/"]
            with running_server(folder, args.model, class_code=CODE, extra_args=extra) as url:
                print(f"server {url} in class mode, --dir {folder}")
                run_class(url)
            network_bind_without_code(Path(tmp) / "other")
        return 0
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
