"""Addresses of the public agenda, for its pages and for the bot's answers (no aiohttp here)."""

from __future__ import annotations

from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from bot.agenda.query import AgendaQuery


def _with_query(url: str, query: AgendaQuery | None) -> str:
    params = query.params() if query is not None else {}
    return f"{url}?{urlencode(params, quote_via=quote)}" if params else url


def agenda_url(base: str, query: AgendaQuery | None = None) -> str:
    return _with_query(f"{base}/", query)


def feed_url(base: str, query: AgendaQuery | None = None) -> str:
    return _with_query(f"{base}/agenda.ics", query)


def session_url(base: str, sid: str) -> str:
    return f"{base}/seance/{quote(sid)}"


def session_ics_url(base: str, sid: str) -> str:
    return f"{base}/seance/{quote(sid)}.ics"


def personal_feed_url(base: str, token: str) -> str:
    return f"{base}/moi/{quote(token)}.ics"


def webcal(url: str) -> str:
    """The same calendar as a webcal:// link: calendar apps offer to subscribe to it."""
    parts = urlsplit(url)
    return urlunsplit(("webcal", *parts[1:]))
