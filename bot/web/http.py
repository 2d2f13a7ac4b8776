"""HTTP mechanics shared by pages and calendars: validators, 304s, headers on every answer."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache

from aiohttp import web

from bot.agenda.query import AgendaQuery
from bot.cache import BuildCache

# Pages are HTML and CSS from this server only: no script, no frame, no
# third-party request. DSFR's icons are data: URIs inside its CSS.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Longer query strings or paths are refused: every filter fits in far less.
MAX_QUERY = 512
MAX_PATH = 200


@dataclass(frozen=True, slots=True)
class Rendered:
    """A body with its validators, built once and served many times."""

    body: bytes
    content_type: str
    last_modified: datetime
    etag: str = ""
    # The Last-Modified header's value, formatted once: served many times
    # (bench/web.py: formatting it per answer was ~4 % of a cached answer).
    http_date: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.etag:
            digest = hashlib.blake2b(self.body, digest_size=12).hexdigest()
            object.__setattr__(self, "etag", f'"{digest}"')
        date = format_datetime(self.last_modified.astimezone(UTC), usegmt=True)
        object.__setattr__(self, "http_date", date)


@lru_cache(maxsize=256)
def _query(periode: str | None, q: str | None) -> AgendaQuery:
    return AgendaQuery.from_params(periode, q)


def agenda_query(request: web.Request) -> AgendaQuery:
    """`?periode=&q=` as an `AgendaQuery` (raises `QueryError`).

    Memoised on the raw parameters: calendar apps poll the same few addresses,
    and folding the words was most of a cached answer's own work. The
    parameters are bounded by MAX_QUERY before any handler runs, an error is
    not cached, and a query is immutable.
    """
    return _query(request.query.get("periode"), request.query.get("q"))


def _etags(header: str) -> list[str]:
    return [t.strip().removeprefix("W/") for t in header.split(",") if t.strip()]


def not_modified(request: web.Request, rendered: Rendered) -> bool:
    """RFC 9110 §13: If-None-Match first; If-Modified-Since only without it."""
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        tags = _etags(inm)
        return "*" in tags or rendered.etag in tags
    ims = request.headers.get("If-Modified-Since")
    if ims is None:
        return False
    try:
        since = parsedate_to_datetime(ims)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return rendered.last_modified.replace(microsecond=0) <= since


def respond(
    request: web.Request, rendered: Rendered, *, cache_control: str, status: int = 200
) -> web.Response:
    headers = {
        "ETag": rendered.etag,
        "Last-Modified": rendered.http_date,
        "Cache-Control": cache_control,
    }
    if status == 200 and not_modified(request, rendered):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = rendered.content_type
    return web.Response(status=status, body=rendered.body, headers=headers)


class RenderCache(BuildCache[Rendered]):
    """The last bodies built, by key (generation, day, filter…): a bounded LRU."""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
