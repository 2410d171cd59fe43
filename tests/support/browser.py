"""A real headless Chromium (Debian's, driven by Playwright) for the browser tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("BLUESPARK_CHROMIUM", "/usr/bin/chromium"),
            args=CHROMIUM_ARGS,
            headless=True,
        )
        try:
            yield browser
        finally:
            browser.close()


def watched_page(browser: Browser, problems: list[str], *, user_agent: str | None = None) -> Page:
    """A page in a fresh context (its own cookies: another device), reporting CSP violations and script errors."""

    def on_console(message: ConsoleMessage) -> None:
        if "content security policy" in message.text.lower():
            problems.append(message.text)

    page = browser.new_context(user_agent=user_agent).new_page()
    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    return page


@contextmanager
def chromium_page() -> Iterator[tuple[Page, list[str]]]:
    """A fresh headless page, and the CSP violations and script errors it reports."""
    problems: list[str] = []
    with chromium() as browser:
        yield watched_page(browser, problems), problems
