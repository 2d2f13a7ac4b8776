"""The `dsfr` theme's files: installed, complete, self-contained (no CDN), shipped by the
Docker image, and rendering in Chromium under the strict CSP the web pages send."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler
from playwright.async_api import Page

from bot.web.assets import (
    DIST_ENV,
    DSFR_CSS,
    DSFR_FILES,
    DSFR_FONTS,
    DSFR_ICONS_CSS,
    dsfr_dist,
)
from tests.browser import axe_violations, screenshot, watch

ROOT = Path(__file__).resolve().parent.parent.parent.parent
STYLESHEETS = (DSFR_CSS, DSFR_ICONS_CSS)
CSP = "default-src 'none'; style-src 'self'; font-src 'self'; img-src 'self' data:"
_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)'"]*))\s*\)""")


def installed_dist() -> Path:
    dist = dsfr_dist()
    if dist is None:
        pytest.fail("@gouvfr/dsfr is not installed: run .ci/setup-web (as .ci/run does)")
    return dist


def css_urls(css: str) -> Iterator[str]:
    for match in _URL.finditer(css):
        yield next(group for group in match.groups() if group is not None).strip()


def unresolved_references(dist: Path) -> list[str]:
    """url(...) references of the stylesheets that a browser could not load from `dist`
    served as is: absolute URLs (a CDN, blocked by the CSP anyway) and missing files."""
    problems = []
    for sheet in STYLESHEETS:
        for url in set(css_urls((dist / sheet).read_text(encoding="utf-8"))):
            if url.startswith("data:"):
                continue
            if re.match(r"^([a-z][a-z0-9+.-]*:|//|/)", url, re.IGNORECASE):
                problems.append(f"{sheet}: not relative: {url}")
                continue
            target = ((dist / sheet).parent / url.split("?")[0].split("#")[0]).resolve()
            if not target.is_relative_to(dist.resolve()) or not target.is_file():
                problems.append(f"{sheet}: missing {url}")
    return problems


def test_installed_dist_has_every_file_the_pages_link() -> None:
    dist = installed_dist()
    assert [name for name in DSFR_FILES if not (dist / name).is_file()] == []


def test_stylesheets_load_their_fonts_and_icons_from_the_same_tree() -> None:
    dist = installed_dist()
    referenced = {url for sheet in STYLESHEETS for url in css_urls((dist / sheet).read_text())}
    # The parser sees what the pages depend on: every font, the components' icons.
    assert set(DSFR_FONTS) <= referenced
    assert "icons/system/external-link-line.svg" in referenced
    assert "../../icons/business/calendar-line.svg" in referenced
    assert unresolved_references(dist) == []


def test_environment_names_the_dist_of_the_docker_image(tmp_path: Path) -> None:
    (tmp_path / "image").mkdir()
    (tmp_path / "image" / DSFR_CSS).write_text("body{}")
    assert dsfr_dist({DIST_ENV: str(tmp_path / "image")}) == tmp_path / "image"
    # A wrong setting is reported as "no DSFR", not silently replaced by the checkout's.
    assert dsfr_dist({DIST_ENV: str(tmp_path / "empty")}) is None
    assert dsfr_dist({}) == installed_dist()


def _dockerfile_instructions() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [i.strip() for i in "\n".join(lines).replace("\\\n", " ").splitlines() if i.strip()]


def test_docker_image_ships_every_file_the_pages_need(tmp_path: Path) -> None:
    instructions = _dockerfile_instructions()
    copy = next(i for i in instructions if i.startswith("COPY --from=web "))
    _, _, source, destination = copy.split()
    env = next(i for i in instructions if i.startswith("ENV ") and DIST_ENV in i)
    assert f"{DIST_ENV}={destination}" in env.split()
    # Replay the web stage's copy out of dist/ on the installed package.
    run = next(i for i in instructions if i.startswith("RUN npm ci "))
    steps = [shlex.split(step) for step in run.removeprefix("RUN ").split("&&")]
    cp = next(step for step in steps if step[0] == "cp" and "--parents" in step)
    assert cp[-1].rstrip("/") == source
    image = tmp_path / "image"
    image.mkdir()
    subprocess.run([*cp[:-1], str(image)], cwd=installed_dist(), check=True)

    assert dsfr_dist({DIST_ENV: str(image)}) == image
    assert [name for name in DSFR_FILES if not (image / name).is_file()] == []
    assert unresolved_references(image) == []


PAGE = f"""<!doctype html>
<html lang="fr">
<head>
<meta charset="utf-8">
<title>Agenda BlueHats</title>
<link rel="stylesheet" href="/static/dsfr/{DSFR_CSS}">
<link rel="stylesheet" href="/static/dsfr/{DSFR_ICONS_CSS}">
<link rel="icon" href="/static/dsfr/favicon/favicon.svg" type="image/svg+xml">
</head>
<body>
<main class="fr-container">
<h1><span class="fr-icon-calendar-line" aria-hidden="true"></span> Agenda BlueHats</h1>
<p>Prochaine séance : mardi 3 février à 14 h (heure de Paris).</p>
<p><a class="fr-link" href="https://code.gouv.fr/fr/bluehats/" target="_blank"
  rel="noopener" title="BlueHats - nouvelle fenêtre">Le site BlueHats</a></p>
</main>
</body>
</html>"""


@pytest.fixture
async def dsfr_site() -> AsyncIterator[str]:
    """A page of the theme served from loopback as the bot will: dist/ under /static/dsfr/,
    every response with the strict Content-Security-Policy."""

    @web.middleware
    async def csp(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers["Content-Security-Policy"] = CSP
        return response

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application(middlewares=[csp])
    app.router.add_get("/", index)
    app.router.add_static("/static/dsfr/", installed_dist())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/"))
    finally:
        await server.close()


async def test_dsfr_page_shows_marianne_and_icons_under_a_strict_csp(
    page: Page, dsfr_site: str
) -> None:
    problems = watch(page)
    loaded: list[str] = []
    page.on("requestfinished", lambda request: loaded.append(request.url))
    await page.goto(dsfr_site, wait_until="networkidle")
    await page.evaluate("document.fonts.ready")

    assert problems.found == []
    assert "Marianne" in await page.evaluate("getComputedStyle(document.body).fontFamily")
    # Declared is not enough: the face must have been fetched and accepted by the CSP.
    marianne = await page.evaluate(
        "[...document.fonts].filter(f => f.family.replaceAll('\"', '') === 'Marianne')"
        ".map(f => f.status)"
    )
    assert "loaded" in marianne
    for name in (
        "fonts/Marianne-Regular.woff2",
        "fonts/Marianne-Bold.woff2",  # the heading
        "icons/business/calendar-line.svg",  # fr-icon-* from the icons sheet
        "icons/system/external-link-line.svg",  # drawn by dsfr.min.css itself
    ):
        assert f"{dsfr_site}static/dsfr/{name}" in loaded
    assert await axe_violations(page) == []
    shot = await screenshot(page, "dsfr-assets")
    assert shot.stat().st_size > 0
