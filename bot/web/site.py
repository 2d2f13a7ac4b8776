"""What the web part reads from the bot, and what every page shares (links, theme, errors)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.agenda.export import CalendarWriter
from bot.agenda.model import Agenda
from bot.agenda.published import Published, PublishedLedger
from bot.config import WebConfig
from bot.db.personal import PersonalReminders
from bot.render import Renderer
from bot.web.http import RenderCache


@dataclass
class Site:
    agenda: Callable[[], Agenda]  # the agenda served right now
    ledger: PublishedLedger
    personal: PersonalReminders
    renderer: Renderer
    config: WebConfig
    now: Callable[[], datetime]
    dsfr: Path | None = None  # DSFR's dist/ directory, for theme "dsfr"
    prefix: str = "!"  # the bot's command prefix, for "!session <id>" hints
    writer: CalendarWriter = field(init=False)
    cache: RenderCache = field(default_factory=RenderCache)

    def __post_init__(self) -> None:
        self.writer = CalendarWriter(self.renderer.tz, self.renderer.language)
        self._generation = -1

    async def published(self) -> Published:
        published = await self.ledger.sync(self.agenda())
        if published.generation != self._generation:
            self._generation = published.generation
            self.writer.new_generation()
        return published

    @property
    def base_url(self) -> str:
        """What links start with: `web.public_url`, else nothing (links relative to
        the site's root).

        Never the request's Host header: anyone can send any Host, and a page or
        a redirect built from it would point people to another site (and be
        cached for everyone). Nor the `web.http` bind address: behind the TLS
        proxy that the README asks for, it is an address visitors cannot reach
        (127.0.0.1, 0.0.0.0, a container's). Relative links work whatever
        address the visitor came through; only a webcal:// link needs the
        absolute address, so it is offered with `web.public_url` only.
        """
        return self.config.public_url or ""

    def midnight(self, now: datetime) -> datetime:
        """Today's start in the bot's zone: calendars start there, so they change once a day."""
        tz = self.renderer.tz
        return datetime.combine(now.astimezone(tz).date(), time(0), tz)

    @property
    def max_age(self) -> int:
        return int(self.config.max_age.total_seconds())

    def page(self, request: web.Request, name: str, **context: Any) -> str:
        dsfr = self.config.theme == "dsfr"
        return self.renderer.page(
            name,
            lang=self.renderer.language,
            dsfr=dsfr,
            base=self.base_url,
            prefix=self.prefix,
            **context,
        )

    def error(self, request: web.Request, status: int, reason: str) -> web.Response:
        """A page in the bot's language for 400, 404, 414: what happened, and the way back."""
        html = self.page(request, "error", status=status, reason=reason)
        return web.Response(
            status=status,
            text=html,
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )


SITE = web.AppKey("site", Site)
