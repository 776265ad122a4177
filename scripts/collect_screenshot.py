"""Screenshot of the collect page (docs/collect.png) with a "7" drawn by the mouse.

    python scripts/collect_screenshot.py [--model models/model.pt] [--out docs/collect.png]

Starts ``mnistgap-collect`` on a free 127.0.0.1 port with a temporary ``--dir``, opens the
page in headless Chromium (system ``chromium``, via Playwright), saves digits 0-6 through the
API (stroke-drawn, so the progress view has something in it), draws a 7 on the canvas with
real mouse events and saves it, then starts drawing an 8 so the live reading shows. Prints
what the model read for the mouse-drawn 7 (the page's text and the API's reading of the file).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from mnistgap.collect.server import running_server
from mnistgap.collect.synthetic import PATHS, digit_png, mouse_draw

# The browser set-up of the browser tests (flags that keep Chromium offline and quiet).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser import CHROMIUM_FLAGS, chromium_path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    ap.add_argument("--out", type=Path, default=Path("docs/collect.png"))
    ap.add_argument("--group", default="3")
    ap.add_argument("--member", default="2")
    args = ap.parse_args()
    chromium = chromium_path()
    if chromium is None:
        sys.exit("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp), args.model) as url:
        for d in range(7):
            r = httpx.post(
                url + "/api/digits",
                data={"digit": d, "group": args.group, "member": args.member},
                files={"image": ("d.png", digit_png(d, seed=d), "image/png")},
            )
            r.raise_for_status()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=list(CHROMIUM_FLAGS))
            page = browser.new_page(viewport={"width": 1100, "height": 820})
            page.goto(url)
            page.fill("#group", args.group)
            page.fill("#member", args.member)
            page.wait_for_function("document.querySelector('#target').textContent === '7'")
            mouse_draw(page, "#pad", PATHS[7])
            page.wait_for_function(
                "/Model reads: \\d/.test(document.querySelector('#live').textContent)"
            )
            live = page.text_content("#live")
            page.click("#save")
            page.wait_for_selector("#read-digit")
            shown = page.text_content("#result")
            saved = Path(tmp) / f"7-{args.group}-{args.member}.png"
            api = httpx.post(
                url + "/api/predict", files={"image": (saved.name, saved.read_bytes(), "image/png")}
            ).json()
            print(f"live reading while drawing: {live}")
            print(f"page after saving: {shown}")
            print(f"API reading of {saved.name}: {api['prediction']} ({api['confidence']:.4f})")
            # Start an 8 so the screenshot shows a drawing and its live reading.
            page.wait_for_function("document.querySelector('#target').textContent === '8'")
            mouse_draw(page, "#pad", PATHS[8])
            page.wait_for_function(
                "/Model reads: \\d/.test(document.querySelector('#live').textContent)"
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            print(f"screenshot: {args.out}")
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
