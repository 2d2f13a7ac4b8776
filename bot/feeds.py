"""A feed (RSS/Atom) whose new entries are posted to `gazette` rooms, once each.

Fetched with aiohttp (conditional GET, timeout, retries: `bot.fetch`);
feedparser gets the bytes and the response headers, in the parser process
(`bot.agenda.worker`: off the event loop, under its time and memory limits),
never a URL (its own fetching blocks and has no timeout). Entries are
identified by their id, else their link, else a hash of title and summary;
titles are cut at `TITLE_MAX` characters. The first poll of a feed marks what
is there as seen (no flood), and so does a poll bringing more than `burst`
new entries (a site migration that changed every id), with an error for the
operator. A feed flagged `bozo` but with entries is still used; one without
entries is a failure, logged once, the next good poll goes on from what was
seen.

Its broadcast kind (registered in `bot.broadcasts.registry`):

    feed:<24 hex of sha256("<feed URL>|<entry key>")>   (title and link kept with the entry)
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp

from bot.agenda.worker import Parser, ParserLimit, ThreadParser
from bot.broadcasts.kind import Env, Key, Kind
from bot.db.feeds import FeedEntry
from bot.db.storage import Storage
from bot.db.subscriptions import GAZETTE
from bot.fetch import RETRY_DELAYS, SourceError, describe, fetch
from bot.ops import Metrics
from bot.render import Message

log = logging.getLogger(__name__)

# Longer titles are cut (with an ellipsis) before they are stored and posted.
TITLE_MAX = 200
# Default of `gazette.feed_burst`.
FEED_BURST = 10
# Transaction ids of feed posts (other broadcasts: `bot.broadcasts.kind.TXN_PREFIX`).
FEED_TXN_PREFIX = "bh-f-"


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    title: str
    link: str


def entry_key(entry: Any) -> str:
    for field in ("id", "link"):
        value = str(entry.get(field) or "").strip()
        if value:
            return value
    raw = f"{entry.get('title', '')}|{entry.get('summary', '')}"
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def short_title(title: Any) -> str:
    """A title on one line, at most TITLE_MAX characters."""
    text = " ".join(str(title or "").split())
    if len(text) <= TITLE_MAX:
        return text
    return text[: TITLE_MAX - 1].rstrip() + "…"


@dataclass(frozen=True, slots=True)
class FeedJob:
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class FeedParsed:
    entries: list[Entry]
    error: str | None = None


def run_feed(job: FeedJob) -> FeedParsed:
    """parse_feed as a job of the parser process."""
    try:
        return FeedParsed(parse_feed(job.body, job.headers))
    except SourceError as exc:
        return FeedParsed([], str(exc))


def parse_feed(data: bytes, headers: Mapping[str, str] | None = None) -> list[Entry]:
    """Entries of a feed; `headers`: the HTTP response's (its charset, its
    Content-Location for relative links), as feedparser would have seen them."""
    import feedparser  # in the parser process; not imported by the bot at start

    parsed = feedparser.parse(data, response_headers=dict(headers or {}))
    if not parsed.entries:
        reason = parsed.get("bozo_exception") if parsed.get("bozo") else "no entries"
        raise SourceError(f"not a usable feed ({reason})")
    if parsed.get("bozo"):
        log.debug("feed parsed despite errors: %s", parsed.get("bozo_exception"))
    return [
        Entry(
            key=entry_key(e),
            title=short_title(e.get("title")),
            link=str(e.get("link") or ""),
        )
        for e in parsed.entries
    ]


class FeedWatcher:
    def __init__(
        self,
        url: str,
        storage: Storage,
        http: aiohttp.ClientSession,
        *,
        title_filter: str | None = None,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        burst: int = FEED_BURST,
        parser: Parser | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self.url = url
        self._storage = storage
        self._http = http
        self._filter = re.compile(title_filter) if title_filter else None
        self._retry_delays = retry_delays
        self._burst = burst
        self._parser: Parser = parser or ThreadParser()
        self._failing = False

    async def poll(self) -> int:
        """Queue new entries for `gazette` rooms; returns outbox rows added."""
        kv = f"feed:{self.url}"
        etag = await self._storage.kv.get(f"{kv}:etag")
        last_modified = await self._storage.kv.get(f"{kv}:last-modified")
        try:
            got = await fetch(
                self._http,
                self.url,
                etag=etag,
                last_modified=last_modified,
                retry_delays=self._retry_delays,
            )
            if got.body is None:
                return 0  # not modified
            # Relative links resolve against the feed's own address unless
            # the server says where the document lives.
            headers = {"content-location": self.url, **got.headers}
            entries = await self._parse(got.body, headers)
        except SourceError as exc:
            self._metrics.source_failures.labels("feed").inc()
            if not self._failing:
                log.warning("feed %s failed: %s", describe(self.url), exc)
            self._failing = True
            return 0
        if self._failing:
            log.info("feed %s is readable again", describe(self.url))
            self._failing = False
        first = await self._storage.kv.get(f"{kv}:polled") is None
        new = await self._storage.feeds.unseen(self.url, [e.key for e in entries])
        burst = not first and new > self._burst
        if burst:
            log.error(
                "feed %s: %d new entries at once, more than gazette.feed_burst (%d): none "
                "posted, all marked seen as at a first poll (did the site change every "
                "entry's id?). Check the feed; nothing to do if this was expected",
                describe(self.url),
                new,
                self._burst,
            )
        queued = await self._storage.feeds.record(
            self.url,
            [
                FeedEntry(
                    e.key,
                    e.title,
                    e.link,
                    FeedKey.of(self.url, e.key),
                    not first and not burst and self._wanted(e),
                )
                for e in entries
            ],
            GAZETTE,
        )
        await self._storage.kv.put(f"{kv}:polled", "1")
        if got.etag:
            await self._storage.kv.put(f"{kv}:etag", got.etag)
        if got.last_modified:
            await self._storage.kv.put(f"{kv}:last-modified", got.last_modified)
        if first:
            log.info(
                "feed %s: first poll, %d entries marked seen", describe(self.url), len(entries)
            )
        elif queued:
            log.info("feed %s: %d post(s) queued", describe(self.url), queued)
        return queued

    async def _parse(self, body: bytes, headers: dict[str, str]) -> list[Entry]:
        try:
            parsed = await self._parser.run(run_feed, FeedJob(body, headers))
        except ParserLimit as exc:
            raise SourceError(str(exc)) from None
        finally:
            self._parser.idle()
        if parsed.error is not None:
            raise SourceError(parsed.error)
        return parsed.entries

    def _wanted(self, entry: Entry) -> bool:
        return self._filter is None or bool(self._filter.search(entry.title))


@dataclass(frozen=True, slots=True)
class FeedKey(Key):
    """The post of a new feed entry (its title and link are kept with the entry)."""

    prefix: ClassVar[str] = "feed"
    txn_prefix: ClassVar[str] = FEED_TXN_PREFIX
    digest: str

    @classmethod
    def of(cls, feed: str, entry_key: str) -> FeedKey:
        """The key of an entry of a feed (a digest: entry keys are URLs of any length)."""
        return cls(hashlib.sha256(f"{feed}|{entry_key}".encode()).hexdigest()[:24])


async def _render(env: Env, key: FeedKey, room_id: str) -> Message | None:
    found = await env.storage.feeds.entry(str(key))
    if found is None:
        return None  # listed by a published gazette since: not relayed again
    title, link = found
    return env.renderer.render("feed_entry", title=title, link=link, prefix=env.prefix)


FEED = Kind(FeedKey, _render, announcement=True)
