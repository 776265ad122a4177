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


def test_class_mode_code_draw_save_and_the_teacher_view(
    chromium_browser: Any, browser_page: Any, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = tmp_path / "model.pt"
    save_checkpoint(model, MLP([16], 0.0), ModelParams(model="mlp", hidden=[16], dropout=0.0))
    folder = tmp_path / "collected"
    code, key = "room-12b", "teacher-secret-1"
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The wrong code's 401 is expected; anything else logged as an error is a fault.
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "status of 401" not in msg.text
            else None
        ),
    )
    extra = ["--teacher-key", key]
    with running_server(
        folder, model, log_file=tmp_path / "server.log", class_code=code, extra_args=extra
    ) as url:
        page.goto(url)
        page.wait_for_selector("#join:not([hidden])")
        page.fill("#class-code", "room-12c")
        page.click("#join button")
        page.wait_for_function(
            "document.querySelector('#join-error').textContent === 'wrong class code'"
        )
        page.fill("#class-code", code)
        page.click("#join button")
        page.wait_for_function(
            "document.querySelector('#model-status').textContent.includes('model.pt')"
        )
        assert page.is_hidden("#join")
        assert page.evaluate("sessionStorage.getItem('mnistgap-class-code')") == code

        page.fill("#group", "3")
        page.fill("#member", "1")
        page.click("#progress li:nth-child(8) button")  # the digit 7
        mouse_draw(page, "#pad", PATHS[7])
        page.wait_for_function(
            "/Model reads: \\d/.test(document.querySelector('#live').textContent)"
        )
        page.click("#save")
        page.wait_for_selector("#read-digit")
        assert (folder / "7-3-1.png").is_file()
        token = page.evaluate("localStorage.getItem('mnistgap-member-token:3:1')")
        assert token and len(token) >= 20

        # This browser keeps the member's token: its next digit is saved too.
        mouse_draw(page, "#pad", PATHS[8])
        page.click("#save")
        page.wait_for_function("document.querySelector('#result').textContent.includes('8-3-1')")
        assert (folder / "8-3-1.png").is_file()

        # Another student's browser with the same numbers cannot write for member 3-1.
        other = chromium_browser.new_context(viewport={"width": 1100, "height": 900})
        try:
            p2 = other.new_page()
            p2.goto(url)
            p2.fill("#class-code", code)
            p2.click("#join button")
            p2.wait_for_function(
                "document.querySelector('#model-status').textContent.includes('model.pt')"
            )
            p2.fill("#group", "3")
            p2.fill("#member", "1")
            p2.click("#progress li:nth-child(10) button")  # the digit 9
            mouse_draw(p2, "#pad", PATHS[9])
            p2.click("#save")
            p2.wait_for_function(
                "document.querySelector('#result').textContent.includes('another browser')"
            )
            assert not (folder / "9-3-1.png").exists()
        finally:
            other.close()

        # The teacher view: the key, then who saved what and the page's QR code.
        page.goto(url + "/teacher")
        page.fill("#teacher-key", key)
        page.click("#unlock button")
        page.wait_for_selector("#members tbody tr")
        row = page.text_content("#members tbody tr")
        assert "2 of 10" in row
        assert page.is_visible("#qr")
        assert page.get_attribute("#qr", "src").startswith("data:image/svg+xml")
        shot = artifact_path("collect-teacher.png", tmp_path)
        page.screenshot(path=str(shot), full_page=True)
    log = (tmp_path / "server.log").read_text()
    assert code not in log and token not in log and key not in log
    assert sorted(p.name for p in folder.iterdir()) == [
        ".member-tokens.json",
        "7-3-1.png",
        "8-3-1.png",
    ]
    assert errors == []
