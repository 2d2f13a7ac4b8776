"""Calendars: `/agenda.ics` (the filters of `!agenda`), one session, one person's reminders.

Bodies are cached per agenda generation, day and filter, and the events in
them are serialised once (`CalendarWriter`), so a calendar app polling an
unchanged feed costs a dictionary lookup and a 304.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from bot.agenda.published import Entry
from bot.agenda.query import QueryError
from bot.web.http import Rendered, agenda_query, respond
from bot.web.site import SITE, Site

ICS = "text/calendar; charset=utf-8"
TOKEN_PATTERN = r"[A-Za-z0-9_-]{20,100}"  # noqa: S105 - a URL pattern, not a secret


async def _calendar(site: Site, entries: list[Entry], name: str | None = None) -> bytes:
    # A first build serialises every event (~1 s for 10,000): off the loop.
    return await asyncio.to_thread(site.writer.calendar, entries, name=name)


async def agenda_feed(request: web.Request) -> web.StreamResponse:
    site = request.app[SITE]
    try:
        query = agenda_query(request)
    except QueryError:
        return site.error(request, 400, "bad_period")
    published = await site.published()
    midnight = site.midnight(site.now())
    key = ("feed", published.generation, midnight, query)

    async def build() -> Rendered:
        tz = site.renderer.tz
        sessions = query.select(site.agenda(), midnight, tz)
        entries = published.entries(sessions) + published.cancelled(query, midnight, tz)
        entries.sort(key=lambda e: (e.session.start, e.session.title))
        body = await _calendar(site, entries)
        return Rendered(body, ICS, max(published.last_modified, midnight))

    rendered = await site.cache.get(key, build)
    return respond(request, rendered, cache_control=f"public, max-age={site.max_age}")


async def session_feed(request: web.Request) -> web.StreamResponse:
    site = request.app[SITE]
    sid = request.match_info["sid"].lower()
    published = await site.published()
    session = site.agenda().get(sid)
    entry = published.entry(session) if session is not None else published.gone(sid)
    if entry is None:
        return site.error(request, 404, "session_not_found")
    key = ("seance.ics", published.generation, sid)

    async def build() -> Rendered:
        body = await _calendar(site, [entry], name=entry.session.title)
        return Rendered(body, ICS, entry.stamp)

    rendered = await site.cache.get(key, build)
    response = respond(request, rendered, cache_control=f"public, max-age={site.max_age}")
    if response.status == 200:
        response.headers["Content-Disposition"] = f'inline; filename="seance-{sid}.ics"'
    return response


async def personal_feed(request: web.Request) -> web.StreamResponse:
    """`/moi/<token>.ics`: the sessions one person asked to be reminded of."""
    site = request.app[SITE]
    owner = await site.personal.feed_owner(request.match_info["token"])
    if owner is None:
        return site.error(request, 404, "not_found")
    published = await site.published()
    agenda = site.agenda()
    entries: list[Entry] = []
    for wanted in await site.personal.reminders(owner):
        session = agenda.get(wanted.sid)
        if session is None and (moved := published.moved_to(wanted.sid)) is not None:
            session = agenda.get(moved)
        entry = published.entry(session) if session is not None else published.gone(wanted.sid)
        if entry is not None:
            entries.append(entry)
    entries.sort(key=lambda e: (e.session.start, e.session.title))
    # Translators: the name of a person's calendar of the sessions they asked to be reminded of.
    name = site.renderer.gettext("My BlueHats sessions")
    body = await _calendar(site, entries, name=name)
    rendered = Rendered(
        body, ICS, max((e.stamp for e in entries), default=site.midnight(site.now()))
    )
    response = respond(request, rendered, cache_control=f"private, max-age={site.max_age}")
    # A secret address: not for search engines, not to be leaked onwards.
    response.headers["X-Robots-Tag"] = "noindex"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
