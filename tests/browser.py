"""Real headless Chromium for the web pages' tests (Debian's ``chromium``, driven by Playwright).

``chromium_path()`` finds the browser (``$CHROMIUM``, then ``chromium`` / ``chromium-browser`` on
PATH); the ``browser`` fixture launches it once per session and ``page`` gives each test a fresh
context whose console errors, page errors and dialogs (an ``alert`` would be an XSS) are recorded
and fail the test at teardown. Where Chromium is missing the tests skip with one line saying how
to install it (``.ci/run`` installs it itself).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = "headless Chromium not found: apt-get install chromium (or set CHROMIUM=/path/to/chromium)"

# As root Chromium needs --no-sandbox; the rest keep it from reaching for the network (closed here).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
]


def chromium_path() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot_dir() -> Path:
    """Where tests write their screenshots: ``$PT_SCREENSHOT_DIR`` (docs/ regenerates from it), else a temp dir."""
    chosen = os.environ.get("PT_SCREENSHOT_DIR")
    path = Path(chosen) if chosen else Path(tempfile.gettempdir()) / "pattern-tracker-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


class PageProblems:
    """What a page did that a user would count as broken: console errors, uncaught errors, dialogs."""

    def __init__(self) -> None:
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.dialogs: list[str] = []

    def attach(self, page: Any) -> None:
        page.on("console", lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)

    def assert_clean(self) -> None:
        assert not self.dialogs, f"the page opened dialogs (script ran): {self.dialogs}"
        assert not self.page_errors, f"uncaught errors in the page: {self.page_errors}"
        assert not self.console_errors, f"console errors: {self.console_errors}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module: Playwright's sync API keeps an event loop running in this
    thread while it is open, and an asyncio test collected after a session-wide browser would
    find that loop ("cannot be called from a running event loop")."""
    path = chromium_path()
    if path is None:
        pytest.skip(INSTALL_HINT)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context's page; console errors, page errors and dialogs fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    problems = PageProblems()
    problems.attach(pg)
    pg.problems = problems  # type: ignore[attr-defined]
    try:
        yield pg
        problems.assert_clean()
    finally:
        context.close()


def save_screenshot(page: Any, name: str) -> Path:
    out = screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(out), full_page=False)
    return out
