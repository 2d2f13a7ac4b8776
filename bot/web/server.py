"""The web application and its server: routes, limits, static files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from bot.agenda.published import PublishedLedger
from bot.web import calendars, pages
from bot.web.assets import dsfr_dist
from bot.web.http import MAX_PATH, MAX_QUERY, Handler, security_headers
from bot.web.site import SITE, Site

if TYPE_CHECKING:
    from bot.agenda.sources import AgendaService
    from bot.config import Config
    from bot.db.storage import Storage
    from bot.render import Renderer

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
SID = r"[A-Za-z0-9]{1,32}"


@web.middleware
async def limits_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Oversized requests refused; unknown addresses get the site's own 404 page."""
    site = request.app[SITE]
    if len(request.raw_path) > MAX_PATH + MAX_QUERY or len(request.query_string) > MAX_QUERY:
        return site.error(request, 414, "too_long")
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return site.error(request, 404, "not_found")


def make_app(site: Site) -> web.Application:
    app = web.Application(middlewares=[security_headers, limits_and_errors])
    app[SITE] = site
    app.router.add_get("/", pages.agenda_page)
    app.router.add_get("/agenda.ics", calendars.agenda_feed)
    app.router.add_get(f"/seance/{{sid:{SID}}}.ics", calendars.session_feed)
    app.router.add_get(f"/seance/{{sid:{SID}}}", pages.session_page)
    app.router.add_get(f"/moi/{{token:{calendars.TOKEN_PATTERN}}}.ics", calendars.personal_feed)
    app.router.add_static("/static/site/", STATIC)
    if site.config.theme == "dsfr" and site.dsfr is not None:
        app.router.add_static("/static/dsfr/", site.dsfr)
    return app


class WebServer:
    """Serves the site on `web.http` until stopped."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(make_app(self.site), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        # Port 0 (tests) picks a free port: the one bound.
        self.port = int(self._runner.addresses[0][1])
        log.info("web: public agenda on http://%s:%d/", host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def public_agenda(
    config: Config,
    storage: Storage,
    renderer: Renderer,
    agenda: AgendaService,
    now: Callable[[], datetime],
) -> WebServer:
    """The public agenda's server, not started yet: its site, and the ledger of what
    it publishes brought up to date with `agenda` (the app starts it on `web.http`)."""
    ledger = PublishedLedger(storage, kept=config.web.cancelled_kept, now=now)
    await ledger.sync(agenda.agenda)
    site = Site(
        agenda=lambda: agenda.agenda,
        ledger=ledger,
        personal=storage.personal,
        renderer=renderer,
        config=config.web,
        now=now,
        dsfr=dsfr_dist() if config.web.theme == "dsfr" else None,
        prefix=config.bot.prefix,
    )
    return WebServer(site)
