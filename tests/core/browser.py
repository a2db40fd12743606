"""Debian's headless chromium, driven by Playwright, for the console's tests.

The browser is the one ``make test`` installs with apt-get (``/usr/bin/chromium``); Playwright's
own download cannot work here. A missing browser fails the test: it never skips.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("BENTOSHIP_CHROMIUM", "/usr/bin/chromium"))
INSTALL_LOG = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser-install.log"
"""Written by ``make test`` while it installs chromium beside the tests; ``.rc`` once done."""
INSTALL_WAIT_SECONDS = 600.0
SCREENSHOTS = Path(
    os.environ.get("BENTOSHIP_SCREENSHOTS")
    or Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
)
"""Where the console tests save a screenshot of each page (printed at the end of the run)."""
FLAGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""As root, without a sandbox; without the background connections this closed network refuses."""


@dataclass
class Browser:
    page: Any
    dialogs: list[str] = field(default_factory=list)
    """Every JavaScript dialog that opened (none should: an ``alert`` would mean injected code)."""

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def wait_for_install() -> None:
    """Wait while ``make test`` installs chromium; fail, naming what to do, without one."""
    done = INSTALL_LOG.with_name(INSTALL_LOG.name + ".rc")
    deadline = time.monotonic() + INSTALL_WAIT_SECONDS
    while not CHROMIUM.exists() and INSTALL_LOG.exists() and not done.exists():
        if time.monotonic() > deadline:
            break
        time.sleep(1.0)
    if not CHROMIUM.exists():
        tail = INSTALL_LOG.read_text()[-1500:] if INSTALL_LOG.exists() else ""
        pytest.fail(
            f"no browser at {CHROMIUM}: run `make test` or `make browser`, which install "
            f"Debian's chromium (apt-get install chromium chromium-driver)\n{tail}",
            pytrace=False,
        )


@contextmanager
def chromium() -> Iterator[Browser]:
    wait_for_install()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.set_default_timeout(15_000)
            page = context.new_page()
            driven = Browser(page)

            def dialog(opened: Any) -> None:
                driven.dialogs.append(opened.message)
                opened.dismiss()

            page.on("dialog", dialog)
            yield driven
        finally:
            browser.close()
