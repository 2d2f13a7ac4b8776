"""Fetching from servers that ask to wait (Retry-After) and feeds with relative links."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.db.storage import Storage
from bot.db.subscriptions import GAZETTE
from bot.feeds import FeedWatcher
from bot.fetch import MAX_RETRY_AFTER, SourceError, fetch, retry_after
from tests.helpers import loopback_http, real_feed, with_new_entry

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Tue, 24 Nov 2026 10:00:30 GMT", 30.0),
        (format_datetime(datetime(2026, 11, 24, 10, 0, 5, tzinfo=UTC), usegmt=True), 5.0),
        ("Tue, 24 Nov 2026 09:00:00 GMT", 0.0),  # in the past: at once
        ("86400", MAX_RETRY_AFTER),  # bounded
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds_or_http_date(header: str | None, seconds: float | None) -> None:
    assert retry_after(header, now=lambda: NOW) == seconds


class Busy:
    """Answers `status` with `header` first, then the body."""

    def __init__(self, status: int, header: str | None) -> None:
        self.status = status
        self.header = header
        self.times: list[float] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.times.append(time.monotonic())
        if len(self.times) == 1:
            headers = {"Retry-After": self.header} if self.header else {}
            return web.Response(status=self.status, text="busy", headers=headers)
        return web.Response(body=b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")


@pytest.mark.parametrize(
    ("status", "header_in", "waited"),
    [
        (503, 1.0, (1.0, 1.9)),  # a 503's Retry-After is honoured too
        (429, 1.0, (1.0, 1.9)),
        (503, None, (0.0, 0.5)),  # no header: our own (short, in this test) delay
    ],
)
async def test_retry_after_honoured_on_429_and_503(
    status: int, header_in: float | None, waited: tuple[float, float]
) -> None:
    header = None
    if header_in is not None:
        # As an HTTP date (whole seconds): at least `header_in` from now.
        when = datetime.fromtimestamp(int(time.time() + header_in) + 1, UTC)
        header = format_datetime(when, usegmt=True)
    busy = Busy(status, header)
    async with loopback_http({"/a.ics": busy.handle}) as base, aiohttp.ClientSession() as http:
        got = await fetch(http, f"{base}/a.ics", retry_delays=(0.1,))
    assert got.body is not None and got.body.startswith(b"BEGIN:VCALENDAR")
    gap = busy.times[1] - busy.times[0]
    low, high = waited
    if header is not None:
        high += 1.0  # the date is rounded up to the next whole second
    assert low <= gap <= high


async def test_retry_after_does_not_make_a_404_retryable() -> None:
    busy = Busy(404, "1")
    async with loopback_http({"/a.ics": busy.handle}) as base, aiohttp.ClientSession() as http:
        with pytest.raises(SourceError, match="HTTP 404"):
            await fetch(http, f"{base}/a.ics", retry_delays=(0.1,))
    assert len(busy.times) == 1


async def test_feed_relative_links_resolve_against_the_feed(tmp_path: Path) -> None:
    body = real_feed()

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/atom+xml")

    storage = await Storage.open(tmp_path / "db.sqlite")
    await storage.subscriptions.add("!g:example.org", GAZETTE, "@mod:example.org")
    async with loopback_http({"/fr/feed.xml": handle}) as base, aiohttp.ClientSession() as http:
        url = f"{base}/fr/feed.xml"
        watcher = FeedWatcher(url, storage, http, retry_delays=())
        await watcher.poll()  # first poll: marks what is there as seen
        body = with_new_entry(real_feed(), "Gazette BlueHats n°40", "gazette-40/")
        assert await watcher.poll() == 1
        (item,) = await storage.outbox.pending()
        entry = await storage.feeds.entry(item.broadcast)
    await storage.close()
    # Posted as a link people can open, not "gazette-40/".
    assert entry == ("Gazette BlueHats n°40", f"{base}/fr/gazette-40/")
