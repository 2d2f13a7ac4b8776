"""What a browser test costs before it checks anything: Chromium's start, a page, axe-core.

    .venv/bin/python bench/browser_start.py [--runs 7]

Uses the browser tests' own settings (tests/browser.py: Debian's Chromium, its flags)
and the DSFR page of tests/unit/web/test_web_assets.py served on loopback. Prints medians in
milliseconds of:

- Playwright's driver start plus `chromium.launch` (what the per-test `browser` fixture
  pays), and `chromium.launch` alone;
- a fresh French context and page, then `goto` of the DSFR page until `load` and its
  fonts are ready (tests waiting for `networkidle` add Playwright's 500 ms of quiet);
- `axe_violations` on that page, first run (axe-core injected) and later runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.web.assets import dsfr_dist  # noqa: E402
from tests.browser import CHROMIUM_ARGS, axe_violations, chromium_path  # noqa: E402
from tests.unit.web.test_web_assets import PAGE  # noqa: E402


def ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:7.1f} ms"


async def main(runs: int) -> None:
    executable, dist = chromium_path(), dsfr_dist()
    if executable is None or dist is None:
        sys.exit("needs chromium and the DSFR (.ci/setup-tests)")

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_static("/static/dsfr/", dist)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/"))

    cold, launch, page_load, axe_first, axe_again = [], [], [], [], []
    for _ in range(runs):
        started = time.perf_counter()
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=executable, args=list(CHROMIUM_ARGS)
            )
            cold.append(time.perf_counter() - started)
            await browser.close()

            started = time.perf_counter()
            browser = await playwright.chromium.launch(
                executable_path=executable, args=list(CHROMIUM_ARGS)
            )
            launch.append(time.perf_counter() - started)

            started = time.perf_counter()
            context = await browser.new_context(locale="fr-FR", timezone_id="Europe/Paris")
            page = await context.new_page()
            await page.goto(url, wait_until="load")
            await page.evaluate("document.fonts.ready")
            page_load.append(time.perf_counter() - started)

            started = time.perf_counter()
            violations = await axe_violations(page)
            axe_first.append(time.perf_counter() - started)
            for _ in range(3):
                started = time.perf_counter()
                await axe_violations(page)
                axe_again.append(time.perf_counter() - started)
            assert violations == [], violations
            await browser.close()
    await server.close()

    print(f"runs: {runs} (chromium {executable})")
    print(f"driver start + chromium launch  {ms(cold)}")
    print(f"chromium launch alone           {ms(launch)}")
    print(f"context + page + DSFR page load {ms(page_load)}")
    print(f"axe, first run on the page      {ms(axe_first)}")
    print(f"axe, later runs                 {ms(axe_again)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    asyncio.run(main(parser.parse_args().runs))
