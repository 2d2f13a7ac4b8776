"""Browser tests' tools: Debian's Chromium driven by Playwright (async API), axe-core for
accessibility, full-page screenshots kept as artifacts under build/screenshots/.

Fixtures (registered in conftest.py): `browser` (a Chromium of its own for each test:
it starts in ~0.15 s, and a session-wide one would need every test in the session's
event loop), `page` (a French reader in Paris on a fresh context of that browser).

    async def test_agenda_page(page: Page) -> None:
        problems = watch(page)
        await page.goto(url)
        assert problems.found == []
        assert await axe_violations(page) == []
        await screenshot(page, "agenda")
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, ConsoleMessage, Page, Request, Response, async_playwright

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "build" / "screenshots"

# The test machines have a closed network: without these, Chromium keeps trying to reach
# Google's services (refused connections, slower start). No sandbox: tests run as root.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium_path() -> str | None:
    return shutil.which("chromium")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    if executable is None:
        pytest.fail("chromium not found on PATH: run .ci/setup-tests", pytrace=False)
    async with async_playwright() as playwright:
        # launch() gives each browser a fresh temporary profile, removed on close.
        launched = await playwright.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_ARGS)
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    # Readers are French first, in Paris: what the pages negotiate and show by default.
    context = await browser.new_context(locale="fr-FR", timezone_id="Europe/Paris")
    try:
        yield await context.new_page()
    finally:
        await context.close()


@dataclass
class PageProblems:
    """What a reader's browser would have shown as broken while the page loaded."""

    found: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        # Chromium reports Content-Security-Policy refusals as console errors.
        # A 404 the page cannot see (the browser's own /favicon.ico) only shows here.
        if message.type == "error":
            where = message.location.get("url") or "?"
            self.found.append(f"console: {message.text} ({where})")

    def on_page_error(self, error: Exception) -> None:
        self.found.append(f"script error: {error}")

    def on_request_failed(self, request: Request) -> None:
        self.found.append(f"failed: {request.url} ({request.failure})")

    def on_response(self, response: Response) -> None:
        # A missing font or icon is an ordinary 404, not a failed request.
        if response.status >= 400:
            self.found.append(f"HTTP {response.status}: {response.url}")


def watch(page: Page) -> PageProblems:
    """Start recording failed loads, HTTP errors, console errors (CSP violations among
    them) and script errors of `page`; call before `page.goto`."""
    problems = PageProblems()
    page.on("console", problems.on_console)
    page.on("pageerror", problems.on_page_error)
    page.on("requestfailed", problems.on_request_failed)
    page.on("response", problems.on_response)
    return problems


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as loaded, shortened to what an assertion
    message needs: rule id, impact, help text and the CSS targets of each node."""
    results = await Axe().run(page)
    return [
        {
            "id": violation["id"],
            "impact": violation["impact"],
            "help": violation["help"],
            "targets": [node["target"] for node in violation["nodes"]],
        }
        for violation in results.response["violations"]
    ]


async def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG in build/screenshots/<name>.png, kept as a test artifact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=path, full_page=True)
    return path
