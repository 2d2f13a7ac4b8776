"""HTML pages: the agenda (`/`, with the filters of `!agenda`) and one page per session."""

from __future__ import annotations

from itertools import groupby

from aiohttp import web

from bot.agenda.query import QueryError
from bot.views import views
from bot.web import links
from bot.web.http import Rendered, agenda_query, respond
from bot.web.site import SITE

# Sessions on one page; more are counted, and the filters narrow them down.
PAGE_LIMIT = 100
HTML = "text/html; charset=utf-8"
# The page says "ongoing" and drops what is over: it may be kept a minute.
PAGE_CACHE = "public, max-age=60"


async def agenda_page(request: web.Request) -> web.StreamResponse:
    site = request.app[SITE]
    try:
        query = agenda_query(request)
    except QueryError:
        return site.error(request, 400, "bad_period")
    published = await site.published()
    now = site.now()
    base = site.base_url
    key = ("page", published.generation, int(now.timestamp()) // 60, query)

    async def build() -> Rendered:
        renderer = site.renderer
        sessions = query.select(site.agenda(), now, renderer.tz)
        shown = views(sessions[:PAGE_LIMIT], now, renderer)
        days = [(day, list(items)) for day, items in groupby(shown, key=lambda v: v.day)]
        cancelled = views(
            [e.session for e in published.cancelled(query, now, renderer.tz)], now, renderer
        )
        feed = links.feed_url(base, query)
        html = site.page(
            request,
            "agenda",
            query=query,
            words=" ".join(query.words),
            days=days,
            cancelled=cancelled,
            total=len(sessions),
            more=max(0, len(sessions) - PAGE_LIMIT),
            today=renderer.local(now).date(),
            feed=feed,
            webcal=links.webcal(feed) if base else "",
            periods=[("", None), *((w, w) for w in ("aujourdhui", "demain", "semaine"))],
        )
        return Rendered(html.encode(), HTML, published.last_modified)

    rendered = await site.cache.get(key, build)
    return respond(request, rendered, cache_control=PAGE_CACHE)


async def session_page(request: web.Request) -> web.StreamResponse:
    site = request.app[SITE]
    sid = request.match_info["sid"].lower()
    published = await site.published()
    agenda = site.agenda()
    session = agenda.get(sid)
    entry = published.entry(session) if session is not None else published.gone(sid)
    if entry is None:
        moved = published.moved_to(sid)
        if moved is not None and agenda.get(moved) is not None:
            # Relative without web.public_url (RFC 9110 §10.2.2 allows it).
            raise web.HTTPMovedPermanently(links.session_url(site.base_url, moved))
        return site.error(request, 404, "session_not_found")
    now = site.now()
    base = site.base_url
    key = ("seance", published.generation, int(now.timestamp()) // 60, sid)

    async def build() -> Rendered:
        renderer = site.renderer
        (view,) = views([entry.session], now, renderer)
        framing = [] if session is None else agenda.framing(session)
        feed = links.feed_url(base)
        html = site.page(
            request,
            "session",
            v=view,
            cancelled=entry.cancelled,
            past=entry.session.end <= now,
            part_of=[s.title for s in framing if s.title != entry.session.event],
            today=renderer.local(now).date(),
            ics=links.session_ics_url(base, sid),
            feed=feed,
            webcal=links.webcal(feed) if base else "",
        )
        return Rendered(html.encode(), HTML, entry.stamp)

    rendered = await site.cache.get(key, build)
    return respond(request, rendered, cache_control=PAGE_CACHE)
