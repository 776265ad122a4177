"""Headless Chromium for browser tests, through Playwright (import the fixtures you use).

    from browser import browser_page, chromium  # noqa: F401  (pytest fixtures)

``chromium`` (session scope) launches the system's Chromium (``apt-get install chromium``;
``playwright install`` cannot download a browser here) once per test session with flags that
keep it offline and quiet; ``browser_page`` gives each test a fresh page. Where Playwright or
Chromium is missing the tests are skipped with a message saying what to install — unless
``MNISTGAP_REQUIRE_BROWSER=1`` (set by ``.ci/run`` after installing both), where it fails.
``MNISTGAP_CHROMIUM`` overrides the browser path.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: No sandbox (tests run as root), and nothing that reaches out or updates itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-dev-shm-usage",
]


def _unavailable(message: str) -> None:
    if os.environ.get("MNISTGAP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{message} (MNISTGAP_REQUIRE_BROWSER=1)")
    pytest.skip(message)


def chromium_path() -> str | None:
    """The Chromium executable: ``$MNISTGAP_CHROMIUM``, else ``chromium`` on PATH."""
    return os.environ.get("MNISTGAP_CHROMIUM") or shutil.which("chromium")


def artifact_path(tmp_path: Path, name: str) -> Path:
    """Where a test writes a screenshot: ``$MNISTGAP_ARTIFACTS/name``, else ``tmp_path/name``."""
    folder = os.environ.get("MNISTGAP_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return Path(folder) / name
    return tmp_path / name


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """A Playwright ``Browser``: headless system Chromium, shared by the session's tests."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -e '.[test]'")
    path = chromium_path()
    if path is None:
        _unavailable("chromium not found: apt-get update && apt-get install -y chromium")
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        except Error as err:
            pytest.fail(f"chromium at {path} did not start: {str(err).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Any]:
    """A fresh page (its own context, 1100×900 viewport) that is closed after the test."""
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
