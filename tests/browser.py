"""Headless Chromium for the browser tests, through Playwright, with the network cut off.

Loaded as a pytest plugin by conftest.py (``pytest_plugins``), so any test can ask for the
session fixture ``chromium_browser``. It needs the ``browser`` extra (``pip install -e
".[browser]"``, i.e. playwright) and a system Chromium (Debian: ``apt-get install chromium``;
``playwright install`` downloads browsers, which these machines cannot). Without either, the
tests that use it are skipped with a message saying which is missing, unless
``MNISTGAP_REQUIRE_BROWSER=1`` (set by ``.ci/run`` once it has installed both): then they fail.
``browser_page`` gives a test a fresh page in its own context.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# --no-sandbox: Chromium refuses to run as root with its sandbox. The others stop its
# background services (updates, sync, field trials...) from trying to reach the network.
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-dev-shm-usage",
)
CHROMIUM_NAMES = ("chromium", "chromium-browser")
# Requests to these schemes stay on this machine; every other one is aborted.
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


def chromium_path() -> str | None:
    """The system Chromium, or None."""
    return next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


def _unavailable(message: str) -> None:
    if os.environ.get("MNISTGAP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{message} (MNISTGAP_REQUIRE_BROWSER=1)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[Any]:
    """A launched headless Chromium (playwright ``Browser``); skips when either is missing."""
    try:
        from playwright import sync_api
    except ImportError:
        _unavailable("browser test needs playwright: pip install -e '.[test,browser]'")
    executable = chromium_path()
    if executable is None:
        _unavailable(
            f"browser test needs Chromium ({' or '.join(CHROMIUM_NAMES)} not on PATH): "
            "apt-get install chromium"
        )
    playwright = sync_api.sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()
    finally:
        playwright.stop()


def offline_context(browser: Any, **options: Any) -> tuple[Any, list[str]]:
    """A new browser context that aborts every non-local request, and the list of their URLs.

    The list fills as pages in the context try to load anything remote, so a test can
    assert it stayed empty.
    """
    context = browser.new_context(**options)
    attempted: list[str] = []

    def route(route: Any) -> None:
        url = route.request.url
        if url.startswith(LOCAL_SCHEMES):
            route.continue_()
        else:
            attempted.append(url)
            route.abort()

    context.route("**/*", route)
    return context, attempted


def artifact_path(name: str, fallback: Path) -> Path:
    """Where a test keeps a file for people to look at: $MNISTGAP_ARTIFACTS/name (set by
    .ci/run), else fallback/name."""
    folder = Path(os.environ.get("MNISTGAP_ARTIFACTS") or fallback)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


@pytest.fixture
def browser_page(chromium_browser: Any) -> Iterator[Any]:
    """A fresh page (its own context, 1100x900 viewport) that is closed after the test."""
    context = chromium_browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()
