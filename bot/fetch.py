"""HTTP(S) fetching for agenda sources and feeds: conditional GET, timeouts, retries.

Failures that may pass (network, 5xx, 429) are retried with growing waits;
a Retry-After on a 429 or a 503 (seconds or an HTTP date) is honoured,
bounded. Others (404, too large) are not retried. Callers keep their last
good copy on failure.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlparse

import aiohttp

log = logging.getLogger(__name__)

MAX_BYTES = 20 * 1024 * 1024
TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
# Waits before the 2nd and 3rd attempts.
RETRY_DELAYS = (2.0, 10.0)
MAX_RETRY_AFTER = 60.0
# Statuses whose Retry-After says when to come back (RFC 9110 §10.2.3).
_RETRY_AFTER_STATUSES = frozenset({429, 503})
# Response headers kept for parsers: feedparser reads the charset from
# Content-Type and resolves relative links against Content-Location.
_KEPT_HEADERS = ("Content-Type", "Content-Location", "Content-Language")


class SourceError(Exception):
    def __init__(
        self, reason: str, *, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.retryable = retryable
        # Seconds the server asked us to wait before trying again.
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Fetched:
    body: bytes | None  # None: not modified (304)
    etag: str | None
    last_modified: str | None
    # Some response headers (`_KEPT_HEADERS`), names in lower case.
    headers: Mapping[str, str] = field(default_factory=dict)


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


def retry_after(
    value: str | None, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> float | None:
    """Seconds asked by a Retry-After header (delay-seconds or an HTTP date),
    bounded by MAX_RETRY_AFTER; None when absent or unreadable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000": UTC by RFC 5322
            when = when.replace(tzinfo=UTC)
        seconds = (when - now()).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


async def fetch(
    http: aiohttp.ClientSession,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    retry_delays: Sequence[float] = RETRY_DELAYS,
) -> Fetched:
    attempts = len(retry_delays) + 1
    for attempt in range(1, attempts + 1):
        try:
            return await _fetch_once(http, url, etag, last_modified)
        except SourceError as exc:
            if not exc.retryable or attempt == attempts:
                raise
            # The server's word, when it gave one, else our own growing wait.
            wait = exc.retry_after if exc.retry_after is not None else retry_delays[attempt - 1]
            log.debug(
                "fetch: %s: %s, attempt %d failed; next in %.1fs", describe(url), exc, attempt, wait
            )
            if wait:
                await asyncio.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


async def _fetch_once(
    http: aiohttp.ClientSession, url: str, etag: str | None, last_modified: str | None
) -> Fetched:
    headers = {"User-Agent": "bluehats-bot"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        async with http.get(url, headers=headers, timeout=TIMEOUT) as resp:
            if resp.status == 304 and (etag or last_modified):
                return Fetched(None, etag, last_modified)
            if resp.status != 200:
                raise SourceError(
                    f"HTTP {resp.status}",
                    retryable=resp.status >= 500 or resp.status == 429,
                    retry_after=retry_after(resp.headers.get("Retry-After"))
                    if resp.status in _RETRY_AFTER_STATUSES
                    else None,
                )
            chunks, size = [], 0
            async for chunk in resp.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > MAX_BYTES:
                    raise SourceError(f"larger than {MAX_BYTES // 2**20} MiB")
                chunks.append(chunk)
            return Fetched(
                b"".join(chunks),
                resp.headers.get("ETag"),
                resp.headers.get("Last-Modified"),
                # Lower-case names: what feedparser looks up.
                {k.lower(): v for k in _KEPT_HEADERS if (v := resp.headers.get(k)) is not None},
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SourceError(f"unreachable ({type(exc).__name__})", retryable=True) from None
