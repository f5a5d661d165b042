"""Browser fixtures for the pages the service serves: headless Debian chromium driven by Playwright (no browser
download: `executable_path` points at the apt package). Without either, the tests that use them skip and say
which is missing; .ci/run installs both."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
# the sandbox needs user namespaces containers lack; the rest stops the background connections (updates,
# sync, field trials) a closed network refuses, which would otherwise slow or stall start-up
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless chromium per test module. Not per session: while Playwright's sync API is open it keeps an
    event loop marked running in this thread, so any later test calling `asyncio.run` would fail."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.is_file():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in its own context (no cookies or storage from another test), closed after the test."""
    context = browser.new_context()
    yield context.new_page()
    context.close()


@pytest.fixture
def requested(page: Page) -> list[str]:
    """Every URL `page` requests from now on, in order (`off_host` picks those that left the machine)."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    return urls


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """Where tests save screenshots for a person to look at: $EDURANK_SCREENSHOTS, else build/screenshots."""
    path = Path(os.environ.get("EDURANK_SCREENSHOTS") or ROOT / "build" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def off_host(urls: list[str]) -> list[str]:
    """The URLs that left the machine: network ones to a host other than loopback (data: and blob: stay)."""
    def remote(url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ws", "wss"):
            return False
        host = parts.hostname or ""
        try:
            return not ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host != "localhost"

    return [url for url in urls if remote(url)]
