"""HTTP(S) fetching for agenda sources and feeds: conditional GET, timeouts, retries.

Failures that may pass (network, 5xx, 429) are retried with growing waits
(a 429's numeric Retry-After is honoured, bounded); others (404, too large)
are not. Callers keep their last good copy on failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import aiohttp

log = logging.getLogger(__name__)

MAX_BYTES = 20 * 1024 * 1024
TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
# Waits before the 2nd and 3rd attempts.
RETRY_DELAYS = (2.0, 10.0)
MAX_RETRY_AFTER = 60.0


class SourceError(Exception):
    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Fetched:
    body: bytes | None  # None: not modified (304)
    etag: str | None
    last_modified: str | None


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


def _retry_after(value: str | None) -> float:
    """Seconds asked by a 429's Retry-After (a number only), bounded."""
    try:
        return min(max(float(value or 0), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return 0.0


async def fetch(
    http: aiohttp.ClientSession,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    retry_delays: Sequence[float] = RETRY_DELAYS,
) -> Fetched:
    delays = (0.0, *retry_delays)
    for attempt, delay in enumerate(delays, start=1):
        if delay:
            await asyncio.sleep(delay)
        try:
            return await _fetch_once(http, url, etag, last_modified)
        except SourceError as exc:
            if not exc.retryable or attempt == len(delays):
                raise
            log.debug("fetch: %s: %s, attempt %d failed", describe(url), exc, attempt)
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
                retryable = resp.status >= 500 or resp.status == 429
                if resp.status == 429:
                    await asyncio.sleep(_retry_after(resp.headers.get("Retry-After")))
                raise SourceError(f"HTTP {resp.status}", retryable=retryable)
            chunks, size = [], 0
            async for chunk in resp.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > MAX_BYTES:
                    raise SourceError(f"larger than {MAX_BYTES // 2**20} MiB")
                chunks.append(chunk)
            return Fetched(
                b"".join(chunks), resp.headers.get("ETag"), resp.headers.get("Last-Modified")
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SourceError(f"unreachable ({type(exc).__name__})", retryable=True) from None
