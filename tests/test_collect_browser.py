"""The collect page end to end: the real command, headless Chromium, a digit drawn by mouse.

Starts ``mnistgap-collect`` (a child process on a free 127.0.0.1 port, a tmp ``--dir``, a
tiny checkpoint), fills in group and member, draws a "7" on the canvas with real mouse
pointer events, saves it, and checks the file on disk and the reading the page shows.
The screenshot goes to ``$MNISTGAP_ARTIFACTS/collect.png`` (else the test's tmp folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from browser import artifact_path

from mnistgap.collect.server import running_server
from mnistgap.collect.synthetic import PATHS, mouse_draw
from mnistgap.models import MLP, save_checkpoint
from mnistgap.params import ModelParams

pytestmark = pytest.mark.slow


def test_draw_a_seven_with_the_mouse_and_save_it(browser_page: Any, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tmp_path / "model.pt"
    save_checkpoint(model, MLP([16], 0.0), ModelParams(model="mlp", hidden=[16], dropout=0.0))
    folder = tmp_path / "collected"
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The browser logs the expected 409 below as a failed load; anything else is a fault.
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "status of 409" not in msg.text
            else None
        ),
    )

    with running_server(folder, model, log_file=tmp_path / "server.log") as url:
        page.goto(url)
        page.wait_for_function(
            "document.querySelector('#model-status').textContent.includes('model.pt')"
        )
        assert page.is_disabled("#save")  # nobody and nothing yet
        page.fill("#group", "4")
        page.fill("#member", "2")
        page.click("#progress li:nth-child(8) button")  # choose the digit 7
        assert page.text_content("#target") == "7"

        mouse_draw(page, "#pad", PATHS[7])
        page.wait_for_function(
            "/Model reads: \\d/.test(document.querySelector('#live').textContent)"
        )
        page.click("#save")
        page.wait_for_selector("#read-digit")

        saved = folder / "7-4-2.png"
        assert saved.is_file()
        assert saved.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        api = httpx.post(
            url + "/api/predict", files={"image": (saved.name, saved.read_bytes(), "image/png")}
        ).json()
        shown = page.text_content("#read-digit")
        assert shown == str(api["prediction"])
        assert "Saved 7-4-2.png" in page.text_content("#result")

        # The progress view knows, the next digit is asked, and the canvas is clear again.
        assert "saved" in page.text_content("#progress li:nth-child(8)")
        assert page.text_content("#target") == "8"
        assert page.is_disabled("#save")
        listed = httpx.get(url + "/api/digits", params={"group": 4, "member": 2}).json()
        assert [d["file"] for d in listed["digits"]] == ["7-4-2.png"]

        # Saving the same digit again without "Replace" is refused on the page, file kept.
        before = saved.read_bytes()
        page.click("#progress li:nth-child(8) button")
        mouse_draw(page, "#pad", PATHS[1])
        page.click("#save")
        page.wait_for_function("document.querySelector('#result').textContent.includes('already')")
        assert saved.read_bytes() == before
        page.wait_for_function(
            "/Model reads: \\d/.test(document.querySelector('#live').textContent)"
        )

        shot = artifact_path("collect.png", tmp_path)
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    assert sorted(p.name for p in folder.iterdir()) == ["7-4-2.png"]
    assert errors == []
