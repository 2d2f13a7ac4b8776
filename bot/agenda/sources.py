"""Loading agenda sources (files and http(s) URLs) into one `Agenda`.

A source that fails keeps its last good copy (in memory, and in the database
across restarts); the failure is logged once when it starts and once when it
ends, not at every refresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import aiohttp

from bot.agenda.ics import CalendarError, parse_ics
from bot.agenda.model import Agenda, Session
from bot.storage import Storage

log = logging.getLogger(__name__)

MAX_SOURCE_BYTES = 20 * 1024 * 1024
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
# Occurrences already over by more than this are not kept in memory.
LOOKBEHIND = timedelta(days=1)


class SourceError(Exception):
    pass


def is_url(source: str) -> bool:
    return urlparse(source).scheme in ("http", "https")


def describe(source: str) -> str:
    """A source as it may appear in logs: no credentials, no query string."""
    if not is_url(source):
        return source
    parsed = urlparse(source)
    host = parsed.hostname or ""
    if parsed.port:
        host = f"{host}:{parsed.port}"
    return f"{parsed.scheme}://{host}{parsed.path}"


class AgendaService:
    def __init__(
        self,
        sources: list[str],
        storage: Storage,
        http: aiohttp.ClientSession,
        tz: ZoneInfo,
        horizon: timedelta,
        now: Callable[[], datetime],
    ) -> None:
        self._sources = sources
        self._storage = storage
        self._http = http
        self._tz = tz
        self._horizon = horizon
        self._now = now
        self._good: dict[str, list[Session]] = {}
        self._failing: set[str] = set()
        self._lock = asyncio.Lock()
        self.agenda = Agenda()

    async def refresh(self) -> Agenda:
        """Reload every source; on failure keep its last good copy."""
        async with self._lock:
            now = self._now()
            for source in self._sources:
                try:
                    sessions = await self._load(source, now)
                except SourceError as exc:
                    self._report_failure(source, str(exc))
                    if source not in self._good:
                        await self._load_cached(source, now)
                    continue
                if source in self._failing:
                    self._failing.discard(source)
                    log.info("agenda: source %s is readable again", describe(source))
                self._good[source] = sessions
            self.agenda = Agenda(s for src in self._sources for s in self._good.get(src, []))
            log.info(
                "agenda: %d sessions from %d/%d sources",
                len(self.agenda),
                sum(1 for s in self._sources if s in self._good),
                len(self._sources),
            )
            return self.agenda

    def _report_failure(self, source: str, reason: str) -> None:
        if source in self._failing:
            log.debug("agenda: source %s still failing: %s", describe(source), reason)
            return
        self._failing.add(source)
        kept = "keeping its last good copy" if source in self._good else "no copy yet"
        log.warning("agenda: source %s failed: %s (%s)", describe(source), reason, kept)

    async def _load_cached(self, source: str, now: datetime) -> None:
        cached = await self._storage.source_get(source)
        if cached is None:
            return
        try:
            self._good[source] = await self._parse(cached.body, source, now)
        except SourceError:
            return
        log.info("agenda: using the copy of %s saved at %s", describe(source), cached.fetched_at)

    async def _load(self, source: str, now: datetime) -> list[Session]:
        if is_url(source):
            body, etag, last_modified, fresh = await self._fetch(source)
        else:
            try:
                body = await asyncio.to_thread(Path(source).read_bytes)
            except OSError as exc:
                raise SourceError(f"cannot read file ({exc.strerror})") from None
            etag = last_modified = None
            fresh = True
        # Parse before saving: a garbage answer must not replace a good copy.
        sessions = await self._parse(body, source, now)
        if fresh:
            await self._storage.source_put(source, body, etag, last_modified)
        return sessions

    async def _parse(self, body: bytes, source: str, now: datetime) -> list[Session]:
        try:
            return await asyncio.to_thread(
                parse_ics,
                body,
                source=describe(source),
                tz=self._tz,
                window_start=now - LOOKBEHIND,
                window_end=now + self._horizon,
            )
        except CalendarError as exc:
            raise SourceError(str(exc)) from None

    async def _fetch(self, url: str) -> tuple[bytes, str | None, str | None, bool]:
        """Body, ETag, Last-Modified, and whether the body is new (not a 304)."""
        cached = await self._storage.source_get(url)
        headers = {"User-Agent": "bluehats-bot"}
        if cached and cached.etag:
            headers["If-None-Match"] = cached.etag
        if cached and cached.last_modified:
            headers["If-Modified-Since"] = cached.last_modified
        try:
            async with self._http.get(url, headers=headers, timeout=FETCH_TIMEOUT) as resp:
                if resp.status == 304 and cached is not None:
                    return cached.body, cached.etag, cached.last_modified, False
                if resp.status != 200:
                    raise SourceError(f"HTTP {resp.status}")
                chunks, size = [], 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > MAX_SOURCE_BYTES:
                        raise SourceError(f"larger than {MAX_SOURCE_BYTES // 2**20} MiB")
                    chunks.append(chunk)
                return (
                    b"".join(chunks),
                    resp.headers.get("ETag"),
                    resp.headers.get("Last-Modified"),
                    True,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SourceError(f"unreachable ({type(exc).__name__})") from None
