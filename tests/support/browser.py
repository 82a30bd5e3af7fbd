"""A real headless Chromium for the web page's tests: Debian's ``chromium`` driven by Playwright.

Playwright is pointed at the system browser (``executable_path``) instead of downloading its own,
so the tests need only ``apt-get install chromium`` and the ``dev`` extra; both are installed by
``.ci/run``. Where either is missing the tests skip and say which.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Error, Page

CHROMIUM_NAMES = ("chromium", "chromium-browser")
# Set by .ci/run: on CI a missing browser is a failure, not a skip.
REQUIRED = os.environ.get("TAGGRAM_REQUIRE_BROWSER", "") not in ("", "0")


def _missing(reason: str) -> NoReturn:
    if REQUIRED:
        pytest.fail(f"{reason} (TAGGRAM_REQUIRE_BROWSER is set)")
    pytest.skip(reason)


def chromium_executable() -> str:
    """The system Chromium (``TAGGRAM_CHROMIUM`` overrides), or skip saying how to install it."""
    candidates = [os.environ.get("TAGGRAM_CHROMIUM", ""), *CHROMIUM_NAMES]
    for name in candidates:
        found = shutil.which(name) if name else None
        if found:
            return found
    _missing("no Chromium here: `apt-get install chromium` (CI's .ci/run installs it)")


@contextmanager
def launched_chromium() -> Iterator[Browser]:
    """A headless Chromium for the block; skips when Playwright or Chromium is missing."""
    try:
        from playwright import sync_api
    except ImportError:
        _missing("playwright is not installed (the dev extra has it)")
    executable = chromium_executable()
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root in a container, where Chromium's sandbox cannot start.
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class ConsoleLog:
    """Everything a page reported as an error: uncaught exceptions and console errors."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> Page:
        page.on("pageerror", self._page_error)
        page.on("console", self._console)
        return page

    def _page_error(self, error: Error) -> None:
        self.errors.append(f"uncaught: {error}")

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def unexpected(self, *allowed: str) -> list[str]:
        """The errors not containing one of ``allowed`` (e.g. the expected failed request's)."""
        return [text for text in self.errors if not any(part in text for part in allowed)]
