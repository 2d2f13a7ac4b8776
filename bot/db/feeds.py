"""Feed entries already seen (posted or not), by feed and entry key."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bot.db import outbox
from bot.db.database import Database, Queries

# Feed entries no longer in the feed are forgotten after this long.
FEED_RETENTION_S = 180 * 24 * 3600


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """An entry as polled: its key in the feed, what the post shows, whether to post it."""

    key: str
    title: str
    link: str
    broadcast: outbox.Broadcast  # its post, stored as text
    post: bool


class FeedEntries:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, feed: str, entries: Sequence[FeedEntry], kind: str) -> int:
        """Mark entries seen; queue the new ones to post to the rooms subscribed to `kind`.

        One transaction: an entry is seen and queued together, so a crash
        neither loses nor doubles a post. Returns outbox rows added.
        """
        now = int(time.time())
        queued = 0
        async with self._db.transaction() as tx:
            for entry in entries:
                seen = await tx.execute(
                    "INSERT OR IGNORE INTO feed_entries (feed, key, broadcast, title, link, "
                    "seen_at, wanted) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    feed,
                    entry.key,
                    str(entry.broadcast),
                    entry.title,
                    entry.link,
                    now,
                    int(entry.post),
                )
                if seen.rowcount == 1 and entry.post:
                    queued += await outbox.queue_for_subscribers(
                        tx, entry.broadcast, kind, "pending", now
                    )
            # Entries gone from the feed long ago will not come back: forget them.
            # (Those still in it are kept whatever their age, or they would be new again.)
            current = json.dumps([entry.key for entry in entries])
            await tx.execute(
                "DELETE FROM feed_entries WHERE feed = $1 AND seen_at < $2 "
                "AND key NOT IN (SELECT value FROM json_each($3))",
                feed,
                now - FEED_RETENTION_S,
                current,
            )
        return queued

    async def unseen(self, feed: str, keys: Sequence[str]) -> int:
        """How many of these entry keys were never recorded for this feed."""
        row = await self._db.fetchrow(
            "SELECT count(*) AS n FROM json_each($2) WHERE value NOT IN "
            "(SELECT key FROM feed_entries WHERE feed = $1)",
            feed,
            json.dumps(list(keys)),
        )
        return int(row["n"]) if row is not None else len(keys)

    async def entry(self, broadcast: str) -> tuple[str, str] | None:
        """(title, link) of a queued feed entry, by its broadcast's text.

        None also for an entry a published gazette listed: it is not relayed again.
        """
        row = await self._db.fetchrow(
            "SELECT title, link FROM feed_entries WHERE broadcast = $1 AND gazette IS NULL",
            broadcast,
        )
        return None if row is None else (str(row["title"]), str(row["link"]))

    async def for_gazette(self, since: int) -> list[Listed]:
        """Entries the relay posts, seen after `since`, that no gazette listed yet."""
        rows = await self._db.fetch(
            "SELECT broadcast, title, link FROM feed_entries "
            "WHERE wanted = 1 AND gazette IS NULL AND seen_at > $1 ORDER BY seen_at, rowid",
            since,
        )
        return [Listed(str(r["broadcast"]), str(r["title"]), str(r["link"])) for r in rows]


@dataclass(frozen=True, slots=True)
class Listed:
    """A feed entry as a gazette lists it (`broadcast`: its relay post's key)."""

    broadcast: str
    title: str
    link: str


async def mark_in_gazette(q: Queries, broadcasts: Sequence[str], number: int) -> None:
    """These entries are in the gazette `number`: not listed again, not relayed again."""
    await q.execute(
        "UPDATE feed_entries SET gazette = $1 "
        "WHERE gazette IS NULL AND broadcast IN (SELECT value FROM json_each($2))",
        number,
        json.dumps(list(broadcasts)),
    )
